"""A branching spiking stage on Loihi: stock netx chains joined by extra synapses.

netx builds only chains, but its layers are ordinary Lava processes: an output port fans
out to several receivers, and several synapses into one neuron's `a_in` are summed
exactly. So a spiking DAG is cut into chain *segments* (each a stock netx HDF5 that
`netx.hdf5.Network` loads) and every other way a layer's input is formed becomes an
*extra synapse*: for `c3(c1 + c2)` the chain holds c1 -> c2 -> c3 and a copy of c3's
synapse takes c1's spikes into c3's neurons; for `c3(cat(a, b))` each input slice gets
its part of c3's weights. Never two spike streams into one synapse (Lava ORs them).

A recurrent layer (slayer's Recurrent, netx's `dense_rec`) keeps its feedback synapse inside
its segment, where netx wires it; only its input synapse is copied or sliced for extra terms.

Timing: with slayer's delay_shift every block's output is one step behind its input in
PyTorch, exactly as every Lava synaptic hop costs one step, so each layer's spikes are
aligned with PyTorch's at every layer whatever the path length; a skip path and a long
path meet at the same step with no added delay. Blocks built with delay_shift=False lag
Lava one step each; where the terms of a layer's input then arrive at different steps, the
layer's own synapse takes a term that arrives last and each earlier term waits on its extra
synapse: a DelayDense (a conv synapse becomes the dense matrix it computes, since Lava's
Conv has no delay), only where needed.

The extra synapses are netx layer groups without a neuron (type, shape, weight, stride,
padding, dilation, groups) in `<stage>.synapses.h5`; the wiring is the stage's
`segments` and `links` in the manifest.
"""

from dataclasses import dataclass, field
from math import prod
from pathlib import Path

import numpy as np

from ..digest import sha256
from ..errors import LoweringError, UnsupportedLayerError, reporting
from ..manifest import Stage, TensorSpec
from ..netx import writer as netx_writer
from ..netx.fields import LayerGroup
from ..netx.layout import netx_layout
from ..passes.spike_merges import merge_inputs, merge_kind
from .slayer_blocks import builds_layer, count_synapses, lag_steps, layer_step, recurrent_synapses, writers

MAX_DELAY = 62  # Lava's DelayDense (netx clamps layer delays to it too)


@dataclass
class Term:
    """One contribution to a layer's synaptic input: a source's spikes (a layer node, or None
    for the stage input) feeding input indices [start, start + size) of the consumer."""
    source: object
    start: int
    size: int
    flatten: bool  # the source is (C, H, W) and the consumer a dense layer


@dataclass
class Segment:
    source: object  # Term feeding the segment's first layer
    nodes: list = field(default_factory=list)  # layer nodes in order


def is_chain(partition) -> bool:
    """No merge and no layer feeding two spiking nodes: the stock one-file lowering."""
    members = set(partition.nodes)
    return not any(merge_kind(n) or sum(u in members for u in n.users) > 1 for n in partition.nodes)


def _is_transparent(gm, node, slayer) -> bool:
    """Flatten (a reshape netx does on the connection) and neuron Dropout (identity)."""
    if node.op != "call_module":
        return False
    block = gm.get_submodule(node.target)
    return isinstance(block, (slayer.block.base.AbstractFlatten, slayer.neuron.Dropout))


def _terms(gm, node, members, slayer, start=0, scale=1, flat=False) -> list:
    """The terms of a consumer's input expression rooted at `node`, in consumer input units."""
    kind = merge_kind(node)
    if kind == "add":
        return [t for a in merge_inputs(node) for t in _terms(gm, a, members, slayer, start, scale, flat)]
    if kind == "cat":
        terms, offset = [], start
        for a in merge_inputs(node):
            terms += _terms(gm, a, members, slayer, offset, scale, flat)
            offset += a.meta["shape"][1] * scale
        return terms
    if node in members and _is_transparent(gm, node, slayer):
        source = node.all_input_nodes[0]
        flattens = len(source.meta["shape"]) == 5 and len(node.meta["shape"]) == 3
        spatial = prod(source.meta["shape"][2:-1]) if flattens else 1
        # a 1x1 map flattened too: netx's ports are (W, H, C) before and (F,) after, whatever the size
        return _terms(gm, source, members, slayer, start, scale * spatial, flat or flattens)
    leaf = node if node in members else None
    flatten = flat or (len(node.meta["shape"]) == 5 and scale != 1)
    return [Term(leaf, start, node.meta["shape"][1] * scale, flatten)]


def _copy_group(group, into, lo, hi):
    """A layer group's synapse (no neuron, no bias) with input slice [lo, hi) of its weights.
    A recurrent layer's (`dense_rec`) input synapse is a plain dense one: its feedback stays
    with the layer."""
    if LayerGroup(group).recurrent:
        into.create_dataset("type", (1,), "S10", [b"dense"])
    for key in ("type", "shape", "stride", "padding", "dilation", "groups"):
        if key in group and key not in into:
            into.create_dataset(key, data=group[key][()])
    into.create_dataset("weight", data=group["weight"][()][:, lo:hi])


def _unrolled_conv(group, into, term, in_shape, wait):
    """A conv layer's synapse on input channels [start, start + size) as the dense matrix it
    computes (PyTorch (C, H, W) order on both sides, one kernel tap per pair of neurons, so
    the integers are the conv's own), delayed `wait` steps: Lava's Conv has no delay."""
    import torch
    import torch.nn.functional as F

    weight = torch.from_numpy(group["weight"][()][:, term.start:term.start + term.size].astype(np.float64))
    weight = weight.reshape(weight.shape[:4])
    c, h, w = term.size, in_shape[1], in_shape[2]
    conv = LayerGroup(group)
    basis = torch.eye(c * h * w, dtype=torch.float64).reshape(-1, c, h, w)
    out = F.conv2d(basis, weight, stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                   groups=conv.groups)
    matrix = out.reshape(c * h * w, -1).T.numpy()  # (out neurons, in neurons)
    into.create_dataset("type", (1,), "S10", [b"dense"])
    into.create_dataset("shape", data=np.array([matrix.shape[0]]))
    into.create_dataset("weight", data=np.rint(matrix).astype(np.int64))
    into.create_dataset("delay", data=wait)


def _slice_weight(group, lo, hi):
    weight = group["weight"][()]
    del group["weight"]
    group.create_dataset("weight", data=weight[:, lo:hi])


def _check_slice(gm, node, block, term, full, slayer):
    groups = getattr(getattr(block, "synapse", None), "groups", 1)
    pool = isinstance(block, slayer.block.base.AbstractPool)
    if (term.start, term.size) != (0, full) and (pool or groups != 1):
        raise LoweringError(
            f"`{node.name}` ({type(block).__name__}) takes a concatenation, but its synapse is grouped "
            f"(groups={groups if not pool else 'channels'}), so its weights do not split by input channel. "
            "Use an ungrouped Conv/Dense after the concatenation, or add the branches instead."
        )


def preprocess_branching(target, partition, gm, workdir: Path) -> Stage:
    """Lower a branching spiking partition for `target` (its name goes into the stage):
    segments, extra synapses and the manifest's wiring."""
    from lava.lib.dl import slayer

    from ..nn import Encoder

    members = set(partition.nodes)
    source = partition.inputs[0]
    if len(partition.inputs) > 1:
        raise LoweringError(f"The spiking stage `{partition.name}` reads several tensors from outside "
                            f"({[n.name for n in partition.inputs]}); a branching Loihi stage takes one input.")
    encoder = gm.get_submodule(source.target) if source.op == "call_module" else None
    input_bits = encoder.bits if isinstance(encoder, Encoder) else None
    layers = [n for n in partition.nodes if n.op == "call_module" and not _is_transparent(gm, n, slayer)]
    for n in layers:
        block = gm.get_submodule(n.target)
        if not builds_layer(block) or getattr(block, "neuron", None) is None or type(block).__module__.split(
                ".")[-1] != "cuba":
            raise LoweringError(
                f"`{n.name}` ({type(block).__name__}) sits in a branching spiking stage; hybridc lowers "
                "branching stages of slayer.block.cuba Conv, Dense and Pool blocks (CUBA neurons). Keep other "
                "blocks in a chain."
            )
    segments, tail_of, place, links, lags = [], {}, {}, [], {None: 0}
    neurons = synapses = 0
    net_paths = []
    syn_path = Path(workdir) / f"{partition.name}.synapses.h5"
    files = []
    with netx_writer.File(syn_path) as syn_h5:
        syn_group = syn_h5.create_group("synapse")
        for node in layers:
            block = gm.get_submodule(node.target)
            terms = _terms(gm, node.args[0], members, slayer)
            latest = max(lags[t.source] for t in terms)
            if len(terms) > 1 and getattr(block, "delay", None) is not None:
                raise UnsupportedLayerError(
                    f"`{node.name}` has learned axonal delays (delay=True) and joins {len(terms)} inputs: netx puts a "
                    "Dense layer's delays on its own synapse only, so the joined inputs would arrive undelayed. Move "
                    "the delay to a block that reads one input, or build this one with delay=False."
                )
            if latest - min(lags[t.source] for t in terms) > MAX_DELAY:
                raise LoweringError(
                    f"The inputs of `{node.name}` reach it {latest - min(lags[t.source] for t in terms)} steps "
                    f"apart in Lava (blocks built with delay_shift=False lag a step each); Loihi's synaptic delay "
                    f"holds at most {MAX_DELAY}. Build the blocks with slayer's default delay_shift=True."
                )
            lags[node] = latest + lag_steps(block)
            # the layer's own (netx) synapse takes a term that needs no delay; the others wait
            # `latest - lag` steps on their extra synapse (Lava's DelayDense)
            on_time = [t for t in terms if lags[t.source] == latest]
            main = next((t for t in on_time if t.source in tail_of), on_time[0])
            if main.source in tail_of:
                k = tail_of.pop(main.source)
            else:
                k = len(segments)
                segments.append(Segment(main))
                path = Path(workdir) / (f"{partition.name}.net" if k == 0 else f"{partition.name}.seg{k}.net")
                net_paths.append(path)
                files.append(netx_writer.File(path))
                files[-1].create_group("layer")
            segments[k].nodes.append(node)
            tail_of[node] = k
            group = files[k]["layer"]
            in_shape = node.args[0].meta["shape"][1:]
            in_full = in_shape[0] if len(in_shape) == 4 else prod(in_shape[:-1])
            flat_needed = main.flatten and len(segments[k].nodes) > 1
            if flat_needed:
                group.create_group(str(len(group))).create_dataset("type", (1,), "S10", [b"flatten"])
            with reporting(layer_step(node, block)):
                layer_group = group.create_group(str(len(group)))
                writers()[type(block)](block, layer_group)
                # every term is a copy (ADD) or a slice (cat) of the block's synapse; a recurrent
                # layer's feedback synapses are not copied
                share = sum(t.size for t in terms) / in_full
                feedback = recurrent_synapses(block)
                synapses += round((count_synapses(block, in_shape) - feedback) * share) + feedback
            neurons += prod(node.meta["shape"][1:-1])
            place[node] = (k, len(segments[k].nodes) - 1)
            for term in terms:
                _check_slice(gm, node, block, term, in_full, slayer)
                if term is main:
                    continue
                index = str(len(syn_group))
                term_shape = (term.source.meta["shape"] if term.source is not None else source.meta["shape"])[1:]
                wait = latest - lags[term.source]
                if wait and len(in_shape) == 4:  # Lava's Conv has no delay: the conv as a DelayDense matrix
                    _unrolled_conv(layer_group, syn_group.create_group(index), term, in_shape, wait)
                    term = Term(term.source, term.start, term.size, True)
                else:
                    _copy_group(layer_group, syn_group.create_group(index), term.start, term.start + term.size)
                    if wait:
                        syn_group[index].create_dataset("delay", data=wait)
                links.append({"synapse": index, "source": _where(place, term.source),
                              "target": {"segment": k, "layer": place[node][1]}, "flatten": term.flatten,
                              "input_shape": list(netx_layout(term_shape)[0][:-1]),
                              "message_bits": (input_bits or 0) if term.source is None else 0})
            if (main.start, main.size) != (0, in_full):
                _slice_weight(layer_group, main.start, main.start + main.size)
        for f in files:
            f.close()
    outputs = []
    for node in partition.outputs:
        leaf = node
        while leaf in members and _is_transparent(gm, leaf, slayer):
            leaf = leaf.all_input_nodes[0]
        if leaf not in place:
            raise LoweringError(
                f"`{node.name}` (a {'sum' if merge_kind(leaf) == 'add' else 'concatenation'} of spike tensors) "
                "leaves the spiking stage, but Loihi sends only a layer's own spikes. Send each addend/branch "
                "out of the spiking stage (accumulate them) and combine them in dense code, or feed the merge "
                "into a spiking layer first."
            )
        netx_out, out_layout = netx_layout(node.meta["shape"][1:])
        k, j = place[leaf]
        outputs.append(TensorSpec(node.name, list(netx_out), "float32", out_layout, node=node.name, layer=j,
                                  delay=lags[leaf], segment=k))
    segment_specs = []
    for k, (segment, path) in enumerate(zip(segments, net_paths)):
        src = segment.source
        src_shape = (src.source.meta["shape"] if src.source is not None else source.meta["shape"])[1:]
        segment_specs.append({"artifact": path.name, "sha256": sha256(path), "layers": len(segment.nodes),
                              "input": _where(place, src.source), "flatten": src.flatten,
                              "input_shape": list(netx_layout(src_shape)[0][:-1]),
                              "nodes": [n.name for n in segment.nodes]})
    netx_in, in_layout = netx_layout(source.meta["shape"][1:])
    return Stage(
        name=partition.name, target=target.name, artifact=net_paths[0].name, sha256=sha256(net_paths[0]),
        inputs=[TensorSpec("spikes_in", list(netx_in), "float32", in_layout, node=source.name)],
        outputs=outputs, delay=outputs[-1].delay, layers=len(layers), neurons=int(neurons),
        synapses=int(synapses), input_bits=input_bits,
        segments=segment_specs,
        links={"artifact": syn_path.name, "sha256": sha256(syn_path), "synapses": links},
    )


def _where(place, source) -> dict:
    """A spike source in the manifest: {"segment": k, "layer": j}, or the stage input (None, None)."""
    if source is None:
        return {"segment": None, "layer": None}
    k, j = place[source]
    return {"segment": k, "layer": j}
