"""Turn time reductions written as plain tensor code at the cut into Accumulator nodes.

Models written before hybridc existed sum spikes themselves: `spikes.sum(-1)`,
`spikes.mean(-1)`, `spikes.reshape(..., T//I, I).sum(-1)`, or the paper's frozen
all-ones Conv3d over time. Each becomes an explicit accumulator so the cut is
explicit and the dense target lowers it the same way.
"""

import operator

import torch
import torch.fx

from ..errors import TraceError
from ..nn import Accumulator
from .tag_targets import is_spiking_node


def _is_last_dim(dim, ndim) -> bool:
    if isinstance(dim, (tuple, list)):
        if len(dim) != 1:
            return False
        dim = dim[0]
    return isinstance(dim, int) and dim in (-1, ndim - 1)


def _reduction(node: torch.fx.Node):
    """('sum'|'mean', source) when node reduces the last axis of one tensor, else None."""
    if node.op == "call_method" and node.target in ("sum", "mean"):
        kind = node.target
    elif node.op == "call_function" and node.target in (torch.sum, torch.mean):
        kind = node.target.__name__
    else:
        return None
    if not node.args or not isinstance(node.args[0], torch.fx.Node):
        return None
    source = node.args[0]
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    if node.kwargs.get("keepdim") or (len(node.args) > 2 and node.args[2]) or node.kwargs.get("dtype"):
        return None
    if "shape" not in source.meta or not _is_last_dim(dim, len(source.meta["shape"])):
        return None
    return kind, source


def _window_reshape(node: torch.fx.Node):
    """For `x.reshape(*lead, T//I, I)` (or view) returns (x, I), else None."""
    if node.op != "call_method" or node.target not in ("reshape", "view"):
        return None
    source = node.args[0]
    if not isinstance(source, torch.fx.Node) or "shape" not in source.meta or "shape" not in node.meta:
        return None
    before, after = source.meta["shape"], node.meta["shape"]
    if len(after) != len(before) + 1 or tuple(after[:-2]) != tuple(before[:-1]):
        return None
    windows, interval = after[-2], after[-1]
    return (source, interval) if windows * interval == before[-1] else None


def _ones_conv3d_interval(module):
    """I for a frozen all-ones Conv3d with kernel=stride=(1, 1, I) per channel, else None."""
    if not isinstance(module, torch.nn.Conv3d):
        return None
    k, s = tuple(module.kernel_size), tuple(module.stride)
    per_channel = module.groups == module.in_channels == module.out_channels
    if k[:2] != (1, 1) or s != k or any(module.padding) or not per_channel:
        return None
    if module.bias is not None and bool(module.bias.detach().abs().sum() != 0):
        return None
    if not bool((module.weight.detach() == 1).all()):
        return None
    return k[2]


def _output_meta(accumulator, source, node) -> dict:
    """The accumulator's output shape and dtype, run on a meta tensor (no data, no second
    shape pass over the whole model). A recognised reduction computes the same shape."""
    spikes = torch.empty(source.meta["shape"], dtype=getattr(torch, source.meta["dtype"]), device="meta")
    try:
        out = accumulator(spikes)
    except Exception as exc:  # noqa: BLE001 - e.g. a time axis the interval does not divide
        raise TraceError(f"`{node.format_node()}` reads spikes as an accumulator would, but "
                         f"{type(exc).__name__}: {exc}") from None
    return {"shape": tuple(out.shape), "dtype": str(out.dtype).replace("torch.", "")}


def _replace(gm, node, source, accumulator, scale=None) -> torch.fx.Node:
    name = f"hybridc_accumulator_{node.name}"
    gm.add_submodule(name, accumulator)
    computed = _output_meta(accumulator, source, node)
    with gm.graph.inserting_before(node):
        new = gm.graph.call_module(name, (source,))
        new.meta.update(computed, recognised_from=node.format_node())
        replacement = new
        if scale is not None:
            replacement = gm.graph.call_function(operator.mul, (new, scale))
            replacement.meta.update(computed)
    node.replace_all_uses_with(replacement)
    return new


def recognise_accumulators(gm: torch.fx.GraphModule) -> list:
    """Rewrites recognised reductions fed by spiking nodes; returns the new accumulator nodes."""
    created = []
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node._erased:
            continue
        reduction = _reduction(node)
        if reduction:
            kind, source = reduction
            window = _window_reshape(source)
            if window and is_spiking_node(gm, window[0]) and len(source.users) == 1:
                spikes, interval = window
                scale = 1.0 / interval if kind == "mean" else None
                created.append(_replace(gm, node, spikes, Accumulator(interval, fold=False), scale))
                gm.graph.erase_node(node)
                gm.graph.erase_node(source)
                continue
            if is_spiking_node(gm, source):
                timesteps = source.meta["shape"][-1]
                scale = 1.0 / timesteps if kind == "mean" else None
                created.append(_replace(gm, node, source, Accumulator(timesteps, fold=True), scale))
                gm.graph.erase_node(node)
            continue
        if node.op == "call_module":
            interval = _ones_conv3d_interval(modules[node.target])
            source = node.args[0] if node.args else None
            if interval and isinstance(source, torch.fx.Node) and is_spiking_node(gm, source):
                created.append(_replace(gm, node, source, Accumulator(interval, fold=False)))
                gm.graph.erase_node(node)
    if created:
        gm.graph.eliminate_dead_code()  # e.g. the `x.shape[0]` a replaced reshape read
        gm.graph.lint()
        gm.recompile()
        gm.delete_all_unused_submodules()
    return created
