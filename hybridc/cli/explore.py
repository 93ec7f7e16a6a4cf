"""`hybridc explore`: every candidate split compiled, profiled and ranked."""

import warnings
from pathlib import Path
from typing import List, Optional

import typer

from .common import (
    DEVICE_OPTION,
    app,
    guard,
    make_console,
    quiet_imports,
)


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
    system: Optional[str] = typer.Option(None, "--system", help="Where each candidate's Loihi stages must fit "
                                         "(default loihi2); one that does not fit is listed as refused."),
    device: str = DEVICE_OPTION,
):
    """Compile and profile every candidate split; rank by energy, mark the Pareto front.
    With --train-epochs, train each candidate first (on Ray with --workers/--address)."""
    console = make_console()

    def body():
        quiet_imports()
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
        if training and system is not None:
            raise InputError("--system is not taken with --train-epochs yet: trained candidates are mapped onto "
                             "the default loihi2; profile one with `hybridc profile BUILD --system NAME|FILE`.")
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
                                   progress=lambda name: status.update(f"profiled {name}"), system=system)
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

    guard(body, device=device)
