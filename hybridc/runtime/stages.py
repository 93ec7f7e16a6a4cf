"""Run one stage of a build on the backend its artifact format needs."""

from pathlib import Path

import torch

from ..errors import ArtifactError
from ..manifest import Stage
from ..targets.registry import get_runner


def run_stage(stage: Stage, build_dir: Path, x: torch.Tensor, progress=None):
    """Stage output for input `x` (PyTorch layout, batch first): Lava for a netx stage,
    onnxruntime for an ONNX stage."""
    runner = get_runner(stage.target)
    if runner is None:
        raise ArtifactError(
            f"Stage `{stage.name}` is a {stage.target} artifact ({stage.artifact}) and hybridc has no "
            f"{stage.target.upper()} simulator to run it. Load it with that chip's toolchain, or compile with --target "
            "loihi+... to run and verify in Lava."
        )
    return runner(stage, Path(build_dir), x, progress=progress)
