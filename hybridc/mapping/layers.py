"""The layers of a Loihi stage as its netx HDF5 file holds them: per layer neurons, synapses
(exact fan-in), cores under a per-core neuron and synapse budget, and the geometry the mapper
and the profiler need. The file is decoded by hybridc.netx; this only counts.

They follow the manifest's counts (targets/slayer_blocks.py): an input layer with a neuron (a
sigma-delta Delta encoder, an RF input) has neurons and no synapse; a complex-dense
(resonate-and-fire) layer has two synapses per connection, the real and the imaginary; a
recurrent dense layer (netx's `dense_rec`, slayer's Recurrent) adds out x out feedback synapses."""

from dataclasses import dataclass
from math import ceil, prod

import numpy as np

from ..netx.fields import layer_groups, open_file, synapse_group
from ..netx.layout import pytorch_shape
from ..targets.slayer_blocks import conv_synapses


@dataclass
class LoihiLayer:
    index: int
    kind: str  # conv | dense | input (a neuron per value, no synapse)
    shape: tuple  # output (C, H, W) or (F,)
    neurons: int
    synapses: int
    cores: int
    kernel: tuple = ()
    stride: tuple = ()
    padding: tuple = ()
    groups: int = 1
    dilation: tuple = (1, 1)
    copies: int = 1  # synapses per connection: 2 for a complex dense layer (real and imaginary weights)
    recurrent: int = 0  # feedback synapses (out x out) of a dense_rec layer, included in `synapses`
    in_shape: tuple = ()  # the input it reads: (C, H, W) or (F,)
    max_delay: int = 0  # longest axonal delay on its synapses (a DelayDense), in steps


def read_layers(path, input_shape, neurons_per_core: int, synapses_per_core: int,
                input_neurons: bool = True) -> list:
    """input_shape: PyTorch (C, H, W) or (F,) without time. input_neurons: list an input
    layer that has a neuron (netx runs it, the emulator too) as a layer of kind `input`."""
    layers, shape = [], tuple(input_shape)
    with open_file(path) as h5:
        for layer in layer_groups(h5):
            kind = layer.kind
            if kind == "flatten":
                shape = (prod(shape),)
                continue
            if kind == "input":
                if input_neurons and layer.has_neuron:
                    shape = layer.shape
                    neurons = prod(shape)
                    layers.append(LoihiLayer(layer.index, "input", shape, neurons, 0,
                                             max(ceil(neurons / neurons_per_core), 1), in_shape=shape))
                continue
            entry = _layer(layer, layer.index, kind, shape, neurons_per_core, synapses_per_core)
            layers.append(entry)
            shape = entry.shape
    return layers


def read_synapses(path, links, neurons_per_core: int, synapses_per_core: int) -> list:
    """The extra synapses of a branching stage (`Stage.links`) in `path`, one LoihiLayer each
    with its exact synapse count (conv taps inside its input, or the dense matrix it holds)
    and no neurons: they end on the neurons of their target layer, on its cores."""
    layers = []
    with open_file(path) as h5:
        for link in links:
            group = synapse_group(h5, link["synapse"])
            kind = group.kind
            shape = pytorch_shape(link["input_shape"])
            if kind == "dense" or link["flatten"]:
                shape = (prod(shape),)
            entry = _layer(group, int(link["synapse"]), kind, shape, neurons_per_core, synapses_per_core)
            entry.neurons = entry.cores = 0
            layers.append(entry)
    return layers


def _layer(layer, index: int, kind: str, shape, neurons_per_core: int, synapses_per_core: int) -> LoihiLayer:
    """One netx layer group (a LayerGroup, conv or dense) fed a `shape` input: its neurons,
    synapses, cores."""
    out = layer.shape
    neurons = prod(out)
    if kind == "conv":
        kernel = layer.weight.shape[-2:]
        stride, padding = layer.stride, layer.padding
        dilation = layer.dilation if "dilation" in layer else (1, 1)
        groups = layer.groups
        synapses = conv_synapses(shape, out, kernel, stride, padding, groups, dilation)
        entry = LoihiLayer(index, kind, out, neurons, synapses, 0, tuple(kernel), stride, padding, groups,
                           dilation)
    else:
        copies = 2 if layer.complex else 1
        recurrent = neurons * neurons if layer.recurrent else 0
        synapses = prod(shape) * neurons * copies + recurrent
        entry = LoihiLayer(index, "dense", out, neurons, synapses, 0, copies=copies, recurrent=recurrent)
        if layer.delay is not None:
            entry.max_delay = int(np.max(np.asarray(layer.delay), initial=0))
    entry.in_shape = tuple(shape)
    entry.cores = max(ceil(neurons / neurons_per_core), ceil(synapses / synapses_per_core), 1)
    return entry
