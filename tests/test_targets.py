"""More targets from the one registry: loihi+cpu, an int8 dense half (jetson-int8), and NIR."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from helpers import ROOT, assert_deploys_exactly

import hybridc


@pytest.mark.lava
def test_loihi_plus_cpu_deploys_exactly(example, tmp_path):
    model, x = example.build("S3A3", interval=4, size=32, timesteps=16, batch=2)
    _, loaded = assert_deploys_exactly(model, x, tmp_path, target="loihi+cpu")
    assert [s.target for s in loaded.manifest.stages] == ["loihi", "cpu"]


@pytest.fixture(scope="module")
def int8_build(tmp_path_factory, cli):
    out = tmp_path_factory.mktemp("q") / "b"
    result = cli("compile", ROOT / "examples/dvs_gesture/model.py", "--entry", "build", "--set", "size=32",
                 "--target", "loihi+jetson-int8", "--calibration-samples", "22", "-o", out, timeout=600)
    assert result.returncode == 0, result.stderr
    return out


def test_int8_stage_records_scales_and_quantises_counts_exactly(int8_build):
    import onnx

    stage = hybridc.load(int8_build).manifest.stages[1]
    assert stage.target == "jetson-int8" and stage.artifact == "ann_int8.onnx"
    q = stage.quantization
    assert q["format"] == "QDQ" and "22 samples" in q["calibration"]
    (counts,) = q["exact_counts"]
    assert q["scales"][counts] == [1.0, 0]  # counts 0..4 map to uint8 0..4: no rounding
    assert len(q["scales"]) > 3 and all(s > 0 for s, _ in q["scales"].values())
    model = onnx.load(str(int8_build / stage.artifact))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") >= 4 and "ReduceSum" in ops  # accumulator kept in float before its QDQ


def test_int8_verify_reports_the_accuracy_change(int8_build, tmp_path, cli):
    result = cli("verify", int8_build, "--backend", "emulate", "--trust-source", "--samples", "44",
                 "--json", tmp_path / "r.json", timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["quantized"] and report["backend"] == "emulate"
    assert report["spike_match"] == 1.0  # the emulated netx file: exact spikes; only the int8 ONNX differs
    assert report["accuracy_change"] == pytest.approx(report["accuracy_deployed"] - report["accuracy_reference"])
    assert report["max_abs_err"] < 0.1 and report["argmax_agreement"] >= 0.9  # int8, not exact: but close


def test_int8_parity_holds_within_its_bound_and_catches_a_wrong_dense_weight(example):
    """compile --verify on an int8 build: exact spikes, the output within 5% of max|model(x)|
    (measured 0.5 to 0.9% on this family); a dense weight that no longer matches the file fails."""
    import torch

    from hybridc.runtime.verify import verify

    model, x = example.build("S2A4", interval=4, size=32, timesteps=16, batch=4)
    compiled = hybridc.compile(model, x[:1], target="loihi+jetson-int8",
                               target_options={"calibration_samples": 8})
    parity = verify(compiled, x, backend="emulate")
    assert parity.passed and parity.spike_match == 1.0 and parity.output_rel_err_max == 0.05
    assert 0 < parity.run_max_abs_err <= 0.05 * float(model(x).abs().max())  # int8: close, not equal
    dense = [m for m in compiled.module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        dense[-1].weight.mul_(-1)  # the reference now disagrees with the int8 file's last layer
    assert not verify(compiled, x, backend="emulate").passed


def test_nir_graph_reads_back_with_loihi_weights(example, tmp_path):
    import nir

    model, x = example.build("S2A4", interval=4, size=32, timesteps=16)
    hybridc.compile(model, x, target="nir+jetson", output_dir=tmp_path / "nir")
    hybridc.compile(model, x, target="loihi+jetson", output_dir=tmp_path / "loihi")
    graph = nir.read(tmp_path / "nir/snn.nir")
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    chain = ["input", "snn_0.synapse", "snn_0.neuron", "snn_2.synapse", "snn_2.neuron", "output"]
    assert sorted(graph.edges) == sorted(zip(chain, chain[1:]))
    assert [kinds[n] for n in chain] == ["Input", "Conv2d", "CubaLIF", "Conv2d", "CubaLIF", "Output"]
    with h5py.File(tmp_path / "loihi/snn.net") as h5:
        for name, layer in (("snn_0", "0"), ("snn_2", "1")):
            np.testing.assert_array_equal(graph.nodes[f"{name}.synapse"].weight, h5[f"layer/{layer}/weight"][()])
            neuron = graph.nodes[f"{name}.neuron"]
            assert np.all(neuron.v_threshold == h5[f"layer/{layer}/neuron/vThMant"][()])
            assert np.allclose(neuron.tau_syn, 4096 / h5[f"layer/{layer}/neuron/iDecay"][()])
            assert np.allclose(neuron.tau_mem, 4096 / h5[f"layer/{layer}/neuron/vDecay"][()])
    assert graph.nodes["snn_0.neuron"].tau_syn.shape == (4, 16, 16)
    assert tuple(graph.nodes["input"].input_type["input"]) == (2, 32, 32)
    # runs: the NIR graph in Norse (tests/test_nir_sim.py measures it), then onnxruntime
    assert hybridc.run(tmp_path / "nir", x).shape == model(x).shape


def test_targets_command_lists_every_target(cli):
    result = cli("targets", timeout=120)
    assert result.returncode == 0
    for name in ("loihi", "nir", "jetson", "jetson-int8", "cpu"):
        assert name in result.stdout


def test_edgetpu_is_refused_with_what_to_do_instead(tmp_path, cli):
    result = cli("compile", ROOT / "examples/dvs_gesture/model.py", "--target", "loihi+edgetpu",
                 "-o", tmp_path / "never", timeout=120)
    message = " ".join(result.stderr.split())
    assert result.returncode == 7 and "not a hybridc target" in message and "edgetpu_compiler" in message
    assert "loihi+jetson-int8" in message and not (tmp_path / "never").exists()


def test_every_registered_target_implements_the_contract():
    """Each registry entry names a subclass of targets.base.Target with its own preprocess, on
    the side of the cut the entry says; the contract refuses a target without preprocess, and
    importing it loads no torch (the registry and `hybridc --help` stay instant)."""
    from importlib import import_module

    from hybridc.targets.base import Target
    from hybridc.targets.registry import REGISTRY, get_target

    for entry in REGISTRY.values():
        module_name, class_name = entry.implementation.split(":")
        cls = getattr(import_module(module_name), class_name)
        assert issubclass(cls, Target) and not cls.__abstractmethods__, entry.name
        assert cls.preprocess is not Target.preprocess, entry.name
        target = get_target(entry.name, {"calibration_samples": 4})
        assert (target.name, target.domain) == (entry.name, entry.domain)
        assert target.supported_ops and target.options == {"calibration_samples": 4}
    with pytest.raises(TypeError, match="preprocess"):
        type("NoPreprocess", (Target,), {"supports": None})()
    result = subprocess.run([sys.executable, "-c", "import sys, hybridc.targets.base; print('torch' in sys.modules)"],
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr
