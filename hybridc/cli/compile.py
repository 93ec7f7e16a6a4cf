"""`hybridc compile`: a model file in, a build directory out."""

import warnings
from pathlib import Path
from typing import List, Optional

import typer

from .common import app, guard, make_console, quiet_imports, warning_printer


def _shape(specs) -> str:
    return ", ".join(f"{s.layout} {'x'.join(map(str, s.shape))}" for s in specs)



def _conversion(edge) -> str:
    c = edge.conversion
    if c.kind == "encoder":
        return f"{edge.consumer['input']}: encoder {c.bits}-bit graded, hold {c.hold}"
    return f"{edge.producer['tensor']}: I={c.interval}, {c.windows} windows{', folded' if c.fold else ''}"


def partition_table(compiled, title: str):
    """One row per stage: what runs where, on which tensors, and how big it is."""
    from rich.table import Table

    from ..inspection.model import Inspection

    table = Table(title=title, title_justify="left")
    for col in ("stage", "target", "layers", "input", "output", "size", "conversion in"):
        table.add_column(col)
    rows = Inspection(compiled).stages if compiled.graph is not None else [None] * len(compiled.manifest.stages)
    for stage, row in zip(compiled.manifest.stages, rows):
        if stage.neurons is not None:
            size = f"{stage.neurons:,} neurons, {stage.synapses:,} synapses"
        else:
            size = f"{row.parameters if row else 0:,} parameters"
        acc_text = "; ".join(_conversion(e) for e in compiled.manifest.edges_into(stage.name)
                             if e.conversion.kind != "none")
        layers = row.layers if row else stage.layers  # the dense stage: its layers with parameters
        table.add_row(stage.name, stage.target, str(layers or ""), _shape(stage.inputs),
                      _shape(stage.outputs), size, acc_text)
    return table


def mapping_line(mapping: dict) -> str:
    """One line: where the loihi stages fit and how full the system is."""
    system, use = mapping["system"], mapping["utilisation"]
    return (f"fits {system['name']}: {use['cores_used']:,} of {system['cores']:,} cores "
            f"({use['cores_fraction']:.1%}) on {use['chips_used']:,} of {system['chips']:,} chip(s) of "
            f"{system['chip']}, {use['neurons']:,} neurons"
            + (f", {use['axons_crossing_chips']:,} axons between chips" if use["chips_used"] > 1 else "")
            + " (estimate: docs/targets.md, \"Will it fit\")")


@app.command()
def compile(
    model_file: Path = typer.Argument(..., help="Python file defining `model` and `example_input`."),
    target: str = typer.Option("loihi+jetson", "--target", "-t", help="Spiking+dense targets."),
    output: Path = typer.Option(Path("build"), "--output", "-o", help="Output directory."),
    entry: Optional[str] = typer.Option(None, help="Function returning (model, example_input)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="NAME=VALUE argument for --entry (repeatable)."),
    weights: Optional[Path] = typer.Option(None, help="state_dict checkpoint to load (weights_only)."),
    verify: bool = typer.Option(False, "--verify", help="Also run the example in Lava and onnxruntime "
                                "and print parity with PyTorch."),
    force: bool = typer.Option(False, "--force", help="Replace an existing hybridc build in OUTPUT."),
    on_overflow: str = typer.Option("error", "--on-overflow", help="Weights outside Loihi's 8-bit range: "
                                    "error (default) or clip (as slayer's own forward does)."),
    calibration: str = typer.Option("synthetic", help="jetson-int8: calibration data (synthetic or "
                                     "dvsgesture:PATH; several inputs: npz:PATH with one array per input)."),
    calibration_samples: int = typer.Option(32, help="jetson-int8: how many calibration samples."),
    system: Optional[str] = typer.Option(None, "--system", help="Where the loihi stages must fit: loihi2 (the "
                                         "default, one chip), kapoho-point, hala-point, loihi1, or a system file "
                                         "(docs/targets.md). A build that does not fit is refused (exit 17)."),
    timings: bool = typer.Option(False, "--timings", help="Print where the compile spent its time, phase by phase."),
):
    """Compile MODEL_FILE into a Loihi netx network, an ONNX model and manifest.json."""
    console = make_console()

    def body():
        from ..mapping.systems import resolve as resolve_system
        from ..targets.registry import parse_target_string

        parse_target_string(target)  # fail fast on a bad target or system, before importing the model
        chosen = resolve_system(system)
        with console.status("loading model"):
            quiet_imports()
            from ..compiler.driver import compile as compile_model
            from ..frontend.loader import load_model_file, parse_entry_args

            entry_args = parse_entry_args(set_)
            model, example_input, path, digest = load_model_file(model_file, entry, weights, entry_args)
        warnings.showwarning = warning_printer(console)
        with console.status("tracing, partitioning, lowering"):
            compiled = compile_model(model, example_input, target, output, force=force, on_overflow=on_overflow,
                                     source_path=path, source_sha256=digest,
                                     recipe=_recipe(entry, entry_args, weights),
                                     target_options={"calibration": calibration,
                                                     "calibration_samples": calibration_samples},
                                     system=chosen)
        console.print(partition_table(compiled, f"{path.name} -> {output}"))
        if compiled.manifest.mapping:
            console.print(mapping_line(compiled.manifest.mapping))
        if timings:
            console.print(_timings_table(compiled.timings))
        if verify:
            _print_parity(console, compiled, example_input)
        console.print(f"wrote {output}/manifest.json")

    guard(body)


def _timings_table(timings):
    from rich.table import Table

    table = Table("phase", "wall ms", "CPU ms", title="compile time by phase")
    for name, wall, cpu in timings.rows():
        table.add_row(name, f"{wall:.1f}", f"{cpu:.1f}")
    return table


def _recipe(entry, entry_args, weights) -> dict:
    """How to rebuild the reference model from the source file (for `hybridc verify`)."""
    from ..digest import sha256

    recipe = {"entry": entry, "args": entry_args}
    if weights:
        recipe["weights"] = str(Path(weights).resolve())
        recipe["weights_sha256"] = sha256(Path(weights))
    return recipe


def _print_parity(console, compiled, example_input):
    from rich.progress import Progress

    from ..runtime.nir_reference import lines as nir_lines
    from ..runtime.verify import verify as verify_build

    with Progress(transient=True, console=console) as progress:
        first = example_input[0] if isinstance(example_input, tuple) else example_input
        task = progress.add_task("Lava fixed-point simulation", total=int(first.shape[0]))
        parity = verify_build(compiled, example_input, progress=lambda: progress.advance(task))
    ok = parity.passed
    dice = min(parity.spike_dice.values(), default=1.0)
    console.print(
        f"[{'green' if ok else 'red'}]parity[/] on {parity.samples} sample(s): "
        + (f"spikes at the cut equal {parity.spike_match:.2%} of {parity.cut_entries} entries; "
           if parity.spike_match is not None else "")
        + (f"Dice {dice:.4f} (float simulation: >= {parity.spike_dice_min:g} required); "
           if parity.spike_dice_min is not None else "")
        + (f"ONNX vs PyTorch max |err| {parity.onnx_max_abs_err:.2e}; "
           if parity.onnx_max_abs_err is not None else "")
        + f"deployment vs model(x) max |err| {parity.run_max_abs_err:.2e}"
        + (f" (int8: <= {parity.output_rel_err_max:g} x max|model(x)| allowed)"
           if parity.output_rel_err_max is not None else "")
        + f", argmax agreement {parity.argmax_agreement:.0%}"
    )
    for text, low in nir_lines(parity.nir_reference):  # informs; exactness in Lava decides
        console.print(f"[yellow]warning[/]: {text}" if low else text, markup=low)
    if not ok:
        raise typer.Exit(code=12)
