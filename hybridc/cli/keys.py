"""`hybridc keys`: a CURVE key pair for every stage of a build and for the client."""

from pathlib import Path

import typer

from .common import app, guard, make_console


@app.command()
def keys(
    build: Path = typer.Argument(..., help="Build directory written by `hybridc compile`."),
    output: Path = typer.Option(..., "--output", "-o", help="Directory to write the key set to (new or empty)."),
):
    """Write a CURVE key pair per stage and for the client, for `serve --keys` and `pipeline --keys`.

    NAME.key is public, NAME.key_secret secret (mode 0600)."""
    console = make_console()

    def body():
        from ..build_dir.compiled import load
        from ..deploy.keys import create

        manifest = load(build).manifest
        written = create(manifest, output)
        console.print(f"wrote {len(written) // 2} key pairs to {output}: "
                      + ", ".join(p.stem for p in written if p.suffix == ".key"))
        console.print("Give each machine its own NAME.key_secret and every NAME.key; keep the secrets private.")

    guard(body)
