"""Run a dense stage's ONNX model in onnxruntime (CPU), as TensorRT would on a Jetson."""

from pathlib import Path

import numpy as np
import torch

from ..build.untrusted import parsing
from ..errors import InputError
from ..manifest import Stage


def run_stage(stage: Stage, build_dir: Path, x: torch.Tensor, progress=None):
    import onnxruntime as ort

    spec = stage.inputs[0]
    if tuple(x.shape[1:]) != tuple(spec.shape):
        raise InputError(
            f"Stage `{stage.name}` (jetson) expects input of shape (N, "
            f"{', '.join(map(str, spec.shape))}) in layout N{spec.layout}, got {tuple(x.shape)}."
        )
    path = Path(build_dir) / stage.artifact
    with parsing(path, f"the ONNX model the manifest describes (input `{spec.name}`)", stage.name):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        results = session.run(None, {spec.name: x.detach().cpu().numpy().astype(np.float32)})
    tensors = [torch.from_numpy(r) for r in results]
    return tensors[0] if len(tensors) == 1 else tuple(tensors)
