"""The `hybridc` command line. Each verb lives in its own module; they import torch and
Lava only inside the command body, so `hybridc --help` answers instantly."""

# Importing the command modules registers their commands, in the order --help lists them.
from . import build, inspect_cmd, verify_cmd, costs, targets_cmd, deploy_cmd  # noqa: F401,E402  isort: skip
from ._common import app

__all__ = ["app", "main"]


def main():
    app()
