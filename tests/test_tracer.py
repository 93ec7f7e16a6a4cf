"""The tracer's fast path (no math wrapping) and its fallback give torch.fx's default graph."""

import math

import pytest
import torch
from helpers import NEURON
from lava.lib.dl import slayer

import hybridc
from hybridc.frontend.tracer import HybridTracer, trace
from hybridc.nn import Accumulator


class Scaled(torch.nn.Module):
    """Divides the logits by sqrt(features), read from the traced shape: a math call on a
    traced value, which only fx's math wrapping can trace."""

    def __init__(self):
        super().__init__()
        self.snn = slayer.block.cuba.Dense(NEURON, 10, 6, weight_scale=3)
        self.accumulator = Accumulator(2)
        self.fc = torch.nn.Linear(12, 4)

    def forward(self, x):
        y = self.fc(self.accumulator(self.snn(x)))
        return y / math.sqrt(y.shape[1]) + math.floor(2.5)


def _graph_text(gm):
    return [(n.op, str(n.target), str(n.args)) for n in gm.graph.nodes]


@pytest.mark.lava
def test_math_on_traced_values_falls_back_to_fx_default():
    torch.manual_seed(0)
    model = Scaled().eval()
    with pytest.raises(TypeError):  # the fast path alone cannot trace it
        HybridTracer(autowrap_modules=()).trace(model)
    gm = trace(model)
    default = torch.fx.GraphModule(model, HybridTracer().trace(model))
    assert _graph_text(gm) == _graph_text(default)
    assert any(n.target is math.sqrt for n in gm.graph.nodes)  # a graph node, not a constant
    x = (torch.rand(1, 10, 4) < 0.5).float()
    compiled = hybridc.compile(model, x)
    out = hybridc.run(compiled, x.numpy())
    assert torch.allclose(torch.as_tensor(out), model(x), atol=1e-5)


def test_fast_trace_gives_the_default_graph():
    torch.manual_seed(0)
    model = torch.nn.Sequential(slayer.block.cuba.Dense(NEURON, 10, 6, weight_scale=3), Accumulator(2),
                                torch.nn.Linear(12, 2), torch.nn.ReLU()).eval()
    gm = trace(model)
    assert _graph_text(gm) == _graph_text(torch.fx.GraphModule(model, HybridTracer().trace(model)))


def test_traced_module_runs_after_the_passes_edit_it():
    """The graph module writes its code lazily: after the passes insert accumulators, calling
    it (what verify does with the reference) runs the edited graph."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(slayer.block.cuba.Dense(NEURON, 10, 6, weight_scale=3),
                                torch.nn.Flatten(1), torch.nn.Linear(24, 2)).eval()
    x = (torch.rand(1, 10, 4) < 0.5).float()
    compiled = hybridc.compile(model, x)
    assert any(n.op == "call_module" and n.target.startswith("hybridc_raw_cut") for n in compiled.module.graph.nodes)
    assert "hybridc_raw_cut" in compiled.module.code
    assert torch.equal(compiled.module(x), model(x))


@pytest.mark.parametrize("model, example, message", [
    ("not a model", torch.zeros(1, 2, 3), "`model` must be a torch.nn.Module, got str"),
    (torch.nn.Linear(2, 2), [1, 2], r"`example_input\[0\]` must be a torch.Tensor \(or example_input a tuple "
                                    r"of tensors, one per input of forward\(\)\), got int"),
    (torch.nn.Linear(2, 2), "spikes", r"`example_input` must be a torch.Tensor .*got str"),
])
def test_inputs_are_checked_before_anything_touches_them(model, example, message):
    """(They reached the user as a generic 'hybridc raised AttributeError' before.)"""
    with pytest.raises(hybridc.errors.TraceError, match=message):
        hybridc.compile(model, example)


def test_slayer_object_detection_loads_on_first_use():
    """hybridc defers slayer.obd (it imports torchvision: seconds of start-up, and ~220 more
    nn.Module classes that every torch.fx trace pays for); a model using it still gets it."""
    import subprocess
    import sys

    code = ("import sys, hybridc\nfrom lava.lib.dl import slayer\n"
            "assert 'torchvision' not in sys.modules\n"
            "assert slayer.obd.boundingbox.utils.nms is not None\n"
            "assert 'torchvision' in sys.modules\nprint('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok" and "Prophesee" not in done.stdout + done.stderr


class WithDefault(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.snn = slayer.block.cuba.Dense(NEURON, 10, 6, weight_scale=3)
        self.accumulator = Accumulator(2)
        self.fc = torch.nn.Linear(12, 2)

    def forward(self, x, scale=2.0):
        return self.fc(self.accumulator(self.snn(x))) * scale


def test_shape_pass_gives_later_parameters_their_defaults():
    """As fx.Interpreter: only the first input is the example; `scale` keeps its default."""
    from hybridc.frontend.tracer import record_shapes

    torch.manual_seed(0)
    model = WithDefault().eval()
    x = (torch.rand(1, 10, 4) < 0.5).float()
    gm = trace(model)
    assert torch.equal(record_shapes(gm, x), model(x))


@pytest.mark.lava
def test_in_place_activation_falls_back_to_torch_onnx():
    """An in-place ReLU overwrites its input for every later reader; ONNX's Relu does not,
    so the direct lowering must not write it (the review's reproducer)."""
    class InPlace(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.snn = slayer.block.cuba.Dense(NEURON, 10, 6, weight_scale=3)
            self.accumulator = Accumulator(2)
            self.fc, self.act, self.fc2 = torch.nn.Linear(12, 4), torch.nn.ReLU(inplace=True), torch.nn.Linear(4, 3)

        def forward(self, x):
            y = self.fc(self.accumulator(self.snn(x)))
            return self.fc2(y + self.act(y))

    torch.manual_seed(0)
    model = InPlace().eval()
    x = (torch.rand(2, 10, 4) < 0.5).float()
    compiled = hybridc.compile(model, x)
    out = torch.as_tensor(hybridc.run(compiled, x.numpy()))
    assert torch.allclose(out, model(x), atol=1e-5)
