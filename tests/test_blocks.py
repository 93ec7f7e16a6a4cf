"""Beyond SxAy: Pool and Dense blocks, and accumulators recognised from plain tensor code."""

import warnings

import pytest
import torch
from helpers import NEURON, assert_deploys_exactly, spikes
from lava.lib.dl import slayer

import hybridc
from hybridc.nn import Accumulator


class PoolNet(torch.nn.Module):
    """Conv 5x5/s2 -> Pool 2 -> Conv 3x3, then accumulator and a conv head."""

    def __init__(self, interval=3):
        super().__init__()
        self.conv1 = slayer.block.cuba.Conv(NEURON, 2, 6, 5, stride=2, padding=2, weight_scale=3)
        self.pool = slayer.block.cuba.Pool(NEURON, 2, weight_scale=2)
        self.conv2 = slayer.block.cuba.Conv(NEURON, 6, 8, 3, padding=1, weight_scale=3)
        self.acc = Accumulator(interval)
        self.head = torch.nn.Sequential(torch.nn.Conv2d(8 * 12 // interval, 8, 3), torch.nn.ReLU(),
                                        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5))

    def forward(self, x):
        return self.head(self.acc(self.conv2(self.pool(self.conv1(x)))))


class DenseNet(torch.nn.Module):
    """slayer Dense blocks on a flat (N, F, T) input."""

    def __init__(self):
        super().__init__()
        self.fc1 = slayer.block.cuba.Dense(NEURON, 40, 32, weight_scale=3)
        self.fc2 = slayer.block.cuba.Dense(NEURON, 32, 24, weight_scale=3)
        self.acc = Accumulator(2)
        self.head = torch.nn.Sequential(torch.nn.Linear(24 * 5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))

    def forward(self, x):
        return self.head(self.acc(self.fc2(self.fc1(x))))


class ConvFlattenDense(torch.nn.Module):
    """Conv -> Flatten -> Dense inside the SNN, then a whole-window `.sum(-1)` cut."""

    def __init__(self):
        super().__init__()
        self.snn = torch.nn.Sequential(
            slayer.block.cuba.Conv(NEURON, 2, 4, 3, stride=2, padding=1, weight_scale=3),
            slayer.block.cuba.Flatten(),
            slayer.block.cuba.Dense(NEURON, 4 * 8 * 8, 20, weight_scale=3),
        )
        self.head = torch.nn.Linear(20, 3)

    def forward(self, x):
        return self.head(self.snn(x).sum(-1))


@pytest.mark.lava
def test_pool_block_lowered_to_depthwise_conv(tmp_path):
    torch.manual_seed(0)
    _, loaded = assert_deploys_exactly(PoolNet(), spikes(2, 2, 24, 24, 12, density=0.3), tmp_path)
    snn = loaded.manifest.stages[0]
    assert snn.layers == 3
    # conv1 6x12x12, pool 6x6x6, conv2 8x6x6
    assert snn.neurons == 6 * 144 + 6 * 36 + 8 * 36
    import h5py

    with h5py.File(loaded.directory / snn.artifact) as h5:
        pool = h5["layer/1"]
        assert pool["type"][0] == b"conv" and int(pool["groups"][()]) == 6
        assert pool["weight"].shape == (6, 1, 2, 2) and len(set(pool["weight"][()].ravel())) == 1


@pytest.mark.lava
def test_dense_blocks_on_flat_input(tmp_path):
    torch.manual_seed(1)
    _, loaded = assert_deploys_exactly(DenseNet(), spikes(3, 40, 10, density=0.3), tmp_path)
    snn, ann = loaded.manifest.stages
    assert snn.inputs[0].layout == "FT" and snn.inputs[0].shape == [40, 10]
    assert snn.synapses == 40 * 32 + 32 * 24
    assert ann.inputs[0].layout == "FT" and ann.accumulator.windows == 5


@pytest.mark.lava
def test_conv_flatten_dense_with_recognised_sum(tmp_path):
    torch.manual_seed(2)
    compiled, loaded = assert_deploys_exactly(ConvFlattenDense(), spikes(2, 2, 16, 16, 8, density=0.3), tmp_path)
    acc = loaded.manifest.stages[1].accumulator
    assert (acc.interval, acc.windows, acc.fold) == (8, 1, True)
    recognised = [n for n, d in compiled.graph.nodes(data=True) if d.get("recognised_from")]
    assert len(recognised) == 1 and "sum" in compiled.graph.nodes[recognised[0]]["recognised_from"]


class Recognised(torch.nn.Module):
    """Time reductions the way pre-hybridc code wrote them."""

    def __init__(self, style):
        super().__init__()
        self.style = style
        self.snn = slayer.block.cuba.Conv(NEURON, 2, 4, 3, stride=2, padding=1, weight_scale=3)
        if style == "conv3d":
            self.sum_time = torch.nn.Conv3d(4, 4, (1, 1, 4), stride=(1, 1, 4), groups=4, bias=False)
            torch.nn.init.ones_(self.sum_time.weight)
            self.sum_time.weight.requires_grad_(False)
        windows = {"mean": 1, "reshape": 2, "conv3d": 2}[style]
        self.head = torch.nn.Linear(4 * 8 * 8 * windows, 3)

    def forward(self, x):
        s = self.snn(x)
        if self.style == "mean":
            counts = s.mean(-1)
        elif self.style == "reshape":
            counts = s.reshape(s.shape[0], 4, 8, 8, 2, 4).sum(-1)
        else:
            counts = self.sum_time(s)
        return self.head(counts.flatten(1))


@pytest.mark.parametrize("style,interval,fold", [("mean", 8, True), ("reshape", 4, False), ("conv3d", 4, False)])
@pytest.mark.lava
def test_time_reductions_become_accumulators(style, interval, fold, tmp_path):
    torch.manual_seed(4)
    _, loaded = assert_deploys_exactly(Recognised(style), spikes(2, 2, 16, 16, 8, density=0.3), tmp_path)
    acc = loaded.manifest.stages[1].accumulator
    assert (acc.interval, acc.fold) == (interval, fold)


class RawCrossing(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.snn = slayer.block.cuba.Dense(NEURON, 10, 6, weight_scale=3)
        self.head = torch.nn.Linear(6 * 4, 2)

    def forward(self, x):
        return self.head(self.snn(x).flatten(1))


@pytest.mark.lava
def test_raw_spike_crossing_warns_with_bytes(tmp_path):
    torch.manual_seed(5)
    with pytest.warns(UserWarning, match=r"24 spikes, 3 bytes per inference"):
        _, loaded = assert_deploys_exactly(RawCrossing(), spikes(2, 10, 4, density=0.5), tmp_path)
    acc = loaded.manifest.stages[1].accumulator
    assert (acc.interval, acc.windows, acc.fold) == (1, 4, False)


def test_accumulator_folds_channel_major():
    x = torch.arange(2 * 3 * 1 * 1 * 6, dtype=torch.float32).reshape(2, 3, 1, 1, 6)
    y = Accumulator(2)(x)
    assert y.shape == (2, 9, 1, 1)
    for c in range(3):
        for k in range(3):
            assert y[1, c * 3 + k, 0, 0] == x[1, c, 0, 0, 2 * k:2 * k + 2].sum()
    flat = Accumulator(3)(torch.ones(1, 4, 6))
    assert flat.shape == (1, 8) and bool((flat == 3).all())
    with pytest.raises(hybridc.errors.TimestepError, match="not a multiple"):
        Accumulator(4)(torch.ones(1, 4, 6))


def test_pool_synapses_counted_per_channel(tmp_path):
    torch.manual_seed(0)
    compiled = hybridc.compile(PoolNet(), spikes(1, 2, 24, 24, 12, density=0.3))
    # conv1: 6 outputs x 2 inputs, 5x5 kernel, pad 2, stride 2 over 24x24 -> valid taps per row/col
    taps = lambda size, k, s, p, out: sum(  # noqa: E731
        sum(1 for j in range(k) if 0 <= o * s - p + j < size) for o in range(out))
    conv1 = 6 * 2 * taps(24, 5, 2, 2, 12) ** 2
    pool = 6 * 2 * 2 * 6 * 6  # each of 6x6x6 outputs sums a 2x2 window of its own channel
    conv2 = 8 * 6 * taps(6, 3, 1, 1, 6) ** 2
    assert compiled.manifest.stages[0].synapses == conv1 + pool + conv2


class SumAndMean(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.snn = slayer.block.cuba.Dense(NEURON, 10, 6, weight_scale=3)
        self.acc = Accumulator(2)
        self.head = torch.nn.Linear(6 + 6 + 6 * 3, 2)

    def forward(self, x):
        s = self.snn(x)
        return self.head(torch.cat([s.sum(-1), s.mean(-1), self.acc(s).reshape(s.shape[0], -1)], 1))


@pytest.mark.lava
def test_several_accumulators_and_shape_query_on_one_cut(tmp_path):
    torch.manual_seed(6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a shape query is not a raw spike crossing
        _, loaded = assert_deploys_exactly(SumAndMean(), spikes(2, 10, 6, density=0.5), tmp_path)
    assert loaded.manifest.stages[1].inputs[0].shape == [6, 6]


class TwoOutputs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.snn = slayer.block.cuba.Dense(NEURON, 10, 6)
        self.acc = Accumulator(2)
        self.head = torch.nn.Linear(12, 2)

    def forward(self, x):
        features = self.acc(self.snn(x))
        return self.head(features), features


def test_an_output_taken_from_the_cut_is_an_output_of_its_own(tmp_path):
    """A forward returning (logits, accumulated counts): two model outputs, each deployed."""
    torch.manual_seed(0)
    model, x = TwoOutputs().eval(), spikes(2, 10, 4)
    compiled = hybridc.compile(model, x, output_dir=tmp_path / "b")
    assert sorted(e.consumer["input"] for e in compiled.manifest.edges_into(None)) == ["output", "output_1"]
    logits, features = hybridc.run(tmp_path / "b", x, backend="emulate")
    with torch.no_grad():
        expected = model(x)
    assert (logits - expected[0]).abs().max() < 1e-4 and torch.equal(features, expected[1])


class ShapeDependent(torch.nn.Module):
    """Python control flow torch.fx cannot trace (a bool of a traced value)."""

    def forward(self, x):
        if x.dim() == 2:
            return x * 0.5
        return x


class NeedsAnnotation(torch.nn.Module):
    def __init__(self, annotate):
        super().__init__()
        self.snn = slayer.block.cuba.Dense(NEURON, 10, 6, weight_scale=3)
        self.acc = Accumulator(2)
        self.scale = hybridc.annotate(ShapeDependent(), "jetson") if annotate else ShapeDependent()
        self.head = torch.nn.Linear(12, 2)

    def forward(self, x):
        return self.head(self.scale(self.acc(self.snn(x))))


@pytest.mark.lava
def test_annotate_keeps_untraceable_code_as_one_dense_node(tmp_path):
    torch.manual_seed(7)
    with pytest.raises(hybridc.errors.TraceError, match="annotate"):
        hybridc.compile(NeedsAnnotation(annotate=False), spikes(1, 10, 4))
    compiled, _ = assert_deploys_exactly(NeedsAnnotation(annotate=True), spikes(2, 10, 4, density=0.5), tmp_path)
    assert compiled.graph.nodes["scale"]["target"] == "jetson" and compiled.graph.nodes["scale"]["op"] == "call_module"


def test_annotate_rejects_unknown_target():
    with pytest.raises(hybridc.errors.TargetError, match="Unknown target `gpu9`"):
        hybridc.annotate(torch.nn.ReLU(), "gpu9")
