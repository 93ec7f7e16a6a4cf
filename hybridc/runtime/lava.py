"""Run a Loihi stage's netx HDF5 in Lava's bit-accurate simulator (Loihi2SimCfg, fixed_pt)."""

from pathlib import Path

import numpy as np
import torch

from ..build_dir.untrusted import parsing
from ..errors import InputError
from ..manifest import Stage


def to_netx(x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W, T) -> (N, W, H, C, T); (N, F, T) unchanged."""
    return (x.permute(0, 3, 2, 1, 4) if x.dim() == 5 else x).cpu().numpy()


def from_netx(y: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(y)).float()
    return t.permute(0, 3, 2, 1, 4) if t.dim() == 5 else t


def check_input(stage: Stage, x: torch.Tensor, data: np.ndarray = None) -> np.ndarray:
    """The input as netx receives it, or InputError: binary spikes, an Encoder's graded
    spikes (stage.input_bits), or real values for a sigma-delta input (spec.graded)."""
    spec = stage.inputs[0]
    if data is None:
        data = to_netx(x)
    if x.dim() not in (3, 5) or data.shape[1:-1] != tuple(spec.shape[:-1]):
        raise InputError(
            f"Stage `{stage.name}` (loihi) expects spikes of PyTorch shape (N, "
            f"{', '.join(map(str, spec.pytorch_shape()[:-1]))}, T), got {tuple(x.shape)}."
        )
    if spec.graded:  # sigma-delta input: real values, rounded to the grid of its Delta input layer
        return to_graded(spec.graded, data)
    values = torch.unique(x)
    if stage.input_bits:  # graded spikes from an Encoder: unsigned integers of input_bits bits
        top = (1 << stage.input_bits) - 1
        if not bool(((values == values.round()) & (values >= 0) & (values <= top)).all()):
            raise InputError(
                f"Stage `{stage.name}` (loihi) receives graded spikes of {stage.input_bits} bits (integers "
                f"0..{top}), but the input holds values {values[:6].tolist()}...; pass it through "
                f"hybridc.nn.Encoder(bits={stage.input_bits})."
            )
    elif not bool(((values == 0) | (values == 1)).all()):
        raise InputError(
            f"Stage `{stage.name}` (loihi) receives unary spikes, but the input holds values "
            f"{values[:6].tolist()}...; binarise it (e.g. `(x > 0).float()`)."
        )
    return data


def run_stage(stage: Stage, build_dir: Path, x, progress=None):
    """Runs each sample through Lava's bit-accurate fixed-point simulator. Returns the
    spikes of every output (tap) in PyTorch layout: one tensor, or a tuple in the order
    of stage.outputs. Graded outputs (sigma-delta) come back as real values."""
    if isinstance(x, dict):
        (x,) = x.values()
    data = check_input(stage, x)
    taps = stage_taps(stage)
    per_sample = []
    for i in range(data.shape[0]):
        if stage.segments:  # a branching stage: netx chains joined by extra synapses
            from .lava_graph import simulate_graph

            per_sample.append(simulate_graph(stage, build_dir, data[i],
                                             [(out.segment, out.layer, out.delay) for out in stage.outputs]))
        else:
            per_sample.append(simulate(Path(build_dir) / stage.artifact, data[i], stage.delay,
                                       input_shape=tuple(stage.inputs[0].shape[:-1]), taps=taps,
                                       input_bits=stage.input_bits or 0))
        if progress:
            progress()
    outputs = tuple(_from_wire(out, from_netx(np.stack([sample[k] for sample in per_sample]))
                               .reshape(x.shape[0], *out.pytorch_shape()))
                    for k, out in enumerate(stage.outputs))
    return outputs[0] if len(outputs) == 1 else outputs


def stage_taps(stage: Stage) -> list:
    """[(netx layer index or None for the last, delay), ...], one per stage output."""
    return [(out.layer, out.delay if out.delay is not None else stage.delay) for out in stage.outputs]


def _from_wire(spec, out: torch.Tensor) -> torch.Tensor:
    """A tap's integers as PyTorch's values: graded (sigma-delta) outputs are value x scale."""
    return out / spec.graded["scale"] if spec.graded else out


def to_graded(graded: dict, values: np.ndarray) -> np.ndarray:
    """Real values -> the integers a Delta encoder receives: value x scale, rounded to the
    grid slayer's input quantisation uses (round half to even, like torch.round) and clipped."""
    step = graded.get("step", 1)
    low, high = graded.get("range", (-(1 << 23), (1 << 23) - 1))
    return np.clip(np.round(values * graded["scale"] / step) * step, low, high)


def import_lava_runtime():
    """Import Lava's runtime even when the process already fixed its multiprocessing start
    method. Lava calls `multiprocessing.set_start_method('fork')` at import, which raises
    "context has already been set" once anything (tqdm's lock, which torch.fx's
    Interpreter creates when tqdm is installed, for one) has touched the default context.
    Asking again for the method already in force is harmless, so it is let through."""
    import multiprocessing

    original = multiprocessing.set_start_method

    def set_start_method(method, force=False):
        if not force and multiprocessing.get_start_method(allow_none=True) == method:
            return
        original(method, force)

    multiprocessing.set_start_method = set_start_method
    try:
        from lava.lib.dl import netx  # noqa: F401
    finally:
        multiprocessing.set_start_method = original


def simulate(net_path: Path, sample: np.ndarray, delay: int, input_shape=None, taps=None, input_bits: int = 0,
             **network_options):
    """One sample (netx layout, time last) through netx under Loihi2SimCfg(fixed_pt).
    Returns the output spikes aligned with PyTorch's (shifted back by `delay`). With
    `taps` [(netx layer index or None for the last, delay), ...] returns a list, one array
    per tap: each tap is an extra receiver on that layer's output port (Lava fans an
    OutPort out to several InPorts), so the network is built once.
    network_options: further `netx.hdf5.Network` arguments (num_layers, skip_layers, ...)."""
    import_lava_runtime()
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io

    steps = sample.shape[-1]
    wanted = taps if taps is not None else [(None, delay)]
    with parsing(net_path, "a netx HDF5 network taking the manifest's input shape"):
        net = netx.hdf5.Network(net_config=str(net_path), input_message_bits=input_bits,
                                input_shape=input_shape if input_shape and len(input_shape) == 3 else None,
                                **network_options)
        pad = len(net) + max(d for _, d in wanted) + 1  # let the last spikes drain through every layer
        padded = np.concatenate([sample, np.zeros(sample.shape[:-1] + (pad,))], axis=-1)
        source = io.source.RingBuffer(data=padded)
        if isinstance(net.in_layer, netx.blocks.process.Input):
            # netx's input layer (a Delta encoder) takes its data at the neuron, not at `inp`
            source.s_out.connect(net.in_layer.neuron.a_in)
        else:
            source.s_out.connect(net.inp)
        sinks = []
        for layer, _ in wanted:
            port = net.out if layer is None or layer == len(net) - 1 else net.layers[layer].out
            sinks.append(io.sink.RingBuffer(shape=port.shape, buffer=steps + pad))
            port.connect(sinks[-1].a_in)
    with parsing(net_path, "a netx HDF5 network Lava can run"):
        try:
            net.run(condition=RunSteps(num_steps=steps + pad), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
            outs = [sink.data.get()[..., d:d + steps] for sink, (_, d) in zip(sinks, wanted)]
        finally:
            net.stop()
    return outs if taps is not None else outs[0]
