"""Run a Loihi stage's netx HDF5 without Lava: a batched, bit-exact emulator.

It reads only the artifact (and, through `run_stage`, the manifest's stage entry) and
reproduces what `netx.hdf5.Network` builds and what Lava's
`Loihi2SimCfg(select_tag="fixed_pt")` process models compute, with integer arithmetic
on batched torch tensors:

- netx (`lava/lib/dl/netx/hdf5.py`): layers in order; `input` without a neuron is only a
  shape, with a neuron it is a LIF whose `a_in` nothing drives (netx leaves `inp` open);
  `flatten` reorders (W, H, C) as (C, H, W), i.e. PyTorch's flatten; `dense` weights go
  through netx's `optimize_weight_bits`; a missing `neuron/` group is netx's non-leaky
  default; `delay` on a dense layer makes it a `DelayDense`.
- Dense (`lava/proc/dense/models.py`, bit-accurate): weights clipped to 8 bits and
  truncated to `num_weight_bits`, accumulation shifted by `weight_exp` (arithmetic shift),
  sent as int32 one step later.
- Conv (`lava/proc/conv/models.py`, fixed_pt): integer correlation, *no* weight exponent,
  wrapped to 24 bits (`signed_clamp`), sent one step later.
- LIF (`lava/proc/lif/models.py`, PyLifModelBitAcc): 12-bit decays rounded toward zero,
  input shifted left by 6, the current wrapped once at 24 bits, the voltage clipped to
  +-(2**23 - 1), bias mantissa (int16) << 6, spike when v > vThMant << 6, reset to 0.

Convolutions run in float64 on integer values (exact below 2**53); everything else is
int64 with the int32/int16 wrap-arounds numpy applies in Lava made explicit.
"""

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ArtifactError

UV_LIMIT = 1 << 23  # LIF current and voltage are 24-bit
DECAY_UNITY = 1 << 12
STATE_SHIFT = 6  # threshold, bias and synaptic input are MSB-aligned by 6 bits


def _netx_utils():
    """netx's own weight optimiser (`lava.lib.dl.netx.utils`), loaded without the netx package
    `__init__`, which imports the whole Lava runtime (seconds) that the emulator never uses."""
    spec = importlib.util.find_spec("lava.lib.dl.netx")
    path = Path(spec.submodule_search_locations[0]) / "utils.py"
    module_spec = importlib.util.spec_from_file_location("hybridc_netx_utils", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def wrap_int(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's-complement wrap of int64 values to `bits` (what numpy does when it stores an
    int64 result into an int32/int16 array)."""
    half = 1 << (bits - 1)
    return torch.remainder(x + half, 1 << bits) - half


@dataclass
class Neuron:
    """Parameters of one LIF process as netx sets them (du = iDecay - 1, bias_exp 6)."""
    current_factor: int  # 4096 - (du + 1)
    voltage_factor: int  # 4096 - dv
    threshold: int  # vThMant << 6
    bias: Optional[torch.Tensor]  # bias_mant (int16) << 6, broadcastable to the state


@dataclass
class Layer:
    kind: str  # "input" (LIF without synapse), "conv", "dense"
    name: str
    out_shape: tuple  # PyTorch order without batch: (C, H, W) or (F,)
    neuron: Neuron
    flatten_before: bool = False
    weight: Optional[torch.Tensor] = None  # conv: float64 (Cout, Cin/g, kH, kW); dense: int64 (out, in)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1
    weight_exp: int = 0  # dense only (Lava's Conv model ignores it)
    delays: Optional[torch.Tensor] = None  # dense: int64 (out, in) axonal delays (DelayDense)


def _scalar(value) -> int:
    return int(np.asarray(value).reshape(-1)[0])


def _pair(value) -> tuple:
    array = np.asarray(value).reshape(-1)
    return (int(array[0]),) * 2 if array.size == 1 else (int(array[0]), int(array[1]))


# netx's default for a dense layer without a neuron group: a non-leaky integrator
DEFAULT_NEURON = {"iDecay": 0, "vDecay": 4096, "vThMant": 1 << 18 - 1}


def _check_cuba(group) -> None:
    """Refuse, with the reason, a layer whose neurons are not CUBA (sigma-delta, RF, ...)."""
    if "neuron" in group and "type" in group["neuron"]:
        kind = group["neuron"]["type"][()]
        kind = (kind.reshape(-1)[0] if hasattr(kind, "reshape") else kind)
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind not in ("CUBA", "LOIHI"):
            raise ArtifactError(f"Layer {group.name} has {kind} neurons; the emulator runs CUBA (LIF) layers "
                                "only. Run this build with --backend lava (Lava's simulator).")


def _neuron(group, out_shape, bias) -> Neuron:
    _check_cuba(group)
    config = ({key: group["neuron"][key][()] for key in ("iDecay", "vDecay", "vThMant")}
              if "neuron" in group else DEFAULT_NEURON)
    du = _scalar(config["iDecay"]) - 1
    dv = _scalar(config["vDecay"])
    bias_term = None
    if bias is not None:
        bias = np.asarray(bias).astype(int)
        if len(out_shape) == 3 and bias.size == out_shape[0] and bias.ndim == 1:
            bias = bias.reshape(-1, 1, 1)  # netx broadcasts a channel-wise bias over W, H
        elif len(out_shape) == 3 and bias.size == np.prod(out_shape):
            bias = bias.reshape(out_shape[::-1]).transpose(2, 1, 0)  # netx's (W, H, C) -> (C, H, W)
        mantissa = torch.from_numpy(np.broadcast_to(bias, out_shape).astype(np.int16).astype(np.int64))
        bias_term = wrap_int(mantissa << STATE_SHIFT, 32)
    return Neuron(DECAY_UNITY - (du + 1), DECAY_UNITY - dv, _scalar(config["vThMant"]) << STATE_SHIFT, bias_term)


def read_network(path, input_shape=None, num_layers=None, skip_layers: int = 0):
    """The layers `netx.hdf5.Network(path, input_shape, num_layers, skip_layers)` builds.
    input_shape: PyTorch order (C, H, W) or (F,). Returns (input shape, layers)."""
    import h5py

    path = Path(path)
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise ArtifactError(f"{path} is not a readable netx HDF5 file ({exc}).") from exc
    layers, flatten_next = [], False
    shape = tuple(input_shape) if input_shape is not None else None
    first_shape = shape
    with h5:
        groups = h5["layer"]
        count = len(groups) if num_layers is None else min(len(groups), num_layers)
        for i in range(count):
            group = groups[str(i)]
            kind = group["type"][()]
            kind = (kind.reshape(-1)[0] if hasattr(kind, "reshape") else kind).decode()
            name = f"{path.name}:layer/{i}"
            if kind == "input":
                if "neuron" in group:
                    out = tuple(int(v) for v in group["shape"][()])
                    if i >= skip_layers:
                        layers.append(Layer("input", name, out, _neuron(group, out, None)))
                    shape = out
                elif "shape" in group:
                    shape = tuple(int(v) for v in group["shape"][()])
                if first_shape is None or i < skip_layers:
                    first_shape = shape
            elif kind == "flatten":
                flatten_next = True
            elif kind == "conv":
                layer = _conv(group, name, shape)
                shape = layer.out_shape
                if i >= skip_layers:
                    layers.append(layer)
                else:
                    first_shape = shape
            elif kind == "dense":
                layer = _dense(group, name)
                if i >= skip_layers:
                    layer.flatten_before = flatten_next and len(layers) > 0
                    layers.append(layer)
                flatten_next = False
                shape = layer.out_shape
            else:
                raise ArtifactError(f"{name} is a `{kind}` layer; netx (and so the emulator) runs only "
                                    "input, flatten, dense and conv layers.")
    if not layers:
        raise ArtifactError(f"{path} holds no layer to run.")
    return first_shape, layers


def _conv(group, name, in_shape) -> Layer:
    if in_shape is None:
        raise ArtifactError(f"{name}: the input shape could not be inferred; pass input_shape (C, H, W).")
    _check_cuba(group)
    weight = group["weight"][()].astype(int)
    weight = weight.reshape(weight.shape[:4])  # (Cout, Cin/groups, kH, kW), PyTorch order
    out = tuple(int(v) for v in group["shape"][()])
    layer = Layer("conv", name, out, _neuron(group, out, group["bias"][()] if "bias" in group else None),
                  weight=torch.from_numpy(weight.astype(np.int32).astype(np.float64)),
                  stride=_pair(group["stride"][()]), padding=_pair(group["padding"][()]),
                  dilation=_pair(group["dilation"][()]), groups=_scalar(group["groups"][()]))
    probe = F.conv2d(torch.zeros(1, *in_shape, dtype=torch.float64), layer.weight, stride=layer.stride,
                     padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
    if tuple(probe.shape[1:]) != out:
        raise ArtifactError(f"{name}: the conv of a {in_shape} input gives {tuple(probe.shape[1:])}, "
                            f"but the layer's shape is {out}; the file is inconsistent.")
    return layer


def _dense(group, name) -> Layer:
    _check_cuba(group)
    from lava.utils.weightutils import (
        clip_weights,
        determine_sign_mode,
        truncate_weights,
    )

    out = (int(np.prod(group["shape"][()])),)
    weight = group["weight"][()].astype(int)
    if weight.ndim == 1:
        weight = weight.reshape(out[0], -1)
    weight, num_weight_bits, weight_exp, _ = _netx_utils().optimize_weight_bits(weight)
    weight = weight.astype(np.int32)  # the process's weights Var
    sign_mode = determine_sign_mode(weight)
    weight = truncate_weights(clip_weights(weight, sign_mode, num_bits=8), sign_mode, num_weight_bits)
    delays = None
    if "delay" in group:
        delay = np.clip(np.asarray(group["delay"][()]), 0, 62).astype(int)
        if delay.ndim == 0 or delay.size == 1:
            delay = np.full(weight.shape, int(delay.reshape(-1)[0]))
        elif delay.ndim == 1 and delay.size == weight.shape[0]:
            delay = np.repeat(delay.reshape(-1, 1), weight.shape[1], axis=1)
        elif delay.ndim == 1 and delay.size == weight.shape[1]:
            delay = np.repeat(delay.reshape(1, -1), weight.shape[0], axis=0)
        delays = torch.from_numpy(delay.astype(np.int64))
    return Layer("dense", name, out, _neuron(group, out, group["bias"][()] if "bias" in group else None),
                 weight=torch.from_numpy(weight.astype(np.int64)), weight_exp=int(weight_exp), delays=delays)


def _shift(x: torch.Tensor, exponent: int) -> torch.Tensor:
    """Lava's Dense: left shift for a positive exponent, arithmetic right shift otherwise."""
    return x << exponent if exponent > 0 else x >> -exponent


def _dense_currents(layer: Layer, spikes: torch.Tensor, graded: bool) -> torch.Tensor:
    """(N, T, in) -> (N, T, out) synaptic input each step, before the one-step hop."""
    s = (spikes if graded else (spikes != 0)).to(torch.float64)

    def product(weight):  # float64 BLAS on integers: exact below 2**53, unlike slow int64 matmul
        return (s @ weight.T.to(torch.float64)).to(torch.int64)

    if layer.delays is None:
        return wrap_int(_shift(product(layer.weight), layer.weight_exp), 32)
    # DelayDense: each delay's share is shifted on its own, then arrives `delay` steps later
    total = torch.zeros(s.shape[:-1] + (layer.weight.shape[0],), dtype=torch.int64)
    steps = s.shape[1]
    for d in torch.unique(layer.delays).tolist():
        part = _shift(product(torch.where(layer.delays == d, layer.weight, 0)), layer.weight_exp)
        if d < steps:
            total[:, d:] += part[:, :steps - d]
    return wrap_int(total, 32)


def _conv_currents(layer: Layer, spikes: torch.Tensor, graded: bool) -> torch.Tensor:
    """(N, T, C, H, W) -> (N, T, C', H', W'): Lava's conv, wrapped to 24 bits. On integers the
    float conv is exact while every partial sum stays below the mantissa: float32 when the
    largest possible sum (sum of |weights| per output x largest input) is below 2**24, else float64."""
    n, t = spikes.shape[:2]
    s = spikes if graded else (spikes != 0)
    largest = float(layer.weight.abs().sum((1, 2, 3)).max()) * (float(s.abs().max()) if graded else 1.0)
    dtype = torch.float32 if largest < 2 ** 24 else torch.float64
    out = F.conv2d(s.reshape(n * t, *spikes.shape[2:]).to(dtype), layer.weight.to(dtype), stride=layer.stride,
                   padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
    if graded or largest >= 2 ** 23:  # truncation as `.astype(int32)`, then Lava's 24-bit clamp
        out = wrap_int(out.to(torch.int64), 24)
    return out.reshape(n, t, *out.shape[1:])  # binary input: already exact integers, kept in float


def _lif(neuron: Neuron, currents: torch.Tensor) -> torch.Tensor:
    """(N, T, ...) integer synaptic input (int64 or integer-valued float) computed each step
    -> (N, T, ...) bool spikes. The synapse sends at step t what it computed at t-1 (its
    buffer starts at 0): the neuron at step t integrates currents[:, t - 1]."""
    currents = currents[:, :-1]
    peak = currents.abs().amax(dim=[d for d in range(currents.dim()) if d != 1]) if currents.numel() else None
    if peak is None or int(peak.max()) < 1 << 24:
        wrap_current = peak is not None and int(peak.sum()) << STATE_SHIFT >= UV_LIMIT
        return _lif_float(neuron, currents, wrap_current)
    return _lif_int(neuron, currents)


def _lif_int(neuron: Neuron, currents: torch.Tensor) -> torch.Tensor:
    """Lava's LIF step by step in int64, every int32 wrap-around of numpy made explicit.
    currents[:, t - 1] arrives at step t (see `_lif`)."""
    currents = currents.to(torch.int64)
    u = torch.zeros(currents.shape[:1] + currents.shape[2:], dtype=torch.int64)
    v = torch.zeros_like(u)
    spikes = torch.empty((currents.shape[0], currents.shape[1] + 1, *currents.shape[2:]), dtype=torch.bool)
    for t in range(spikes.shape[1]):
        arriving = currents[:, t - 1] if t else torch.zeros_like(u)
        decayed = torch.div(u * neuron.current_factor, DECAY_UNITY, rounding_mode="trunc")
        u = wrap_int(decayed + wrap_int(arriving << STATE_SHIFT, 32), 32)
        u = torch.where(u > UV_LIMIT, u - 2 * UV_LIMIT, torch.where(u <= -UV_LIMIT, u + 2 * UV_LIMIT, u))
        volt = torch.div(v * neuron.voltage_factor, DECAY_UNITY, rounding_mode="trunc") + u
        if neuron.bias is not None:
            volt = volt + neuron.bias
        v = wrap_int(volt, 32).clamp(-UV_LIMIT + 1, UV_LIMIT - 1)
        fired = v > neuron.threshold
        v = v.masked_fill(fired, 0)
        spikes[:, t] = fired
    return spikes


def _lif_float(neuron: Neuron, currents: torch.Tensor, wrap_current: bool) -> torch.Tensor:
    """The same step on float64 holding integers, when every input is below 2**24: no int32
    sum can then overflow (|u|, |v| < 2**23 + 2**30), so the int32 wraps are no-ops, and every
    value is an integer below 2**53, so float64 is exact. `u * (f / 4096)` is exact (f / 4096
    is a power-of-two fraction and the product has at most 36 significant bits); trunc rounds
    toward zero as Lava's sign * (|x| >> 12) does. wrap_current: whether the 24-bit wrap of the
    current can happen at all (the sum over time of the largest input says so)."""
    current_factor = neuron.current_factor / DECAY_UNITY
    voltage_factor = neuron.voltage_factor / DECAY_UNITY
    bias = neuron.bias.to(torch.float64) if neuron.bias is not None else None
    u = torch.zeros(currents.shape[:1] + currents.shape[2:], dtype=torch.float64)
    v = torch.zeros_like(u)
    spikes = torch.empty((currents.shape[0], currents.shape[1] + 1, *currents.shape[2:]), dtype=torch.bool)
    for t in range(spikes.shape[1]):
        u.mul_(current_factor).trunc_()
        if t:
            u.add_(currents[:, t - 1], alpha=1 << STATE_SHIFT)
        if wrap_current:
            u = torch.where(u > UV_LIMIT, u - 2 * UV_LIMIT, torch.where(u <= -UV_LIMIT, u + 2 * UV_LIMIT, u))
        v.mul_(voltage_factor).trunc_().add_(u)
        if bias is not None:
            v.add_(bias)
        v.clamp_(-UV_LIMIT + 1, UV_LIMIT - 1)
        fired = torch.gt(v, neuron.threshold, out=spikes[:, t])
        v.masked_fill_(fired, 0)
    return spikes


def emulate(path, x, input_shape=None, input_message_bits: int = 0, num_layers=None, skip_layers: int = 0,
            network=None, on_layer=None) -> torch.Tensor:
    """Lava's output of the netx network at `path` for input `x`, step for step as a sink
    RingBuffer records it (no shift): x is (N, C, H, W, T) or (N, F, T) in PyTorch layout,
    spikes or (with input_message_bits > 0) integer payloads. Returns (N, ..., T) int64.
    network: the result of `read_network` to reuse across batches. on_layer(layer, inputs,
    outputs) sees each layer's input and output spikes, (N, T, ...), e.g. to count activity."""
    x = torch.as_tensor(x)
    _, layers = network or read_network(path, input_shape or tuple(x.shape[1:-1]),
                                                  num_layers, skip_layers)
    graded = input_message_bits > 0
    # time second: (N, T, ...)
    tensor = torch.movedim(x, -1, 1)
    tensor = torch.trunc(tensor.to(torch.float64)).to(torch.int64) if graded else tensor != 0
    for layer in layers:
        if layer.kind == "input":  # netx leaves this neuron's input open: it runs on its bias alone
            currents = torch.zeros((tensor.shape[0], tensor.shape[1], *layer.out_shape), dtype=torch.int64)
        else:
            if layer.flatten_before or (layer.kind == "dense" and tensor.dim() > 3):
                tensor = tensor.reshape(*tensor.shape[:2], -1)
            currents = (_conv_currents if layer.kind == "conv" else _dense_currents)(layer, tensor, graded)
        inputs, tensor = tensor, _lif(layer.neuron, currents)
        if on_layer is not None:
            on_layer(layer, inputs, tensor)
        graded = False  # LIF sends unary spikes
    return torch.movedim(tensor, 1, -1).to(torch.int64)


def _batches(count: int, per_sample_elements: int, budget: int = 1 << 25) -> int:
    """Samples per batch so the largest intermediate stays near `budget` int64 values (256 MB)."""
    return max(1, min(count, budget // max(per_sample_elements, 1)))


def supports(stage) -> bool:
    """Whether the emulator runs this loihi stage: one output at the last layer (no taps)
    and unary (not an Encoder's graded) input spikes. Branching stages: `spiking_graph`."""
    if getattr(stage, "segments", None):
        from .spiking_graph import supports as graph_supports

        return graph_supports(stage)
    return not _taps(stage) and not stage.input_bits


def _taps(stage) -> bool:
    """Outputs other than the one last layer's spikes."""
    last = stage.outputs[-1].layer
    return len(stage.outputs) != 1 or (last is not None and stage.layers is not None and last != stage.layers - 1)


def refuse_unsupported(stage) -> None:
    """ArtifactError for what the stage graph adds that the emulator does not model yet."""
    if _taps(stage):
        raise ArtifactError(f"Stage `{stage.name}` has taps (outputs on {len(stage.outputs)} netx layers); the "
                            "emulator computes only the last layer's spikes. Run this build with --backend lava "
                            "(Lava's simulator).")
    if stage.input_bits:
        raise ArtifactError(f"Stage `{stage.name}` takes graded spikes of {stage.input_bits} bits from an Encoder "
                            "(netx input_message_bits); the emulator runs unary input only. Run this build with "
                            "--backend lava (Lava's simulator).")


def run_stage(stage, build_dir: Path, x: torch.Tensor, progress=None) -> torch.Tensor:
    """The `emulate` backend of a loihi stage: the same inputs and outputs as Lava's runner
    (`runtime/lava.py`), from the stage's netx HDF5, batched and in bounded memory."""
    from .lava import check_input

    if getattr(stage, "segments", None):  # a branching stage: netx chains joined by extra synapses
        from .spiking_graph import run_stage as run_graph

        return run_graph(stage, build_dir, x, progress)
    if isinstance(x, dict):
        (x,) = x.values()
    refuse_unsupported(stage)
    check_input(stage, x)
    spec = stage.inputs[0]
    if spec.graded or stage.outputs[0].graded:
        raise ArtifactError(f"Stage `{stage.name}` exchanges graded (sigma-delta) values; the emulator runs CUBA "
                            "(LIF) layers only. Run this build with --backend lava (Lava's simulator).")
    steps = x.shape[-1]
    delay = stage.delay or 0
    network = read_network(Path(build_dir) / stage.artifact, spec.pytorch_shape()[:-1])
    if any(layer.kind == "input" for layer in network[1]):
        raise ArtifactError(f"Stage `{stage.name}` starts with an input layer that has a neuron, which hybridc's "
                            "Lava runner feeds directly; the emulator runs CUBA (LIF) layers only. Run this build "
                            "with --backend lava (Lava's simulator).")
    widest = max(int(np.prod(layer.out_shape)) for layer in network[1])
    widest = max(widest, int(np.prod(x.shape[1:-1])))
    batch = _batches(x.shape[0], widest * (steps + delay) * 4)
    outputs = []
    for start in range(0, x.shape[0], batch):
        chunk = x[start:start + batch]
        if delay:  # Lava's output lags by `delay` steps: run that much longer on zero input
            chunk = torch.cat([chunk, torch.zeros(*chunk.shape[:-1], delay, dtype=chunk.dtype)], dim=-1)
        out = emulate(None, chunk, network=network)
        outputs.append(out[..., delay:delay + steps].float())
        if progress:
            for _ in range(chunk.shape[0]):
                progress()
    return torch.cat(outputs)


__all__ = ["emulate", "read_network", "refuse_unsupported", "run_stage", "supports"]
