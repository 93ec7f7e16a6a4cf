"""The `hybridc` command line. Each verb lives in the module named after it; they import
torch and Lava only inside the command body, so `hybridc --help` answers instantly."""

# Importing the command modules registers their commands, in the order --help lists them.
from . import compile, run, inspect, verify, profile, explore, targets, keys, serve, pipeline  # noqa: F401  isort: skip
from .common import app

__all__ = ["app", "main"]


def main():
    app()
