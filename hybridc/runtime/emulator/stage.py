"""The `emulate` backend of a loihi stage: the chain runner for a stage of one netx file,
the graph runner for a branching one (netx chains joined by extra synapses)."""

from pathlib import Path

import torch

from ...errors import ArtifactError
from . import graph
from .chain import run_chain_stage

__all__ = ["run_stage"]


def run_stage(stage, build_dir: Path, x: torch.Tensor, progress=None):
    """The same inputs and outputs as Lava's runner (`runtime/lava.py`: one tensor, or a tuple
    in the order of stage.outputs for a stage with taps; graded outputs as real values)."""
    if isinstance(x, dict):
        (x,) = x.values()
    if stage.target != "loihi":  # the registry sends only loihi stages here
        raise ArtifactError(f"Stage `{stage.name}` is a {stage.target} stage; the emulator runs Loihi (netx) stages "
                            "only. Run this build with --backend lava.")
    if getattr(stage, "segments", None):  # a branching stage: netx chains joined by extra synapses
        return graph.run_graph_stage(stage, build_dir, x, progress)
    return run_chain_stage(stage, build_dir, x, progress)
