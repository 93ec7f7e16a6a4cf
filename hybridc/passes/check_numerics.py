"""Refuse parameters a device cannot represent, before any artifact is written.

NaN/Inf anywhere is refused. Each target may add its own range check (Loihi's
fixed-point weights and thresholds) through `check_ranges`, and limits that depend on
the data (Loihi's 24-bit conv input sums of sigma-delta layers, the 24-bit state of CUBA
neurons) through `checks_activity` / `check_activity`, measured on the example input
(the target contract, `targets/base.py`, declares them as no-ops).
"""

import math

import torch
import torch.fx

from ..errors import NumericsError
from ..frontend.tracer import describe


def _tensors(module, named: bool = False) -> list:
    named_tensors = list(module.named_parameters()) + list(module.named_buffers())
    return named_tensors if named else [t for _, t in named_tensors]


def _all_finite(tensors) -> bool:
    """Whether every float value of every tensor is finite. One sum per tensor: NaN and
    Inf survive a sum, and summing reads memory once without allocating (isfinite().all()
    was 50x slower on a 1.5M-weight model). A finite model whose sum overflows only sends
    the caller to its exact per-tensor check."""
    return all(math.isfinite(float(t.detach().sum())) for t in tensors if t.is_floating_point())


class _ActivityCheck(torch.fx.Interpreter):
    """Runs the example input through the graph and hands each checked layer its inputs."""

    def __init__(self, gm, checks, on_overflow):
        super().__init__(gm)
        self.checks, self.on_overflow, self.notes = checks, on_overflow, []
        self.extra_traceback = False  # the messages already name the layer

    def call_module(self, target, args, kwargs):
        if target in self.checks:
            check, where = self.checks[target]
            self.notes += check(self.module.get_submodule(target), args, where, self.on_overflow)
        return super().call_module(target, args, kwargs)


def check_numerics(gm: torch.fx.GraphModule, targets: dict, on_overflow: str = "error",
                   example_input: torch.Tensor = None) -> list:
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
        if target is not None:
            notes += target.check_ranges(module, f"`{node.target}` ({describe(gm, node)})", on_overflow)
    checks = {}
    for node, module in nodes:
        target = by_name.get(node.meta.get("hybridc_target"))
        if example_input is not None and target is not None and target.checks_activity(module):
            checks[node.target] = (target.check_activity, f"`{node.target}` ({describe(gm, node)})")
    if checks:
        with torch.no_grad():
            runner = _ActivityCheck(gm, checks, on_overflow)
            runner.run(*(example_input if isinstance(example_input, tuple) else (example_input,)))
        notes += runner.notes
    return notes
