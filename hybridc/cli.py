"""The `hybridc` command line. Imports torch and Lava only inside commands, so
`hybridc --help` answers instantly."""

import os
import sys
import warnings
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(
    name="hybridc",
    help="Compile hybrid spiking/non-spiking PyTorch models for Loihi (Lava netx) + Jetson (ONNX).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_state = {"debug": False}


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks on errors.")):
    _state["debug"] = debug


def _console(stderr=False):
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:  # piped or captured: wide enough that tables do not wrap
        console = Console(stderr=stderr, highlight=False, width=140)
    return console


def _quiet_imports():
    """Lava and lava-dl print CUDA/Prophesee notices on import; they are noise here."""
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    warnings.filterwarnings("ignore", module="lava")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        import lava.lib.dl.slayer  # noqa: F401


def _fail(exc) -> None:
    from rich.markup import escape

    _console(stderr=True).print(f"[bold red]error[/] ({type(exc).__name__}): {escape(str(exc))}",
                                soft_wrap=True)
    raise typer.Exit(code=exc.exit_code)


def _guard(fn):
    """Run a command body; HybridcError becomes one paragraph and its exit code."""
    from .errors import HybridcError

    try:
        return fn()
    except HybridcError as exc:
        if _state["debug"]:
            raise
        _fail(exc)
    except KeyboardInterrupt:
        _console(stderr=True).print("interrupted; nothing was written")
        raise typer.Exit(code=130)
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no tracebacks for users
        if _state["debug"]:
            raise
        from rich.markup import escape

        _console(stderr=True).print(
            f"[bold red]internal error[/] ({type(exc).__name__}): {escape(str(exc))}. This is a bug in "
            "hybridc, not in your model: please report it with the output of `hybridc --debug ...`. "
            "Nothing was written.", soft_wrap=True)
        raise typer.Exit(code=70)


def _warning_printer(console):
    def show(message, category, filename, lineno, file=None, line=None):
        if "hybridc" in filename or category is UserWarning and "accumulator" in str(message):
            console.print(f"[yellow]warning[/]: {message}", soft_wrap=True)
    return show


def _shape(specs) -> str:
    return ", ".join(f"{s.layout} {'x'.join(map(str, s.shape))}" for s in specs)


def write_file(path: Path, data) -> None:
    """Write a report file whole or not at all, with a clean error when that is impossible."""
    from .errors import OutputError

    path = Path(path)
    tmp = path.with_name(f".{path.name}.hybridc-tmp")
    try:
        if isinstance(data, str):
            tmp.write_text(data)
        else:
            tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp.parent.is_dir():
            tmp.unlink(missing_ok=True)
        raise OutputError(f"Cannot write {path}: {exc.strerror or exc}.") from None


def partition_table(compiled, title: str):
    """One row per stage: what runs where, on which tensors, and how big it is."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("stage", "target", "layers", "input", "output", "size", "accumulator"):
        table.add_column(col)
    for stage in compiled.manifest.stages:
        if stage.neurons is not None:
            size = f"{stage.neurons:,} neurons, {stage.synapses:,} synapses"
        else:
            params = sum(d.get("parameters", 0) for _, d in compiled.graph.nodes(data=True)
                         if d.get("partition") == stage.name) if compiled.graph is not None else 0
            size = f"{params:,} parameters"
        acc = stage.accumulator
        acc_text = f"I={acc.interval}, {acc.windows} windows{', folded' if acc.fold else ''}" if acc else ""
        table.add_row(stage.name, stage.target, str(stage.layers or ""), _shape(stage.inputs),
                      _shape(stage.outputs), size, acc_text)
    return table


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
    calibration: str = typer.Option("synthetic", help="jetson-int8: calibration data (synthetic or dvsgesture:PATH)."),
    calibration_samples: int = typer.Option(32, help="jetson-int8: how many calibration samples."),
):
    """Compile MODEL_FILE into a Loihi netx network, an ONNX model and manifest.json."""
    console = _console()

    def body():
        from .targets.registry import parse_target_string

        parse_target_string(target)  # fail fast on a bad target, before importing the model
        with console.status("loading model"):
            _quiet_imports()
            from .compiler.driver import compile as compile_model
            from .compiler.loader import load_model_file, parse_entry_args

            entry_args = parse_entry_args(set_)
            model, example_input, path, digest = load_model_file(model_file, entry, weights, entry_args)
        warnings.showwarning = _warning_printer(console)
        with console.status("tracing, partitioning, lowering"):
            compiled = compile_model(model, example_input, target, output, force=force, on_overflow=on_overflow,
                                     source_path=path, source_sha256=digest,
                                     recipe=_recipe(entry, entry_args, weights),
                                     target_options={"calibration": calibration,
                                                     "calibration_samples": calibration_samples})
        console.print(partition_table(compiled, f"{path.name} -> {output}"))
        if verify:
            _print_parity(console, compiled, example_input)
        console.print(f"wrote {output}/manifest.json")

    _guard(body)


def _recipe(entry, entry_args, weights) -> dict:
    """How to rebuild the reference model from the source file (for `hybridc verify`)."""
    from .targets.loihi import sha256

    recipe = {"entry": entry, "args": entry_args}
    if weights:
        recipe["weights"] = str(Path(weights).resolve())
        recipe["weights_sha256"] = sha256(Path(weights))
    return recipe


def _print_parity(console, compiled, example_input):
    from rich.progress import Progress

    from .compiler.verify import verify as verify_build

    with Progress(transient=True, console=console) as progress:
        task = progress.add_task("Lava fixed-point simulation", total=int(example_input.shape[0]))
        parity = verify_build(compiled, example_input, progress=lambda: progress.advance(task))
    ok = parity.spike_match in (None, 1.0) and parity.argmax_agreement == 1.0 and parity.run_max_abs_err < 1e-4
    console.print(
        f"[{'green' if ok else 'red'}]parity[/] on {parity.samples} sample(s): "
        + (f"spikes at the cut equal {parity.spike_match:.2%} of {parity.cut_entries} entries; "
           if parity.spike_match is not None else "")
        + (f"ONNX vs PyTorch max |err| {parity.onnx_max_abs_err:.2e}; "
           if parity.onnx_max_abs_err is not None else "")
        + f"deployment vs model(x) max |err| {parity.run_max_abs_err:.2e}, "
        f"argmax agreement {parity.argmax_agreement:.0%}"
    )
    if not ok:
        raise typer.Exit(code=12)


@app.command()
def run(
    build: Path = typer.Argument(..., help="Build directory written by `hybridc compile`."),
    input: Path = typer.Option(..., "--input", "-i", help=".npy spikes, PyTorch layout (N, ..., T)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to save outputs (.npy)."),
):
    """Run a build as deployed: Lava fixed-point for loihi, onnxruntime for jetson."""
    console = _console()

    def body():
        import numpy as np

        from .errors import InputError

        from .errors import OutputError

        if not input.is_file():
            raise InputError(f"Input file {input} does not exist.")
        if output and not output.resolve().parent.is_dir():
            raise OutputError(f"Cannot write {output}: directory {output.resolve().parent} does not exist.")
        try:
            x = np.load(input, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{input} is not a readable .npy array: {exc}.") from None
        _quiet_imports()
        from rich.progress import Progress

        from .compiler.compiled import load
        from .compiler.runtime import run as run_build

        compiled = load(build)
        with Progress(transient=True, console=console) as progress:
            task = progress.add_task("running", total=int(x.shape[0]) if x.ndim else 1)
            y = run_build(compiled, x, progress=lambda: progress.advance(task))
        y = y.numpy()
        if output:
            try:
                np.save(output, y)
            except OSError as exc:
                raise OutputError(f"Cannot write {output}: {exc.strerror or exc}.") from None
            console.print(f"wrote {output} {y.shape}")
        else:
            console.print(y)
            if y.ndim == 2:
                console.print(f"argmax: {y.argmax(-1).tolist()}")

    _guard(body)


@app.command()
def targets():
    """List every target, the side of the cut it runs, and what it supports."""
    console = _console()

    def body():
        _quiet_imports()
        from rich.table import Table

        from .targets.registry import REGISTRY, get_target

        table = Table(title="targets (write the spiking and the dense one joined by '+', e.g. loihi+jetson)")
        for col in ("target", "side", "aliases", "what it produces", "supports"):
            table.add_column(col)
        for entry in REGISTRY.values():
            table.add_row(entry.name, entry.domain, ", ".join(entry.aliases), entry.summary,
                          "\n".join(get_target(entry.name).supported_ops))
        console.print(table)

    _guard(body)


@app.command()
def verify(
    build: Path = typer.Argument(..., help="Build directory written by `hybridc compile`."),
    data: str = typer.Option("synthetic", help="synthetic or dvsgesture:PATH (the test split is used)."),
    samples: int = typer.Option(8, help="How many samples to run."),
    backend: str = typer.Option("lava", help="lava (bit-accurate, slow) or emulate (slayer fixed point, fast)."),
    batch_size: int = typer.Option(16, help="Samples per batch (emulate and onnxruntime)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the report as JSON here."),
):
    """Run a dataset through the deployment and the PyTorch model; report their agreement."""
    console = _console()

    def body():
        import json

        _quiet_imports()
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from .compiler.dataset_verify import verify_dataset

        columns = [TextColumn(f"verify ({backend})"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("verify", total=samples)
            report = verify_dataset(build, data, samples, backend, batch_size,
                                    progress=lambda n: bar.advance(task, n))
        from rich.table import Table

        table = Table(title=f"verify {build} ({report.samples} x {data}, {backend})")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in report.as_dict().items():
            if key not in ("backend", "samples"):
                shown = ("n/a (emulate runs PyTorch's spiking half)" if value is None
                         else f"{value:.6g}" if isinstance(value, float) else str(value))
                table.add_row(key, shown)
        console.print(table)
        if json_path:
            write_file(json_path, json.dumps(report.as_dict(), indent=2) + "\n")
            console.print(f"wrote {json_path}")
        if (report.spike_match is not None and report.spike_match < 1.0) or (
                report.argmax_agreement < 1.0 and not report.quantized):
            raise typer.Exit(code=12)

    _guard(body)


@app.command()
def profile(
    build: Path = typer.Argument(..., help="Build directory written by `hybridc compile`."),
    data: str = typer.Option("synthetic", help="Samples whose spikes are counted: synthetic or dvsgesture:PATH."),
    samples: int = typer.Option(16, help="How many samples to average over."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the profile as JSON (and a PNG chart beside it)."),
    device_profile: Optional[Path] = typer.Option(None, "--device-profile", help="JSON overriding the default figures."),
    jetson: Optional[str] = typer.Option(None, help="jetson-nano or orin-nano (default from the profile)."),
    link: Optional[str] = typer.Option(None, help="usb3, gige or pcie (default from the profile)."),
):
    """Estimate what one inference costs on Loihi, on the link and on the Jetson."""
    console = _console()

    def body():
        _quiet_imports()
        from .profiling.report import chart, profile_build

        with console.status("running samples and counting"):
            result = profile_build(build, data, samples, device_profile, jetson, link)
        console.print(profile_table(result))
        if json_path:
            write_file(json_path, result.to_json())
            try:
                chart(result, json_path.with_suffix(".png"))
            except OSError as exc:
                from .errors import OutputError

                raise OutputError(f"Cannot write {json_path.with_suffix('.png')}: {exc.strerror or exc}.") from None
            console.print(f"wrote {json_path} and {json_path.with_suffix('.png')}")

    _guard(body)


def profile_table(result):
    from rich.table import Table

    table = Table(title=f"profile of {result.build} ({result.samples} samples; {result.devices['loihi']}, "
                        f"{result.devices['jetson']}, {result.devices['link']})")
    for col in ("part", "size", "activity per inference", "latency", "energy"):
        table.add_column(col)
    if result.loihi:
        l = result.loihi  # noqa: E741
        table.add_row("loihi", f"{l['neurons']:,} neurons, {l['synapses']:,} synapses, {l['cores']} cores",
                      f"{l['spikes']:,.0f} spikes, {l['synaptic_ops']:,.0f} synaptic ops",
                      f"{l['time_s'] * 1e3:.3f} ms ({l['timesteps_run']} steps)", f"{l['energy_j'] * 1e6:.3f} uJ")
    if result.cut:
        c = result.cut
        table.add_row("link", f"{c['tensor']} {'x'.join(map(str, c['shape']))}",
                      f"{c['bytes_sent']:,.0f} B raw spikes sent ({c['accumulated_bytes']:,.0f} B as "
                      f"{c['count_dtype']} counts of I={c['interval']})",
                      f"{c['time_s'] * 1e3:.3f} ms", f"{c['energy_j'] * 1e6:.3f} uJ")
    if result.jetson:
        j = result.jetson
        measured = j.get("measured_onnxruntime_cpu_s")
        table.add_row("jetson", f"{j['parameters']:,} parameters", f"{j['macs']:,} MACs",
                      f"{j['time_s'] * 1e3:.3f} ms" + (f" (this CPU: {measured * 1e3:.3f} ms)" if measured else ""),
                      f"{j['energy_j'] * 1e6:.3f} uJ")
    table.add_row("[bold]total[/]", "", "", f"[bold]{result.latency_s['total'] * 1e3:.3f} ms[/]",
                  f"[bold]{result.energy_j['total'] * 1e6:.3f} uJ[/]")
    for note in result.notes:
        table.add_row("[yellow]note[/]", note, "", "", "")
    return table


@app.command()
def explore(
    model_file: Path = typer.Argument(..., help="Model file with build(split=, interval=) or candidates()."),
    splits: str = typer.Option("S1A5,S2A4,S3A3,S4A2", help="Comma-separated splits for build()."),
    intervals: str = typer.Option("2,4,8", help="Comma-separated accumulator intervals."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="NAME=VALUE for build()/candidates() (repeatable)."),
    data: str = typer.Option("synthetic", help="Data for activity (and accuracy)."),
    samples: int = typer.Option(8, help="Samples per candidate."),
    checkpoints: Optional[Path] = typer.Option(None, help="Directory with NAME/model.pt or NAME.pt to add accuracy."),
    output: Path = typer.Option(Path("explore"), "--output", "-o", help="Where the table, plot and builds go."),
    device_profile: Optional[Path] = typer.Option(None, "--device-profile"),
    jetson: Optional[str] = typer.Option(None),
    link: Optional[str] = typer.Option(None),
):
    """Compile and profile every candidate split; rank by energy, mark the Pareto front."""
    console = _console()

    def body():
        _quiet_imports()
        from rich.table import Table

        from .compiler.loader import parse_entry_args
        from .errors import InputError
        from .profiling.explore import explore as run_explore

        try:
            interval_list = [int(i) for i in intervals.split(",") if i.strip()]
        except ValueError:
            raise InputError(f"--intervals must be integers, got {intervals!r}.") from None
        split_list = [s.strip() for s in splits.split(",") if s.strip()]
        warnings.filterwarnings("ignore")
        with console.status("compiling and profiling candidates") as status:
            rows = run_explore(model_file, split_list, interval_list, output, parse_entry_args(set_), data, samples,
                               checkpoints, device_profile, jetson, link,
                               progress=lambda name: status.update(f"profiled {name}"))
        table = Table(title=f"candidates of {model_file.name}, sorted by estimated energy (* = Pareto-optimal)")
        for col in ("candidate", "latency ms", "energy uJ", "cut bytes", "neurons", "cores", "parameters",
                    "accuracy"):
            table.add_column(col, justify="left" if col == "candidate" else "right")
        for r in rows:
            if r.refused:
                table.add_row(r.name, f"[dim]refused: {r.refused[:70]}[/]", "", "", "", "", "", "")
                continue
            table.add_row(("* " if r.pareto else "  ") + r.name, f"{r.latency_ms:.3f}", f"{r.energy_uj:.1f}",
                          f"{r.cut_bytes:,.0f}", f"{r.neurons:,}", str(r.cores), f"{r.parameters:,}",
                          f"{r.accuracy:.1%}" if r.accuracy is not None else "-")
        console.print(table)
        console.print(f"wrote {output}/explore.csv, explore.json, explore.png")

    _guard(body)


FORMATS = ("table", "json", "dot", "svg", "png", "html")


@app.command()
def inspect(
    source: Path = typer.Argument(..., help="A model file (traced and partitioned, nothing written) "
                                  "or a build directory written by `hybridc compile`."),
    format: str = typer.Option("table", "--format", "-f", help=f"One of: {', '.join(FORMATS)}."),
    level: str = typer.Option("stages", "--level", help="stages: one row per stage and cut; nodes: every fx node."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="File to write (needed for svg, png, html)."),
    target: str = typer.Option("loihi+jetson", "--target", "-t", help="Targets, when SOURCE is a model file."),
    entry: Optional[str] = typer.Option(None, help="Function returning (model, example_input)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="NAME=VALUE argument for --entry (repeatable)."),
    weights: Optional[Path] = typer.Option(None, help="state_dict checkpoint to load (weights_only)."),
):
    """Show where the cut falls, what crosses it and how big each side is."""
    console = _console()

    def body():
        from .errors import InputError, OutputError

        if format not in FORMATS:
            raise InputError(f"Unknown --format `{format}`; choose one of {', '.join(FORMATS)}.")
        if level not in ("stages", "nodes"):
            raise InputError(f"Unknown --level `{level}`; choose stages or nodes.")
        if format in ("svg", "png", "html") and output is None:
            raise OutputError(f"--format {format} writes a file: give it with -o, e.g. -o graph.{format}.")
        _quiet_imports()
        from .inspection import Inspection

        if source.is_dir():
            from .compiler.compiled import load

            compiled = load(source)
        else:
            from .compiler.driver import compile as compile_model
            from .compiler.loader import load_model_file, parse_entry_args

            warnings.showwarning = _warning_printer(console)
            model, example_input, path, digest = load_model_file(source, entry, weights, parse_entry_args(set_))
            compiled = compile_model(model, example_input, target, None, source_path=path, source_sha256=digest)
        inspection = Inspection(compiled)
        if format == "table":
            console.print(inspection.table(level))
            return
        if format in ("svg", "png"):
            from .inspection.dot import render

            data = render(inspection.to_dot(), format)
        else:
            text = {"json": inspection.to_json, "dot": inspection.to_dot, "html": inspection.to_html}[format]()
            data = text.encode()
        if output is None:
            sys.stdout.write(data.decode())
            return
        write_file(output, data)
        console.print(f"wrote {output} ({len(data):,} bytes)")

    _guard(body)


def main():
    app()


if __name__ == "__main__":
    main()
