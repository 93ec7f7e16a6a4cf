"""`hybridc run`: a build directory run as deployed on an input array."""

from pathlib import Path
from typing import Optional

import typer

from .common import DEVICE_OPTION, app, guard, make_console, quiet_imports


@app.command()
def run(
    build: Path = typer.Argument(..., help="Build directory written by `hybridc compile`."),
    input: Path = typer.Option(..., "--input", "-i", help=".npy spikes, PyTorch layout (N, ..., T)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to save outputs (.npy)."),
    backend: str = typer.Option("lava", help="lava (Lava's bit-accurate simulator) or emulate (hybridc's "
                                             "batched bit-exact emulator of it) for the loihi stage."),
    device: str = DEVICE_OPTION,
):
    """Run a build as deployed: Lava fixed-point for loihi, onnxruntime for jetson."""
    console = make_console()

    def body():
        import numpy as np

        from ..errors import InputError, OutputError

        if not input.is_file():
            raise InputError(f"Input file {input} does not exist.")
        if output and not output.resolve().parent.is_dir():
            raise OutputError(f"Cannot write {output}: directory {output.resolve().parent} does not exist.")
        try:
            x = np.load(input, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{input} is not a readable .npy array: {exc}.") from None
        quiet_imports()
        from rich.progress import Progress

        from ..build_dir.compiled import load
        from ..runtime.run import run as run_build

        compiled = load(build)
        with Progress(transient=True, console=console) as progress:
            task = progress.add_task("running", total=int(x.shape[0]) if x.ndim else 1)
            y = run_build(compiled, x, progress=lambda: progress.advance(task), backend=backend)
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

    guard(body, device=device)
