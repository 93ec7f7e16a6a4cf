"""The contract every target implements.

Like ExecuTorch's `BackendDetails` (`exir/backend/backend_details.py`), a target is a
small class with one abstract method, `preprocess`, which the compile driver
(`compiler/driver.py`) calls once per partition after the passes have tagged and cut the
graph. Everything else a pass may ask of a target is declared here with a default that
does nothing, so callers call it directly instead of probing with `getattr`.

A target is registered by module path in `registry.py` and built there as
`Target(options)`. This module imports nothing heavy (no torch, no Lava), so the
registry and `hybridc --help` stay instant.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: importing torch here would slow down `hybridc --help`
    import torch.fx
    from torch.fx.passes.operator_support import OperatorSupportBase

    from ..manifest import Stage

__all__ = ["Target"]


class Target(ABC):
    """One side of the cut: the spiking target (Loihi, NIR) or the dense one (Jetson, CPU)."""

    #: the name registered in `registry.py` (and written as each stage's `target`)
    name: str
    #: "spiking" or "dense": which side of the cut the target runs (as in its registry entry)
    domain: str
    #: what `supports` accepts, in words: quoted when a layer is refused and by `hybridc targets`
    supported_ops: Sequence[str] = ()
    #: the neuron models a spiking target lowers, in words (`hybridc targets`); none for dense targets
    neuron_models: Sequence[str] = ()

    def __init__(self, options: dict = None):
        #: per-target settings from `compile(target_options=...)` / the CLI (e.g. calibration)
        self.options = options or {}

    @property
    @abstractmethod
    def supports(self) -> OperatorSupportBase:
        """A torch.fx `OperatorSupportBase`: which nodes this target runs (`passes/tag_targets`).
        Usually a class attribute built with `create_op_support`."""

    @abstractmethod
    def preprocess(self, partition, gm: torch.fx.GraphModule, workdir: Path) -> Stage:
        """Write the artifact for one partition (a `passes.partition.Partition`: its nodes in `gm`,
        inputs and outputs) into `workdir`, and describe it as a manifest `Stage`."""

    # --- optional: the defaults do nothing ----------------------------------------------

    def why_unsupported(self, submodules: dict, node: torch.fx.Node) -> str:
        """Why `supports` refuses `node`, for the error message ('' when there is nothing to add)."""
        return ""

    def check_ranges(self, block: torch.nn.Module, where: str, on_overflow: str) -> list:
        """Refuse (raise NumericsError) parameters of `block` the device cannot represent, or
        return notes on values clipped when on_overflow is 'clip' (`passes/check_numerics`)."""
        return []

    def checks_activity(self, block: torch.nn.Module) -> bool:
        """Whether `check_activity` has a data-dependent limit to measure on this block."""
        return False

    def check_activity(self, block: torch.nn.Module, inputs: tuple, where: str, on_overflow: str) -> list:
        """Like `check_ranges`, on the block's inputs from the example input; called only for
        blocks `checks_activity` accepts."""
        return []
