"""`hybridc profile` counts what the manifest counts and what deploy sends: the neurons of a
sigma-delta stage's Delta input layer, both synapses (real and imaginary) of a
resonate-and-fire complex-dense layer, and one link for a tensor two accumulators read."""

import json
import warnings

import numpy as np
import pytest
import torch
from helpers import NEURON, ROOT
from lava.lib.dl import slayer

import hybridc
from hybridc.frontend.loader import load_model_file
from hybridc.nn import Accumulator
from hybridc.profiling.report import attach_measured, profile_build


def _compile_example(name, directory, **entry_args):
    model, x, _, _ = load_model_file(ROOT / f"examples/{name}/model.py", entry="build",
                                     entry_args={"batch": 2, **entry_args})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hybridc.compile(model, x, target="loihi+jetson", output_dir=directory / "build"), x


def test_sdnn_delta_input_neurons_are_counted_as_the_manifest_does(tmp_path):
    """examples/sdnn (2x16x16 frames): the Delta input layer's 512 neurons run on Loihi; the
    profile once showed 536 neurons where the manifest says 1,048."""
    compiled, _ = _compile_example("sdnn", tmp_path)
    stage = compiled.manifest.stage("snn")
    p = profile_build(compiled.directory, samples=2, measure=False)
    rows = p.loihi["layers"]
    assert [(r["type"], r["neurons"], r["synapses"]) for r in rows][:1] == [("input", 2 * 16 * 16, 0)]
    assert [r["neurons"] for r in rows] == [2 * 16 * 16, 6 * 8 * 8, 8 * 4 * 4, 24]
    assert p.loihi["neurons"] == stage.neurons == 1048
    assert p.loihi["synapses"] == stage.synapses
    assert rows[0]["synaptic_ops"] == 0 and rows[0]["spikes_out"] == rows[1]["spikes_in"] > 0
    assert p.loihi["timesteps_run"] == 8 + 3  # the Delta takes its input the same step: three hops


def test_rf_complex_dense_counts_real_and_imaginary_synapses(tmp_path):
    """examples/rf: two complex-dense layers (40 -> 24 -> 16), each connection a real and an
    imaginary synapse; every input spike drives both at every output neuron."""
    compiled, _ = _compile_example("rf", tmp_path, timesteps=16, interval=8)
    stage = compiled.manifest.stage("snn")
    assert stage.synapses == 2 * (40 * 24 + 24 * 16) == 2688
    x = (torch.rand(3, 40, 16, generator=torch.Generator().manual_seed(3)) < 0.3).float()
    np.savez(tmp_path / "x.npz", x=x.numpy())
    p = profile_build(compiled.directory, data=f"npz:{tmp_path / 'x.npz'}", samples=3, measure=False)
    rows = p.loihi["layers"]
    assert p.loihi["synapses"] == stage.synapses
    assert [r["synapses"] for r in rows] == [2 * 40 * 24, 2 * 24 * 16]
    assert rows[0]["spikes_in"] == pytest.approx(float(x.sum()) / 3)
    assert rows[0]["synaptic_ops"] == pytest.approx(rows[0]["spikes_in"] * 24 * 2)
    assert rows[1]["synaptic_ops"] == pytest.approx(rows[1]["spikes_in"] * 16 * 2) and rows[1]["spikes_in"] > 0


class TwoAccumulators(torch.nn.Module):
    """One spiking layer read by two accumulators (I=2 and I=4): two manifest edges, one tensor."""

    def __init__(self):
        super().__init__()
        self.s = slayer.block.cuba.Dense(NEURON, 20, 12, weight_scale=3)
        self.a, self.b = Accumulator(2), Accumulator(4)
        self.head = torch.nn.Linear(12 * 4 + 12 * 2, 3)

    def forward(self, x):
        y = self.s(x)
        return self.head(torch.cat([self.a(y).flatten(1), self.b(y).flatten(1)], 1))


def test_two_accumulators_on_one_tap_are_one_link(tmp_path):
    """The 12x8 spikes cross once (12 B), as deploy sends and measures them; the profile once
    counted the link twice (24 B, two latencies)."""
    from hybridc.deploy.links import links
    from hybridc.profiling.devices import load_profile

    torch.manual_seed(0)
    x = (torch.rand(2, 20, 8, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    compiled = hybridc.compile(TwoAccumulators().eval(), x, output_dir=tmp_path / "b")
    manifest = compiled.manifest
    assert sum(e.producer["stage"] == "snn" for e in manifest.edges) == 2  # the manifest: two edges
    (sent,) = [link for link in links(manifest) if link.source == "snn"]  # deploy: one link
    p = profile_build(tmp_path / "b", samples=1, measure=False)
    (edge,) = p.edges
    assert edge["bytes_sent"] == sent.payload_bytes == 12 * 8 / 8
    link = load_profile(None, None, None).link
    assert p.latency_s["link"] == pytest.approx(12 / link["bandwidth_bytes_per_s"] + link["latency_us"] * 1e-6)
    assert p.energy_j["link"] == pytest.approx(12 * link["energy_pj_per_byte"] * 1e-12)
    stats = {}
    outputs = np.stack(list(hybridc.pipeline(tmp_path / "b", x, backend="emulate", stats=stats)))
    assert np.array_equal(outputs, hybridc.run(hybridc.load(tmp_path / "b"), x, backend="emulate").numpy())
    (tmp_path / "s.json").write_text(json.dumps(stats))
    (row,) = [r for r in attach_measured(p, tmp_path / "s.json")["links"] if r["link"] == "snn -> ann"]
    assert row["measured_bytes_per_inference"] == row["estimated_bytes_per_inference"] == 12
