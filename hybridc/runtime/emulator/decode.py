"""A netx file as the emulator's layers: what `netx.hdf5.Network` builds, read through
`hybridc.netx` (which knows the fields) into the values Lava's process models hold.

netx (`lava/lib/dl/netx/hdf5.py`) builds layers in order; an `input` without a neuron is
only a shape, with a neuron it is a layer whose `a_in` is fed the input directly (as
hybridc's Lava runner and lava-dl's PilotNet SDNN test connect it; netx itself leaves `inp`
open); `flatten` reorders (W, H, C) as (C, H, W), i.e. PyTorch's flatten; `dense` weights go
through netx's `optimize_weight_bits`, then Lava's Dense model clips them to 8 bits and
truncates them to `num_weight_bits`; a missing `neuron/` group is netx's non-leaky default;
`delay` on a dense layer makes it a `DelayDense`; a `dense_rec` layer (slayer's Recurrent) is
netx's RecurrentDense: the input and feedback weights optimised together (one exponent, one
bit width; each Dense process then clips and truncates its own part). The RF decays take netx's float round trip
(sin/cos -> period, decay -> sin/cos), recomputed here with the same numpy operations.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ...build_dir.untrusted import parsing
from ...errors import ArtifactError
from ...netx.fields import LayerGroup, layer_groups, open_file, scalar
from ...netx.layout import flip_spatial
from ...netx.processes import optimize_weight_bits
from .neurons import DECAY_UNITY, SPIKE_EXP, STATE_EXP, STATE_SHIFT, Neuron, SigmaDelta, resonator, wrap_int

__all__ = ["Layer", "conv_layer", "dense_layer", "on_device", "read_network", "read_stage_network"]


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
    weight_rec: Optional[torch.Tensor] = None  # dense_rec: int64 (out, out) feedback weights, same weight_exp


def _int32(value) -> np.ndarray:
    """What a Lava process's int32 Var holds after `var[:] = value` (floats truncate toward zero)."""
    array = np.asarray(value)
    out = np.zeros(array.shape, dtype=np.int32)
    out[...] = array
    return out


def _neuron(group: LayerGroup, out_shape, bias, is_input: bool = False):
    """The neuron netx's `get_neuron_params` builds for this layer, and its output message bits."""
    kind = group.neuron_type
    config = group.neuron
    bits = config.message_bits if config is not None else None
    if kind == "SDNN":
        bits = 16 if bits is None else bits
        if is_input:
            return SigmaDelta("delta", int(_int32(config["vThMant"] * (1 << (SPIKE_EXP + STATE_EXP))))), bits
        if "sigma_output" in config:
            return SigmaDelta("sigma"), bits
        return SigmaDelta("sigma_delta", int(_int32(config["vThMant"] * (1 << (SPIKE_EXP + STATE_EXP)))),
                          _bias_term(bias, out_shape, SPIKE_EXP + STATE_EXP, 32)), bits
    if "RF" in kind:
        return _resonator(config, "rf" if "PHASE" in kind else "rf_iz"), 0
    if kind not in ("CUBA", "LOIHI"):
        raise ArtifactError(f"Layer {group.name} has {kind} neurons, which netx does not build (it knows CUBA, "
                            "SDNN and RF neurons); the file was not written for netx.")
    values = group.lif_parameters()
    du = scalar(values["iDecay"]) - 1
    dv = scalar(values["vDecay"])
    neuron = Neuron(DECAY_UNITY - (du + 1), DECAY_UNITY - dv, scalar(values["vThMant"]) << STATE_SHIFT,
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
        bias = flip_spatial(bias.reshape(out_shape[::-1]))  # netx's (W, H, C) -> (C, H, W)
    mantissa = np.broadcast_to(bias, out_shape).astype(np.int32)
    if bits == 16:
        mantissa = mantissa.astype(np.int16)
    return wrap_int(torch.from_numpy(mantissa.astype(np.int64)) << shift, 32)


def _resonator(config, mode: str):
    """netx's RF parameters: slayer's `neuron_params` turns sinDecay/cosDecay into a period and
    a decay, Lava's RF turns them back into 12-bit decays. The same numpy float operations in
    the same order give the same integers (a different order can land one step off)."""
    sin_decay = config["sinDecay"] / (1 << 12)
    cos_decay = config["cosDecay"] / (1 << 12)
    alpha = 1 - np.sqrt(sin_decay ** 2 + cos_decay ** 2)
    period = 1 / (np.arctan2(sin_decay, cos_decay) / 2 / np.pi)
    return resonator(mode, period, alpha, config["vThMant"])


def read_network(path, input_shape=None, num_layers=None, skip_layers: int = 0):
    """The layers `netx.hdf5.Network(path, input_shape, num_layers, skip_layers)` builds, one
    per entry of its `layers` (so netx layer indices, e.g. a tap's, index this list).
    input_shape: PyTorch order (C, H, W) or (F,). Returns (input shape, layers)."""
    path = Path(path)
    h5 = open_file(path, "netx HDF5 file")
    layers, flatten_next = [], False
    shape = tuple(input_shape) if input_shape is not None else None
    first_shape = shape
    with h5:
        for group in layer_groups(h5, num_layers):
            i = group.index
            kind = group.kind
            name = f"{path.name}:layer/{i}"
            if kind == "input":
                if group.has_neuron:
                    out = group.shape
                    if i >= skip_layers:
                        neuron, bits = _neuron(group, out, None, is_input=True)
                        layers.append(Layer("input", name, out, neuron, output_bits=bits))
                    shape = out
                elif "shape" in group:
                    shape = group.shape
                if first_shape is None or i < skip_layers:
                    first_shape = shape
            elif kind == "flatten":
                flatten_next = True
            elif kind == "conv":
                layer = conv_layer(group, name, shape)
                shape = layer.out_shape
                if i >= skip_layers:
                    layers.append(layer)
                else:
                    first_shape = shape
            elif kind in ("dense", "dense_rec"):
                layer = dense_layer(group, name)
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


def read_stage_network(stage, build_dir: Path):
    """`read_network` of a stage's artifact; a damaged file is an ArtifactError naming it."""
    path = Path(build_dir) / stage.artifact
    with parsing(path, "a netx HDF5 network the emulator can run", stage.name):
        return read_network(path, stage.inputs[0].pytorch_shape()[:-1])


def conv_layer(group: LayerGroup, name: str, in_shape) -> Layer:
    """A conv layer group (or a conv extra synapse) fed an `in_shape` (C, H, W) input."""
    if in_shape is None:
        raise ArtifactError(f"{name}: the input shape could not be inferred; pass input_shape (C, H, W).")
    weight = group.weight.astype(int)
    weight = weight.reshape(weight.shape[:4])  # (Cout, Cin/groups, kH, kW), PyTorch order
    out = group.shape
    neuron, bits = _neuron(group, out, group.bias)
    layer = Layer("conv", name, out, neuron, weight=torch.from_numpy(weight.astype(np.int32).astype(np.float64)),
                  stride=group.stride, padding=group.padding, dilation=group.dilation, groups=group.groups,
                  output_bits=bits)
    probe = F.conv2d(torch.zeros(1, *in_shape, dtype=torch.float64), layer.weight, stride=layer.stride,
                     padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
    if tuple(probe.shape[1:]) != out:
        raise ArtifactError(f"{name}: the conv of a {in_shape} input gives {tuple(probe.shape[1:])}, "
                            f"but the layer's shape is {out}; the file is inconsistent.")
    return layer


def _dense_weight(weight: np.ndarray, out_features: int, feedback=None):
    """A netx dense weight as Lava's Dense process uses it: netx's `optimize_weight_bits`, then
    the process model's 8-bit clip and truncation to num_weight_bits. Returns (int64, exponent).
    feedback: a dense_rec layer's `weight_rec`; netx optimises [weight | weight_rec] as one
    matrix and gives both Dense processes its bit width and exponent; each then clips and
    truncates its own weights (with its own sign mode). Returns (int64, exponent, int64 feedback)."""
    from lava.utils.weightutils import (
        clip_weights,
        determine_sign_mode,
        truncate_weights,
    )

    def as_process(part):  # the process's weights Var, clipped and truncated as its model does
        part = part.astype(np.int32)
        sign_mode = determine_sign_mode(part)
        part = truncate_weights(clip_weights(part, sign_mode, num_bits=8), sign_mode, num_weight_bits)
        return torch.from_numpy(part.astype(np.int64))

    weight = np.asarray(weight).astype(int)
    if weight.ndim == 1:
        weight = weight.reshape(out_features, -1)
    if feedback is None:
        weight, num_weight_bits, weight_exp, _ = optimize_weight_bits(weight)
        return as_process(weight), int(weight_exp)
    feedback = np.asarray(feedback).astype(int).reshape(out_features, -1)
    both, num_weight_bits, weight_exp, _ = optimize_weight_bits(np.hstack((weight, feedback)))
    return as_process(both[:, :weight.shape[1]]), int(weight_exp), as_process(both[:, weight.shape[1]:])


def dense_layer(group: LayerGroup, name: str) -> Layer:
    """A dense layer group (or a dense extra synapse): real, complex (RF) or with delays."""
    out = (group.size,)
    neuron, bits = _neuron(group, out, group.bias)
    if group.complex:
        # a complex dense layer (netx's ComplexDense, RF neurons): real and imaginary synapses; no delay, no bias
        real, real_exp = _dense_weight(group["weight/real"], out[0])
        imag, imag_exp = _dense_weight(group["weight/imag"], out[0])
        return Layer("dense", name, out, neuron, weight=real, weight_exp=real_exp, weight_imag=imag,
                     weight_exp_imag=imag_exp, output_bits=bits)
    if group.recurrent:  # netx's RecurrentDense (slayer's Recurrent); hybridc writes it without delays
        if group.delay is not None:
            raise ArtifactError(f"{name}: a dense_rec layer with delays; netx would delay its feedback synapse by "
                                "the input's delays, which hybridc neither writes nor emulates.")
        weight, weight_exp, feedback = _dense_weight(group.weight, out[0], group.weight_rec)
        return Layer("dense", name, out, neuron, weight=weight, weight_exp=weight_exp, output_bits=bits,
                     weight_rec=feedback)
    weight, weight_exp = _dense_weight(group.weight, out[0])
    delays = None
    if group.delay is not None:
        delay = np.clip(np.asarray(group.delay), 0, 62).astype(int)
        if delay.ndim == 0 or delay.size == 1:
            delay = np.full(weight.shape, int(delay.reshape(-1)[0]))
        elif delay.ndim == 1 and delay.size == weight.shape[0]:
            delay = np.repeat(delay.reshape(-1, 1), weight.shape[1], axis=1)
        elif delay.ndim == 1 and delay.size == weight.shape[1]:
            delay = np.repeat(delay.reshape(1, -1), weight.shape[0], axis=0)
        delays = torch.from_numpy(delay.astype(np.int64))
    return Layer("dense", name, out, neuron, weight=weight, weight_exp=weight_exp, delays=delays, output_bits=bits)


def on_device(layer: Layer, device: str) -> Layer:
    """The layer with its tensors (weights, delays, neuron bias) on `device` ("cpu" or "cuda")."""
    def moved(value):
        return value.to(device) if isinstance(value, torch.Tensor) else value

    neuron = layer.neuron
    if getattr(neuron, "bias", None) is not None:
        neuron = dataclasses.replace(neuron, bias=moved(neuron.bias))
    fields = {field.name: moved(getattr(layer, field.name)) for field in dataclasses.fields(layer)}
    return dataclasses.replace(layer, **{**fields, "neuron": neuron})
