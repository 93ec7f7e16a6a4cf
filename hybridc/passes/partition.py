"""Group tagged nodes into partitions and check that the split can be deployed.

A deployment runs the spiking partition first (on the neuromorphic chip), sends
the cut tensor over the link, then runs the dense partition. So the graph must
have at most one connected partition per side, no dense -> spiking edge, and a
spiking partition that is a plain chain (netx layers are connected in order).
Writes node.meta["hybridc_partition"]; does not change the graph.
"""

from dataclasses import dataclass, field

import networkx as nx
import torch.fx

from ..errors import PartitionError
from ..frontend.tracer import describe
from .insert_cut_accumulators import is_accumulator

ORDER = ("spiking", "dense")
NAMES = {"spiking": "snn", "dense": "ann"}


@dataclass
class Partition:
    name: str
    domain: str
    target: str
    nodes: list  # fx nodes, topological order
    inputs: list = field(default_factory=list)  # nodes outside that feed it
    outputs: list = field(default_factory=list)  # its nodes used outside (or returned)


def _components(gm, domain):
    nodes = [n for n in gm.graph.nodes if n.meta.get("hybridc_domain") == domain]
    g = nx.Graph()
    g.add_nodes_from(nodes)
    g.add_edges_from((a, b) for a in nodes for b in a.users if b in g)
    return nodes, list(nx.connected_components(g))


def _check_edges(gm):
    has_spiking = any(n.meta.get("hybridc_domain") == "spiking" for n in gm.graph.nodes)
    for node in gm.graph.nodes:
        for user in node.users:
            if node.meta.get("hybridc_domain") == "dense" and user.meta.get("hybridc_domain") == "spiking":
                raise PartitionError(
                    f"Dense node `{node.name}` ({describe(gm, node)}) feeds spiking node "
                    f"`{user.name}` ({describe(gm, user)}). A hybrid deployment runs the spiking "
                    "part first and the dense part after the cut, so data cannot flow back "
                    "from dense to spiking. Move this computation before the spiking layers "
                    "into a slayer block, or out of the model (into data preprocessing)."
                )
    for node in gm.graph.nodes:
        for user in node.users:
            if node.op == "placeholder" and has_spiking and user.meta.get("hybridc_domain") == "dense":
                raise PartitionError(
                    f"Dense node `{user.name}` ({describe(gm, user)}) reads the model input "
                    "directly, but the dense stage only receives the spikes at the cut. Feed the "
                    "input through the spiking layers, or compute this in preprocessing."
                )


def _check_chain(gm, nodes):
    """netx connects layers strictly in order: no fan-out or fan-in inside the SNN."""
    members = set(nodes)
    for node in nodes:
        spiking_users = [u for u in node.users if u in members]
        spiking_inputs = [a for a in node.all_input_nodes if a in members]
        if len(spiking_users) > 1 or len(spiking_inputs) > 1 or len(node.all_input_nodes) > 1:
            raise PartitionError(
                f"The spiking subgraph branches at `{node.name}` ({describe(gm, node)}): it "
                f"feeds {[u.name for u in node.users]} and reads "
                f"{[a.name for a in node.all_input_nodes]}. netx (Loihi) runs layers strictly "
                "in a chain, with no skips, branches or merges. Make the spiking part a "
                "sequence of blocks, or move the branching part behind the cut."
            )
    crossing = [n for n in nodes if any(u not in members for u in n.users)]
    if len(crossing) > 1:
        raise PartitionError(
            f"Several spiking layers ({', '.join(n.name for n in crossing)}) send spikes out of "
            "the spiking part; netx exposes only the last layer's output. Cut the model after "
            "one layer."
        )


def partition(gm: torch.fx.GraphModule) -> list:
    """Returns partitions in execution order (spiking first)."""
    _check_edges(gm)
    result = []
    for domain in ORDER:
        nodes, components = _components(gm, domain)
        if not nodes:
            continue
        if len(components) > 1:
            first = [min(c, key=nodes.index).name for c in components]
            raise PartitionError(
                f"The {domain} part of the model falls into {len(components)} disconnected "
                f"pieces (starting at {', '.join(first)}): the model crosses between spiking and "
                "dense code more than once (e.g. SNN -> ANN -> SNN). hybridc deploys one spiking "
                "stage followed by one dense stage; restructure the model so there is one cut."
            )
        if domain == "spiking":
            _check_chain(gm, nodes)
        else:
            for node in nodes:
                for arg in node.all_input_nodes:
                    if arg.meta.get("hybridc_domain") == "spiking" and not is_accumulator(gm, node):
                        raise PartitionError(
                            f"Internal check failed: spikes reach `{node.name}` without an "
                            "accumulator. Please report this."
                        )
        members = set(nodes)
        inputs = []
        for n in nodes:
            for a in n.all_input_nodes:
                if a not in members and a.op != "get_attr" and a not in inputs:
                    inputs.append(a)
        outputs = [n for n in nodes if any(u not in members for u in n.users)]
        target = nodes[0].meta["hybridc_target"]
        for n in nodes:
            n.meta["hybridc_partition"] = NAMES[domain]
        result.append(Partition(NAMES[domain], domain, target, nodes, inputs, outputs))
    if not result:
        raise PartitionError("The model has no computation to compile (forward returns its input).")
    return result
