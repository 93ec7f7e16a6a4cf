"""slayer's learned axonal delays (`Dense(..., delay=True)`) on Loihi.

slayer delays a block's output spikes by floor(d) steps per neuron (the forward shifts by
int(d / sampling_time), `utils/time/shift.py`; `export_hdf5` writes floor(clamp(d)),
`block/base.py`). netx gives a dense layer's 1-D `delay` to the synapses into its own neurons
(a DelayDense, one delay per output neuron), which delays each neuron's whole trajectory by
as much: the same spikes, since nothing drives a bias-free neuron before its input arrives.
Shown in Lava fixed point on two delayed Dense layers, with delay_shift both ways: spikes
equal PyTorch's 100%, the emulator equals Lava, the deployed output within 1e-4.
"""

import h5py
import pytest
import torch
from helpers import assert_deploys_exactly, neuron
from lava.lib.dl import slayer

import hybridc
from hybridc.errors import UnsupportedLayerError
from hybridc.nn import Accumulator
from hybridc.profiling.report import profile_build

T = 20


class DelayedDense(torch.nn.Module):
    """Dense(delay) -> Dense(delay) -> Dense -> Accumulator -> Linear, delays set to trained-like values."""

    def __init__(self, delay_shift=True, longest=5.0):
        super().__init__()
        params = neuron()
        self.fc1 = slayer.block.cuba.Dense(params, 12, 16, weight_scale=3, delay=True, delay_shift=delay_shift)
        self.fc2 = slayer.block.cuba.Dense(params, 16, 10, weight_scale=3, delay=True, delay_shift=delay_shift)
        self.fc3 = slayer.block.cuba.Dense(params, 10, 8, weight_scale=3, delay_shift=delay_shift)
        self.acc = Accumulator(T // 2)
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4))
        self(example_input(1))  # slayer makes a Delay's per-neuron values on the first forward
        g = torch.Generator().manual_seed(1)
        self.fc1.delay.delay.data = torch.rand(16, generator=g) * longest
        self.fc2.delay.delay.data = torch.rand(10, generator=g) * longest

    def forward(self, x):
        return self.head(self.acc(self.fc3(self.fc2(self.fc1(x)))))


def example_input(n=3, seed=0):
    return (torch.rand(n, 12, T, generator=torch.Generator().manual_seed(seed)) < 0.3).float()


@pytest.mark.lava
@pytest.mark.parametrize("delay_shift", [True, False], ids=["delay_shift", "no_delay_shift"])
def test_learned_delays_are_exact_in_lava(delay_shift, tmp_path):
    torch.manual_seed(0)
    model = DelayedDense(delay_shift)
    _, loaded = assert_deploys_exactly(model, example_input(), tmp_path)
    stage = loaded.manifest.stage("snn")
    with h5py.File(loaded.directory / stage.artifact, "r") as h5:
        written = [h5[f"layer/{i}/delay"][()] if "delay" in h5[f"layer/{i}"] else None for i in range(3)]
    assert written[0].tolist() == torch.floor(model.fc1.delay.delay.detach()).tolist()
    assert written[1].tolist() == torch.floor(model.fc2.delay.delay.detach()).tolist()
    assert written[2] is None and max(written[0]) >= 3 and min(written[0]) == 0
    rows = profile_build(loaded.directory, data="random:0.3", samples=2, measure=False).loihi["layers"]
    assert [r.get("max_delay", 0) for r in rows] == [int(max(written[0])), int(max(written[1])), 0]


def test_the_delays_change_the_spikes():
    """The test above could not pass with the delays dropped: they move the spikes."""
    torch.manual_seed(0)
    model = DelayedDense().eval()
    with torch.no_grad():
        delayed = model.fc2(model.fc1(example_input()))
        model.fc1.delay.delay.data.zero_()
        model.fc2.delay.delay.data.zero_()
        plain = model.fc2(model.fc1(example_input()))
    assert delayed.sum() > 0 and not torch.equal(delayed, plain)


class DelayedConv(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = slayer.block.cuba.Conv(neuron(), 2, 4, 3, padding=1, weight_scale=3, delay=True)
        self.acc = Accumulator(4)
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8 * 2, 3))

    def forward(self, x):
        return self.head(self.acc(self.conv(x)))


def test_delays_netx_cannot_hold_are_refused():
    torch.manual_seed(0)
    x = (torch.rand(1, 2, 8, 8, 8) < 0.3).float()
    model = DelayedConv()
    model(x)
    with pytest.raises(UnsupportedLayerError, match=r"`conv`.*delays to dense layers only.*delay=False"):
        hybridc.compile(model.eval(), x, target="loihi+jetson")
    long = DelayedDense()
    long.fc2.delay.max_delay = 100
    long.fc2.delay.delay.data[3] = 80.5
    with pytest.raises(UnsupportedLayerError, match=r"`fc2`.*80 steps, beyond Loihi's 62.*max_delay=62"):
        hybridc.compile(long.eval(), example_input(), target="loihi+jetson")
