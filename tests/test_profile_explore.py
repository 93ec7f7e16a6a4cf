"""Cost estimates: counts checked against hand calculations for small layers, and the
profile / explore commands end to end."""

import json

import pytest
import torch
from helpers import ROOT
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import hybridc
from hybridc.profiling import loihi_counts, onnx_counts
from hybridc.profiling.explore import Candidate, pareto_front


def _conv_layer(out_shape, kernel, stride, padding, groups=1):
    from math import prod

    return loihi_counts.LoihiLayer(0, "conv", out_shape, prod(out_shape), 0, 1, kernel, stride, padding, groups)


def test_conv_synapses_count_only_taps_inside_the_input():
    # 1 -> 1 channel, 3x3, padding 1 on 3x3: corners see 4 taps, edges 6, the centre 9
    assert loihi_counts.conv_synapses((1, 3, 3), (1, 3, 3), (3, 3), (1, 1), (1, 1), 1) == 4 * 4 + 4 * 6 + 9
    # 2 -> 4 channels, no padding, 3x3 on 5x5: 9 outputs x 9 taps x 2 inputs x 4 outputs
    assert loihi_counts.conv_synapses((2, 5, 5), (4, 3, 3), (3, 3), (1, 1), (0, 0), 1) == 9 * 9 * 2 * 4
    # depthwise (groups = channels = 3), 2x2 stride 2 on 4x4: each output sums 4 inputs of its own channel
    assert loihi_counts.conv_synapses((3, 4, 4), (3, 2, 2), (2, 2), (2, 2), (0, 0), 3) == 3 * 4 * 4


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 9), st.integers(1, 9), st.integers(1, 4),
       st.integers(1, 3), st.integers(0, 2), st.integers(1, 2))
def test_conv_synapses_equal_convolving_ones(groups, per_group, height, width, kernel, stride, padding, dilation):
    """The per-axis closed form equals the fan-in found by convolving ones (the old count)."""
    c_in, c_out = groups * per_group, groups * 2
    assume(height + 2 * padding >= dilation * (kernel - 1) + 1 and width + 2 * padding >= dilation * (kernel - 1) + 1)
    fan_in = torch.nn.functional.conv2d(torch.ones(1, c_in, height, width), torch.ones(groups, per_group, kernel, kernel),
                                        stride=stride, padding=padding, dilation=dilation, groups=groups)
    expected = int(fan_in.sum()) * (c_out // groups)
    assert loihi_counts.conv_synapses((c_in, height, width), (c_out,), (kernel, kernel), (stride, stride),
                                      (padding, padding), groups, (dilation, dilation)) == expected


def test_synaptic_ops_follow_each_spike_to_its_targets():
    layer = _conv_layer((2, 3, 3), (3, 3), (1, 1), (1, 1))
    spikes = torch.zeros(1, 3, 3, 5)
    spikes[0, 1, 1, 0] = 1  # the centre drives 9 positions x 2 output channels
    spikes[0, 0, 0, 3] = 1  # a corner drives 4 x 2
    assert loihi_counts.synaptic_ops(layer, (1, 3, 3), spikes) == 18 + 8
    strided = _conv_layer((1, 2, 2), (3, 3), (2, 2), (1, 1))  # 3x3 stride 2 pad 1 on 4x4
    fan = loihi_counts.fan_out(strided, (1, 4, 4))
    assert fan.shape == (1, 4, 4) and int(fan.sum()) == loihi_counts.conv_synapses((1, 4, 4), (1, 2, 2), (3, 3),
                                                                                    (2, 2), (1, 1), 1)
    dense = loihi_counts.LoihiLayer(0, "dense", (7,), 7, 70, 1)
    assert loihi_counts.synaptic_ops(dense, (10,), torch.ones(10, 3)) == 10 * 3 * 7


def test_onnx_macs_and_parameters_by_hand(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 5)).eval()
    torch.onnx.export(model, torch.zeros(1, 2, 8, 8), str(tmp_path / "m.onnx"), opset_version=17)
    conv, linear = onnx_counts.read_layers(tmp_path / "m.onnx")
    assert (conv.op, conv.macs, conv.parameters) == ("Conv", 4 * 6 * 6 * 2 * 9, 4 * 2 * 9 + 4)
    assert (linear.op, linear.macs, linear.parameters) == ("Gemm", 144 * 5, 144 * 5 + 5)
    assert onnx_counts.parameters(tmp_path / "m.onnx") == 4 * 2 * 9 + 4 + 144 * 5 + 5


def test_pareto_front_marks_only_undominated():
    rows = [Candidate("fast", 1.0, 10.0), Candidate("frugal", 2.0, 5.0), Candidate("worse", 2.5, 11.0),
            Candidate("tie", 1.0, 10.0, accuracy=None), Candidate("bad", None, None, refused="x")]
    pareto_front(rows)
    assert {r.name for r in rows if r.pareto} == {"fast", "frugal", "tie"}


@pytest.fixture(scope="module")
def build(tmp_path_factory, cli):
    directory = tmp_path_factory.mktemp("p")
    result = cli("compile", ROOT / "examples/dvs_gesture/model.py", "--entry", "build", "--set", "size=32",
                 "-o", directory / "b")
    assert result.returncode == 0, result.stderr
    return directory


def test_profile_command_writes_consistent_json_and_chart(build, cli):
    result = cli("profile", build / "b", "--samples", "4", "--trust-source", "--json", build / "p.json",
                 "--link", "usb3")
    assert result.returncode == 0, result.stderr
    p = json.loads((build / "p.json").read_text())
    assert (build / "p.png").stat().st_size > 10_000
    assert p["loihi"]["synapses"] == hybridc.load(build / "b").manifest.stages[0].synapses
    assert p["loihi"]["neurons"] == 4 * 16 * 16 + 8 * 8 * 8 and p["loihi"]["synaptic_ops"] > 0
    assert p["cut"]["raw_bytes"] == 8 * 8 * 8 * 16 / 8 and p["cut"]["accumulated_bytes"] == 8 * 8 * 8 * 4
    link = p["cut"]["bytes_sent"] / 400e6 + 125e-6  # usb3 profile: 400 MB/s, 125 us
    assert abs(p["cut"]["time_s"] - link) < 1e-12
    for key in ("latency_s", "energy_j"):
        parts = p[key]
        assert abs(parts["total"] - (parts["loihi"] + parts["link"] + parts["jetson"])) < 1e-12
    assert p["jetson"]["macs"] == sum(layer["macs"] for layer in p["jetson"]["layers"])


def test_explore_ranks_candidates_and_writes_outputs(tmp_path, cli):
    result = cli("explore", ROOT / "examples/dvs_gesture/model.py", "--splits", "S1A5,S3A3", "--intervals", "4,5",
                 "--set", "size=32", "--samples", "2", "-o", tmp_path / "ex", timeout=600)
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "ex/explore.json").read_text())
    names = [r["name"] for r in rows]
    assert sorted(names) == ["S1A5-I4", "S1A5-I5", "S3A3-I4", "S3A3-I5"]
    refused = {r["name"] for r in rows if r["refused"]}
    assert refused == {"S1A5-I5", "S3A3-I5"}  # T=16 is not a multiple of 5
    ok = [r for r in rows if not r["refused"]]
    assert ok == sorted(ok, key=lambda r: r["energy_uj"]) and any(r["pareto"] for r in ok)
    assert (tmp_path / "ex/explore.csv").read_text().startswith("name,latency_ms,energy_uj")
    assert (tmp_path / "ex/explore.png").stat().st_size > 10_000


def test_profile_of_a_nir_and_cpu_build_says_what_it_leaves_out(example, tmp_path):
    from hybridc.profiling import profile_build

    model, x = example.build("S2A4", interval=4, size=32, timesteps=16)
    hybridc.compile(model, x, target="nir+cpu", output_dir=tmp_path / "b")
    p = profile_build(tmp_path / "b", samples=2)
    assert p.loihi == {} and p.latency_s["loihi"] == 0.0
    assert any("nir" in note and "not estimated" in note for note in p.notes)
    assert p.jetson["target"] == "cpu" and p.jetson["time_s"] == p.jetson["measured_onnxruntime_cpu_s"] > 0
    assert p.jetson["parameters"] == sum(int(v.numel()) for k, v in model.state_dict().items() if k.startswith("ann."))


def test_bad_numbers_and_paths_are_clean_errors(tmp_path, cli):
    from hybridc.profiling import load_profile
    from hybridc.profiling.report import profile_build

    with pytest.raises(hybridc.errors.InputError, match="at least 1"):
        profile_build(tmp_path, samples=0)
    (tmp_path / "p.json").write_text(json.dumps({"jetson": {"mine": {"name": "x"}}}))
    with pytest.raises(hybridc.errors.InputError, match="lacks peak_flops"):
        load_profile(tmp_path / "p.json", jetson="mine")
    result = cli("explore", tmp_path / "missing.py", timeout=120)
    assert result.returncode == 2 and "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_explore_adds_accuracy_from_checkpoints(example, tmp_path):
    from hybridc.profiling.explore import explore

    model = example.build_model("S2A4", 4, 32, 16, seed=5)
    (tmp_path / "ckpt" / "S2A4-I4").mkdir(parents=True)
    torch.save(model.state_dict(), tmp_path / "ckpt" / "S2A4-I4" / "model.pt")
    rows = explore(ROOT / "examples/dvs_gesture/model.py", ["S2A4"], [4, 8], tmp_path / "ex", {"size": 32},
                   samples=11, checkpoints=tmp_path / "ckpt")
    by_name = {r.name: r for r in rows}
    assert by_name["S2A4-I8"].accuracy is None  # no checkpoint for it
    accuracy = by_name["S2A4-I4"].accuracy
    assert accuracy is not None and 0.0 <= accuracy <= 1.0
    # the same number as the deployed model scored by hand on the same 11 synthetic test samples
    from hybridc.data import SyntheticGestures

    data = SyntheticGestures(11, 32, 16, seed=10_000)
    x = torch.stack([data[i][0] for i in range(11)])
    labels = torch.tensor([data[i][1] for i in range(11)])
    with torch.no_grad():
        assert accuracy == pytest.approx(float((model.eval()(x).argmax(-1) == labels).float().mean()))


@pytest.mark.lava
def test_profile_of_an_api_build_counts_what_lava_runs(example, tmp_path):
    """No source model needed: activity comes from the emulator running snn.net. Its spike
    count at the last layer equals Lava's on the same samples over the same T + layers steps."""
    import numpy as np

    from hybridc.data import open_dataset
    from hybridc.netx.layout import to_netx
    from hybridc.profiling import profile_build
    from hybridc.runtime.lava import simulate

    model, x = example.build("S2A4", interval=4, size=32, timesteps=16)
    compiled = hybridc.compile(model, x, output_dir=tmp_path / "b")
    assert compiled.manifest.source.path is None  # compiled from Python
    p = profile_build(tmp_path / "b", samples=2)
    snn = compiled.manifest.stages[0]
    dataset = open_dataset("synthetic", train=False, size=32, timesteps=16, samples=2, seed=0)
    lava_spikes = 0.0
    for i in range(2):
        sample = to_netx(dataset[i][0][None])[0]
        drained = np.concatenate([sample, np.zeros(sample.shape[:-1] + (snn.layers,))], axis=-1)
        lava_spikes += float(simulate(tmp_path / "b" / snn.artifact, drained, 0, input_shape=tuple(snn.inputs[0].shape[:-1])).sum())
    last = p.loihi["layers"][-1]
    assert p.samples == 2 and last["spikes_out"] > 0
    assert last["spikes_out"] == lava_spikes / 2
    assert p.loihi["layers"][0]["spikes_in"] == float(sum(dataset[i][0].sum() for i in range(2))) / 2
    assert p.loihi["layers"][1]["spikes_in"] == p.loihi["layers"][0]["spikes_out"]
