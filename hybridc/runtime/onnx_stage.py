"""Run a dense stage's ONNX model in onnxruntime (CPU), as TensorRT would on a Jetson."""

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..build_dir.untrusted import parsing
from ..errors import InputError
from ..manifest import Stage


@lru_cache(maxsize=16)
def _session(path: str, sha256: str, mtime_ns: int, size: int):
    """One onnxruntime session per artifact (about 50 ms to build): a long-lived `hybridc serve`
    process or a loop of `hybridc.run` calls builds it once. Keyed by the manifest's digest and
    the file's mtime and size, so a rewritten artifact gets a fresh session."""
    import onnxruntime as ort

    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def session_for(stage: Stage, path: Path):
    stat = Path(path).stat()
    return _session(str(Path(path).resolve()), stage.sha256, stat.st_mtime_ns, stat.st_size)


def run_stage(stage: Stage, build_dir: Path, x, progress=None):
    """x: one tensor (a stage with one input) or {input name: tensor}. Returns one tensor,
    or a tuple in the order of stage.outputs."""
    feeds = x if isinstance(x, dict) else {stage.inputs[0].name: x}
    for spec in stage.inputs:
        value = feeds.get(spec.name)
        if value is None or tuple(value.shape[1:]) != tuple(spec.shape):
            got = "nothing" if value is None else tuple(value.shape)
            raise InputError(
                f"Stage `{stage.name}` (jetson) expects input `{spec.name}` of shape (N, "
                f"{', '.join(map(str, spec.shape))}) in layout N{spec.layout}, got {got}."
            )
    path = Path(build_dir) / stage.artifact
    names = ", ".join(f"`{spec.name}`" for spec in stage.inputs)
    with parsing(path, f"the ONNX model the manifest describes (inputs {names})", stage.name):
        session = session_for(stage, path)
        results = session.run(None, {spec.name: feeds[spec.name].detach().cpu().numpy().astype(np.float32)
                                     for spec in stage.inputs})
    tensors = [torch.from_numpy(r) for r in results]
    return tensors[0] if len(tensors) == 1 else tuple(tensors)
