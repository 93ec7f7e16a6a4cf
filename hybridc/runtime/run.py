"""Run a build as it would be deployed: each stage on its own runtime, in order."""

from pathlib import Path

import numpy as np
import torch

from ..build.compiled import CompiledModel, load
from ..errors import InputError, reporting
from .stages import run_stage


def run(compiled, x, return_stages: bool = False, progress=None, backend: str = "lava"):
    """Execute `compiled` (a CompiledModel or a build directory) on input `x`
    (PyTorch layout, batch first, time last). The loihi stage runs in Lava's
    fixed-point simulator (backend "lava") or hybridc's batched emulator of it
    ("emulate"), the jetson stage in onnxruntime. Returns the final output as a
    torch tensor, or (output, {stage name: output}) with return_stages."""
    from .stages import check_backend

    check_backend(backend)
    if not isinstance(compiled, CompiledModel):
        compiled = load(Path(compiled))
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise InputError(f"Input must be a torch tensor or numpy array, got {type(x).__name__}.")
    if x.dtype not in (torch.float32, torch.float64, torch.float16, torch.int64, torch.int32,
                       torch.int8, torch.uint8, torch.bool):
        raise InputError(f"Input dtype {x.dtype} is not a number type hybridc can feed to the model.")
    expected_t = compiled.manifest.timesteps
    if x.dim() < 2 or x.shape[-1] != expected_t:
        raise InputError(
            f"The build was compiled for T={expected_t} timesteps (time is the last axis), but the "
            f"input has shape {tuple(x.shape)}. Pass (N, ..., {expected_t})."
        )
    if x.shape[0] == 0:
        raise InputError("The input batch is empty (shape[0] == 0); pass at least one sample.")
    tensor = x.float()
    per_stage = {}
    for stage in compiled.manifest.stages:
        with reporting(f"running stage `{stage.name}` ({stage.artifact}) on {stage.target}"):
            tensor = run_stage(stage, compiled.directory, tensor, progress=progress, backend=backend)
        per_stage[stage.name] = tensor
    return (tensor, per_stage) if return_stages else tensor
