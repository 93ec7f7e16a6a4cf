"""Guarantee exactly one accumulator on every spiking -> dense edge.

Spikes that cross into dense code without one are carried raw: an interval-1,
unfolded accumulator (the identity) marks the crossing, and a warning gives the
bytes per inference that then cross the link between the chips.
"""

import warnings
from math import prod

import torch.fx

from ..nn import Accumulator


def is_accumulator(gm: torch.fx.GraphModule, node: torch.fx.Node) -> bool:
    return node.op == "call_module" and isinstance(gm.get_submodule(node.target), Accumulator)


def _is_shape_query(node: torch.fx.Node) -> bool:
    """`x.shape`, `x.size()`, `x.dim()`: reads metadata, moves no spikes."""
    if node.op == "call_function" and node.target is getattr:
        return node.args[1] == "shape"
    return node.op == "call_method" and node.target in ("size", "dim")


def insert_cut_accumulators(gm: torch.fx.GraphModule) -> list:
    created = []
    for node in list(gm.graph.nodes):
        if node.meta.get("hybridc_domain") != "spiking":
            continue
        raw_users = [u for u in node.users
                     if u.meta.get("hybridc_domain") == "dense" and not is_accumulator(gm, u)]
        if not raw_users:
            continue
        name = f"hybridc_raw_cut_{node.name}"
        gm.add_submodule(name, Accumulator(1, fold=False))
        with gm.graph.inserting_after(node):
            bridge = gm.graph.call_module(name, (node,))
        for user in raw_users:
            user.replace_input_with(node, bridge)
        dense_target = raw_users[0].meta["hybridc_target"]
        bridge.meta.update(shape=node.meta["shape"], dtype=node.meta["dtype"],
                           hybridc_domain="dense", hybridc_target=dense_target)
        created.append(bridge)
        if all(_is_shape_query(u) for u in raw_users):
            continue
        per_sample = prod(node.meta["shape"][1:])
        warnings.warn(
            f"Spikes from `{node.name}` cross into dense code ({', '.join(u.name for u in raw_users)}) "
            f"without an accumulator, so they are sent raw: {per_sample} spikes, "
            f"{per_sample / 8:.0f} bytes per inference as bits. Add "
            "hybridc.nn.Accumulator(interval=I) at the cut to send T/I counts instead.",
            stacklevel=2,
        )
    if created:
        gm.recompile()
    return created
