"""The emulator runs every neuron family netx runs, bit for bit with Lava fixed point:
sigma-delta (Delta input, biased SigmaDelta, Sigma output) and resonate-and-fire (RF, RF_IZ).

Ground truths recorded by lava-dl itself (files we did not write), then our own builds run
in Lava and in the emulator, then a changed weight that only running the file can reveal.
Taps and Encoder-fed stages are compared in `helpers.assert_deploys_exactly` (every loihi
stage, every output: tests/test_stage_graph.py)."""

import importlib.util
import json
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from helpers import ROOT

import hybridc
from hybridc.digest import sha256
from hybridc.frontend.loader import load_model_file
from hybridc.netx.layout import from_netx
from hybridc.runtime.emulator import Layer, emulate, resonator, run_layer
from hybridc.runtime.stages import run_stage

GTS = Path(importlib.util.find_spec("lava").submodule_search_locations[0]).parent / "tests/lava/lib/dl/netx/gts"


def test_emulator_reproduces_lava_dl_pilotnet_sdnn_ground_truth():
    """lava-dl's PilotNet SDNN: Delta input fed at its neuron, four biased sigma-delta convs,
    three biased sigma-delta dense layers and a Sigma output; the recorded output of its 9 steps."""
    x = np.load(GTS / "pilotnet_sdnn/input.npy")  # (W, H, C, 1): Lava's RingBuffer repeats it every step
    expected = torch.from_numpy(np.load(GTS / "pilotnet_sdnn/output.npy"))
    out = emulate(GTS / "pilotnet_sdnn/network.net", from_netx(np.repeat(x[None], 9, axis=-1)),
                  feed_input_neuron=True)
    assert len(torch.unique(expected)) > 5  # graded values, several steps
    assert torch.equal(out[0].double(), expected)


def test_emulator_reproduces_lava_dl_rf_ground_truths():
    """lava-dl's resonate-and-fire block tests: a complex dense layer of RF neurons (256 neurons,
    2000 steps) and an input layer of RF_IZ neurons, with the spikes Lava recorded."""
    x = torch.from_numpy(np.load(GTS / "complex_dense/in.npy")).T[None]  # (1, T, 200)

    def weight(name):
        return torch.from_numpy(np.load(GTS / f"complex_dense/{name}.npy").astype(np.int64))

    dense = Layer("dense", "complex_dense", (256,), resonator("rf", 11, .05, 25), weight=weight("weight_r"),
                  weight_imag=weight("weight_img"))
    spikes = run_layer(dense, x, graded=False)[0].T.numpy()
    expected = np.load(GTS / "complex_dense/out.npy")
    assert expected.sum() == 41512 and np.array_equal(spikes, expected)

    inputs = Layer("input", "complex_input", (200,), resonator("rf_iz", 7, .05, 1.1))
    spikes = run_layer(inputs, x, graded=True)[0].T.numpy()
    expected = np.load(GTS / "complex_dense/current.npy")
    assert expected.sum() == 13548 and np.array_equal(spikes, expected)


def _compile(example, tmp_path, **entry_args):
    model, x, _, _ = load_model_file(ROOT / f"examples/{example}/model.py", entry="build",
                                     entry_args={"batch": 2, **entry_args})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = hybridc.compile(model, x, target="loihi+jetson", output_dir=tmp_path / "build")
    return compiled, x


@pytest.mark.parametrize("example, entry_args", [("sdnn", {}), ("rf", {"family": "rf_iz"})])
@pytest.mark.lava
def test_emulator_equals_lava_on_sdnn_and_rf_iz_builds(example, entry_args, tmp_path):
    """Our own builds, 2 samples each: the emulate backend equals Lava entry for entry (graded
    values at the SDNN cut, RF_IZ spikes), and a changed weight in snn.net changes its output."""
    compiled, x = _compile(example, tmp_path, **entry_args)
    snn = compiled.manifest.stages[0]
    lava = run_stage(snn, compiled.directory, x)
    emulated = run_stage(snn, compiled.directory, x, backend="emulate")
    assert lava.shape == emulated.shape and float((lava != 0).float().mean()) > 0.05
    if example == "sdnn":
        assert len(torch.unique(lava)) > 5  # graded deltas, not 0/1
    assert torch.equal(emulated, lava), f"{(emulated != lava).sum()} of {lava.numel()} differ"

    last = {"sdnn": "layer/4/weight", "rf": "layer/1/weight/imag"}[example]  # rf: the imaginary synapse
    tampered_dir = shutil.copytree(compiled.directory, tmp_path / "tampered")  # Lava keeps the original open
    with h5py.File(tampered_dir / "snn.net", "r+") as h5:
        values = h5[last][()]
        values[0] = values[0] + 32
        h5[last][...] = values
    tampered = run_stage(snn, tampered_dir, x, backend="emulate")
    assert not torch.equal(tampered[:, 0], lava[:, 0])  # the changed neuron's output moves
    assert torch.equal(tampered[:, 1:], lava[:, 1:])  # and only it


def test_verify_emulate_and_profile_an_sdnn_build_and_catch_a_changed_weight(tmp_path):
    """`verify --backend emulate` on an SDNN build: spike_match 1 as built, below 1 once one
    weight of the first conv in snn.net changes (what crosses the cut is graded). `profile`
    counts its activity in the emulator: one spike per graded message, into every layer."""
    from hybridc.profiling.report import profile_build
    from hybridc.runtime.dataset_verify import verify_dataset

    compiled, _ = _compile("sdnn", tmp_path)
    reference = (compiled.module, compiled.fx_partitions)
    good = verify_dataset(compiled.directory, samples=4, backend="emulate", reference=reference)
    assert good.spike_match == 1.0
    layers = profile_build(compiled.directory, samples=2, measure=False).loihi["layers"]
    assert [layer["type"] for layer in layers] == ["input", "conv", "conv", "dense"]  # input: the Delta encoder
    assert all(0 < layer["spikes_in"] and 0 < layer["synaptic_ops"] for layer in layers[1:])
    with h5py.File(compiled.directory / "snn.net", "r+") as h5:
        values = h5["layer/1/weight"][()]
        values.flat[0] = -values.flat[0] if values.flat[0] else 100
        h5["layer/1/weight"][...] = values
    manifest = json.loads((compiled.directory / "manifest.json").read_text())
    manifest["stages"][0]["sha256"] = sha256(compiled.directory / "snn.net")  # it loads: only running it can tell
    (compiled.directory / "manifest.json").write_text(json.dumps(manifest, indent=2))
    bad = verify_dataset(compiled.directory, samples=4, backend="emulate", reference=reference)
    assert bad.spike_match < 1.0


@pytest.mark.lava
def test_graded_conv_sums_past_float32_equal_lava(tmp_path):
    """A sigma conv fed graded payloads up to 2^14: its sums pass 2^24, where float32 rounds.
    Lava sums in float64 (scipy) and clamps to 24 bits; the emulator must too (float32 here
    differs in about 20% of the entries)."""
    from hybridc.netx.layout import to_netx
    from hybridc.runtime.lava import simulate

    g = np.random.default_rng(0)
    with h5py.File(tmp_path / "conv.net", "w") as h5:
        layer = h5.create_group("layer/0")
        layer["type"], layer["shape"] = np.array([b"conv"]), np.array([4, 6, 6])
        layer["weight"] = g.integers(-255, 255, size=(4, 8, 3, 3)).astype(float)
        for key, value in {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1]}.items():
            layer[key] = np.array(value)
        layer["groups"] = np.array(1)
        neuron = layer.create_group("neuron")
        neuron["type"], neuron["vThMant"], neuron["sigma_output"] = b"SDNN", np.array(1), True
    x = torch.from_numpy(g.integers(-(1 << 14), 1 << 14, size=(2, 8, 6, 6, 5)).astype(np.float64))
    lava = from_netx(np.stack([simulate(tmp_path / "conv.net", sample, 0, input_shape=(6, 6, 8), input_bits=24)
                               for sample in to_netx(x)]))
    emulated = emulate(tmp_path / "conv.net", x, input_message_bits=24).float()
    assert float(lava.abs().max()) > 2 ** 24
    assert torch.equal(emulated, lava), f"{(emulated != lava).sum()} of {lava.numel()} differ"
