"""The Jetson target's direct ONNX lowering (hybridc/targets/onnx_lowering.py): every operation
in its tables, alone and in random compositions, runs on onnxruntime as PyTorch computes it, and
was written by the direct path (producer "hybridc"), not by the torch.onnx fallback (producer
"pytorch"); an operation outside the tables still compiles, through the fallback; both paths
give the same stage (inputs, outputs, wire formats, accumulators) and the same profile figures;
a wrong weight in the file the direct path writes fails parity."""

import copy
import dataclasses
import operator

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from helpers import NEURON, load_example
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lava.lib.dl import slayer
from torch import nn

import hybridc
from hybridc.nn import Accumulator
from hybridc.profiling import onnx_counts
from hybridc.targets import jetson, onnx_lowering


def artifact(compiled, stage=-1):
    return compiled.directory / compiled.manifest.stages[stage].artifact


def producer(compiled, stage=-1) -> str:
    return onnx.load(str(artifact(compiled, stage))).producer_name


def run_onnx(path, feeds: dict) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in feeds.items()})[0]


def assert_direct_matches_torch(model, x):
    """A dense-only model (input `spikes`) compiled for jetson: written directly, equal to PyTorch."""
    model.eval()
    compiled = hybridc.compile(model, x, target="loihi+jetson")
    assert producer(compiled) == "hybridc", "the direct lowering fell back to torch.onnx"
    with torch.no_grad():
        expected = model(x).numpy()
    got = run_onnx(artifact(compiled), {"spikes": x})
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # batch is dynamic: one sample runs too, as the first row
    np.testing.assert_allclose(run_onnx(artifact(compiled), {"spikes": x[:1]}), expected[:1], rtol=1e-5, atol=1e-5)
    return compiled


class Call(nn.Module):
    """fn(x, *modules) as the model's forward: functions and methods, traced by torch.fx."""

    def __init__(self, fn, *modules):
        super().__init__()
        self.fn, self.layers = fn, nn.ModuleList(modules)

    def forward(self, x):
        return self.fn(x, *self.layers)


def _bn(cls, channels, **kw):
    bn = cls(channels, **kw).eval()
    with torch.no_grad():
        if bn.running_mean is not None:
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
        if bn.weight is not None:
            bn.weight.uniform_(0.5, 2)
            bn.bias.uniform_(-1, 1)
    return bn


IMAGE, SEQUENCE, FLAT = (2, 3, 8, 8), (2, 3, 10), (2, 12)
SINGLE_OPS = {
    "linear_gemm": (lambda: nn.Linear(12, 5), FLAT),
    "linear_no_bias": (lambda: nn.Linear(12, 5, bias=False), FLAT),
    "linear_matmul_rank3": (lambda: nn.Linear(10, 4), SEQUENCE),
    "linear_matmul_rank3_no_bias": (lambda: nn.Linear(10, 4, bias=False), SEQUENCE),
    "conv1d": (lambda: nn.Conv1d(3, 4, 3, padding=1), SEQUENCE),
    "conv2d_stride_pad": (lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), IMAGE),
    "conv2d_groups_dilation": (lambda: nn.Conv2d(3, 6, 3, dilation=2, groups=3, bias=False), IMAGE),
    "conv2d_valid": (lambda: nn.Conv2d(3, 2, (1, 3), padding="valid"), IMAGE),
    "conv3d_per_step": (lambda: nn.Conv3d(3, 2, (3, 3, 1), padding=(1, 1, 0)), (2, 3, 6, 6, 4)),
    "relu": (lambda: nn.ReLU(), IMAGE),
    "relu_function": (lambda: Call(lambda x: torch.relu(x) + F.relu(-x)), IMAGE),
    "relu_method": (lambda: Call(lambda x: x.relu()), IMAGE),
    "sigmoid_tanh": (lambda: nn.Sequential(nn.Sigmoid(), nn.Tanh()), IMAGE),
    "sigmoid_tanh_functions": (lambda: Call(lambda x: torch.sigmoid(x) * torch.tanh(x) - x.sigmoid() + x.tanh()),
                               IMAGE),
    "flatten": (lambda: nn.Flatten(), IMAGE),
    "flatten_function": (lambda: Call(lambda x: torch.flatten(x, 1) * 2), IMAGE),
    "flatten_method": (lambda: Call(lambda x: x.flatten(start_dim=1, end_dim=-1) + 1), IMAGE),
    "dropout_identity": (lambda: nn.Sequential(nn.Dropout(0.5), nn.Identity(), nn.Dropout2d(0.2)), IMAGE),
    "batchnorm1d_flat": (lambda: _bn(nn.BatchNorm1d, 12), FLAT),
    "batchnorm1d_sequence": (lambda: _bn(nn.BatchNorm1d, 3), SEQUENCE),
    "batchnorm2d": (lambda: _bn(nn.BatchNorm2d, 3), IMAGE),
    "batchnorm2d_not_affine": (lambda: _bn(nn.BatchNorm2d, 3, affine=False), IMAGE),
    "maxpool": (lambda: nn.MaxPool2d(2), IMAGE),
    "maxpool_stride_pad": (lambda: nn.MaxPool2d(3, stride=2, padding=1), IMAGE),
    "avgpool": (lambda: nn.AvgPool2d(2), IMAGE),
    "avgpool_overlapping": (lambda: nn.AvgPool2d(3, stride=1), IMAGE),
    "upsample_nearest": (lambda: nn.Upsample(scale_factor=2), IMAGE),
    "arithmetic_scalars": (lambda: Call(lambda x: (2 * x + 1) * 0.5 - 3 - (1 - x) / 4 + x.mul(3).add(1).sub(2).div(5)),
                           IMAGE),
    "arithmetic_tensors": (lambda: Call(lambda x, c: x * c(x) + c(x) - x / (torch.add(x, 3)) + torch.sub(x, x.relu()),
                                        nn.Conv2d(3, 3, 1)), IMAGE),
    "broadcast": (lambda: Call(lambda x, p: x * torch.sigmoid(p(x)) - p(x), nn.AvgPool2d(8)), IMAGE),
    "cat": (lambda: Call(lambda x, c: torch.cat([x, c(x), x * 2], dim=1), nn.Conv2d(3, 2, 1)), IMAGE),
    "cat_negative_dim": (lambda: Call(lambda x: torch.cat((x, x.relu()), -1)), IMAGE),
}


@pytest.mark.parametrize("name", sorted(SINGLE_OPS))
def test_each_operation_in_the_tables_matches_pytorch(name):
    make, shape = SINGLE_OPS[name]
    torch.manual_seed(0)
    x = torch.randn(*shape)
    assert_direct_matches_torch(nn.Sequential(make()), x)  # the root module is traced through; its children are not


# -- random compositions ------------------------------------------------------------------

IMAGE_STEPS = ["conv", "conv_strided", "batchnorm", "relu", "relu_function", "relu_method", "sigmoid", "tanh",
               "maxpool", "avgpool", "scale", "residual", "cat", "dropout"]
FLAT_STEPS = ["linear", "relu", "tanh_function", "dropout", "batchnorm", "scale", "residual", "cat"]
FLATTENS = ["module", "function", "method"]


class Composed(nn.Module):
    """Image steps on (N, C, H, W), a flatten, flat steps, a final Linear: drawn by hypothesis."""

    def __init__(self, image_steps, flatten, flat_steps, channels=3, side=8):
        super().__init__()
        self.image_steps, self.flat_steps, self.flatten_kind = image_steps, flat_steps, flatten
        self.image_layers, self.flat_layers = nn.ModuleList(), nn.ModuleList()
        c = channels
        for step in image_steps:
            if step in ("conv", "conv_strided"):
                stride = 2 if step == "conv_strided" and side >= 4 else 1
                self.image_layers.append(nn.Conv2d(c, c + 1, 3, stride=stride, padding=1))
                c, side = c + 1, (side + 1) // stride if stride == 2 else side
            elif step == "batchnorm":
                self.image_layers.append(_bn(nn.BatchNorm2d, c))
            elif step in ("maxpool", "avgpool"):
                pooled = side >= 2
                self.image_layers.append((nn.MaxPool2d(2) if step == "maxpool" else nn.AvgPool2d(2)) if pooled
                                         else nn.Identity())
                side = side // 2 if pooled else side
            elif step in ("residual", "cat"):
                self.image_layers.append(nn.Conv2d(c, c, 1))
                c = 2 * c if step == "cat" else c
            else:
                self.image_layers.append(nn.Identity())
        features = c * side * side
        self.flatten = nn.Flatten()
        for step in flat_steps:
            if step == "linear":
                self.flat_layers.append(nn.Linear(features, 7))
                features = 7
            elif step == "batchnorm":
                self.flat_layers.append(_bn(nn.BatchNorm1d, features))
            elif step in ("residual", "cat"):
                self.flat_layers.append(nn.Linear(features, features))
                features = 2 * features if step == "cat" else features
            else:
                self.flat_layers.append(nn.Identity())
        self.out = nn.Linear(features, 4)

    def forward(self, x):
        for step, layer in zip(self.image_steps, self.image_layers):
            x = _apply(step, layer, x)
        if self.flatten_kind == "module":
            x = self.flatten(x)
        elif self.flatten_kind == "function":
            x = torch.flatten(x, 1)
        else:
            x = x.flatten(1)
        for step, layer in zip(self.flat_steps, self.flat_layers):
            x = _apply(step, layer, x)
        return self.out(x)


def _apply(step, layer, x):
    if step in ("relu", "relu_function", "relu_method"):
        return {"relu": nn.functional.relu, "relu_function": torch.relu, "relu_method": lambda t: t.relu()}[step](x)
    if step == "sigmoid":
        return torch.sigmoid(layer(x))
    if step in ("tanh", "tanh_function"):
        return torch.tanh(x) if step == "tanh_function" else x.tanh()
    if step == "scale":
        return 0.5 * x - 0.25
    if step == "residual":
        return x + layer(x)
    if step == "cat":
        return torch.cat([x, layer(x)], dim=1)
    return layer(x)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image=st.lists(st.sampled_from(IMAGE_STEPS), max_size=5), flatten=st.sampled_from(FLATTENS),
       flat=st.lists(st.sampled_from(FLAT_STEPS), max_size=4), seed=st.integers(0, 2 ** 16))
def test_random_compositions_match_pytorch(image, flatten, flat, seed):
    torch.manual_seed(seed)
    model = Composed(image, flatten, flat)
    assert_direct_matches_torch(model, torch.randn(2, 3, 8, 8))


# -- outside the tables: the fallback ------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 3)),  # GELU: no rule
    lambda: Call(lambda x, c: c(x)[:, :2].flatten(1), nn.Conv2d(3, 4, 1)),  # getitem: no rule
    lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), nn.Flatten()),  # not zeros
    lambda: nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), nn.Flatten()),  # not the plain case
], ids=["gelu", "getitem", "reflect_padding", "ceil_mode_pool"])
def test_an_operation_outside_the_tables_compiles_through_torch_onnx(make, caplog):
    torch.manual_seed(0)
    model, x = make().eval(), torch.randn(2, 3, 7, 7)
    with caplog.at_level("INFO", logger="hybridc.targets.jetson"):
        compiled = hybridc.compile(model, x, target="loihi+jetson")
    assert producer(compiled) == "pytorch"
    assert "stage `ann` goes through torch.onnx: node `" in caplog.text
    with torch.no_grad():
        np.testing.assert_allclose(run_onnx(artifact(compiled), {"spikes": x}), model(x).numpy(), rtol=1e-5, atol=1e-5)


# -- hybrids: the same stage as the torch.onnx route -------------------------------------

class SpikingChain(nn.Module):
    """slayer Dense -> Accumulator(4, fold) -> Linear + ReLU -> Linear (compile_bench's DenseChain)."""

    def __init__(self):
        super().__init__()
        self.snn = nn.Sequential(slayer.block.cuba.Dense(NEURON, 16, 16, weight_scale=2))
        self.acc = Accumulator(4, fold=True)
        self.ann = nn.Sequential(nn.Linear(16 * 2, 12), nn.ReLU(), nn.Dropout(0.2), nn.Linear(12, 5))

    def forward(self, x):
        return self.ann(self.acc(self.snn(x)))


def _hybrid(name):
    """(model, example input, who writes each dense stage) for one of the hybrids."""
    import branch_models
    import hybrid_models

    torch.manual_seed(0)
    if name == "chain":
        return SpikingChain(), (torch.rand(2, 16, 8) < 0.4).float(), ["hybridc"]
    if name == "dvs_gesture_S2A4":
        return (*load_example("dvs_gesture").build("S2A4", interval=4, size=32, timesteps=8, batch=2), ["hybridc"])
    if name == "rf":
        return (*load_example("rf").build(batch=2), ["hybridc"])
    if name == "spike_flownet_three_taps":  # three accumulators of different intervals, Upsample
        flownet = load_example("spike_flownet")
        return flownet.model, flownet.example_input, ["hybridc"]
    if name == "two_branch_cat":
        return branch_models.TwoBranchCat(), branch_models.example_input(2), ["hybridc"]
    if name == "flat_cat":
        return branch_models.FlatCat(), branch_models.example_input(2), ["hybridc"]
    # SNN -> ANN (Conv3d, Encoder: no rule, so torch.onnx) -> SNN -> ANN (direct)
    return hybrid_models.Alternating(), hybrid_models.example_input("alternating"), ["pytorch", "hybridc"]


@pytest.mark.parametrize("name", ["chain", "dvs_gesture_S2A4", "rf", "spike_flownet_three_taps", "two_branch_cat",
                                  "flat_cat", "alternating_with_encoder"])
def test_hybrid_stages_equal_the_torch_onnx_route(name, monkeypatch, tmp_path):
    """Same manifest stage (inputs, outputs, wire, accumulator, opset) as the torch.onnx route,
    the same outputs on onnxruntime, the same profile figures per layer. (The spiking stages are
    the same file either way; test_a_wrong_weight... runs a whole build against PyTorch.)"""
    model, x, producers = _hybrid(name)
    model.eval()
    direct = hybridc.compile(model, x, target="loihi+jetson", output_dir=tmp_path / "direct")
    with monkeypatch.context() as patch:
        patch.setattr(jetson, "lower_directly", lambda *args: None)
        fallback = hybridc.compile(model, x, target="loihi+jetson", output_dir=tmp_path / "fallback")
    dense = [i for i, s in enumerate(direct.manifest.stages) if s.target == "jetson"]
    assert [producer(direct, i) for i in dense] == producers
    assert {producer(fallback, i) for i in dense} == {"pytorch"}
    for i in dense:
        ours, theirs = direct.manifest.stages[i], fallback.manifest.stages[i]
        assert dataclasses.replace(ours, sha256="") == dataclasses.replace(theirs, sha256="")
        g = torch.Generator().manual_seed(1)
        feeds = {t.name: (torch.rand(3, *t.shape, generator=g) * 4).round() for t in ours.inputs}
        np.testing.assert_allclose(run_onnx(artifact(direct, i), feeds), run_onnx(artifact(fallback, i), feeds),
                                   rtol=1e-5, atol=1e-5)
        layers = [(la.op, la.output_shape, la.macs, la.parameters) for la in onnx_counts.read_layers(artifact(direct, i))]
        assert layers == [(la.op, la.output_shape, la.macs, la.parameters)
                          for la in onnx_counts.read_layers(artifact(fallback, i))]
        assert onnx_counts.parameters(artifact(direct, i)) == onnx_counts.parameters(artifact(fallback, i))


def test_onnx_layers_are_named_after_the_fx_nodes():
    """`hybridc profile` lists the ONNX Conv/Gemm/MatMul by name: the direct path names them
    after the model's layers."""
    torch.manual_seed(0)
    gesture, x = load_example("dvs_gesture").build("S2A4", interval=4, size=32, timesteps=8)
    compiled = hybridc.compile(gesture, x, target="loihi+jetson")
    names = [layer.name for layer in onnx_counts.read_layers(artifact(compiled))]
    fx_nodes = {n.name for n in compiled.module.graph.nodes}
    assert names and set(names) <= fx_nodes
    assert [la.op for la in onnx_counts.read_layers(artifact(compiled))].count("Gemm") == 3


def test_a_wrong_weight_in_the_direct_file_fails_parity(monkeypatch):
    """A lowering that wrote one wrong number into a Gemm weight: parity (the ONNX file run by
    onnxruntime against PyTorch) fails; the same model lowered right passes."""
    from hybridc.runtime.verify import verify

    torch.manual_seed(0)
    model, x = SpikingChain().eval(), (torch.rand(4, 16, 8) < 0.4).float()
    assert verify(hybridc.compile(model, x, target="loihi+jetson"), x, backend="emulate").passed

    def wrong_linear(low, node, module):
        module = copy.deepcopy(module)
        with torch.no_grad():
            module.weight[0, 0] += 0.5
        onnx_lowering._linear(low, node, module)

    monkeypatch.setitem(onnx_lowering.MODULES, nn.Linear, wrong_linear)
    compiled = hybridc.compile(model, x, target="loihi+jetson")
    assert producer(compiled) == "hybridc"
    parity = verify(compiled, x, backend="emulate")
    assert not parity.passed and parity.spike_match == 1.0


def test_scalars_keep_their_side_and_tables_cover_the_operator_forms():
    """`1 - x` is Sub(1, x), not Sub(x, 1); the tables hold each form the docs promise."""
    torch.manual_seed(0)
    x = torch.randn(2, 4)
    compiled = assert_direct_matches_torch(Call(lambda t: (1 - t) / (2 + t.relu())), x)
    literals = [n.attribute[0].t for n in onnx.load(str(artifact(compiled))).graph.node if n.op_type == "Constant"]
    assert len(literals) == 2 and all(list(t.dims) == [] for t in literals)  # 0-d, as torch.onnx writes them
    for fn in (operator.add, operator.sub, operator.mul, operator.truediv, torch.cat, torch.relu, torch.flatten):
        assert fn in onnx_lowering.FUNCTIONS


def test_profile_figures_equal_the_torch_onnx_route(monkeypatch):
    """Conv -> BatchNorm folds into the conv (as torch.onnx does), scalars and Resize scales are
    Constant nodes, not initializers: `hybridc profile` counts the same layers, MACs and parameters."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), _bn(nn.BatchNorm2d, 4), nn.ReLU(), nn.Upsample(scale_factor=2),
                          Call(lambda x: 2 * x - 1), nn.Conv2d(4, 2, 3, stride=2, bias=False), _bn(nn.BatchNorm2d, 2),
                          nn.Flatten(), nn.Linear(2 * 7 * 7, 6), _bn(nn.BatchNorm1d, 6), nn.Linear(6, 3)).eval()
    x = torch.randn(2, 3, 8, 8)
    direct = assert_direct_matches_torch(model, x)
    with monkeypatch.context() as patch:
        patch.setattr(jetson, "lower_directly", lambda *args: None)
        fallback = hybridc.compile(model, x, target="loihi+jetson")
    assert producer(fallback) == "pytorch"
    ours, theirs = onnx_counts.read_layers(artifact(direct)), onnx_counts.read_layers(artifact(fallback))
    assert [(la.op, la.output_shape, la.macs, la.parameters) for la in ours] == \
        [(la.op, la.output_shape, la.macs, la.parameters) for la in theirs]
    assert onnx_counts.parameters(artifact(direct)) == onnx_counts.parameters(artifact(fallback))
    ops = [n.op_type for n in onnx.load(str(artifact(direct))).graph.node]
    assert ops.count("Conv") == 2 and ops.count("BatchNormalization") == 1  # the two conv ones folded


def test_a_failing_rule_falls_back_with_a_warning(monkeypatch, caplog):
    """A bug in one rule (here: it raises) costs speed, not the compile: torch.onnx writes the stage."""
    def broken(low, node, module):
        raise RuntimeError("boom")

    monkeypatch.setitem(onnx_lowering.MODULES, nn.ReLU, broken)
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(5, 4), nn.ReLU()).eval(), torch.randn(2, 5)
    with caplog.at_level("WARNING", logger="hybridc.targets.jetson"):
        compiled = hybridc.compile(model, x, target="loihi+jetson")
    assert producer(compiled) == "pytorch" and "RuntimeError: boom" in caplog.text
    with torch.no_grad():
        np.testing.assert_allclose(run_onnx(artifact(compiled), {"spikes": x}), model(x).numpy(), rtol=1e-5, atol=1e-5)
