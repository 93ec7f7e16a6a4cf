"""Backends. Each module lowers one partition; `registry` is the one place they are listed."""
