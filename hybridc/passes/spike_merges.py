"""Spike merges: element-wise ADD and concatenation of spike tensors inside a spiking stage.

SEW-ResNet adds a block's output spikes to its input spikes, U-Net style encoders
concatenate branches. Both are linear, so Loihi computes them exactly when the next
layer's synapse is applied to each addend (or slice) and the currents are summed at the
neurons' input, where Lava adds. Anything else that combines spike tensors (SEW's AND and
IAND, a product, a difference, a scaled sum) is not a weighted sum of spikes and is refused.

`tag_spike_merges` re-tags such a merge as spiking when every input is spikes and it feeds
spiking code, then refuses (`refuse_spike_combinations`) any other dense node between spikes
and spiking code, with `why_not_merge`'s reason.
"""

import operator

import torch
import torch.fx

from ..errors import PartitionError
from ..frontend.tracer import describe
from ..nn import Encoder

ADDS = (operator.add, torch.add)
CATS = (torch.cat, torch.concat)


def merge_kind(node: torch.fx.Node):
    """"add", "cat" or None."""
    if (node.op == "call_function" and node.target in ADDS) or (node.op == "call_method" and node.target == "add"):
        return "add"
    if node.op == "call_function" and node.target in CATS:
        return "cat"
    return None


def merge_inputs(node: torch.fx.Node) -> list:
    """The tensors a merge combines, in order (a cat's list, or an add's two operands)."""
    if merge_kind(node) == "cat":
        return list(node.args[0]) if node.args else list(node.kwargs.get("tensors", []))
    return [a for a in list(node.args)[:2]]


def _cat_dim(node) -> int:
    return node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)


def why_not_merge(node: torch.fx.Node) -> str:
    """Why Loihi cannot compute this combination of spike tensors exactly ('' when it can)."""
    kind = merge_kind(node)
    if kind is None:
        op = node.target if node.op == "call_method" else getattr(node.target, "__name__", str(node.target))
        if len(node.all_input_nodes) == 1:
            return (f"it applies `{op}` to spikes between spiking layers. Inside a spiking stage hybridc lowers "
                    "slayer blocks (use slayer's Flatten block to reshape), sums (ADD) and concatenations of "
                    "spike tensors; move this operation into dense code after an Accumulator, or drop it")
        return (f"it computes `{op}` on spike tensors. Loihi's synapses only add weighted spikes, so the "
                "next layer can receive a sum (SEW's ADD) or a concatenation of spike tensors, but not a "
                "product, AND, IAND, difference or other non-linear combination, which the chip cannot "
                "compute exactly. Use ADD (`a + b`) or `torch.cat(..., dim=1)`, or move this part into dense code")
    inputs = merge_inputs(node)
    if not all(isinstance(a, torch.fx.Node) for a in inputs) or len(inputs) < 2:
        return (f"its {kind} mixes spikes with constants ({[str(a) for a in inputs]}); only sums and "
                "concatenations of spike tensors are lowered to synapses")
    if kind == "add":
        if set(node.kwargs) - {"other", "input"} or len(node.args) > 2:
            return "it scales an addend (alpha=...); only plain sums of spike tensors are lowered to synapses"
        shapes = {tuple(a.meta.get("shape", ())) for a in inputs}
        if len(shapes) != 1:
            return (f"it broadcasts tensors of shapes {sorted(shapes)}; the addends of a spike sum must have "
                    "the same shape")
    else:
        rank = len(node.meta.get("shape", ()))
        if rank < 3 or _cat_dim(node) % rank != 1:
            return (f"it concatenates along dim {_cat_dim(node)}; only channels/features (dim=1 of "
                    "(N, C, H, W, T) or (N, F, T)) split into the next layer's weights")
    return ""


def _is_spike_source(gm, node) -> bool:
    """Spikes: a spiking node's output, the model input, or an Encoder's graded spikes."""
    return (node.meta.get("hybridc_domain") == "spiking" or node.op == "placeholder" or (
        node.op == "call_module" and isinstance(gm.get_submodule(node.target), Encoder)))


def tag_spike_merges(gm: torch.fx.GraphModule, spiking_target) -> list:
    """Re-tag as spiking every ADD/cat whose inputs are spikes (or such merges) and that feeds
    spiking code (a spiking layer, or another such merge). Two linear passes over the graph's
    topological order: forward, the merges whose inputs are all spikes; backward, those that
    reach a spiking user (a merge's users come after it, so each is decided once). Returns
    the merges tagged, in graph order."""
    nodes = list(gm.graph.nodes)  # fx keeps them in topological order
    of_spikes = set()  # merges whose every input is spikes or another such merge
    for node in nodes:
        if node.meta.get("hybridc_domain") != "dense" or merge_kind(node) is None or why_not_merge(node):
            continue
        inputs = merge_inputs(node)
        if all(a in of_spikes or _is_spike_source(gm, a) for a in inputs) and not all(
                a.op == "placeholder" for a in inputs):
            of_spikes.add(node)
    tagged = []
    for node in reversed(nodes):
        if node in of_spikes and any(u.meta.get("hybridc_domain") == "spiking" for u in node.users):
            node.meta["hybridc_domain"] = "spiking"
            node.meta["hybridc_target"] = spiking_target.name
            tagged.append(node)
    refuse_spike_combinations(gm)
    return tagged[::-1]


def refuse_spike_combinations(gm: torch.fx.GraphModule) -> None:
    """PartitionError for a dense node that reads spikes and feeds spiking code directly (a
    product, AND, IAND, difference, ...): Loihi cannot compute it exactly. Runs before the
    cut accumulators are inserted, while the spike inputs are still visible."""
    for node in gm.graph.nodes:
        if node.meta.get("hybridc_domain") != "dense" or (
                node.op == "call_module" and isinstance(gm.get_submodule(node.target), Encoder)):
            continue
        spiking_users = [u for u in node.users if u.meta.get("hybridc_domain") == "spiking"]
        if spiking_users and any(a.meta.get("hybridc_domain") == "spiking" for a in node.all_input_nodes):
            dense = [a.name for a in node.all_input_nodes if not _is_spike_source(gm, a)]
            reason = why_not_merge(node) or (
                f"it mixes spikes with dense values ({', '.join(dense)}); dense values reach Loihi only as an "
                "Encoder's graded spikes: pass them through hybridc.nn.Encoder(bits=8, hold=1) first")
            raise PartitionError(
                f"Node `{node.name}` ({describe(gm, node)}) combines spike tensors and feeds spiking node "
                f"`{spiking_users[0].name}`, but {reason}."
            )
