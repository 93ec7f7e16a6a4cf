"""Hybrids beyond one cut, deployed in real Lava (fixed_pt) and onnxruntime: several taps with
different intervals, an ANN front end sending graded spikes, and SNN -> ANN -> SNN -> ANN.
Every spiking output equals PyTorch's spikes, the output model(x) within 1e-4."""

import json

import numpy as np
import pytest
import torch
from helpers import NEURON, assert_deploys_exactly, spikes
from hybrid_models import Alternating, AnnFirst, MultiTap, example_input
from lava.lib.dl import slayer

import hybridc
from hybridc.nn import Accumulator, Encoder


def _edges(manifest):
    return [(e.producer["stage"], e.producer["tensor"], e.consumer["stage"], e.conversion.kind)
            for e in manifest.edges]


@pytest.mark.lava
def test_multi_tap_spike_flownet_three_intervals(tmp_path):
    torch.manual_seed(0)
    model = MultiTap()
    compiled, loaded = assert_deploys_exactly(model, example_input("snn", batch=1), tmp_path)
    manifest = loaded.manifest
    assert [s.name for s in manifest.stages] == ["snn", "ann"]
    snn = manifest.stage("snn")
    # three taps on one netx network: layers 0, 1, 2 of the same file
    assert [(t.name, t.layer, t.delay) for t in snn.outputs] == [("e1", 0, 0), ("e2", 1, 0), ("e3", 2, 0)]
    assert set(_edges(manifest)) == {
        (None, "input", "snn", "none"), ("snn", "e1", "ann", "accumulator"), ("snn", "e2", "ann", "accumulator"),
        ("snn", "e3", "ann", "accumulator"), ("ann", "output", None, "none")}
    taps = {e.producer["tensor"]: e for e in manifest.edges if e.conversion.kind == "accumulator"}
    assert [taps[t].conversion.interval for t in ("e1", "e2", "e3")] == [4, 2, 8]
    # each tap's wire format on its own: counts for I=4 (3 bits x 2 windows < 8 spikes) and I=8, spikes for I=2
    assert [taps[t].bits_per_value for t in ("e1", "e2", "e3")] == [3, 1, 4]
    assert taps["e1"].shape == [4, 8, 8, 2] and taps["e1"].bytes_per_inference == 4 * 8 * 8 * 2 * 3 / 8
    assert taps["e2"].shape == [8, 4, 4, 8] and taps["e2"].bytes_per_inference == 8 * 4 * 4 * 8 / 8
    assert sorted(t.name for t in manifest.stage("ann").inputs) == ["e1_counts", "e2", "e3_counts"]


@pytest.mark.lava
def test_ann_first_sends_graded_spikes(tmp_path):
    torch.manual_seed(1)
    model = AnnFirst()
    x = example_input("ann_first", batch=1)
    with torch.no_grad():
        graded = model.encode(torch.relu(model.frame(x)) * 4)
    assert graded.max() > 1 and graded.shape[-1] == 8  # graded payloads, windows held for 2 steps
    _, loaded = assert_deploys_exactly(model, x, tmp_path)
    manifest = loaded.manifest
    assert [s.name for s in manifest.stages] == ["ann1", "snn", "ann2"]
    assert manifest.stage("snn").input_bits == 4
    edge = manifest.edges_into("snn")[0]
    assert edge.conversion.kind == "encoder" and (edge.conversion.bits, edge.conversion.hold) == (4, 2)
    # held 2 steps, the 8 steps cross as 4 windows ("held" wire format) and the receiver repeats
    # each: half the 4 * 16 * 16 * 8 * 4 / 8 bytes the T steps took
    wire = manifest.stage("snn").wire["spikes_in"]
    assert (wire.format, wire.bits, wire.interval, wire.windows) == ("held", 4, 2, 4)
    assert edge.shape == [4, 16, 16, 4] and edge.bytes_per_inference == 4 * 16 * 16 * 4 * 4 / 8
    from hybridc.deploy import links
    from hybridc.deploy import wire as w

    (link,) = links.incoming(manifest, "snn")
    message = w.decode(link.encode(0, graded[0]))
    assert len(message.payload) == edge.bytes_per_inference and np.array_equal(link.values(message), graded[0].numpy())
    unheld = graded[0].clone()
    unheld[..., 1] = (unheld[..., 0] + 1) % 16  # step 1 differs from step 0 of its window
    with pytest.raises(hybridc.errors.LinkError, match="not held for 2 steps"):
        link.encode(1, unheld)
    data = json.loads((loaded.directory / "manifest.json").read_text())
    data["stages"][1]["wire"]["spikes_in"].update(interval=4, windows=2)  # windows the edge's shape does not have
    (loaded.directory / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(hybridc.errors.ArtifactError, match="edges/1/shape.*held"):
        hybridc.load(loaded.directory)


@pytest.mark.lava
def test_snn_ann_snn_ann(tmp_path):
    torch.manual_seed(2)
    model = Alternating()
    compiled, loaded = assert_deploys_exactly(model, example_input("snn", batch=1), tmp_path)
    assert [(s.name, s.target) for s in loaded.manifest.stages] == [
        ("snn1", "loihi"), ("ann1", "jetson"), ("snn2", "loihi"), ("ann2", "jetson")]
    assert loaded.manifest.stage("snn2").input_bits == 3
    parity = hybridc.verify(compiled, example_input("snn", batch=1))
    assert parity.spike_matches == {"snn1/s1": 1.0, "snn2/s2": 1.0} and parity.run_max_abs_err < 1e-4


def test_dense_to_spiking_without_encoder_is_refused():
    class NoEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.pre = torch.nn.Linear(8, 8)
            self.snn = slayer.block.cuba.Dense(NEURON, 10, 6)
            self.acc = Accumulator(4)

        def forward(self, x):
            return self.acc(self.snn(self.pre(x)))

    with pytest.raises(hybridc.errors.PartitionError, match=r"`pre`.*feeds spiking node `snn`.*Encoder\(bits=8"):
        hybridc.compile(NoEncoder(), torch.zeros(1, 10, 8))


def test_encoder_rounds_clamps_holds_and_passes_gradients():
    encoder = Encoder(bits=2, hold=3)
    x = torch.tensor([[-1.0, 0.4, 1.6, 9.0]], requires_grad=True)
    y = encoder.train()(x)
    assert y.tolist() == [[0, 0, 0, 0, 0, 0, 2, 2, 2, 3, 3, 3]]
    y.sum().backward()
    assert x.grad.tolist() == [[3.0, 3.0, 3.0, 3.0]]  # straight through, summed over the held copies
    assert torch.equal(encoder.eval()(x.detach()), y.detach())
    with pytest.raises(hybridc.errors.TimestepError, match="bits"):
        Encoder(bits=0)


def test_stage_cycle_is_refused():
    class Cycle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = Encoder(bits=2)
            self.snn = slayer.block.cuba.Dense(NEURON, 10, 10)
            self.acc = Accumulator(1, fold=False)

        def forward(self, x):
            dense = torch.relu(x)
            return self.acc(self.snn(self.enc(dense))) + dense

    with pytest.raises(hybridc.errors.PartitionError, match="cycle"):
        hybridc.compile(Cycle(), torch.zeros(1, 10, 4))


def test_inspect_and_profile_show_every_edge(tmp_path):
    """No Lava needed: the stage DAG and the bytes of every edge, in JSON, DOT, HTML and profile."""
    from hybridc.profiling.report import profile_build

    torch.manual_seed(0)
    model = MultiTap().eval()
    x = example_input("snn", batch=1)
    compiled = hybridc.compile(model, x, output_dir=tmp_path / "b")
    inspection = hybridc.inspect(tmp_path / "b")
    data = inspection.to_dict()
    assert len(data["stage_edges"]) == 5 and len(data["cuts"]) == 3
    assert sorted((c["interval"], c["bytes"]["raw_bytes"], c["wire"]) for c in data["cuts"]) == [
        (2, 8 * 4 * 4 * 8 / 8, "spikes"), (4, 4 * 8 * 8 * 8 / 8, "counts"), (8, 8 * 2 * 2 * 8 / 8, "counts")]
    dot = inspection.to_dot()
    assert all(f"(I={i})" in dot for i in (2, 4, 8))
    page = inspection.to_html()
    assert page.count('class="cutrow"') == 3 and "model input" in page and "model output" in page
    profile = profile_build(tmp_path / "b", samples=1, measure=False, reference=compiled.module)
    assert [e["bytes_sent"] for e in profile.edges] == [e.bytes_per_inference for e in compiled.manifest.edges[1:4]]
    link = sum(e["time_s"] for e in profile.edges)
    assert abs(profile.latency_s["link"] - link) < 1e-12 and len(profile.edges) == 3


class LaggingTaps(torch.nn.Module):
    """Taps after one and after two blocks without delay_shift: Lava lags 1 and 2 steps there;
    and a tap on a Flatten, which netx has no layer for (the conv before it is read)."""

    def __init__(self):
        super().__init__()
        self.conv = slayer.block.cuba.Conv(NEURON, 2, 4, 3, stride=2, padding=1, weight_scale=3, delay_shift=False)
        self.flat = slayer.block.cuba.Flatten()
        self.fc = slayer.block.cuba.Dense(NEURON, 4 * 4 * 4, 10, weight_scale=3, delay_shift=False)
        self.acc_flat, self.acc_fc = Accumulator(2), Accumulator(4)
        self.head = torch.nn.Linear(64 * 4 + 10 * 2, 3)

    def forward(self, x):
        flat = self.flat(self.conv(x))
        return self.head(torch.cat([self.acc_flat(flat), self.acc_fc(self.fc(flat))], dim=1))


@pytest.mark.lava
def test_taps_keep_their_own_delay(tmp_path):
    torch.manual_seed(3)
    x = spikes(1, 2, 8, 8, 8, density=0.4, seed=3)
    _, loaded = assert_deploys_exactly(LaggingTaps(), x, tmp_path)
    taps = {t.name: (t.layer, t.delay, t.layout) for t in loaded.manifest.stage("snn").outputs}
    assert taps == {"flat": (0, 1, "FT"), "fc": (1, 2, "FT")}
