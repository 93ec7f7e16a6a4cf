"""`hybridc run`: a build directory run as deployed on an input array."""

from pathlib import Path
from typing import List, Optional

import typer

from .common import DEVICE_OPTION, app, guard, make_console, quiet_imports


@app.command()
def run(
    build: Path = typer.Argument(..., help="Build directory written by `hybridc compile`."),
    input: List[Path] = typer.Option(..., "--input", "-i", help=".npy spikes, PyTorch layout (N, ..., T); give it "
                                     "once per model input, in forward()'s order, or one .npz holding them by "
                                     "name (input, input_1, ...)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to save outputs: .npy, or .npz "
                                          "(one array per model output: output, output_1, ...)."),
    backend: str = typer.Option("lava", help="lava (Lava's bit-accurate simulator) or emulate (hybridc's "
                                             "batched bit-exact emulator of it) for the loihi stage."),
    device: str = DEVICE_OPTION,
):
    """Run a build as deployed: Lava fixed-point for loihi, onnxruntime for jetson."""
    console = make_console()

    def body():
        import numpy as np

        from ..errors import InputError, OutputError

        for path in input:
            if not path.is_file():
                raise InputError(f"Input file {path} does not exist.")
        if output and not output.resolve().parent.is_dir():
            raise OutputError(f"Cannot write {output}: directory {output.resolve().parent} does not exist.")
        x = read_inputs(input)
        quiet_imports()
        from rich.progress import Progress

        from ..build_dir.compiled import load
        from ..runtime.run import run as run_build

        compiled = load(build)
        with Progress(transient=True, console=console) as progress:
            first = next(iter(x.values())) if isinstance(x, dict) else x[0] if isinstance(x, tuple) else x
            task = progress.add_task("running", total=int(first.shape[0]) if first.ndim else 1)
            y = run_build(compiled, x, progress=lambda: progress.advance(task), backend=backend)
        ys = {("output" if i == 0 else f"output_{i}"): t.numpy() for i, t in enumerate(y if isinstance(y, tuple) else (y,))}
        if output:
            if len(ys) > 1 and output.suffix != ".npz":
                raise OutputError(f"The build returns {len(ys)} outputs ({', '.join(ys)}); write them to an .npz "
                                  f"file (-o {output.with_suffix('.npz').name}).")
            try:
                np.savez(output, **ys) if output.suffix == ".npz" else np.save(output, ys["output"])
            except OSError as exc:
                raise OutputError(f"Cannot write {output}: {exc.strerror or exc}.") from None
            console.print(f"wrote {output} " + ", ".join(f"{name} {value.shape}" for name, value in ys.items()))
        else:
            for name, value in ys.items():
                if len(ys) > 1:
                    console.print(f"{name}:")
                console.print(value)
                if value.ndim == 2:
                    console.print(f"argmax: {value.argmax(-1).tolist()}")

    guard(body, device=device)


def read_inputs(paths: list):
    """The model inputs from `--input` files: one array, a tuple of them (one .npy per input,
    in order), or {name: array} from one .npz (np.savez's positional arr_0, arr_1, ... as a
    tuple). Untrusted files: `array_files` reads them."""
    from ..array_files import positional, read_arrays
    from ..errors import InputError

    arrays = [read_arrays(path) for path in paths]
    if len(arrays) == 1 and isinstance(arrays[0], dict):
        named = arrays[0]
        ordered = positional(list(named), paths[0])
        if ordered is not None:
            values = tuple(named[name] for name in ordered)
            return values if len(values) > 1 else values[0]
        return named if len(named) > 1 else next(iter(named.values()))
    if any(isinstance(a, dict) for a in arrays):
        raise InputError("Give one .npy file per model input, or a single .npz holding them all.")
    return tuple(arrays) if len(arrays) > 1 else arrays[0]
