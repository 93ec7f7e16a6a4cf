"""Group tagged nodes into stages and check that the stage graph can be deployed.

Every connected spiking subgraph and every connected dense subgraph becomes one
stage; stages run in a topological order of the graph between them. Crossings are
explicit in the model: spiking -> dense through an Accumulator (inserted as the
identity when missing), dense -> spiking through an Encoder (refused when missing,
because PyTorch must compute the graded values the chip will receive). A spiking
stage is a DAG of layers (fan-out, and fan-in through ADD or concatenation of spikes,
see `spike_merges`) that may expose several layers' spikes (taps). Writes node.meta["hybridc_partition"]; does not change the graph.
"""

from dataclasses import dataclass, field

import networkx as nx
import torch.fx

from ..errors import PartitionError
from ..frontend.tracer import describe
from ..nn import Encoder
from .insert_cut_accumulators import is_accumulator
from .spike_merges import merge_kind

NAMES = {"spiking": "snn", "dense": "ann"}


@dataclass
class Partition:
    name: str
    domain: str
    target: str
    nodes: list  # fx nodes, topological order
    inputs: list = field(default_factory=list)  # nodes outside that feed it (placeholders or other stages)
    outputs: list = field(default_factory=list)  # its nodes used outside (or returned)


def is_encoder(gm: torch.fx.GraphModule, node: torch.fx.Node) -> bool:
    return node.op == "call_module" and isinstance(gm.get_submodule(node.target), Encoder)


def _components(gm, domain) -> list:
    """Connected subgraphs of one domain, each a list of nodes in graph order."""
    nodes = [n for n in gm.graph.nodes if n.meta.get("hybridc_domain") == domain]
    g = nx.Graph()
    g.add_nodes_from(nodes)
    g.add_edges_from((a, b) for a in nodes for b in a.users if b in g)
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    return [sorted(c, key=order.get) for c in nx.connected_components(g)]


def _check_crossings(gm):
    """Dense -> spiking needs an Encoder; spiking -> dense an accumulator (inserted earlier)."""
    for node in gm.graph.nodes:
        for user in node.users:
            domains = node.meta.get("hybridc_domain"), user.meta.get("hybridc_domain")
            if domains == ("dense", "spiking") and not is_encoder(gm, node):
                raise PartitionError(
                    f"Dense node `{node.name}` ({describe(gm, node)}) feeds spiking node "
                    f"`{user.name}` ({describe(gm, user)}) directly. Data going from dense to spiking "
                    "code reaches Loihi as graded spikes (unsigned integers), so the model must say how "
                    "its real values become them: add `hybridc.nn.Encoder(bits=8, hold=1)` on this edge "
                    f"(`{user.name}(encoder({node.name}))`), and PyTorch then computes what the chip will."
                )
            if domains == ("spiking", "dense") and not is_accumulator(gm, user):
                raise PartitionError(
                    f"Internal check failed: spikes of `{node.name}` reach `{user.name}` without an "
                    "accumulator. Please report this."
                )


def _check_branches(gm, nodes):
    """A spiking stage is a DAG of layers: fan-out is free (Lava fans an output port out), and
    fan-in goes through an ADD or cat (parallel synapses into the consumer's neurons). A layer
    called on several tensors has no such meaning."""
    for node in nodes:
        if merge_kind(node) is None and len(node.all_input_nodes) > 1:
            raise PartitionError(
                f"The spiking node `{node.name}` ({describe(gm, node)}) reads several tensors "
                f"({[a.name for a in node.all_input_nodes]}). Inside a spiking stage, tensors meet only "
                "through an ADD (`a + b`) or `torch.cat(..., dim=1)` before the next layer; combine them "
                "that way, or move this part into dense code."
            )


def _order(gm, parts) -> list:
    """Stages in a topological order of the stage graph (ties: first node in the model)."""
    owner = {n: i for i, p in enumerate(parts) for n in p.nodes}
    graph = nx.DiGraph()
    graph.add_nodes_from(range(len(parts)))
    for i, p in enumerate(parts):
        for n in p.nodes:
            for u in n.users:
                if owner.get(u, i) != i:
                    graph.add_edge(i, owner[u])
    if not nx.is_directed_acyclic_graph(graph):
        cycle = nx.find_cycle(graph)
        names = " -> ".join(parts[a].nodes[0].name for a, _ in cycle)
        raise PartitionError(
            f"The stages of this model form a cycle ({names} -> ...): a dense subgraph both feeds a "
            "spiking stage and reads its output, so neither can run first. Keep the dense code before "
            "the spiking stage separate from the dense code after it (no tensor shared between them)."
        )
    first = {i: list(gm.graph.nodes).index(p.nodes[0]) for i, p in enumerate(parts)}
    return [parts[i] for i in nx.lexicographical_topological_sort(graph, key=first.get)]


def partition(gm: torch.fx.GraphModule) -> list:
    """Returns the stages (Partition) in execution order."""
    _check_crossings(gm)
    parts = []
    for domain in NAMES:
        for nodes in _components(gm, domain):
            if domain == "spiking":
                _check_branches(gm, nodes)
            parts.append(Partition("", domain, nodes[0].meta["hybridc_target"], nodes))
    if not parts:
        raise PartitionError("The model has no computation to compile (forward returns its input).")
    parts = _order(gm, parts)
    counts = {d: sum(p.domain == d for p in parts) for d in NAMES}
    seen = {d: 0 for d in NAMES}
    for p in parts:
        seen[p.domain] += 1
        # one stage per side keeps the names of the two-stage builds (snn, ann)
        p.name = NAMES[p.domain] + (str(seen[p.domain]) if counts[p.domain] > 1 else "")
        members = set(p.nodes)
        for n in p.nodes:
            n.meta["hybridc_partition"] = p.name
            for a in n.all_input_nodes:
                if a not in members and a.op != "get_attr" and a not in p.inputs:
                    p.inputs.append(a)
        p.outputs = [n for n in p.nodes if any(u not in members for u in n.users)]
    return parts
