"""The batched emulator reads only netx files and reproduces Lava's fixed-point run bit for bit.

Our own builds are covered in `helpers.assert_deploys_exactly` (SxAy, Pool, Dense on (N,F,T),
Conv->Flatten->Dense, delay_shift=False chains: emulator == Lava, entry for entry). Here: the
netx networks and ground truths shipped inside the lava-dl wheel (files we did not write),
and currents that overflow the neuron's 24 bits, where Lava and slayer part ways.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import spikes

from hybridc.netx.layout import from_netx, to_netx
from hybridc.runtime.emulator import emulate
from hybridc.runtime.lava import simulate

NETX_TESTS = Path(importlib.util.find_spec("lava").submodule_search_locations[0]).parent / "tests/lava/lib/dl/netx"


def lava_run(path, x, **options):
    """Real Lava (Loihi2SimCfg fixed_pt) on a netx file, one sample at a time, no shift."""
    data = to_netx(x)
    return from_netx(np.stack([simulate(path, sample, 0, **options) for sample in data]))


@pytest.mark.parametrize("name,options,shape", [
    # lava-dl's tiny CNN: 3x16x16 -> conv 5x5/s2 (24) -> conv 5x5/s2 (36), channel biases
    ("tiny.net", {"skip_layers": 1}, (1, 3, 16, 16, 10)),
    # lava-dl's MNIST MLP: 784 -> 512 -> 512 (its last layer, a neuron-less integrator, never fires)
    ("mnist.net", {"skip_layers": 1, "num_layers": 3}, (2, 784, 8)),
    # PilotNet LIF's first three conv layers on a 3x66x200 image (asymmetric stride and padding later)
    pytest.param("gts/pilotnet_lif/network.net", {"skip_layers": 1, "num_layers": 4}, (1, 3, 66, 200, 4),
                 marks=pytest.mark.slow),
])
@pytest.mark.lava
def test_emulator_equals_lava_on_lava_dl_test_networks(name, options, shape):
    path = NETX_TESTS / name
    x = spikes(*shape, density=0.3, seed=5)
    lava = lava_run(path, x, **options)
    emulated = emulate(path, x, **options).float()
    assert lava.shape == emulated.shape
    assert lava.sum() > 0, "the network must spike for the comparison to mean anything"
    assert torch.equal(emulated, lava), f"{(emulated != lava).sum()} of {lava.numel()} entries differ"


def _ntidigits(steps):
    gts = NETX_TESTS / "gts/ntidigits"
    x = torch.from_numpy(np.load(gts / "input.npy")[:, :steps])[None]
    expected = torch.from_numpy(np.load(gts / "output.npy")[:, :steps])
    # netx's last layer (`average`) is not implemented; lava-dl's own test runs the first five
    out = emulate(gts / "ntidigits.net", x, num_layers=5)[0].double()
    return out, expected


def test_emulator_reproduces_lava_dl_ntidigits_ground_truth_with_axonal_delays():
    """Dense layers with per-synapse axonal delays (DelayDense) up to 62 steps: the emulator's
    output equals lava-dl's recorded ground truth one step later, spike for spike."""
    out, expected = _ntidigits(400)
    assert expected[:, 1:].sum() > 100
    assert torch.equal(out[:, :-1], expected[:, 1:])


@pytest.mark.slow
def test_emulator_reproduces_all_3000_ntidigits_ground_truth_steps():
    out, expected = _ntidigits(3000)
    assert torch.equal(out[:, :-1], expected[:, 1:])


@pytest.mark.lava
def test_overflowing_current_follows_lava_not_slayer(tmp_path):
    """64 inputs spiking every step into weights of 250 with no current decay push the 24-bit
    current past 2**23: Lava wraps it (and clips the voltage), slayer's integer dynamics do not.
    The loihi target refuses it from the example input unless told to build it anyway."""
    from lava.lib.dl import slayer

    import hybridc
    from hybridc.errors import NumericsError
    from hybridc.nn import Accumulator
    from hybridc.runtime.emulator import run_stage as emulate_stage
    from hybridc.runtime.stages import run_stage
    from hybridc.runtime.verify import reference_stages

    neuron = {"threshold": 2047.0, "current_decay": 0.0, "voltage_decay": 0.0, "tau_grad": 1, "scale_grad": 1}

    class Loud(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = slayer.block.cuba.Dense(neuron, 64, 4)
            self.acc = Accumulator(4)
            self.head = torch.nn.Linear(16, 2)

        def forward(self, x):
            return self.head(self.acc(self.fc(x)))

    model = Loud().eval()
    with torch.no_grad():
        model.fc.synapse.weight.fill_(3.9)  # 3.9 x 64 -> mantissa ~250, inside [-256, 254]
    x = torch.ones(1, 64, 16)
    with pytest.raises(NumericsError, match=r"`fc`.*current reaches 4000, outside Loihi's 24-bit state \(-2048 to 2048"):
        hybridc.compile(model, x, output_dir=tmp_path / "refused")  # refused by default, nothing written
    assert not (tmp_path / "refused").exists()
    with pytest.warns(UserWarning, match="current reaches .* built anyway"):
        compiled = hybridc.compile(model, x, output_dir=tmp_path / "build", on_overflow="clip")
    snn = compiled.manifest.stages[0]
    lava = run_stage(snn, compiled.directory, x)
    emulated = emulate_stage(snn, compiled.directory, x)
    slayer_spikes = reference_stages(compiled.module, compiled.fx_partitions, x)[snn.name]
    assert torch.equal(emulated, lava)
    assert not torch.equal(slayer_spikes, lava), "the current should overflow 24 bits here"
    assert not torch.equal(emulated, slayer_spikes)
