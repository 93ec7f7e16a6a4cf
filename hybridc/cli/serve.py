"""`hybridc serve`: one stage of a build as a process, linked over TCP."""

from pathlib import Path
from typing import List, Optional

import typer

from .common import DEVICE_OPTION, app, guard, make_console, write_file


@app.command()
def serve(
    build: Path = typer.Argument(..., help="Build directory written by `hybridc compile`."),
    stage: str = typer.Option(..., "--stage", help="Name of the stage to run (see manifest.json)."),
    listen: str = typer.Option("127.0.0.1:5555", "--listen", help="HOST:PORT to receive the stage's input on "
                               "(port 0: any free port)."),
    to: List[str] = typer.Option(..., "--to", help="Where the stage's outputs go: HOST:PORT of the one stage "
                                 "(or the client) reading them, or NAME=HOST:PORT once for each (repeatable; "
                                 "NAME `client` for the model output)."),
    backend: str = typer.Option("lava", help="Spiking stages: lava or emulate."),
    window: int = typer.Option(4, help="At most this many unacknowledged samples per link (backpressure)."),
    keys: Optional[Path] = typer.Option(None, "--keys", help="Key set from `hybridc keys`: only the stages feeding "
                                        "this one may send to it, and every link is encrypted (CURVE)."),
    insecure: bool = typer.Option(False, "--insecure", help="Allow a non-loopback address without --keys (anyone "
                                  "on that network can then feed and read the stage)."),
    partial_timeout: float = typer.Option(600.0, "--partial-timeout", help="Seconds one input of a sample waits "
                                          "for the stage's other inputs before it is dropped (and NACKed)."),
    announce: Optional[Path] = typer.Option(None, hidden=True, help="Write HOST:PORT here once listening."),
    parent: Optional[int] = typer.Option(None, hidden=True, help="Stop when this process (the client) is gone."),
    device: str = DEVICE_OPTION,
):
    """Run one stage as a long-lived process: receive its inputs, run it, send each output on."""

    def body():
        from ..deploy.serve import serve as serve_stage

        def ready(endpoint):
            if announce:
                write_file(announce, endpoint + "\n")
            make_console(stderr=True).print(f"stage `{stage}` listening on tcp://{endpoint}")

        serve_stage(build, stage, listen, to, backend, window, announce=ready, keys=keys, insecure=insecure,
                    parent=parent, partial_timeout=partial_timeout)

    guard(body, device=device)
