"""The edges of the stage graph, for the manifest: every tensor that crosses between stages.

Read from the partitioned fx graph and the stages the targets wrote: each stage's
input names the fx node that produces it, so an edge joins the stage holding that node
(or the model input) to the consumer, with the conversion the model put on the edge:
an Accumulator (spiking -> dense; raw spikes cross and the dense stage sums them), an
Encoder (dense -> spiking; graded spikes of `bits` bits cross, one step per `hold` steps,
recorded as the consumer's "held" wire format), or none.
"""

import torch.fx

from ..errors import LoweringError
from ..frontend.graph import model_inputs, model_outputs, returned
from ..manifest import Conversion, Edge, WireSpec, payload_bytes
from ..nn import Accumulator, Encoder
from ..targets.jetson import pytorch_layout

FLOAT_BITS = 32


def _module(gm, node):
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def _edge(producer, consumer, conversion, node, bits) -> Edge:
    shape = list(node.meta["shape"][1:])
    time_last = node.meta.get("hybridc_domain") == "spiking" or node.op == "placeholder" or isinstance(
        conversion, Conversion) and conversion.kind == "encoder"
    return Edge(producer, consumer, conversion, shape, pytorch_layout(shape, time_last),
                node.meta.get("dtype", "float32"), bits, payload_bytes(shape, bits))


def _wired(edge: Edge, wire) -> Edge:
    """An accumulator edge as its wire format (chosen by the dense target) sends it: "counts"
    or summed "values" (the sender accumulates; window sums cross), or graded "values" as
    they are, packed at wire.bits each."""
    if wire is None:
        return edge
    if wire.summed:
        edge.shape, edge.layout = list(wire.shape), edge.layout[:-1] + "K"
        edge.conversion.runs_on = "producer"
    if wire.format != "spikes":
        edge.bits_per_value, edge.bytes_per_inference = wire.bits, wire.bytes_per_inference
    return edge


def _held(edge: Edge, stage, name: str) -> Edge:
    """An Encoder edge whose values are held `hold` steps: one step per window crosses and the
    receiver repeats it (the "held" wire format, recorded on the consumer's input)."""
    hold, steps = edge.conversion.hold, edge.shape[-1]
    if hold == 1 or steps % hold:
        return edge
    wire = WireSpec("held", edge.bits_per_value, hold, steps // hold, list(edge.shape))
    stage.wire = {**(stage.wire or {}), name: wire}
    edge.shape, edge.layout = list(wire.shape), edge.layout[:-1] + "K"
    edge.bytes_per_inference = wire.bytes_per_inference
    return edge


def _producer(node, owner, stages, inputs) -> dict:
    if node.op == "placeholder":
        return {"stage": None, "tensor": inputs[node.name]}
    stage = stages[owner[node]]
    spec = next(t for t in stage.outputs if t.node == node.name)
    return {"stage": stage.name, "tensor": spec.name}


def stage_edges(gm: torch.fx.GraphModule, partitions, stages) -> list:
    """Edges in stage order: into each stage, then out to the model output."""
    nodes = {n.name: n for n in gm.graph.nodes}
    owner = {n: i for i, p in enumerate(partitions) for n in p.nodes}
    inputs = model_inputs(gm)
    edges = []
    for partition, stage in zip(partitions, stages):
        for spec in stage.inputs:
            source = nodes[spec.node]
            producer = _producer(source, owner, stages, inputs)
            consumer = {"stage": stage.name, "input": spec.name}
            if source.meta.get("hybridc_domain") == "spiking":  # into dense code: one edge per accumulator
                for user in source.users:
                    module = _module(gm, user)
                    if user in partition.nodes and isinstance(module, Accumulator):
                        conversion = Conversion("accumulator", "consumer", module.interval,
                                                module.windows(source.meta["shape"][-1]), module.fold,
                                                node=user.name)
                        edges.append(_wired(_edge(producer, consumer, conversion, source, 1),
                                            (stage.wire or {}).get(spec.name)))
                continue
            encoder = _module(gm, source)
            if isinstance(encoder, Encoder):
                conversion = Conversion("encoder", "producer", bits=encoder.bits, hold=encoder.hold, node=source.name)
                edges.append(_held(_edge(producer, consumer, conversion, source, encoder.bits), stage, spec.name))
            else:
                bits = 1 if partition.domain == "spiking" and not spec.graded else FLOAT_BITS
                edges.append(_edge(producer, consumer, Conversion("none"), source, bits))
    results = returned(gm)
    names = model_outputs(gm)
    for result in results:
        if not isinstance(result, torch.fx.Node) or result not in owner or len(names) != len(results):
            raise LoweringError(
                "The model's forward() returns "
                f"{'an input unchanged' if isinstance(result, torch.fx.Node) else type(result).__name__}"
                f"{' twice' if isinstance(result, torch.fx.Node) and len(names) != len(results) else ''}; "
                "hybridc deploys tensors computed by the model: return them once each, as one tensor or a "
                "tuple (or dict) of tensors."
            )
        bits = 1 if result.meta.get("hybridc_domain") == "spiking" else FLOAT_BITS
        edges.append(_edge(_producer(result, owner, stages, inputs), {"stage": None, "input": names[result.name]},
                           Conversion("none"), result, bits))
    return edges
