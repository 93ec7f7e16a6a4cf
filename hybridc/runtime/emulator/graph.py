"""The branching-graph runner: a branching Loihi stage, netx chains joined by extra synapses.

Reads what `runtime/lava_graph.py` builds in Lava, from the build directory alone (each
segment's netx HDF5 and each extra synapse's group through `decode`) and runs the layers in
a topological order of the whole graph, batched: a layer's currents are its own synapse's
on its input plus every extra synapse's on that synapse's source, summed before the neuron
(Lava adds the messages at `a_in`); each synapse's own wrap-around is kept (`synapses`).
"""

from pathlib import Path

import networkx as nx
import torch

from ...errors import ArtifactError
from ...manifest import layer_key
from ...netx.fields import open_file, synapse_group
from ...netx.layout import pytorch_shape
from ..device import current, exact_arithmetic
from ..loihi_io import check_input
from .chain import batch_size, integers, padded_batches, steps_first
from .decode import conv_layer, dense_layer, on_device, read_network
from .neurons import lif
from .synapses import conv_currents, dense_currents, recurrent_feedback

__all__ = ["emulate_graph", "layer_graph", "read_graph", "run_graph_stage"]


def read_graph(stage, build_dir: Path):
    """({segment: layers}, [(link, Layer)]) of a branching stage, read from its files."""
    build_dir = Path(build_dir)
    segments = [read_network(build_dir / spec["artifact"], pytorch_shape(spec["input_shape"]))[1]
                for spec in stage.segments]
    links = []
    path = build_dir / stage.links["artifact"]
    with open_file(path, "HDF5 file of synapses") as h5:
        for link in stage.links["synapses"]:
            group = synapse_group(h5, link["synapse"])
            kind = group.kind
            name = f"{path.name}:synapse/{link['synapse']}"
            shape = pytorch_shape(link["input_shape"])
            if kind == "conv":
                layer = conv_layer(group, name, shape)
            elif kind == "dense":
                layer = dense_layer(group, name)
            else:
                raise ArtifactError(f"{name} is a `{kind}` synapse; extra synapses are dense or conv.")
            links.append((link, layer))
    return segments, links


def layer_graph(stage, sizes) -> nx.DiGraph:
    """The stage's layers, (segment, layer), each after the layers whose spikes it reads (its
    segment's previous layer or input, and every extra synapse's source), from the manifest's
    wiring; sizes: layers per segment. The stage input is None."""
    graph = nx.DiGraph()
    for k, (spec, size) in enumerate(zip(stage.segments, sizes)):
        for j in range(size):
            graph.add_node((k, j))
            before = (k, j - 1) if j else layer_key(spec["input"])
            if before is not None:
                graph.add_edge(before, (k, j))
    for link in stage.links["synapses"]:
        if layer_key(link["source"]) is not None:
            graph.add_edge(layer_key(link["source"]), (link["target"]["segment"], link["target"]["layer"]))
    return graph


def _order(stage, segments, links) -> list:
    """Every (segment, layer) after the layers whose spikes it reads."""
    graph = layer_graph(stage, [len(layers) for layers in segments])
    if not nx.is_directed_acyclic_graph(graph):
        raise ArtifactError(f"Stage `{stage.name}`: its segments and links form a cycle; the build is damaged.")
    return list(nx.lexicographical_topological_sort(graph))


def _currents(layer, spikes: torch.Tensor, graded: bool, flatten: bool) -> torch.Tensor:
    if layer.kind == "dense" and (flatten or layer.flatten_before or spikes.dim() > 3):
        spikes = spikes.reshape(*spikes.shape[:2], -1)
    function = conv_currents if layer.kind == "conv" else dense_currents
    return function(layer, spikes, graded)


def emulate_graph(stage, x: torch.Tensor, graph, wanted) -> list:
    """Lava's spikes (N, ..., T) at each wanted (segment, layer) for input x (N, ..., T),
    as sinks record them (no shift)."""
    segments, links = graph
    graded = bool(stage.input_bits)  # an Encoder's payloads, as the source RingBuffer's int32 holds them
    spikes = {None: steps_first(x, graded)}
    into = {}
    for link, layer in links:
        into.setdefault((link["target"]["segment"], link["target"]["layer"]), []).append((link, layer))
    for k, j in _order(stage, segments, links):
        layer = segments[k][j]
        if layer.kind == "input":
            raise ArtifactError(f"Stage `{stage.name}`: segment {k} has an input layer with a neuron; branching "
                                "stages hold conv and dense layers only.")
        spec = stage.segments[k]
        source = (k, j - 1) if j else layer_key(spec["input"])
        currents = _currents(layer, spikes[source], graded and source is None, bool(spec["flatten"]) and not j)
        for link, synapse in into.get((k, j), []):
            extra = _currents(synapse, spikes[layer_key(link["source"])], bool(link.get("message_bits")), link["flatten"])
            currents = currents + extra.reshape(currents.shape)  # a conv as a dense matrix: (C, H, W) order
        spikes[(k, j)] = lif(layer.neuron, currents, feedback=recurrent_feedback(layer))
    return [integers(torch.movedim(spikes[key], 1, -1)) for key in wanted]


def run_graph_stage(stage, build_dir: Path, x: torch.Tensor, progress=None):
    """A branching loihi stage with the outputs Lava's runner (`runtime/lava_graph.py`) gives."""
    check_input(stage, x)
    device = current()
    segments, links = read_graph(stage, build_dir)
    graph = ([[on_device(layer, device) for layer in layers] for layers in segments],
             [(link, on_device(layer, device)) for link, layer in links])
    wanted = [(out.segment, out.layer) for out in stage.outputs]
    steps = x.shape[-1]
    pad = max(out.delay or 0 for out in stage.outputs)
    widest = max(int(torch.tensor(layer.out_shape).prod()) for layers in segments for layer in layers)
    batch = batch_size(x.shape[0], widest * (steps + pad) * (4 + len(links)), device)
    results = [[] for _ in wanted]
    with exact_arithmetic(device):
        for chunk in padded_batches(x, batch, pad, progress):
            for k, (out, spikes) in enumerate(zip(stage.outputs, emulate_graph(stage, chunk.to(device), graph, wanted))):
                delay = out.delay or 0
                results[k].append(spikes[..., delay:delay + steps].float().cpu())
    outputs = tuple(torch.cat(r) for r in results)
    return outputs[0] if len(outputs) == 1 else outputs
