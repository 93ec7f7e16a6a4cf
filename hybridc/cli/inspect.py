"""`hybridc inspect`."""

import sys
import warnings
from pathlib import Path
from typing import List, Optional

import typer

from .common import app, guard, make_console, quiet_imports, warning_printer, write_file

FORMATS = ("table", "json", "dot", "svg", "png", "html")


@app.command()
def inspect(
    source: Path = typer.Argument(..., help="A model file (traced and partitioned, nothing written) "
                                  "or a build directory written by `hybridc compile`."),
    format: str = typer.Option("table", "--format", "-f", help=f"One of: {', '.join(FORMATS)}."),
    level: str = typer.Option("stages", "--level", help="stages: one row per stage and cut; nodes: every fx "
                              "node; cores: the chips and cores the loihi stages take."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="File to write (needed for svg, png, html)."),
    target: str = typer.Option("loihi+jetson", "--target", "-t", help="Targets, when SOURCE is a model file."),
    entry: Optional[str] = typer.Option(None, help="Function returning (model, example_input)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="NAME=VALUE argument for --entry (repeatable)."),
    weights: Optional[Path] = typer.Option(None, help="state_dict checkpoint to load (weights_only)."),
    system: Optional[str] = typer.Option(None, "--system", help="Map onto this system (loihi2, kapoho-point, "
                                         "hala-point, loihi1 or a file); default: the build's mapping, or loihi2."),
):
    """Show where the cut falls, what crosses it and how big each side is."""
    console = make_console()

    def body():
        from ..errors import InputError, OutputError

        if format not in FORMATS:
            raise InputError(f"Unknown --format `{format}`; choose one of {', '.join(FORMATS)}.")
        if level not in ("stages", "nodes", "cores"):
            raise InputError(f"Unknown --level `{level}`; choose stages, nodes or cores.")
        if format in ("svg", "png", "html") and output is None:
            raise OutputError(f"--format {format} writes a file: give it with -o, e.g. -o graph.{format}.")
        quiet_imports()
        from ..inspection import Inspection

        if source.is_dir():
            from ..build_dir.compiled import load

            compiled = load(source)
            if system is not None:
                from ..mapping.fit import map_stages

                compiled.manifest.mapping = map_stages(compiled.manifest.stages, compiled.directory, system)
        else:
            from ..compiler.driver import compile as compile_model
            from ..frontend.loader import load_model_file, parse_entry_args

            warnings.showwarning = warning_printer(console)
            model, example_input, path, digest = load_model_file(source, entry, weights, parse_entry_args(set_))
            compiled = compile_model(model, example_input, target, None, source_path=path, source_sha256=digest,
                                     system=system)
        inspection = Inspection(compiled)
        if format == "table":
            console.print(inspection.table(level))
            return
        if format in ("svg", "png"):
            from ..inspection.dot import render

            data = render(inspection.to_dot(), format)
        else:
            text = {"json": lambda: inspection.to_json(level), "dot": inspection.to_dot,
                    "html": lambda: inspection.to_html(level=level)}[format]()
            data = text.encode()
        if output is None:
            sys.stdout.write(data.decode())
            return
        write_file(output, data)
        console.print(f"wrote {output} ({len(data):,} bytes)")

    guard(body)
