"""`hybridc verify`."""

from pathlib import Path
from typing import Optional

import typer

from . import common
from .common import DEVICE_OPTION, app, guard, make_console, quiet_imports, reference_files, write_file


@app.command()
def verify(
    build: Path = typer.Argument(..., help="Build directory written by `hybridc compile`."),
    data: Optional[str] = common.DATA_OPTION,
    model: Optional[Path] = common.MODEL_OPTION,
    weights: Optional[Path] = common.WEIGHTS_OPTION,
    trust_source: bool = common.TRUST_SOURCE_OPTION,
    samples: int = typer.Option(8, help="How many samples to run."),
    backend: str = typer.Option("lava", help="lava (Lava's simulator, slow) or emulate (hybridc's batched "
                                             "bit-exact emulator of Lava on the same netx file, fast)."),
    batch_size: int = typer.Option(16, help="Samples per batch (emulate and onnxruntime)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the report as JSON here."),
    workers: Optional[int] = typer.Option(None, help="Split the samples across a local Ray with this many workers."),
    address: Optional[str] = typer.Option(None, help="Split the samples across the Ray cluster at this address."),
    device: str = DEVICE_OPTION,
):
    """Run a dataset through the deployment and the PyTorch model; report their agreement."""
    console = make_console()

    def body():
        import json

        quiet_imports()
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        from ..runtime.dataset_verify import verify_dataset
        from ..runtime.nir_reference import low, output_text

        columns = [TextColumn(f"verify ({backend})"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("verify", total=samples)
            report = verify_dataset(build, data, samples, backend, batch_size,
                                    progress=lambda n: bar.advance(task, n), workers=workers, address=address,
                                    files=reference_files(model, weights, trust_source))
        from rich.table import Table

        table = Table(title=f"verify {build}: {report.samples} samples, {backend} backend", title_justify="left")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in report.as_dict().items():
            if key in ("spike_matches", "spike_dice"):  # one row per spiking output of the stage graph
                for output, match in (value or {}).items():
                    table.add_row(f"{key.removesuffix('es')} {output}", f"{match:.6g}")
            elif key == "nir_reference":  # one row per hybridc.nn.NIR module: informs, never fails
                for name, f in (value or {}).items():
                    table.add_row(f"NIR `{name}` vs float original", f"n/a: {f['na']}" if "na" in f else
                                  f"Dice {f['dice']:.4f}, {f['equal']:.2%} equal" + (" (low)" if low(f) else ""))
                    if "na" not in f:
                        table.add_row(f"NIR `{name}`: model on float original", f"output {output_text(f)}")
            elif key == "spike_dice_min":
                table.add_row("spikes must", "equal PyTorch's" if value is None else
                              f"overlap PyTorch's by Dice >= {value:g} (float NIR simulation)")
            elif key not in ("backend", "samples", "data"):
                missing = "n/a (no spiking stage)" if key == "spike_match" else "n/a (no labels)"
                shown = (missing if value is None else f"{value:.6g}" if isinstance(value, float) else str(value))
                table.add_row(key, shown)
        console.print(table)
        console.print(f"data: {report.data}")
        if json_path:
            write_file(json_path, json.dumps(report.as_dict(), indent=2) + "\n")
            console.print(f"wrote {json_path}")
        if not report.passed:
            raise typer.Exit(code=12)

    guard(body, device=device)
