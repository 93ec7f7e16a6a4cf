"""The partitioned fx graph as a networkx DiGraph, for inspection and for saving."""

import networkx as nx
import torch.fx

from ..nn import Accumulator, Encoder


def _target_name(node: torch.fx.Node) -> str:
    if node.op in ("call_module", "get_attr"):
        return str(node.target)
    return getattr(node.target, "__name__", str(node.target))


def model_inputs(gm: torch.fx.GraphModule) -> dict:
    """{placeholder node name: the model input's name in the manifest}, in forward()'s order:
    `input` for the first (the only one, in most models), `input_1`, `input_2`... after it.
    Placeholders of arguments with defaults or *args are not model inputs."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder" and not n.args
                    and not str(n.target).startswith("*")]
    return {node.name: "input" if i == 0 else f"input_{i}" for i, node in enumerate(placeholders)}


def returned(gm: torch.fx.GraphModule) -> list:
    """What forward() returns, as a list: one value, or the items of a tuple, list or dict (in
    their order). Entries may be fx nodes or constants."""
    result = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    if isinstance(result, dict):
        return list(result.values())
    return list(result) if isinstance(result, (tuple, list)) else [result]


def model_outputs(gm: torch.fx.GraphModule) -> dict:
    """{fx node name: the model output's name in the manifest}: `output` for the first value
    forward() returns (the only one, in most models), `output_1`, `output_2`... after it."""
    return {node.name: "output" if i == 0 else f"output_{i}" for i, node in enumerate(returned(gm))
            if isinstance(node, torch.fx.Node)}


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


_TEXT = {"type": ["string", "null"], "maxLength": 1024}
# graph.json as read back from a build directory, which may come from anyone: the fields
# inspection uses, with their types and bounds.
GRAPH_SCHEMA = {
    "type": "object",
    "required": ["nodes", "links"],
    "properties": {
        "nodes": {"type": "array", "maxItems": 100_000, "items": {
            "type": "object",
            "required": ["id", "op", "parameters"],
            "properties": {
                "id": {"type": "string", "maxLength": 1024},
                "op": {"type": "string", "maxLength": 64},
                "call": _TEXT, "module_type": _TEXT, "dtype": _TEXT, "target": _TEXT, "partition": _TEXT,
                "recognised_from": _TEXT,
                "shape": {"type": ["array", "null"], "maxItems": 16,
                          "items": {"type": "integer", "minimum": 0, "maximum": 1 << 40}},
                "parameters": {"type": "integer", "minimum": 0, "maximum": 1 << 40},
                "accumulator": {"type": ["object", "null"], "properties": {
                    "interval": {"type": "integer", "minimum": 1}, "fold": {"type": "boolean"}}},
            },
        }},
        "links": {"type": "array", "maxItems": 1_000_000, "items": {
            "type": "object", "required": ["source", "target"],
            "properties": {"source": {"type": "string", "maxLength": 1024},
                           "target": {"type": "string", "maxLength": 1024}},
        }},
    },
}


def from_json_data(data: dict) -> nx.DiGraph:
    """The graph saved by to_json_data; ArtifactError naming the field when it is not one."""
    import jsonschema
    from jsonschema.exceptions import best_match

    from ..errors import ArtifactError

    error = best_match(jsonschema.Draft202012Validator(GRAPH_SCHEMA).iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ArtifactError(f"graph.json is not valid at `{where}`: {error.message[:200]}. The build is damaged "
                            "or was not written by this hybridc; recompile the model.")
    return nx.node_link_graph(data, directed=True)
