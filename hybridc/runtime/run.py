"""Run a build as it would be deployed: each stage on its own runtime, in the manifest's
(topological) order, each input taken from the edge that feeds it."""

from pathlib import Path

import numpy as np
import torch

from ..build_dir.compiled import CompiledModel, load
from ..errors import InputError, reporting
from .stages import check_backend, run_stage


def run(compiled, x, return_stages: bool = False, progress=None, backend: str = "lava"):
    """Execute `compiled` (a CompiledModel or a build directory) on input `x`
    (PyTorch layout, batch first, time last). The loihi stage runs in Lava's
    fixed-point simulator (backend "lava") or hybridc's batched emulator of it
    ("emulate"), the jetson stage in onnxruntime. Returns the final output as a
    torch tensor, or (output, {stage name: output}) with return_stages."""
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
    outputs, per_stage = run_graph(compiled.manifest, compiled.directory, x.float(), progress=progress,
                                   backend=backend)
    if return_stages == "values":  # every stage output, keyed (stage, tensor name)
        return outputs
    final = compiled.manifest.edges_into(None)[0].producer
    result = outputs[(final["stage"], final["tensor"])]
    return (result, per_stage) if return_stages else result


def stage_feeds(manifest, stage, values: dict):
    """The input of `stage` from {(producer stage, tensor name): value}: one tensor, or
    {input name: tensor} when the stage has several inputs."""
    feeds = {e.consumer["input"]: values[(e.producer["stage"], e.producer["tensor"])]
             for e in manifest.edges_into(stage.name)}
    return feeds if len(feeds) > 1 else next(iter(feeds.values()))


def run_graph(manifest, directory, x: torch.Tensor, progress=None, backend: str = "lava"):
    """Run every stage once. Returns ({(stage, tensor name): value}, {stage: output}) where a
    stage's output is its one tensor, or {tensor name: value} for a stage with several.
    The model input is the key (None, "input")."""
    values = {(None, "input"): x}
    per_stage = {}
    for stage in manifest.stages:
        with reporting(f"running stage `{stage.name}` ({stage.artifact}) on {stage.target}"):
            result = run_stage(stage, directory, stage_feeds(manifest, stage, values), progress=progress,
                               backend=backend)
        results = result if isinstance(result, tuple) else (result,)
        for spec, value in zip(stage.outputs, results):
            values[(stage.name, spec.name)] = value
        per_stage[stage.name] = (results[0] if len(results) == 1
                                 else {spec.name: value for spec, value in zip(stage.outputs, results)})
    return values, per_stage
