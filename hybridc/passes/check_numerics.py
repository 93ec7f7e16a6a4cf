"""Refuse parameters a device cannot represent, before any artifact is written.

NaN/Inf anywhere is refused. Each target may add its own range check (Loihi's
fixed-point weights and thresholds) through an optional `check_ranges` method.
"""

import torch
import torch.fx

from ..errors import NumericsError
from ..frontend.tracer import describe


def check_numerics(gm: torch.fx.GraphModule, targets: dict, on_overflow: str = "error") -> list:
    """Raises NumericsError on the first problem; returns warnings for clipped values."""
    if on_overflow not in ("error", "clip"):
        raise NumericsError(f"on_overflow must be 'error' or 'clip', got {on_overflow!r}.")
    by_name = {t.name: t for t in targets.values()}
    notes = []
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        module = gm.get_submodule(node.target)
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
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
