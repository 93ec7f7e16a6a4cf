"""The `emulate` backend of a loihi stage: the chain runner for a stage of one netx file,
the graph runner for a branching one (netx chains joined by extra synapses)."""

from pathlib import Path

import torch

from ...errors import ArtifactError
from . import graph
from .chain import run_chain_stage

__all__ = ["refuse_unsupported", "run_stage", "supports"]


def supports(stage) -> bool:
    """Whether the emulator runs this loihi stage: every chain stage hybridc writes (taps, an
    Encoder's graded input, CUBA, sigma-delta and resonate-and-fire layers); a branching stage
    as the graph runner says."""
    if getattr(stage, "segments", None):
        return graph.supports(stage)
    return stage.target == "loihi"


def refuse_unsupported(stage) -> None:
    """ArtifactError for a stage the emulator cannot run (none of the loihi stages hybridc writes)."""
    if not supports(stage):
        raise ArtifactError(f"Stage `{stage.name}` is a {stage.target} stage; the emulator runs Loihi (netx) stages "
                            "only. Run this build with --backend lava.")


def run_stage(stage, build_dir: Path, x: torch.Tensor, progress=None):
    """The same inputs and outputs as Lava's runner (`runtime/lava.py`: one tensor, or a tuple
    in the order of stage.outputs for a stage with taps; graded outputs as real values)."""
    if isinstance(x, dict):
        (x,) = x.values()
    if getattr(stage, "segments", None):  # a branching stage: netx chains joined by extra synapses
        return graph.run_graph_stage(stage, build_dir, x, progress)
    refuse_unsupported(stage)
    return run_chain_stage(stage, build_dir, x, progress)
