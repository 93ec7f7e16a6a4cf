"""Run a Loihi stage's netx HDF5 without Lava: a batched, bit-exact emulator.

It reads only the artifact (and, through `run_stage`, the manifest's stage entry) and
reproduces what `netx.hdf5.Network` builds and what Lava's
`Loihi2SimCfg(select_tag="fixed_pt")` process models compute, with integer arithmetic
on batched torch tensors:

- netx (`lava/lib/dl/netx/hdf5.py`): layers in order; `input` without a neuron is only a
  shape, with a neuron its `a_in` is fed the input directly (as hybridc's Lava runner and
  lava-dl's PilotNet SDNN test connect it; netx itself leaves `inp` open);
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
- Sigma-delta (`lava/proc/sdn/models.py`, fixed_pt; netx's SDNN neuron): Delta for an input
  layer (input << 12, no synapse), SigmaDelta (sigma += input, ReLU, delta against the last
  activation plus residue, sent when |delta| >= vThMant << 12, as delta >> 6), Sigma for a
  `sigma_output` layer (the running sum itself). Their int32 payloads are graded spikes.
- Resonate-and-fire (`lava/proc/rf/models.py`, `lava/proc/rf_iz/models.py`, fixed_pt;
  netx's complex dense layers): a real and an imaginary Dense synapse, the decayed rotation
  sign(x) * (|x| >> 12) in int64, both parts clipped to +-(2**23 - 1); RF spikes when the
  imaginary part crosses zero upward with the real part >= vth, RF_IZ when the imaginary
  part reaches vth (then real = 0, imag = vth - 1). The decays take netx's float round trip
  (sin/cos -> period, decay -> sin/cos), recomputed here with the same numpy operations.

Convolutions and dense products run in float on integer values (float32 where every partial
sum stays below 2**24, else float64: exact below 2**53, as Lava's scipy conv); everything
else is int64 with the int32/int16 wrap-arounds numpy applies in Lava made explicit. A stage's outputs may tap any
layer (`taps`); each layer is one `run_layer` call, reusable on its own.
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
class SigmaDelta:
    """A netx SDNN neuron: `delta` (Lava's Delta, an input layer), `sigma_delta` (SigmaDelta,
    ReLU) or `sigma` (Sigma, a `sigma_output` layer). Values as Lava's fixed-point Vars hold them."""
    mode: str
    threshold: int = 0  # vThMant << (spike_exp + state_exp)
    bias: Optional[torch.Tensor] = None  # sigma_delta: bias << (spike_exp + state_exp), int32


@dataclass
class Resonator:
    """A netx RF neuron: `rf` (Lava's RF, phase spikes) or `rf_iz` (RF_IZ, Izhikevich reset)."""
    mode: str
    sin_decay: int  # int32((1 - alpha) sin(2 pi / period) * 4096) after netx's float round trip
    cos_decay: int
    threshold: int  # int(vThMant * 64)


SPIKE_EXP = STATE_EXP = 6  # netx's spike_exp and state_exp for sigma-delta neurons
RF_LIMIT = (1 << 23) - 1  # RF real and imaginary parts are clipped to 24 bits


@dataclass
class Layer:
    kind: str  # "input" (a neuron without synapse), "conv", "dense" (complex when weight_imag is set)
    name: str
    out_shape: tuple  # PyTorch order without batch: (C, H, W) or (F,)
    neuron: object  # Neuron (LIF), SigmaDelta or Resonator
    flatten_before: bool = False
    weight: Optional[torch.Tensor] = None  # conv: float64 (Cout, Cin/g, kH, kW); dense: int64 (out, in)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1
    weight_exp: int = 0  # dense only (Lava's Conv model ignores it)
    delays: Optional[torch.Tensor] = None  # dense: int64 (out, in) axonal delays (DelayDense)
    weight_imag: Optional[torch.Tensor] = None  # complex dense (RF): the imaginary synapse's weights
    weight_exp_imag: int = 0
    output_bits: int = 0  # netx's output_message_bits: > 0 when the layer sends graded spikes


def _scalar(value) -> int:
    return int(np.asarray(value).reshape(-1)[0])


def _pair(value) -> tuple:
    array = np.asarray(value).reshape(-1)
    return (int(array[0]),) * 2 if array.size == 1 else (int(array[0]), int(array[1]))


def _text(value) -> str:
    value = value.reshape(-1)[0] if hasattr(value, "reshape") else value
    return value.decode() if isinstance(value, bytes) else str(value)


# netx's default for a dense layer without a neuron group: a non-leaky integrator
DEFAULT_NEURON = {"iDecay": 0, "vDecay": 4096, "vThMant": 1 << 18 - 1}


def _neuron_type(group) -> str:
    return _text(group["neuron"]["type"][()]) if "neuron" in group and "type" in group["neuron"] else "CUBA"


def _int32(value) -> np.ndarray:
    """What a Lava process's int32 Var holds after `var[:] = value` (floats truncate toward zero)."""
    array = np.asarray(value)
    out = np.zeros(array.shape, dtype=np.int32)
    out[...] = array
    return out


def _neuron(group, out_shape, bias, is_input: bool = False):
    """The neuron netx's `get_neuron_params` builds for this layer, and its output message bits."""
    kind = _neuron_type(group)
    config = group["neuron"] if "neuron" in group else None
    bits = _scalar(config["messageBits"][()]) if config is not None and "messageBits" in config else None
    if kind == "SDNN":
        bits = 16 if bits is None else bits
        if is_input:
            return SigmaDelta("delta", int(_int32(config["vThMant"][()] * (1 << (SPIKE_EXP + STATE_EXP))))), bits
        if "sigma_output" in config:
            return SigmaDelta("sigma"), bits
        return SigmaDelta("sigma_delta", int(_int32(config["vThMant"][()] * (1 << (SPIKE_EXP + STATE_EXP)))),
                          _bias_term(bias, out_shape, SPIKE_EXP + STATE_EXP, 32)), bits
    if "RF" in kind:
        return _resonator(config, "rf" if "PHASE" in kind else "rf_iz"), 0
    if kind not in ("CUBA", "LOIHI"):
        raise ArtifactError(f"Layer {group.name} has {kind} neurons, which netx does not build (it knows CUBA, "
                            "SDNN and RF neurons); the file was not written for netx.")
    values = ({key: config[key][()] for key in ("iDecay", "vDecay", "vThMant")} if config is not None
              else DEFAULT_NEURON)
    du = _scalar(values["iDecay"]) - 1
    dv = _scalar(values["vDecay"])
    neuron = Neuron(DECAY_UNITY - (du + 1), DECAY_UNITY - dv, _scalar(values["vThMant"]) << STATE_SHIFT,
                    _bias_term(bias, out_shape, STATE_SHIFT, 16))
    return neuron, 0  # Lava's LIF sends unary spikes whatever messageBits says


def _bias_term(bias, out_shape, shift: int, bits: int) -> Optional[torch.Tensor]:
    """A layer's bias as the neuron adds it: netx's broadcast over W, H of a channel-wise bias,
    cast to the neuron's `bits`-bit Var, shifted left by `shift` in int32."""
    if bias is None:
        return None
    bias = np.asarray(bias).astype(int)
    if len(out_shape) == 3 and bias.size == out_shape[0] and bias.ndim == 1:
        bias = bias.reshape(-1, 1, 1)  # netx broadcasts a channel-wise bias over W, H
    elif len(out_shape) == 3 and bias.size == np.prod(out_shape):
        bias = bias.reshape(out_shape[::-1]).transpose(2, 1, 0)  # netx's (W, H, C) -> (C, H, W)
    mantissa = np.broadcast_to(bias, out_shape).astype(np.int32)
    if bits == 16:
        mantissa = mantissa.astype(np.int16)
    return wrap_int(torch.from_numpy(mantissa.astype(np.int64)) << shift, 32)


def _resonator(config, mode: str) -> Resonator:
    """netx's RF parameters: slayer's `neuron_params` turns sinDecay/cosDecay into a period and
    a decay, Lava's RF turns them back into 12-bit decays. The same numpy float operations in
    the same order give the same integers (a different order can land one step off)."""
    sin_decay = config["sinDecay"][()] / (1 << 12)
    cos_decay = config["cosDecay"][()] / (1 << 12)
    alpha = 1 - np.sqrt(sin_decay ** 2 + cos_decay ** 2)
    period = 1 / (np.arctan2(sin_decay, cos_decay) / 2 / np.pi)
    return resonator(mode, period, alpha, config["vThMant"][()])


def resonator(mode: str, period, alpha, vth) -> Resonator:
    """Lava's RF / RF_IZ process parameters (state_exp 6, decay_bits 12) as its fixed-point
    model holds them: decays int32((1 - alpha) sin|cos(2 pi / period) * 4096), vth int(vth * 64)."""
    sin_int = np.int32((1 - alpha) * np.sin(np.pi * 2 * 1 / period) * (1 << 12))
    cos_int = np.int32((1 - alpha) * np.cos(np.pi * 2 * 1 / period) * (1 << 12))
    threshold = int(np.asarray(vth).reshape(-1)[0] * (1 << STATE_SHIFT))
    return Resonator(mode, _scalar(sin_int), _scalar(cos_int), threshold)


def read_network(path, input_shape=None, num_layers=None, skip_layers: int = 0):
    """The layers `netx.hdf5.Network(path, input_shape, num_layers, skip_layers)` builds, one
    per entry of its `layers` (so netx layer indices, e.g. a tap's, index this list).
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
            kind = _text(group["type"][()])
            name = f"{path.name}:layer/{i}"
            if kind == "input":
                if "neuron" in group:
                    out = tuple(int(v) for v in group["shape"][()])
                    if i >= skip_layers:
                        neuron, bits = _neuron(group, out, None, is_input=True)
                        layers.append(Layer("input", name, out, neuron, output_bits=bits))
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
    weight = group["weight"][()].astype(int)
    weight = weight.reshape(weight.shape[:4])  # (Cout, Cin/groups, kH, kW), PyTorch order
    out = tuple(int(v) for v in group["shape"][()])
    neuron, bits = _neuron(group, out, group["bias"][()] if "bias" in group else None)
    layer = Layer("conv", name, out, neuron, weight=torch.from_numpy(weight.astype(np.int32).astype(np.float64)),
                  stride=_pair(group["stride"][()]), padding=_pair(group["padding"][()]),
                  dilation=_pair(group["dilation"][()]), groups=_scalar(group["groups"][()]), output_bits=bits)
    probe = F.conv2d(torch.zeros(1, *in_shape, dtype=torch.float64), layer.weight, stride=layer.stride,
                     padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
    if tuple(probe.shape[1:]) != out:
        raise ArtifactError(f"{name}: the conv of a {in_shape} input gives {tuple(probe.shape[1:])}, "
                            f"but the layer's shape is {out}; the file is inconsistent.")
    return layer


def _dense_weight(weight: np.ndarray, out_features: int):
    """A netx dense weight as Lava's Dense process uses it: netx's `optimize_weight_bits`, then
    the process model's 8-bit clip and truncation to num_weight_bits. Returns (int64, exponent)."""
    from lava.utils.weightutils import (
        clip_weights,
        determine_sign_mode,
        truncate_weights,
    )

    weight = np.asarray(weight).astype(int)
    if weight.ndim == 1:
        weight = weight.reshape(out_features, -1)
    weight, num_weight_bits, weight_exp, _ = _netx_utils().optimize_weight_bits(weight)
    weight = weight.astype(np.int32)  # the process's weights Var
    sign_mode = determine_sign_mode(weight)
    weight = truncate_weights(clip_weights(weight, sign_mode, num_bits=8), sign_mode, num_weight_bits)
    return torch.from_numpy(weight.astype(np.int64)), int(weight_exp)


def _dense(group, name) -> Layer:
    out = (int(np.prod(group["shape"][()])),)
    neuron, bits = _neuron(group, out, group["bias"][()] if "bias" in group else None)
    if "weight/imag" in group:
        # a complex dense layer (netx's ComplexDense, RF neurons): real and imaginary synapses; no delay, no bias
        real, real_exp = _dense_weight(group["weight/real"][()], out[0])
        imag, imag_exp = _dense_weight(group["weight/imag"][()], out[0])
        return Layer("dense", name, out, neuron, weight=real, weight_exp=real_exp, weight_imag=imag,
                     weight_exp_imag=imag_exp, output_bits=bits)
    weight, weight_exp = _dense_weight(group["weight"][()], out[0])
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
    return Layer("dense", name, out, neuron, weight=weight, weight_exp=weight_exp, delays=delays, output_bits=bits)


def _shift(x: torch.Tensor, exponent: int) -> torch.Tensor:
    """Lava's Dense: left shift for a positive exponent, arithmetic right shift otherwise."""
    return x << exponent if exponent > 0 else x >> -exponent


def _dense_currents(layer: Layer, spikes: torch.Tensor, graded: bool, imaginary: bool = False) -> torch.Tensor:
    """(N, T, in) -> (N, T, out) synaptic input each step, before the one-step hop.
    imaginary: the imaginary synapse of a complex (RF) layer."""
    s = (spikes if graded else (spikes != 0)).to(torch.float64)
    weight, exponent = (layer.weight_imag, layer.weight_exp_imag) if imaginary else (layer.weight, layer.weight_exp)

    def product(weight):  # float64 BLAS on integers: exact below 2**53, unlike slow int64 matmul
        return (s @ weight.T.to(torch.float64)).to(torch.int64)

    if layer.delays is None or imaginary:  # the int32 accumulator wraps before the shift, as in Lava
        return wrap_int(_shift(wrap_int(product(weight), 32), exponent), 32)
    # DelayDense: each delay's share is shifted on its own, then arrives `delay` steps later
    total = torch.zeros(s.shape[:-1] + (weight.shape[0],), dtype=torch.int64)
    steps = s.shape[1]
    for d in torch.unique(layer.delays).tolist():
        part = _shift(product(torch.where(layer.delays == d, weight, 0)), exponent)
        if d < steps:
            total[:, d:] += part[:, :steps - d]
    return wrap_int(total, 32)


def _conv_currents(layer: Layer, spikes: torch.Tensor, graded: bool) -> torch.Tensor:
    """(N, T, C, H, W) -> (N, T, C', H', W'): Lava's conv (scipy's convolve2d summed in float64,
    so exact on integers below 2**53, truncated to int32), wrapped to 24 bits. The float conv is
    exact while every partial sum stays below the mantissa: float32 when the largest possible sum
    (sum of |weights| per output x largest input) is below 2**24, else float64."""
    n, t = spikes.shape[:2]
    s = spikes if graded else (spikes != 0)
    largest = float(layer.weight.abs().sum((1, 2, 3)).max()) * (float(s.abs().max()) if graded and s.numel() else 1.0)
    dtype = torch.float32 if largest < 2 ** 24 else torch.float64
    out = F.conv2d(s.reshape(n * t, *spikes.shape[2:]).to(dtype), layer.weight.to(dtype), stride=layer.stride,
                   padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
    if graded or largest >= 2 ** 23:  # truncation as `.astype(int32)`, then Lava's 24-bit clamp
        out = wrap_int(out.to(torch.int64), 24)
    return out.reshape(n, t, *out.shape[1:])  # binary input: already exact integers, kept in float


def _lif(neuron: Neuron, currents: torch.Tensor, lag: int = 1) -> torch.Tensor:
    """(N, T, ...) integer synaptic input (int64 or integer-valued float) computed each step
    -> (N, T, ...) bool spikes. The synapse sends at step t what it computed at t - 1 (its
    buffer starts at 0): the neuron at step t integrates currents[:, t - lag]. lag 0: the
    input reaches the neuron directly (an input layer fed at its a_in)."""
    used = currents[:, :currents.shape[1] - lag]
    peak = used.abs().amax(dim=[d for d in range(used.dim()) if d != 1]) if used.numel() else None
    if peak is None or int(peak.max()) < 1 << 24:
        wrap_current = peak is not None and int(peak.sum()) << STATE_SHIFT >= UV_LIMIT
        return _lif_float(neuron, currents, wrap_current, lag)
    return _lif_int(neuron, currents, lag)


def _lif_int(neuron: Neuron, currents: torch.Tensor, lag: int = 1) -> torch.Tensor:
    """Lava's LIF step by step in int64, every int32 wrap-around of numpy made explicit.
    currents[:, t - lag] arrives at step t (see `_lif`)."""
    currents = currents.to(torch.int64)
    u = torch.zeros(currents.shape[:1] + currents.shape[2:], dtype=torch.int64)
    v = torch.zeros_like(u)
    spikes = torch.empty(currents.shape, dtype=torch.bool)
    for t in range(spikes.shape[1]):
        arriving = currents[:, t - lag] if t >= lag else torch.zeros_like(u)
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


def _lif_float(neuron: Neuron, currents: torch.Tensor, wrap_current: bool, lag: int = 1) -> torch.Tensor:
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
    spikes = torch.empty(currents.shape, dtype=torch.bool)
    for t in range(spikes.shape[1]):
        u.mul_(current_factor).trunc_()
        if t >= lag:
            u.add_(currents[:, t - lag], alpha=1 << STATE_SHIFT)
        if wrap_current:
            u = torch.where(u > UV_LIMIT, u - 2 * UV_LIMIT, torch.where(u <= -UV_LIMIT, u + 2 * UV_LIMIT, u))
        v.mul_(voltage_factor).trunc_().add_(u)
        if bias is not None:
            v.add_(bias)
        v.clamp_(-UV_LIMIT + 1, UV_LIMIT - 1)
        fired = torch.gt(v, neuron.threshold, out=spikes[:, t])
        v.masked_fill_(fired, 0)
    return spikes


def _arrivals(currents: torch.Tensor, lag: int) -> torch.Tensor:
    """What reaches the neuron at each step: currents delayed by `lag` steps (zeros first), int64."""
    currents = currents.to(torch.int64)
    if not lag:
        return currents
    return torch.cat([torch.zeros_like(currents[:, :lag]), currents[:, :currents.shape[1] - lag]], dim=1)


def _sigma_delta(neuron: SigmaDelta, currents: torch.Tensor, lag: int = 1) -> torch.Tensor:
    """(N, T, ...) synaptic input -> (N, T, ...) int64 graded spikes, Lava's fixed-point Delta,
    SigmaDelta or Sigma process step for step (int32 state, arithmetic shifts)."""
    arriving = _arrivals(currents, lag)
    if neuron.mode == "delta":  # a_in << (spike_exp + state_exp) is the activation itself
        activation = wrap_int(arriving << (SPIKE_EXP + STATE_EXP), 32)
    else:
        sigma = wrap_int(torch.cumsum(arriving, dim=1), 32)  # sigma += a_in, wrapping as the int32 Var
        if neuron.mode == "sigma":
            return sigma
        if neuron.bias is not None:
            sigma = wrap_int(sigma + neuron.bias, 32)
        activation = sigma.clamp(min=0)  # ReLU
    out = torch.empty_like(activation)
    previous = torch.zeros_like(activation[:, 0])
    residue = torch.zeros_like(previous)
    for t in range(activation.shape[1]):
        delta = wrap_int(activation[:, t] - previous + residue, 32)
        sent = torch.where(delta.abs() >= neuron.threshold, delta, 0)
        residue = delta - sent
        previous = activation[:, t]
        out[:, t] = sent >> STATE_EXP
    return out


def _resonate(neuron: Resonator, real_currents: torch.Tensor, imag_currents: torch.Tensor, lag: int = 1) -> torch.Tensor:
    """Lava's fixed-point RF / RF_IZ step for step: (N, T, F) real and imaginary synaptic input
    (`lag` steps late: one as the Dense synapses send it) -> (N, T, F) bool spikes."""
    real_in = wrap_int(_arrivals(real_currents, lag) << STATE_SHIFT, 32)
    imag_in = wrap_int(_arrivals(imag_currents, lag) << STATE_SHIFT, 32)
    real = torch.zeros_like(real_in[:, 0])
    imag = torch.zeros_like(real)
    spikes = torch.empty(real_in.shape, dtype=torch.bool)

    def scale(x):  # sign(x) * (|x| >> 12)
        return torch.div(x, DECAY_UNITY, rounding_mode="trunc")

    for t in range(real_in.shape[1]):
        new_real = scale(neuron.cos_decay * real) - scale(neuron.sin_decay * imag) + real_in[:, t]
        new_imag = scale(neuron.sin_decay * real) + scale(neuron.cos_decay * imag) + imag_in[:, t]
        new_real = new_real.clamp(-RF_LIMIT, RF_LIMIT)
        new_imag = new_imag.clamp(-RF_LIMIT, RF_LIMIT)
        if neuron.mode == "rf":
            fired = (new_real >= neuron.threshold) & (new_imag >= 0) & (imag < 0)
            real, imag = new_real, new_imag
        else:
            fired = new_imag >= neuron.threshold
            real = new_real.masked_fill(fired, 0)
            imag = torch.where(fired, neuron.threshold - 1, new_imag)
        spikes[:, t] = fired
    return spikes


def run_layer(layer: Layer, inputs: torch.Tensor, graded: bool) -> torch.Tensor:
    """One netx layer: (N, T, ...) messages in (bool spikes, or int64 payloads when `graded`)
    -> (N, T, ...) messages out (bool, or int64 for a layer with output_bits). An `input` layer
    takes `inputs` at its neuron directly, the same step (as hybridc's Lava runner feeds it)."""
    if layer.kind == "input":
        currents, lag = inputs.to(torch.int64), 0
    else:
        if layer.flatten_before or (layer.kind == "dense" and inputs.dim() > 3):
            inputs = inputs.reshape(*inputs.shape[:2], -1)
        currents, lag = (_conv_currents if layer.kind == "conv" else _dense_currents)(layer, inputs, graded), 1
    if isinstance(layer.neuron, SigmaDelta):
        return _sigma_delta(layer.neuron, currents, lag)
    if isinstance(layer.neuron, Resonator):  # an input layer (ComplexInput) feeds both parts the same input
        imaginary = currents if layer.kind == "input" else _dense_currents(layer, inputs, graded, imaginary=True)
        return _resonate(layer.neuron, currents, imaginary, lag)
    return _lif(layer.neuron, currents, lag)


def emulate(path, x, input_shape=None, input_message_bits: int = 0, num_layers=None, skip_layers: int = 0,
            network=None, on_layer=None, taps=None, feed_input_neuron: bool = False):
    """Lava's output of the netx network at `path` for input `x`, step for step as a sink
    RingBuffer records it (no shift): x is (N, C, H, W, T) or (N, F, T) in PyTorch layout,
    spikes or (with input_message_bits > 0) integer payloads. Returns (N, ..., T) int64.
    network: the result of `read_network` to reuse across batches. on_layer(layer, inputs,
    outputs) sees each layer's input and output messages, (N, T, ...), e.g. to count activity.
    taps: netx layer indices (None: the last) whose outputs to return, as a list.
    feed_input_neuron: x goes to the first layer's neuron when that is an input layer (what
    hybridc's Lava runner connects); netx itself leaves that neuron's input open."""
    x = torch.as_tensor(x)
    _, layers = network or read_network(path, input_shape or tuple(x.shape[1:-1]),
                                                  num_layers, skip_layers)
    wanted = [len(layers) - 1 if tap is None else tap for tap in (taps if taps is not None else [None])]
    graded = input_message_bits > 0 or (feed_input_neuron and layers[0].kind == "input")
    # time second: (N, T, ...); the source RingBuffer holds int32 (floats truncated)
    tensor = torch.movedim(x, -1, 1)
    tensor = torch.trunc(tensor.to(torch.float64)).to(torch.int64) if graded else tensor != 0
    kept = {}
    for index, layer in enumerate(layers[:max(wanted) + 1]):
        if layer.kind == "input" and not feed_input_neuron:  # netx leaves this neuron's input open
            inputs = torch.zeros((tensor.shape[0], tensor.shape[1], *layer.out_shape), dtype=torch.int64)
        else:
            inputs = tensor
        tensor = run_layer(layer, inputs, graded)
        if on_layer is not None:
            on_layer(layer, inputs, tensor)
        if index in wanted:
            kept[index] = torch.movedim(tensor, 1, -1).to(torch.int64)
        graded = layer.output_bits > 0
    outputs = [kept[index] for index in wanted]
    return outputs if taps is not None else outputs[0]


def _batches(count: int, per_sample_elements: int, budget: int = 1 << 25) -> int:
    """Samples per batch so the largest intermediate stays near `budget` int64 values (256 MB)."""
    return max(1, min(count, budget // max(per_sample_elements, 1)))


def supports(stage) -> bool:
    """Whether the emulator runs this loihi stage: every chain stage hybridc writes (taps, an
    Encoder's graded input, CUBA, sigma-delta and resonate-and-fire layers); a branching stage
    as `spiking_graph` says."""
    if getattr(stage, "segments", None):
        from .spiking_graph import supports as graph_supports

        return graph_supports(stage)
    return stage.target == "loihi"


def refuse_unsupported(stage) -> None:
    """ArtifactError for a stage the emulator cannot run (none of the loihi stages hybridc writes)."""
    if not supports(stage):
        raise ArtifactError(f"Stage `{stage.name}` is a {stage.target} stage; the emulator runs Loihi (netx) stages "
                            "only. Run this build with --backend lava.")


def stage_input(stage, x) -> torch.Tensor:
    """The stage input as Lava's source RingBuffer holds it, in PyTorch layout: spikes, an
    Encoder's graded spikes, or a sigma-delta input's integers (value x scale on its grid)."""
    from .lava import check_input, from_netx

    data = check_input(stage, x)
    return from_netx(np.asarray(data, dtype=np.float64)).double() if stage.inputs[0].graded else x


def read_stage_network(stage, build_dir: Path):
    """`read_network` of a stage's artifact; a damaged file is an ArtifactError naming it."""
    from ..build_dir.untrusted import parsing

    path = Path(build_dir) / stage.artifact
    with parsing(path, "a netx HDF5 network the emulator can run", stage.name):
        return read_network(path, stage.inputs[0].pytorch_shape()[:-1])


def run_stage(stage, build_dir: Path, x: torch.Tensor, progress=None):
    """The `emulate` backend of a loihi stage: the same inputs and outputs as Lava's runner
    (`runtime/lava.py`: one tensor, or a tuple in the order of stage.outputs for a stage with
    taps; graded outputs as real values), from the stage's netx HDF5, batched, bounded memory."""
    from .lava import _from_wire, stage_taps

    if getattr(stage, "segments", None):  # a branching stage: netx chains joined by extra synapses
        from .spiking_graph import run_stage as run_graph

        return run_graph(stage, build_dir, x, progress)
    if isinstance(x, dict):
        (x,) = x.values()
    refuse_unsupported(stage)
    x = stage_input(stage, x)
    steps = x.shape[-1]
    taps = stage_taps(stage)
    delay = max(d or 0 for _, d in taps)
    network = read_stage_network(stage, build_dir)
    widest = max(int(np.prod(layer.out_shape)) for layer in network[1])
    widest = max(widest, int(np.prod(x.shape[1:-1])))
    batch = _batches(x.shape[0], widest * (steps + delay) * 4)
    outputs = [[] for _ in taps]
    for start in range(0, x.shape[0], batch):
        chunk = x[start:start + batch]
        if delay:  # Lava's output lags by `delay` steps: run that much longer on zero input
            chunk = torch.cat([chunk, torch.zeros(*chunk.shape[:-1], delay, dtype=chunk.dtype)], dim=-1)
        results = emulate(None, chunk, network=network, input_message_bits=stage.input_bits or 0,
                          taps=[layer for layer, _ in taps], feed_input_neuron=True)
        for k, (out, (_, d)) in enumerate(zip(results, taps)):
            outputs[k].append(out[..., (d or 0):(d or 0) + steps].float())
        if progress:
            for _ in range(chunk.shape[0]):
                progress()
    results = tuple(_from_wire(spec, torch.cat(parts).reshape(x.shape[0], *spec.pytorch_shape()))
                    for spec, parts in zip(stage.outputs, outputs))
    return results[0] if len(results) == 1 else results


__all__ = ["emulate", "read_network", "refuse_unsupported", "run_layer", "run_stage", "stage_input", "supports"]
