"""Run a Loihi stage's netx HDF5 in Lava's bit-accurate simulator (Loihi2SimCfg, fixed_pt)."""

from pathlib import Path

import numpy as np

from ..build_dir.untrusted import parsing
from ..manifest import Stage
from ..netx.layout import from_netx
from ..netx.processes import import_lava_runtime
from .lava_graph import simulate_graph
from .loihi_io import check_input, from_wire, stage_taps

__all__ = ["run_stage", "simulate"]


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
            per_sample.append(simulate_graph(stage, build_dir, data[i],
                                             [(out.segment, out.layer, out.delay) for out in stage.outputs]))
        else:
            per_sample.append(simulate(Path(build_dir) / stage.artifact, data[i], stage.delay,
                                       input_shape=tuple(stage.inputs[0].shape[:-1]), taps=taps,
                                       input_bits=stage.input_bits or 0))
        if progress:
            progress()
    outputs = tuple(from_wire(out, from_netx(np.stack([sample[k] for sample in per_sample]))
                               .reshape(x.shape[0], *out.pytorch_shape()))
                    for k, out in enumerate(stage.outputs))
    return outputs[0] if len(outputs) == 1 else outputs


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
