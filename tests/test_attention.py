"""Attention and the transformer vocabulary in a dense stage after a spiking front end.

The pattern of spiking-front-end + transformer models: a slayer Dense layer on (N, F, T), an
Accumulator(I, fold=False) keeping the T/I windows as their own axis, the windows permuted into
tokens (N, T/I, F), then nn.MultiheadAttention (batch first or sequence first, with masks),
nn.TransformerEncoderLayer (post- and pre-norm), a stack of them, F.scaled_dot_product_attention,
matmul/bmm with softmax, LayerNorm, GELU, a positional embedding held as a parameter, or a GRU.
PyTorch's eval-mode fast path (aten::_native_multi_head_attention) is not exportable; the jetson
and cpu targets export the same modules' ordinary maths instead. Each build's dense stage, fed
PyTorch's tensors at the cut, equals PyTorch within 1e-4 in onnxruntime with the same argmax,
and the whole deployment (the emulator on snn.net, then onnxruntime) equals model(x); the int8
target quantises them within its registered bound. One test runs `compile --verify` in Lava.

Also here: a shape error after a folding Accumulator names fold=True as its cause.
"""

import textwrap

import onnx
import pytest
import torch
import torch.nn.functional as F
from helpers import NEURON, model_header, spikes
from lava.lib.dl import slayer
from torch import nn

import hybridc
from hybridc.errors import TraceError
from hybridc.nn import Accumulator
from hybridc.targets.registry import REGISTRY

FEATURES, WIDTH, STEPS, INTERVAL = 10, 16, 16, 2
TOKENS = STEPS // INTERVAL


class TokenHybrid(nn.Module):
    """Spiking Dense -> Accumulator(fold=False) -> tokens (+ positional embedding) -> `kind` ->
    LayerNorm -> mean over tokens -> Linear, GELU, Linear."""

    def __init__(self, kind: str, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.kind = kind
        self.front = slayer.block.cuba.Dense(NEURON, FEATURES, WIDTH, weight_scale=3)
        self.acc = Accumulator(INTERVAL, fold=False)
        self.pos = nn.Parameter(torch.randn(1, TOKENS, WIDTH) * 0.1)
        self.register_buffer("causal", torch.triu(torch.ones(TOKENS, TOKENS, dtype=torch.bool), 1))
        self.register_buffer("additive", torch.triu(torch.full((TOKENS, TOKENS), float("-inf")), 1))
        if kind.startswith("mha"):
            self.attn = nn.MultiheadAttention(WIDTH, 2, batch_first=kind != "mha_seq_first")
        elif kind.startswith("encoder"):
            self.attn = nn.TransformerEncoderLayer(WIDTH, 2, 2 * WIDTH, dropout=0.0,
                                                   batch_first=kind != "encoder_seq_first",
                                                   norm_first=kind == "encoder_norm_first",
                                                   activation="gelu" if kind == "encoder_gelu" else "relu")
        elif kind == "encoder_stack":
            layer = nn.TransformerEncoderLayer(WIDTH, 2, 2 * WIDTH, dropout=0.0, batch_first=True)
            self.attn = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        elif kind == "gru":
            self.attn = nn.GRU(WIDTH, WIDTH, batch_first=True)
        elif kind.startswith("sdpa"):
            self.qkv = nn.Linear(WIDTH, 3 * WIDTH)
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.GELU(), nn.Linear(WIDTH, 3))

    def forward(self, x):
        t = self.acc(self.front(x)).permute(0, 2, 1) + self.pos  # (N, tokens, features)
        kind = self.kind
        if kind == "mha":
            t = self.attn(t, t, t)[0]
        elif kind == "mha_no_weights":
            t = self.attn(t, t, t, need_weights=False)[0]
        elif kind == "mha_seq_first":
            s = t.transpose(0, 1)
            t = self.attn(s, s, s)[0].transpose(0, 1)
        elif kind == "mha_bool_mask":
            t = self.attn(t, t, t, attn_mask=self.causal)[0]
        elif kind == "mha_float_mask":
            t = self.attn(t, t, t, attn_mask=self.additive, need_weights=False)[0]
        elif kind == "mha_causal":
            t = self.attn(t, t, t, attn_mask=self.causal, is_causal=True, need_weights=False)[0]
        elif kind == "mha_cross":  # the last two windows attend to all of them
            t = self.attn(t[:, -2:], t, t)[0]
        elif kind == "gru":
            t = self.attn(t)[0]
        elif kind.startswith("sdpa"):
            q, k, v = self.qkv(t).chunk(3, dim=-1)
            t = F.scaled_dot_product_attention(q, k, v, is_causal=kind == "sdpa_causal")
        elif kind == "matmul":
            weights = torch.softmax(t @ t.transpose(1, 2) / 4.0, dim=-1)
            t = torch.bmm(weights, t)
        elif kind == "encoder_seq_first":
            t = self.attn(t.transpose(0, 1)).transpose(0, 1)
        elif kind == "encoder_mask":
            t = self.attn(t, src_mask=self.causal)
        else:
            t = self.attn(t)
        return self.head(self.norm(t).mean(1))


KINDS = ["mha", "mha_no_weights", "mha_seq_first", "mha_bool_mask", "mha_float_mask", "mha_causal", "mha_cross",
         "encoder", "encoder_norm_first", "encoder_gelu", "encoder_seq_first", "encoder_mask", "encoder_stack",
         "sdpa", "sdpa_causal", "matmul", "gru"]


def compiled_and_parity(kind, tmp_path, target="loihi+jetson", batch=4):
    model = TokenHybrid(kind).eval()
    x = spikes(batch, FEATURES, STEPS, density=0.3)
    compiled = hybridc.compile(model, x, target=target, output_dir=tmp_path / "build")
    return model, x, compiled, hybridc.verify(compiled, x, backend="emulate")


def dense_ops(compiled) -> set:
    stage = compiled.manifest.stages[-1]
    return {n.op_type for n in onnx.load(str(compiled.directory / stage.artifact)).graph.node}


@pytest.mark.parametrize("kind", KINDS)
def test_transformer_heads_compile_and_match_pytorch(kind, tmp_path):
    """Every head compiles for loihi+jetson, and onnxruntime gives PyTorch's output within 1e-4
    with the same argmax, on a batch other than the example's too (the batch axis is dynamic)."""
    model, x, compiled, parity = compiled_and_parity(kind, tmp_path)
    assert [s.target for s in compiled.manifest.stages] == ["loihi", "jetson"]
    assert parity.spike_match == 1.0
    assert parity.onnx_max_abs_err < 1e-4 and parity.run_max_abs_err < 1e-4, parity
    assert parity.argmax_agreement == 1.0 and parity.passed
    # the cut carries real traffic: the attention sees tokens that differ
    with torch.no_grad():
        tokens = model.acc(model.front(x))
    assert tokens.mean() > 0.1 and tokens.std() > 0.1
    # the fused fast-path kernels are gone; the attention is ordinary ONNX maths
    ops = dense_ops(compiled)
    if kind != "gru":
        assert {"Softmax", "MatMul"} <= ops, ops
    one = hybridc.verify(compiled, x[:1], backend="emulate")
    assert one.run_max_abs_err < 1e-4 and one.passed


@pytest.mark.parametrize("kind", ["mha", "encoder_norm_first", "sdpa"])
def test_transformer_heads_on_the_cpu_target(kind, tmp_path):
    _, _, compiled, parity = compiled_and_parity(kind, tmp_path, target="loihi+cpu")
    assert compiled.manifest.stages[-1].target == "cpu"
    assert parity.run_max_abs_err < 1e-4 and parity.argmax_agreement == 1.0 and parity.passed


@pytest.mark.parametrize("kind", ["mha", "encoder", "encoder_norm_first", "sdpa", "gru"])
def test_int8_quantises_attention_within_its_bound(kind, tmp_path):
    """jetson-int8 quantises attention (MatMul, Softmax, LayerNorm stay in the QDQ graph) and
    stays within the target's registered bound of the reference's largest magnitude."""
    _, _, compiled, parity = compiled_and_parity(kind, tmp_path, target="loihi+jetson-int8")
    bound = REGISTRY["jetson-int8"].output_rel_err_max
    assert parity.output_rel_err_max == bound
    assert parity.spike_match == 1.0 and parity.passed, parity
    assert "QuantizeLinear" in dense_ops(compiled)


def test_fast_path_setting_is_restored(tmp_path):
    """The export switches PyTorch's attention fast path off and back on, also when it fails."""
    assert torch.backends.mha.get_fastpath_enabled()
    compiled_and_parity("encoder", tmp_path, batch=1)
    assert torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        compiled_and_parity("mha", tmp_path / "off", batch=1)
        assert not torch.backends.mha.get_fastpath_enabled()
    finally:
        torch.backends.mha.set_fastpath_enabled(True)


class FoldedTokens(nn.Module):
    """The mistake the fold error explains: Accumulator(I) folds the windows into the features,
    so there is no window axis to permute into tokens."""

    def __init__(self, fold: bool):
        super().__init__()
        self.front = slayer.block.cuba.Dense(NEURON, FEATURES, WIDTH, weight_scale=3)
        self.acc = Accumulator(INTERVAL, fold=fold)
        self.head = nn.Linear(WIDTH, 3)

    def forward(self, x):
        return self.head(self.acc(self.front(x)).permute(0, 2, 1)).mean(1)


def test_folded_accumulator_error_names_fold(tmp_path):
    x = spikes(1, FEATURES, STEPS)
    with pytest.raises(TraceError) as info:
        hybridc.compile(FoldedTokens(fold=True), x, output_dir=tmp_path / "folded")
    message = str(info.value)
    assert "node `permute`" in message
    assert f"accumulator `acc` before it produced (1, {WIDTH * TOKENS})" in message
    assert "fold=True" in message and f"Accumulator({INTERVAL}, fold=False)" in message
    assert "Check that example_input" not in message  # the input was right
    hybridc.compile(FoldedTokens(fold=False), x, output_dir=tmp_path / "tokens")  # the fix compiles


def test_unfolded_accumulator_error_points_at_fold():
    """The other way round: a Linear sized for the folded features after fold=False."""
    model = nn.Sequential(slayer.block.cuba.Dense(NEURON, FEATURES, WIDTH, weight_scale=3),
                          Accumulator(INTERVAL, fold=False), nn.Linear(WIDTH * TOKENS, 3))
    with pytest.raises(TraceError) as info:
        hybridc.compile(model, spikes(1, FEATURES, STEPS))
    message = str(info.value)
    assert f"produced (1, {WIDTH}, {TOKENS})" in message and "fold=False keeps the windows" in message
    assert f"Accumulator({INTERVAL}) (fold=True)" in message


def test_shape_error_without_accumulator_still_checks_the_input():
    model = nn.Sequential(slayer.block.cuba.Dense(NEURON, FEATURES, WIDTH, weight_scale=3))
    with pytest.raises(TraceError, match="Check that example_input has the shape"):
        hybridc.compile(model, spikes(1, FEATURES + 1, STEPS))


ATTENTION_FILE = model_header() + f"""
from torch import nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.front = slayer.block.cuba.Dense(N, {FEATURES}, {WIDTH}, weight_scale=3)
        self.acc = Accumulator({INTERVAL}, fold=False)
        self.attn = nn.MultiheadAttention({WIDTH}, 2, batch_first=True)
        self.encoder = nn.TransformerEncoderLayer({WIDTH}, 2, {2 * WIDTH}, dropout=0.0, batch_first=True)
        self.head = nn.Linear({WIDTH}, 3)

    def forward(self, x):
        t = self.acc(self.front(x)).permute(0, 2, 1)
        t = self.encoder(self.attn(t, t, t)[0])
        return self.head(t.mean(1))


model = Model()
example_input = (torch.rand(1, {FEATURES}, {STEPS}, generator=torch.Generator().manual_seed(0)) < 0.3).float()
"""


@pytest.mark.lava
def test_cli_compile_verify_attention_in_lava(tmp_path, cli):
    """`compile --verify` of a MultiheadAttention + TransformerEncoderLayer head: Lava's spikes equal
    PyTorch's, onnxruntime's output model(x)'s, from the command line."""
    (tmp_path / "model.py").write_text(textwrap.dedent(ATTENTION_FILE))
    result = cli("compile", "model.py", "--target", "loihi+jetson", "-o", "build", "--verify", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "100.00%" in result.stdout
