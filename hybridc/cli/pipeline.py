"""`hybridc pipeline`: every stage of a build as its own process, streamed."""

from pathlib import Path
from typing import Optional

import typer

from .common import DEVICE_OPTION, app, guard, make_console


@app.command()
def pipeline(
    build: Path = typer.Argument(..., help="Build directory written by `hybridc compile`."),
    input: Path = typer.Option(..., "--input", "-i", help=".npy samples, PyTorch layout (N, ..., T); .npz with one array "
                              "per model input (input, input_1, ...) for a build with several."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the outputs (.npy), in input order."),
    backend: str = typer.Option("lava", help="Spiking stages: lava or emulate."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write per-stage and per-link measurements here."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from the first missing sample."),
    window: int = typer.Option(4, help="At most this many unacknowledged samples per link (backpressure)."),
    connect: Optional[str] = typer.Option(None, help="Stages already served (`hybridc serve`): HOST:PORT of the "
                                          "stage reading the model input (NAME=HOST:PORT,... when several do)."),
    collect: Optional[str] = typer.Option(None, help="With --connect: HOST:PORT to receive the model output on "
                                          "(the --to of the stage computing it)."),
    stall_timeout: float = typer.Option(600.0, help="Seconds without any output before the run stops."),
    keys: Optional[Path] = typer.Option(None, "--keys", help="With --connect: the key set the stages were served "
                                        "with (`hybridc keys`). A local run makes a fresh one of its own."),
    insecure: bool = typer.Option(False, "--insecure", help="With --connect: allow non-loopback addresses without "
                                  "--keys."),
    device: str = DEVICE_OPTION,
):
    """Every stage its own process, linked over TCP; stream the samples of INPUT through them."""
    console = make_console()

    def body():
        from rich.progress import Progress

        from ..deploy.pipeline import run_file

        with Progress(transient=True, console=console) as progress:
            task = progress.add_task("streaming", total=None)
            stats = run_file(build, input, output, backend, window, resume, json_path,
                             log=lambda m: console.print(m), progress=lambda n: progress.advance(task, n),
                             connect=connect, collect=collect, stall_timeout=stall_timeout, keys=keys,
                             insecure=insecure, total=lambda count: progress.update(task, total=count))
        if stats.get("samples"):
            console.print(f"wrote {output}: {stats['samples']} sample(s) streamed"
                          + (f" (after {stats['resumed_from']} kept from the interrupted run)"
                             if stats["resumed_from"] else "")
                          + f", {stats['throughput_per_s']:.2f} samples/s, end-to-end latency "
                          f"{stats['end_to_end_latency_s']['median'] * 1e3:.1f} ms (median)")
            for edge in stats["edges"]:
                measured = edge.get("payload_bytes_per_inference")
                console.print(f"  {edge['source']}/{edge['output']} -> {edge['destination']}/{edge['tensor']}: "
                              f"{edge['form']}"
                              f"{' at %d bit%s' % (edge['bits'], 's' * (edge['bits'] > 1)) if edge['bits'] else ''}, "
                              f"{measured if measured is not None else float('nan'):,.0f} B/inference measured, "
                              f"{edge['predicted_payload_bytes_per_inference']:,} B predicted")
        else:
            console.print(f"wrote {output}: every output was already received")
        if json_path:
            console.print(f"wrote {json_path}")

    guard(body, device=device)
