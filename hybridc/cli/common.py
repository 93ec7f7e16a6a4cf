"""What every command shares: the typer app, quiet imports, and `guard`, which turns a
HybridcError into one paragraph and its exit code (never a traceback without --debug)."""

import os
from pathlib import Path

import typer

app = typer.Typer(
    name="hybridc",
    help="Compile hybrid spiking/non-spiking PyTorch models for Loihi (Lava netx) + Jetson (ONNX).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_state = {"debug": False}


def _print_version(value: bool):
    if value:
        from ..version import __version__

        typer.echo(f"hybridc {__version__}")
        raise typer.Exit()


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks on errors."),
          version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the version and exit.")):
    _state["debug"] = debug


def make_console(stderr=False):
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:  # piped or captured: wide enough that tables do not wrap
        console = Console(stderr=stderr, highlight=False, width=140)
    return console


def quiet_imports():
    """Lava and lava-dl print CUDA/Prophesee notices on import; they are noise here."""
    from ..quiet import import_slayer_quietly

    import_slayer_quietly()


def _fail(exc) -> None:
    from rich.markup import escape

    make_console(stderr=True).print(f"[bold red]error[/] ({type(exc).__name__}): {escape(str(exc))}",
                                soft_wrap=True)
    raise typer.Exit(code=exc.exit_code)


def guard(fn, device: str = None):
    """Run a command body; HybridcError becomes one paragraph and its exit code. device: where
    the emulator runs in it (`--device`; checked first, so a missing GPU fails before any work)."""
    from ..errors import HybridcError

    try:
        if device is None:
            return fn()
        from ..runtime.device import using

        with using(device):
            return fn()
    except HybridcError as exc:
        if _state["debug"]:
            raise
        _fail(exc)
    except KeyboardInterrupt:
        make_console(stderr=True).print("interrupted; nothing was written")
        raise typer.Exit(code=130)
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no tracebacks for users
        if _state["debug"]:
            raise
        from rich.markup import escape

        make_console(stderr=True).print(
            f"[bold red]internal error[/] ({type(exc).__name__}): {escape(str(exc))}. This is a bug in "
            "hybridc, not in your model: please report it with the output of `hybridc --debug ...`. "
            "Nothing was written.", soft_wrap=True)
        raise typer.Exit(code=70)


def warning_printer(console):
    def show(message, category, filename, lineno, file=None, line=None):
        if "hybridc" in filename or category is UserWarning and "accumulator" in str(message):
            console.print(f"[yellow]warning[/]: {message}", soft_wrap=True)
    return show


def write_file(path: Path, data) -> None:
    """Write a report file whole or not at all, with a clean error when that is impossible."""
    from ..errors import OutputError

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


# verify and profile run samples through a build: the same sources of data for both.
DEVICE_OPTION = typer.Option("cpu", "--device", help="Where the emulator (--backend emulate) runs: cpu, cuda "
                             "or auto (cuda when torch sees a GPU). Exact on both.")
DATA_OPTION = typer.Option(
    None, help="The samples to run: synthetic, dvsgesture:PATH (test split), npz:PATH (arrays x, optional y), "
               "random:RATE, or a hybridc.data entry point NAME[:ARG]. Default: synthetic for event-frame builds, "
               "else random:0.1.")

# verify and profile rebuild a build's PyTorch model; a build may come from anyone, so the
# model file it records is imported only when named (--model) or trusted (--trust-source).
MODEL_OPTION = typer.Option(None, "--model", help="The model file this build was compiled from (checked by sha256 "
                            "against the build), e.g. after moving it; hybridc imports it.")
WEIGHTS_OPTION = typer.Option(None, "--weights", help="The checkpoint this build was compiled with (checked by "
                              "sha256), e.g. after moving it.")
TRUST_SOURCE_OPTION = typer.Option(False, "--trust-source", help="Import the model file the build records. Only for "
                                   "builds you trust: importing a Python file runs its code.")


def reference_files(model, weights, trust_source):
    from ..runtime.dataset_verify import ReferenceFiles

    return ReferenceFiles(model, weights, trust_source)
