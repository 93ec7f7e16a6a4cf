"""Run a branching Loihi stage in Lava: its stock netx chains joined by its extra synapses.

The build directory holds one netx HDF5 per chain segment and the extra synapses (netx
layer groups without a neuron) in one HDF5; the manifest's `segments` and `links` say
what feeds what (targets/loihi_graph.py). Each segment is a `netx.hdf5.Network`; a
segment's input, an extra synapse's input and a tap are further receivers on a layer's
output port (Lava fans out); an extra synapse's output goes into the target layer's
neurons (`a_in`), where Lava sums it with the layer's own synapse.
"""

from pathlib import Path

import numpy as np

from ..build_dir.untrusted import parsing
from ..errors import ArtifactError
from ..netx.fields import open_file, scalar, synapse_group
from ..netx.layout import flip_spatial, pytorch_shape
from ..netx.processes import conv_weight, import_lava_runtime, optimize_weight_bits, xy_pair


def synapse_process(group, input_shape, message_bits: int):
    """A Lava Dense or Conv process for a netx layer group (a `LayerGroup`), with the weights
    netx itself would give that layer (`optimize_weight_bits` for dense; flipped, (out, W, H,
    in) for conv)."""
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import DelayDense, Dense

    kind = group.kind
    if kind == "dense":
        weight = group.weight
        weight, bits, exponent, _ = optimize_weight_bits(weight.reshape(weight.shape[0], -1))
        options = dict(weights=weight, weight_exp=exponent, num_weight_bits=bits, num_message_bits=message_bits)
        if group.delay is not None:  # a path that arrives early waits here (as netx builds a dense layer's delay)
            delays = np.full(weight.shape, scalar(group.delay))
            return DelayDense(delays=delays, max_delay=62, **options)
        return Dense(**options)
    if kind == "conv":
        return Conv(input_shape=tuple(input_shape), weight=conv_weight(group.weight), stride=xy_pair(group["stride"]),
                    padding=xy_pair(group["padding"]), dilation=xy_pair(group["dilation"]),
                    groups=group.groups, num_message_bits=message_bits)
    raise ArtifactError(f"{group.name} is a `{kind}` synapse; a branching stage's extra synapses are dense or conv.")


def _port(source, nets, feed, flatten: bool):
    """The output port of a spike source ({"segment", "layer"}; None: the stage input)."""
    if source.get("segment") is None:
        port = feed
    else:
        net = nets[source["segment"]]
        port = net.out if source["layer"] == len(net) - 1 else net.layers[source["layer"]].out
    return flip_spatial(port).flatten() if flatten and len(port.shape) == 3 else port


def simulate_graph(stage, build_dir: Path, sample: np.ndarray, taps):
    """One sample (netx layout, time last) through the stage's graph under Loihi2SimCfg(fixed_pt).
    taps: [(segment, layer, delay)]. Returns one array per tap, aligned with PyTorch's spikes."""
    import_lava_runtime()
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io

    build_dir = Path(build_dir)
    steps = sample.shape[-1]
    pad = (stage.layers or 1) + max(d for _, _, d in taps) + 1
    padded = np.concatenate([sample, np.zeros(sample.shape[:-1] + (pad,))], axis=-1)
    source = io.source.RingBuffer(data=padded)
    nets = []
    for spec in stage.segments:
        path = build_dir / spec["artifact"]
        with parsing(path, "a netx HDF5 network (a segment of a branching stage)"):
            shape = tuple(spec["input_shape"])
            nets.append(netx.hdf5.Network(net_config=str(path), input_shape=shape if len(shape) == 3 else None,
                                          input_message_bits=(stage.input_bits or 0)
                                          if spec["input"].get("segment") is None else 0))
        _port(spec["input"], nets, source.s_out, spec["flatten"]).connect(nets[-1].inp)
    links_path = build_dir / stage.links["artifact"]
    with parsing(links_path, "an HDF5 file of netx synapse groups"), open_file(links_path) as h5:
        for link in stage.links["synapses"]:
            synapse = synapse_process(synapse_group(h5, link["synapse"]), link["input_shape"], link["message_bits"])
            _port(link["source"], nets, source.s_out, link["flatten"]).connect(synapse.s_in)
            target = nets[link["target"]["segment"]].layers[link["target"]["layer"]].neuron.a_in
            sent = synapse.a_out
            if len(sent.shape) == 1 and len(target.shape) == 3:  # a conv as a dense matrix, (C, H, W) order
                sent = flip_spatial(sent.reshape(pytorch_shape(target.shape)))
            sent.connect(target)
    sinks = []
    for segment, layer, _ in taps:
        port = _port({"segment": segment, "layer": layer}, nets, None, False)
        sinks.append(io.sink.RingBuffer(shape=port.shape, buffer=steps + pad))
        port.connect(sinks[-1].a_in)
    with parsing(build_dir / stage.artifact, "a branching netx stage Lava can run"):
        try:
            source.run(condition=RunSteps(num_steps=steps + pad), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
            outs = [sink.data.get()[..., d:d + steps] for sink, (_, _, d) in zip(sinks, taps)]
        finally:
            source.stop()
    return outs
