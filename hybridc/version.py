"""hybridc's version, in a module of its own so that any part of the package can record it
without importing the package's API (which imports the compiler)."""

__version__ = "0.1.0"
