"""Refuse parameters a device cannot represent, before any artifact is written.

NaN/Inf anywhere is refused. Each target may add its own range check (Loihi's
fixed-point weights and thresholds) through an optional `check_ranges` method.
"""

import torch
import torch.fx

from ..errors import NumericsError
from ..frontend.tracer import describe

CHUNK = 1 << 24  # values checked per reduction


def _tensors(module, named: bool = False) -> list:
    named_tensors = list(module.named_parameters()) + list(module.named_buffers())
    return named_tensors if named else [t for _, t in named_tensors]


def _all_finite(tensors) -> bool:
    """Whether every float value of every tensor is finite, in a few reductions over chunks
    instead of one per tensor (a model holds many tiny ones: decays, thresholds)."""
    chunk, size = [], 0
    for tensor in tensors:
        if tensor.is_floating_point():
            chunk.append(tensor.detach().reshape(-1))
            size += tensor.numel()
        if size >= CHUNK:
            if not bool(torch.isfinite(torch.cat(chunk)).all()):
                return False
            chunk, size = [], 0
    return not chunk or bool(torch.isfinite(torch.cat(chunk)).all())


def check_numerics(gm: torch.fx.GraphModule, targets: dict, on_overflow: str = "error") -> list:
    """Raises NumericsError on the first problem; returns warnings for clipped values."""
    if on_overflow not in ("error", "clip"):
        raise NumericsError(f"on_overflow must be 'error' or 'clip', got {on_overflow!r}.")
    by_name = {t.name: t for t in targets.values()}
    notes = []
    nodes = [(node, gm.get_submodule(node.target)) for node in gm.graph.nodes if node.op == "call_module"]
    all_finite = _all_finite(t for _, module in nodes for t in _tensors(module))
    for node, module in nodes:
        for name, tensor in ([] if all_finite else _tensors(module, named=True)):
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad = tensor[~torch.isfinite(tensor)].flatten()[0].item()
                raise NumericsError(
                    f"`{node.target}.{name}` ({describe(gm, node)}) contains {bad} "
                    f"({int((~torch.isfinite(tensor)).sum())} non-finite values). The checkpoint is "
                    "broken (diverged training?); retrain or load another checkpoint."
                )
        target = by_name.get(node.meta.get("hybridc_target"))
        check = getattr(target, "check_ranges", None)
        if check is not None:
            notes += check(module, f"`{node.target}` ({describe(gm, node)})", on_overflow)
    return notes
