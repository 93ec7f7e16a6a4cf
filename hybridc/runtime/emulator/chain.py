"""The batched chain runner: a netx network's layers one after the other on a batch of
samples, each layer one `run_layer` call (its synapse, then its neurons), reusable on its
own. A stage's outputs may tap any layer (`taps`). Memory stays bounded: a stage runs in
batches sized to the widest layer (`batch_size`)."""

from pathlib import Path

import numpy as np
import torch

from ...netx.layout import from_netx
from ..device import batch_budget, current, exact_arithmetic
from ..loihi_io import check_input, count_not_unary, from_wire, not_unary_error, stage_taps
from .decode import Layer, on_device, read_network, read_stage_network
from .neurons import Resonator, SigmaDelta, lif, resonate, sigma_delta
from .synapses import conv_currents, dense_currents, recurrent_feedback

__all__ = ["batch_size", "emulate", "run_chain_stage", "run_layer", "stage_input", "steps_first", "integers"]


def run_layer(layer: Layer, inputs: torch.Tensor, graded: bool) -> torch.Tensor:
    """One netx layer: (N, T, ...) messages in (bool spikes, or int64 payloads when `graded`)
    -> (N, T, ...) messages out (bool, or int64 for a layer with output_bits). An `input` layer
    takes `inputs` at its neuron directly, the same step (as hybridc's Lava runner feeds it)."""
    if layer.kind == "input":
        currents, lag = inputs.to(torch.int64), 0
    else:
        if layer.flatten_before or (layer.kind == "dense" and inputs.dim() > 3):
            inputs = inputs.reshape(*inputs.shape[:2], -1)
        currents, lag = (conv_currents if layer.kind == "conv" else dense_currents)(layer, inputs, graded), 1
    if isinstance(layer.neuron, SigmaDelta):
        return sigma_delta(layer.neuron, currents, lag)
    if isinstance(layer.neuron, Resonator):  # an input layer (ComplexInput) feeds both parts the same input
        imaginary = currents if layer.kind == "input" else dense_currents(layer, inputs, graded, imaginary=True)
        return resonate(layer.neuron, currents, imaginary, lag)
    return lif(layer.neuron, currents, lag, recurrent_feedback(layer))


def emulate(path, x, input_shape=None, input_message_bits: int = 0, num_layers=None, skip_layers: int = 0,
            network=None, on_layer=None, taps=None, feed_input_neuron: bool = False, pad_steps: int = 0,
            messages: bool = False, not_unary=None):
    """Lava's output of the netx network at `path` for input `x`, step for step as a sink
    RingBuffer records it (no shift): x is (N, C, H, W, T) or (N, F, T) in PyTorch layout,
    spikes or (with input_message_bits > 0) integer payloads. Returns (N, ..., T) int64.
    network: the result of `read_network` to reuse across batches. on_layer(layer, inputs,
    outputs) sees each layer's input and output messages, (N, T, ...), e.g. to count activity.
    taps: netx layer indices (None: the last) whose outputs to return, as a list.
    feed_input_neuron: x goes to the first layer's neuron when that is an input layer (what
    hybridc's Lava runner connects); netx itself leaves that neuron's input open.
    pad_steps: zero input steps appended (outputs lag the input by the hops to them).
    messages: return each output as the layer hands it (bool spikes or int64 payloads, a view
    with time last), without the int64 copy. not_unary: see `steps_first` (unary input only)."""
    x = torch.as_tensor(x)
    _, layers = network or read_network(path, input_shape or tuple(x.shape[1:-1]),
                                                  num_layers, skip_layers)
    wanted = [len(layers) - 1 if tap is None else tap for tap in (taps if taps is not None else [None])]
    graded = input_message_bits > 0 or (feed_input_neuron and layers[0].kind == "input")
    tensor = steps_first(x, graded, pad_steps, None if graded else not_unary)
    kept = {}
    for index, layer in enumerate(layers[:max(wanted) + 1]):
        if layer.kind == "input" and not feed_input_neuron:  # netx leaves this neuron's input open
            inputs = torch.zeros((tensor.shape[0], tensor.shape[1], *layer.out_shape), dtype=torch.int64,
                                 device=tensor.device)
        else:
            inputs = tensor
        tensor = run_layer(layer, inputs, graded)
        if on_layer is not None:
            on_layer(layer, inputs, tensor)
        if index in wanted:
            kept[index] = torch.movedim(tensor, 1, -1) if messages else integers(torch.movedim(tensor, 1, -1))
        graded = layer.output_bits > 0
    outputs = [kept[index] for index in wanted]
    return outputs if taps is not None else outputs[0]


def steps_first(x: torch.Tensor, graded: bool, pad: int = 0, not_unary=None) -> torch.Tensor:
    """(N, ..., T) input -> (N, T + pad, ...) messages, `pad` zero steps appended: unary
    spikes as float32 0/1 (the stage runners check the input is binary; a conv takes them as
    they are), or int64 payloads (the source RingBuffer holds int32: floats truncated). A
    (C, H, W) sample is laid out channels innermost (torch's channels_last): the float conv
    of few channels runs about 3x faster so, and the layers after keep the layout, as torch
    ops preserve strides. One copy, no conversion pass, for float32 spikes.
    not_unary: called with the count of entries neither 0 nor 1 when there are any (unary
    spikes; on the CPU counted during the copy, which reads the input anyway)."""
    x = torch.as_tensor(x)
    if graded:
        x = torch.trunc(x.to(torch.float64)).to(torch.int64)
    n, steps = x.shape[0], x.shape[-1]
    dtype = torch.int64 if graded else torch.float32
    spatial = x.dim() == 5
    buffer = torch.empty((n, steps + pad, *x.shape[2:4], x.shape[1]) if spatial else (n, steps + pad, *x.shape[1:-1]),
                         dtype=dtype, device=x.device)
    if spatial and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and x.is_contiguous():
        from ..kernels import spikes_channels_last  # compiled at install; other devices run without it

        bad = spikes_channels_last(x, buffer)  # one pass that also counts: torch's copy is ~2x slower
    else:
        bad = count_not_unary(x) if not_unary is not None and not graded and x.dtype != torch.bool else 0
        buffer[:, :steps].copy_(x.permute(0, 4, 2, 3, 1) if spatial else torch.movedim(x, -1, 1))
    if bad and not_unary is not None:
        not_unary(bad)
    buffer[:, steps:].zero_()
    return buffer.permute(0, 1, 4, 2, 3) if spatial else buffer


def integers(messages: torch.Tensor) -> torch.Tensor:
    """Messages as int64 (bool through uint8: torch converts bool about twice as slowly)."""
    return (messages.view(torch.uint8) if messages.dtype == torch.bool else messages).to(torch.int64)


def batch_size(count: int, per_sample_elements: int, device: str = "cpu") -> int:
    """Samples per batch so the largest intermediate stays within the device's budget of int64
    values (`runtime.device.batch_budget`: 64 MB on the CPU)."""
    return max(1, min(count, batch_budget(device) // max(per_sample_elements, 1)))


def stage_input(stage, x, unary: bool = True) -> torch.Tensor:
    """The stage input as Lava's source RingBuffer holds it, in PyTorch layout: spikes, an
    Encoder's graded spikes, or a sigma-delta input's integers (value x scale on its grid).
    unary=False: the 0-or-1 check of spikes is left to `steps_first` (`loihi_io.check_input`)."""
    data = check_input(stage, x, unary=unary)
    return from_netx(np.asarray(data, dtype=np.float64)).double() if stage.inputs[0].graded else x


def padded_batches(x: torch.Tensor, batch: int, pad: int, progress=None):
    """The samples of `x` in batches of `batch`, each `pad` steps longer on zero input (Lava's
    outputs lag by that much); `progress` is called once a sample when its batch is done."""
    for start in range(0, x.shape[0], batch):
        chunk = x[start:start + batch]
        if pad:
            chunk = torch.cat([chunk, torch.zeros(*chunk.shape[:-1], pad, dtype=chunk.dtype, device=chunk.device)], dim=-1)
        yield chunk
        if progress:
            for _ in range(chunk.shape[0]):
                progress()


def run_chain_stage(stage, build_dir: Path, x: torch.Tensor, progress=None):
    """A chain loihi stage (one netx file) with the same inputs and outputs as Lava's runner
    (`runtime/lava.py`: one tensor, or a tuple in the order of stage.outputs for a stage with
    taps; graded outputs as real values), from the stage's netx HDF5, batched, bounded memory."""
    x = stage_input(stage, x, unary=False)
    steps = x.shape[-1]

    def not_unary(count: int):  # found while laying out a batch: the same error check_input raises
        raise not_unary_error(stage, x)

    taps = stage_taps(stage)
    delay = max(d or 0 for _, d in taps)
    device = current()
    names, layers = read_stage_network(stage, build_dir)
    network = names, [on_device(layer, device) for layer in layers]
    widest = max(int(np.prod(layer.out_shape)) for layer in layers)
    widest = max(widest, int(np.prod(x.shape[1:-1])))
    batch = batch_size(x.shape[0], widest * (steps + delay) * 4, device)
    outputs, start = None, 0
    with exact_arithmetic(device):
        for chunk in padded_batches(x, batch, 0, progress):
            results = emulate(None, chunk.to(device), network=network, input_message_bits=stage.input_bits or 0,
                              taps=[layer for layer, _ in taps], feed_input_neuron=True, pad_steps=delay,
                              messages=True, not_unary=not_unary)
            if outputs is None:  # filled batch by batch: one copy from the messages to float32
                outputs = [torch.empty((x.shape[0], *out.shape[1:-1], steps)) for out in results]
            for whole, out, (_, d) in zip(outputs, results, taps):
                out = out[..., (d or 0):(d or 0) + steps]
                whole[start:start + out.shape[0]].copy_(out.view(torch.uint8) if out.dtype == torch.bool else out)
            start += chunk.shape[0]
    results = tuple(from_wire(spec, whole.reshape(x.shape[0], *spec.pytorch_shape()))
                    for spec, whole in zip(stage.outputs, outputs))
    return results[0] if len(results) == 1 else results
