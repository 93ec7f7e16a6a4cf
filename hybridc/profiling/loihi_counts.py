"""Counts for the Loihi stage, read from the netx HDF5 file itself (hybridc.mapping.layers:
per layer neurons, synapses (exact fan-in), cores); and, given spikes from a run, synaptic
operations.

They follow the manifest's counts (targets/slayer_blocks.py): an input layer with a neuron (a
sigma-delta Delta encoder, an RF input) has neurons and no synapse; a complex-dense
(resonate-and-fire) layer has two synapses per connection, the real and the imaginary; a
recurrent dense layer (netx's `dense_rec`, slayer's Recurrent) adds out x out feedback synapses,
driven by its own spikes."""

from math import prod

import torch
import torch.nn.functional as F

from ..mapping.layers import LoihiLayer, read_layers, read_synapses
from ..targets.slayer_blocks import conv_synapses

__all__ = ["LoihiLayer", "conv_synapses", "fan_out", "read_layers", "read_synapses", "synaptic_ops"]


def fan_out(layer: LoihiLayer, in_shape) -> torch.Tensor:
    """For every input neuron, how many synapses its spike drives (a map shaped like the input)."""
    if layer.kind == "input":  # a neuron fed directly: no synapse
        return torch.zeros(tuple(in_shape))
    if layer.kind == "dense":  # every output: an extra synapse has no neurons of its own but its targets'
        return torch.full(tuple(in_shape), float(prod(layer.shape) * layer.copies))
    c_in = in_shape[0]
    ones = torch.ones(1, layer.shape[0], *layer.shape[1:])
    kernel = torch.ones(layer.shape[0], c_in // layer.groups, *layer.kernel)
    height, width = in_shape[1], in_shape[2]
    out_h, out_w = layer.shape[1], layer.shape[2]
    span = [layer.dilation[i] * (layer.kernel[i] - 1) + 1 for i in (0, 1)]
    extra = (height + 2 * layer.padding[0] - span[0] - (out_h - 1) * layer.stride[0],
             width + 2 * layer.padding[1] - span[1] - (out_w - 1) * layer.stride[1])
    return F.conv_transpose2d(ones, kernel, stride=layer.stride, padding=layer.padding, groups=layer.groups,
                              dilation=layer.dilation, output_padding=extra)[0]


def synaptic_ops(layer: LoihiLayer, in_shape, input_spikes: torch.Tensor, output_spikes: float = 0.0) -> float:
    """Synaptic operations caused by `input_spikes` (C, H, W[, T]) or (F[, T]) summed over time,
    plus, for a recurrent layer, those of its `output_spikes` (their total) on its feedback
    synapses (each drives one synapse per neuron of the layer)."""
    counts = input_spikes.sum(-1) if input_spikes.dim() == len(in_shape) + 1 else input_spikes
    feedback = float(output_spikes) * prod(layer.shape) if layer.recurrent else 0.0
    return float((counts * fan_out(layer, in_shape)).sum()) + feedback
