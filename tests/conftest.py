"""Fixtures and run options shared by every test module; the helpers behind them are in helpers.py.

Markers (pyproject.toml): `lava` marks a test that runs Lava (a netx network built or simulated,
in the test's process or a CLI subprocess), so `pytest -m 'not lava'` is the fast run; `slow`
marks long runs, left out unless the -m expression names `slow` (`-m ''` runs everything).
"""

import warnings

import pytest
from helpers import NEURON, load_example
from helpers import cli as _cli

warnings.filterwarnings("ignore", module="lava")


def pytest_configure(config):
    # addopts holds -m 'not slow'; a -m given on the command line replaces it, so a selection that
    # says nothing about slow tests (-m 'not lava') still leaves them out
    expression = config.option.markexpr
    if expression and "slow" not in expression:
        config.option.markexpr = f"({expression}) and not slow"


@pytest.fixture(scope="session")
def cli():
    """Runs the command line: cli("compile", "model.py", "-o", "out", cwd=tmp_path) is the
    CompletedProcess of `python -m hybridc.cli compile model.py -o out` (helpers.Cli)."""
    return _cli


@pytest.fixture(scope="session")
def example():
    """examples/dvs_gesture/model.py (the SxAy family) as a module."""
    return load_example()


@pytest.fixture(scope="session", autouse=True)
def _neuron_parameters_stay_shared():
    """NEURON is one dict for every module: a block that wrote into it would change them all."""
    before = dict(NEURON)
    yield
    assert NEURON == before, f"a test changed helpers.NEURON in place: {before} -> {NEURON}"
