"""The manifest's `delay` is what Lava really does, and model files load every documented way."""

import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import NEURON, assert_deploys_exactly, model_header, spikes
from lava.lib.dl import slayer

import hybridc
from hybridc.nn import Accumulator

pytestmark = pytest.mark.lava  # each test runs a build in Lava


class Chain(torch.nn.Module):
    def __init__(self, delay_shift, input_block=False):
        super().__init__()
        blocks = [slayer.block.cuba.Input(None, delay_shift=False)] if input_block else []
        blocks += [slayer.block.cuba.Dense(NEURON, 12, 10, weight_scale=3, delay_shift=delay_shift),
                   slayer.block.cuba.Dense(NEURON, 10, 8, weight_scale=3, delay_shift=delay_shift)]
        self.snn = torch.nn.Sequential(*blocks)
        self.acc = Accumulator(4)
        self.head = torch.nn.Linear(8 * 2, 3)

    def forward(self, x):
        return self.head(self.acc(self.snn(x)))


def test_without_delay_shift_lava_lags_one_step_per_layer(tmp_path):
    torch.manual_seed(0)
    _, loaded = assert_deploys_exactly(Chain(delay_shift=False), spikes(2, 12, 8, density=0.4), tmp_path)
    assert loaded.manifest.stages[0].delay == 2


def test_neuronless_input_block_is_a_shape(tmp_path):
    torch.manual_seed(1)
    _, loaded = assert_deploys_exactly(Chain(delay_shift=True, input_block=True),
                                       spikes(2, 12, 8, density=0.4), tmp_path)
    assert loaded.manifest.stages[0].delay == 0 and loaded.manifest.stages[0].layers == 2  # netx: Input is a shape


MODEL_FILE = model_header() + """
def make():
    torch.manual_seed(0)
    model = torch.nn.Sequential(slayer.block.cuba.Dense(N, 10, 6, weight_scale=3), Accumulator(2),
                                torch.nn.Linear(12, 2))
    return model, (torch.rand(2, 10, 4) < 0.4).float()
"""


def test_entry_and_weights_round_trip(tmp_path, cli):
    (tmp_path / "m.py").write_text(textwrap.dedent(MODEL_FILE))
    sys.path.insert(0, str(tmp_path))
    try:
        import m
    finally:
        sys.path.remove(str(tmp_path))
    model, x = m.make()
    with torch.no_grad():
        model[2].weight.mul_(-3)  # a checkpoint that differs from the fresh model
    torch.save(model.state_dict(), tmp_path / "ckpt.pt")
    result = cli("compile", "m.py", "--entry", "make", "--weights", "ckpt.pt", "-o", "build", "--verify", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "100.00%" in result.stdout
    with torch.no_grad():
        expected = model(x)
    assert (hybridc.run(tmp_path / "build", x) - expected).abs().max() < 1e-4
    manifest = hybridc.load(tmp_path / "build").manifest
    assert manifest.source.path.endswith("m.py") and len(manifest.source.sha256) == 64


def test_lava_runs_after_the_start_method_was_fixed(tmp_path):
    """tqdm (and other libraries) lock the multiprocessing context before Lava is imported;
    Lava's own import then fails unless hybridc lets its set_start_method('fork') through."""
    code = textwrap.dedent(f"""
        import multiprocessing, torch, warnings
        warnings.filterwarnings("ignore")
        multiprocessing.RLock()  # what tqdm does: fixes the default context
        import hybridc
        from hybridc.nn import Accumulator
        from lava.lib.dl import slayer
        n = {NEURON!r}
        torch.manual_seed(0)
        model = torch.nn.Sequential(slayer.block.cuba.Dense(n, 10, 6, weight_scale=3), Accumulator(2),
                                    torch.nn.Linear(12, 2)).eval()
        x = (torch.rand(1, 10, 4) < 0.5).float()
        print(float((hybridc.run(hybridc.compile(model, x), x) - model(x)).abs().max()))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout.strip().splitlines()[-1]) < 1e-4
