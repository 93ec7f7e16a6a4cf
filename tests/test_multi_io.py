"""Models with several inputs and several outputs, as current hybrids are written.

An events + frame fusion hybrid (a spiking stage on the events, a dense CNN on the intensity
frame, both concatenated into the head) and a two-headed hybrid (class logits and a
regression), compiled from the CLI and the API: `compile --verify` exact (spikes 100%,
outputs within 1e-4, same argmax) in Lava, `run` with two inputs equal to `model(events,
frame)` through every entry point, `pipeline` equal to `run`.
"""

import numpy as np
import pytest
import torch
from helpers import model_header, neuron
from lava.lib.dl import slayer

import hybridc
from hybridc.errors import InputError, TraceError
from hybridc.nn import Accumulator

T = 8


class Fusion(torch.nn.Module):
    """Events (N, 2, 8, 8, T) through Conv -> Flatten -> Dense spiking blocks, counted per
    window; a frame (N, 1, 8, 8) through a small CNN; both into a Linear head."""

    def __init__(self):
        super().__init__()
        p = neuron()
        self.snn = torch.nn.Sequential(slayer.block.cuba.Conv(p, 2, 4, 3, padding=1, stride=2, weight_scale=3),
                                       slayer.block.cuba.Flatten(), slayer.block.cuba.Dense(p, 64, 10, weight_scale=3))
        self.acc = Accumulator(T // 2)
        self.cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten())
        self.head = torch.nn.Linear(10 * 2 + 12, 5)

    def forward(self, events, frame):
        return self.head(torch.cat([self.acc(self.snn(events)), self.cnn(frame)], dim=1))


class TwoHeads(torch.nn.Module):
    """One spiking layer, then class logits and a 2-value regression from the same counts."""

    def __init__(self):
        super().__init__()
        self.snn = slayer.block.cuba.Dense(neuron(), 12, 16, weight_scale=3)
        self.acc = Accumulator(T // 2)
        self.classes, self.position = torch.nn.Linear(32, 4), torch.nn.Linear(32, 2)

    def forward(self, x):
        h = torch.relu(self.acc(self.snn(x)))
        return self.classes(h), self.position(h)


def fusion_inputs(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 2, 8, 8, T, generator=g) < 0.3).float(), torch.rand(n, 1, 8, 8, generator=g)


@pytest.mark.lava
def test_events_and_frame_fusion_is_exact(tmp_path):
    torch.manual_seed(0)
    model = Fusion().eval()
    events, frame = fusion_inputs()
    compiled = hybridc.compile(model, (events, frame), output_dir=tmp_path / "b")
    into = {(e.producer["tensor"], e.consumer["stage"]): e.shape for e in compiled.manifest.edges
            if e.producer["stage"] is None}
    assert into == {("input", "snn"): [2, 8, 8, T], ("input_1", "ann"): [1, 8, 8]}
    parity = hybridc.verify(compiled, (events, frame))
    assert parity.passed and parity.spike_match == 1.0 and parity.run_max_abs_err < 1e-4
    assert parity.argmax_agreement == 1.0
    with torch.no_grad():
        expected = model(events, frame)
    for x in ((events, frame), [events, frame], {"input": events, "input_1": frame}):
        got = hybridc.run(tmp_path / "b", x, backend="emulate")
        assert (got - expected).abs().max() < 1e-4
    lava = hybridc.run(tmp_path / "b", (events, frame))
    assert torch.equal(lava, hybridc.run(tmp_path / "b", (events, frame), backend="emulate"))
    streamed = np.stack(list(hybridc.pipeline(tmp_path / "b", list(zip(events, frame)), backend="emulate")))
    assert np.array_equal(streamed, lava.numpy())


def test_wrong_inputs_are_refused_by_name(tmp_path):
    torch.manual_seed(0)
    events, frame = fusion_inputs()
    hybridc.compile(Fusion().eval(), (events, frame), output_dir=tmp_path / "b")
    with pytest.raises(InputError, match=r"takes 2 input\(s\) \(input, input_1\).*got 1"):
        hybridc.run(tmp_path / "b", events, backend="emulate")
    with pytest.raises(InputError, match=r"Input `input_1` has shape \(3, 1, 4, 4\).*\(N, 1, 8, 8\)"):
        hybridc.run(tmp_path / "b", (events, frame[..., :4, :4]), backend="emulate")
    with pytest.raises(InputError, match=r"verify --data feeds one input"):
        hybridc.verify(hybridc.compile(Fusion().eval(), (events, frame)), data="synthetic", samples=2)
    with pytest.raises(TraceError, match=r"forward takes 2 required input\(s\) but example_input holds 1"):
        hybridc.compile(Fusion().eval(), events)


@pytest.mark.lava
def test_two_outputs_are_exact_and_each_is_written(tmp_path, cli):
    torch.manual_seed(0)
    model = TwoHeads().eval()
    x = (torch.rand(3, 12, T, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    compiled = hybridc.compile(model, x, output_dir=tmp_path / "b")
    assert sorted(e.consumer["input"] for e in compiled.manifest.edges_into(None)) == ["output", "output_1"]
    parity = hybridc.verify(compiled, x)
    assert parity.passed and parity.spike_match == 1.0 and parity.run_max_abs_err < 1e-4
    with torch.no_grad():
        classes, position = model(x)
    got = hybridc.run(tmp_path / "b", x, backend="emulate")
    assert isinstance(got, tuple) and len(got) == 2
    assert (got[0] - classes).abs().max() < 1e-4 and (got[1] - position).abs().max() < 1e-4
    np.save(tmp_path / "x.npy", x.numpy())
    refused = cli("run", tmp_path / "b", "-i", tmp_path / "x.npy", "--backend", "emulate", "-o", tmp_path / "y.npy",
                  in_process=True)
    assert refused.returncode == 8 and "-o y.npz" in refused.stderr
    result = cli("run", tmp_path / "b", "-i", tmp_path / "x.npy", "--backend", "emulate", "-o", tmp_path / "y.npz",
                 in_process=True)
    assert result.returncode == 0, result.stderr
    written = np.load(tmp_path / "y.npz")
    assert sorted(written.files) == ["output", "output_1"]
    assert np.allclose(written["output"], classes.numpy(), atol=1e-4)
    assert np.allclose(written["output_1"], position.numpy(), atol=1e-4)


FUSION_FILE = model_header() + """from torch import nn
T = 8
class Fusion(nn.Module):
    def __init__(self):
        super().__init__()
        self.snn = nn.Sequential(slayer.block.cuba.Conv(N, 2, 4, 3, padding=1, stride=2, weight_scale=3),
                                 slayer.block.cuba.Flatten(), slayer.block.cuba.Dense(N, 64, 10, weight_scale=3))
        self.acc = Accumulator(T // 2)
        self.cnn = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.head = nn.Linear(32, 5)
    def forward(self, events, frame):
        return self.head(torch.cat([self.acc(self.snn(events)), self.cnn(frame)], dim=1))
torch.manual_seed(0)
model = Fusion()
g = torch.Generator().manual_seed(0)
example_input = ((torch.rand(3, 2, 8, 8, T, generator=g) < 0.3).float(), torch.rand(3, 1, 8, 8, generator=g))
"""


@pytest.mark.lava
def test_fusion_from_the_command_line(tmp_path, cli):
    (tmp_path / "m.py").write_text(FUSION_FILE)
    result = cli("compile", "m.py", "-o", "build", "--verify", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "spikes at the cut equal 100.00%" in result.stdout and "argmax agreement 100%" in result.stdout
    events, frame = fusion_inputs(seed=4)
    np.save(tmp_path / "events.npy", events.numpy())
    np.save(tmp_path / "frame.npy", frame.numpy())
    np.savez(tmp_path / "both.npz", input=events.numpy(), input_1=frame.numpy())
    outputs = []
    for inputs in (["-i", "events.npy", "-i", "frame.npy"], ["-i", "both.npz"]):
        out = f"y{len(outputs)}.npy"
        result = cli("run", "build", *inputs, "--backend", "emulate", "-o", out, cwd=tmp_path, in_process=True)
        assert result.returncode == 0, result.stderr
        outputs.append(np.load(tmp_path / out))
    assert np.array_equal(outputs[0], outputs[1])
    expected = hybridc.run(tmp_path / "build", (events, frame), backend="emulate")
    assert np.array_equal(outputs[0], expected.numpy())
