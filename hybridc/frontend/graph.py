"""The partitioned fx graph as a networkx DiGraph, for inspection and for saving."""

import networkx as nx
import torch.fx

from ..nn import Accumulator, Encoder


def _target_name(node: torch.fx.Node) -> str:
    if node.op in ("call_module", "get_attr"):
        return str(node.target)
    return getattr(node.target, "__name__", str(node.target))


def to_networkx(gm: torch.fx.GraphModule) -> nx.DiGraph:
    graph = nx.DiGraph()
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        module = modules.get(node.target) if node.op == "call_module" else None
        graph.add_node(
            node.name,
            op=node.op,
            call=_target_name(node),
            module_type=type(module).__name__ if module is not None else None,
            shape=list(node.meta["shape"]) if "shape" in node.meta else None,
            dtype=node.meta.get("dtype"),
            target=node.meta.get("hybridc_target"),
            partition=node.meta.get("hybridc_partition"),
            parameters=sum(p.numel() for p in module.parameters()) if module is not None else 0,
            recognised_from=node.meta.get("recognised_from"),
            accumulator=({"interval": module.interval, "fold": module.fold}
                         if isinstance(module, Accumulator) else None),
            encoder=({"bits": module.bits, "hold": module.hold} if isinstance(module, Encoder) else None),
        )
    for node in gm.graph.nodes:
        for user in node.users:
            graph.add_edge(node.name, user.name)
    return graph


def to_json_data(graph: nx.DiGraph) -> dict:
    return nx.node_link_data(graph)


def from_json_data(data: dict) -> nx.DiGraph:
    return nx.node_link_graph(data, directed=True)
