"""`hybridc profile` and `hybridc explore`."""

import warnings
from pathlib import Path
from typing import List, Optional

import typer

from ._common import (
    DATA_OPTION,
    MODEL_OPTION,
    TRUST_SOURCE_OPTION,
    WEIGHTS_OPTION,
    _console,
    _guard,
    _quiet_imports,
    app,
    reference_files,
    write_file,
)


@app.command()
def profile(
    build: Path = typer.Argument(..., help="Build directory written by `hybridc compile`."),
    data: Optional[str] = DATA_OPTION,
    samples: int = typer.Option(16, help="How many samples to average over."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the profile as JSON (and a PNG chart beside it)."),
    device_profile: Optional[Path] = typer.Option(None, "--device-profile", help="JSON overriding the default figures."),
    jetson: Optional[str] = typer.Option(None, help="jetson-nano or orin-nano (default from the profile)."),
    link: Optional[str] = typer.Option(None, help="usb3, gige or pcie (default from the profile)."),
    measured: Optional[Path] = typer.Option(None, "--measured", help="Stats from `hybridc pipeline --json` to "
                                            "show beside the estimates."),
    model: Optional[Path] = MODEL_OPTION,
    weights: Optional[Path] = WEIGHTS_OPTION,
    trust_source: bool = TRUST_SOURCE_OPTION,
):
    """Estimate what one inference costs on Loihi, on the link and on the Jetson."""
    console = _console()

    def body():
        _quiet_imports()
        from ..profiling.report import chart, profile_build

        with console.status("running samples and counting"):
            result = profile_build(build, data, samples, device_profile, jetson, link,
                                   files=reference_files(model, weights, trust_source))
        console.print(profile_table(result))
        if result.data:
            console.print(f"activity counted on {result.samples} samples: {result.data}"
                          + ("" if data else " (no --data given)"))
        if measured:
            from ..profiling.report import attach_measured

            attach_measured(result, measured)
            console.print(measured_table(result))
        if json_path:
            write_file(json_path, result.to_json())
            try:
                chart(result, json_path.with_suffix(".png"))
            except OSError as exc:
                from ..errors import OutputError

                raise OutputError(f"Cannot write {json_path.with_suffix('.png')}: {exc.strerror or exc}.") from None
            console.print(f"wrote {json_path} and {json_path.with_suffix('.png')}")

    _guard(body)


def profile_table(result):
    from rich.table import Table

    table = Table(title=f"profile of {result.build}\n{result.devices['loihi']} + {result.devices['jetson']} "
                        f"over {result.devices['link']}", title_justify="left")
    for col in ("part", "size", "activity per inference", "latency", "energy"):
        table.add_column(col)
    if result.loihi:
        l = result.loihi  # noqa: E741
        table.add_row("loihi", f"{l['neurons']:,} neurons, {l['synapses']:,} synapses, {l['cores']} cores",
                      f"{l['spikes']:,.0f} spikes, {l['synaptic_ops']:,.0f} synaptic ops",
                      f"{l['time_s'] * 1e3:.3f} ms ({l['timesteps_run']} steps)", f"{l['energy_j'] * 1e6:.3f} uJ")
    if len(result.edges) > 1:  # a stage graph: one row per edge on the link
        for e in result.edges:
            what = {"graded": "graded spikes", "spikes": "raw spikes", "counts": "packed counts",
                    "values": "graded values"}.get(e.get("wire"), e.get("wire"))
            table.add_row(f"link {e['from']} -> {e['to']}", f"{'x'.join(map(str, e['shape']))} x {e['bits_per_value']} bit",
                          f"{e['bytes_sent']:,.0f} B {what} sent ({e['conversion']})",
                          f"{e['time_s'] * 1e3:.3f} ms", f"{e['energy_j'] * 1e6:.3f} uJ")
    elif result.cut:
        c = result.cut
        table.add_row("link", f"{c['tensor']} {'x'.join(map(str, c['shape']))}",
                      (f"{c['bytes_sent']:,.0f} B sent as {c.get('wire_bits', 3)}-bit packed counts of "
                       f"I={c['interval']} (raw spikes: {c['raw_bytes']:,.0f} B)"
                       if c.get("wire") == "counts" else
                       f"{c['bytes_sent']:,.0f} B sent as {c.get('wire_bits')}-bit signed graded values"
                       if c.get("wire") == "values" else
                       f"{c['bytes_sent']:,.0f} B raw spikes sent ({c['accumulated_bytes']:,.0f} B as "
                       f"{c['count_dtype']} counts of I={c['interval']})"),
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


def measured_table(result):
    from rich.table import Table

    m = result.measured
    table = Table(title=f"measured by `hybridc pipeline` ({m['samples']} samples, {m['backend']} backend, "
                        f"{m['throughput_per_s']:.2f} samples/s, end-to-end "
                        f"{m['end_to_end_latency_s']['median'] * 1e3:.1f} ms median)")
    for col in ("link or stage", "form", "measured", "estimated"):
        table.add_column(col)
    for row in m["links"]:
        kind = f"{row['bits']}-bit {row['form']}" if row["bits"] else row["form"]
        estimate = row.get("estimated_bytes_per_inference", row["pipeline_predicted_bytes_per_inference"])
        table.add_row(f"{row['from']} -> {row['to']}" if "to" in row else row["link"], kind, f"{row['measured_bytes_per_inference'] or 0:,.0f} B/inference "
                      f"({row['measured_message_bytes_per_inference'] or 0:,.0f} B with headers)", f"{estimate:,.0f} B")
    estimates = {"loihi": result.latency_s.get("loihi"), "jetson": result.latency_s.get("jetson")}
    for stage in m["stages"]:
        side = "loihi" if stage["target"] == "loihi" else "jetson"
        table.add_row(stage["stage"], stage["target"], f"{stage['compute_s']['median'] * 1e3:.1f} ms per sample "
                      "(simulator / this CPU)", f"{(estimates.get(side) or 0) * 1e3:.3f} ms on the device")
    return table


@app.command()
def explore(
    model_file: Path = typer.Argument(..., help="Model file with build(split=, interval=) or candidates()."),
    splits: str = typer.Option("S1A5,S2A4,S3A3,S4A2", help="Comma-separated splits for build()."),
    intervals: str = typer.Option("2,4,8", help="Comma-separated accumulator intervals."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="NAME=VALUE for build()/candidates() (repeatable)."),
    data: Optional[str] = typer.Option(None, help="Data for activity (and accuracy); as for profile."),
    samples: int = typer.Option(8, help="Samples per candidate."),
    checkpoints: Optional[Path] = typer.Option(None, help="Directory with NAME/model.pt or NAME.pt to add accuracy."),
    output: Path = typer.Option(Path("explore"), "--output", "-o", help="Where the table, plot and builds go."),
    device_profile: Optional[Path] = typer.Option(None, "--device-profile"),
    jetson: Optional[str] = typer.Option(None),
    link: Optional[str] = typer.Option(None),
    train_epochs: Optional[int] = typer.Option(None, help="Train each candidate this many epochs on --data first."),
    train_samples: int = typer.Option(256, help="Synthetic training samples per candidate (with --train-epochs)."),
    workers: Optional[int] = typer.Option(None, help="Run candidates as Ray Tune trials on a local Ray with N workers."),
    address: Optional[str] = typer.Option(None, help="Run candidates as Ray Tune trials on the Ray cluster at ADDR."),
    search: str = typer.Option("grid", help="grid (every split x interval) or optuna (sample --trials of them)."),
    trials: Optional[int] = typer.Option(None, help="How many candidates --search optuna samples."),
    gpus_per_trial: float = typer.Option(0.0, help="GPUs Ray gives each trial (training runs on it)."),
):
    """Compile and profile every candidate split; rank by energy, mark the Pareto front.
    With --train-epochs, train each candidate first (on Ray with --workers/--address)."""
    console = _console()

    def body():
        _quiet_imports()
        from rich.markup import escape
        from rich.table import Table

        from ..errors import InputError
        from ..frontend.loader import parse_entry_args
        from ..profiling.explore import explore as run_explore

        try:
            interval_list = [int(i) for i in intervals.split(",") if i.strip()]
        except ValueError:
            raise InputError(f"--intervals must be integers, got {intervals!r}.") from None
        split_list = [s.strip() for s in splits.split(",") if s.strip()]
        warnings.filterwarnings("ignore")
        training = train_epochs is not None or workers is not None or address or search != "grid"
        if training and train_epochs is None:
            raise InputError("--workers, --address and --search run candidates as training trials: "
                             "add --train-epochs E.")
        with console.status("training, compiling and profiling candidates" if training else
                            "compiling and profiling candidates") as status:
            if training:
                from ..profiling.train_explore import explore_trained

                rows = explore_trained(model_file, split_list, interval_list, output, parse_entry_args(set_),
                                       data or "synthetic", samples, train_epochs, train_samples, workers=workers,
                                       address=address, search=search, trials=trials,
                                       gpus_per_trial=gpus_per_trial, device_profile=device_profile,
                                       jetson=jetson, link=link, progress=lambda name: status.update(f"done {name}"))
            else:
                rows = run_explore(model_file, split_list, interval_list, output, parse_entry_args(set_), data,
                                   samples, checkpoints, device_profile, jetson, link,
                                   progress=lambda name: status.update(f"profiled {name}"))
        from rich import box

        from ..profiling.explore import SIGNIFICANT_DIGITS, format_estimate

        table = Table(title=f"candidates of {model_file.name} by estimated energy\n(* = Pareto-optimal; estimates "
                            f"to {SIGNIFICANT_DIGITS} significant digits)", box=box.SIMPLE_HEAD)  # fits 80 columns
        for col in ("candidate", "latency ms", "energy uJ", "cut bytes", "neurons", "cores", "parameters",
                    "accuracy"):
            table.add_column(col, justify="left" if col == "candidate" else "right", min_width=len(col.split()[0]))
        refused = [r for r in rows if r.refused]
        for r in rows:
            if not r.refused:
                table.add_row(("* " if r.pareto else "  ") + r.name, format_estimate(r.latency_ms), format_estimate(r.energy_uj),
                              f"{r.cut_bytes:,.0f}", f"{r.neurons:,}", str(r.cores), f"{r.parameters:,}",
                              f"{r.accuracy:.1%}" if r.accuracy is not None else "-")
        console.print(table)
        for r in refused:
            console.print(f"[dim]refused {r.name}: {escape(r.refused)}[/]", soft_wrap=False)
        console.print(f"wrote {output}/explore.csv, explore.json, explore.png"
                      + (", explore_curves.png" if training else ""))

    _guard(body)
