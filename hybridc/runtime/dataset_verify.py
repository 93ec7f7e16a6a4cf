"""`hybridc verify`: run a dataset through a build as deployed and through the PyTorch
model it was compiled from, and report how far apart they are.

The reference model is rebuilt from what the manifest records (source file, entry,
arguments, weights, each checked by sha256). Two backends run the deployment:
  lava     the Loihi stage in Lava's bit-accurate simulator (seconds per sample), then onnxruntime;
  emulate  slayer's batched fixed-point forward for the spiking stage, then onnxruntime.
`lava` on a subset is what proves `emulate` exact; `emulate` then covers a whole test set.
"""

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch

from ..build.compiled import load
from ..errors import ArtifactError, InputError
from ..targets.registry import domain_of
from .stages import run_stage
from .verify import reference_stages


@dataclass
class Report:
    backend: str
    samples: int
    spike_match: Optional[float]  # fraction of equal entries at the cut (None: emulate compares nothing there)
    argmax_agreement: float
    max_abs_err: float
    accuracy_reference: float
    accuracy_deployed: float
    seconds_per_sample: float
    accuracy_change: float = 0.0  # deployed - reference: nonzero only for quantised stages
    quantized: bool = False  # a stage is int8: argmax may legitimately differ

    def as_dict(self) -> dict:
        return asdict(self)


def rebuild_reference(manifest):
    """The PyTorch model a build was compiled from, traced and partitioned the same way."""
    from ..build.driver import lower
    from ..digest import sha256
    from ..frontend.loader import load_model_file

    source = manifest.source
    if not source.path:
        raise ArtifactError("This build was compiled from Python, not from a model file, so verify cannot "
                            "rebuild its reference model; use hybridc.verify(compiled, x) in Python.")
    path = Path(source.path)
    if not path.is_file():
        raise ArtifactError(f"The model file this build was compiled from, {path}, is gone.")
    if sha256(path) != source.sha256:
        raise ArtifactError(f"{path} changed since this build was compiled (sha256 differs); recompile.")
    if source.weights and (not Path(source.weights).is_file() or sha256(Path(source.weights)) != source.weights_sha256):
        raise ArtifactError(f"The weights this build was compiled with, {source.weights}, are missing or "
                            "changed since; recompile.")
    model, example_input, _, _ = load_model_file(path, source.entry, source.weights, source.args)
    gm, partitions, _ = lower(model, example_input, manifest.target)
    return gm, partitions


def _input_geometry(manifest):
    """(size, timesteps) of the samples the build takes."""
    spec = manifest.stages[0].inputs[0]
    if spec.layout not in ("WHCT", "CHWT"):
        raise InputError(f"verify feeds event frames (2, H, W, T); this build takes {spec.layout} input.")
    _, _, width, timesteps = spec.pytorch_shape()
    return width, timesteps


def verify_dataset(build_dir, data: str = "synthetic", samples: int = 8, backend: str = "lava",
                   batch_size: int = 16, progress=None, seed: int = 0, reference=None) -> Report:
    """reference: (traced model, partitions) when the build cannot be rebuilt from its source."""
    from ..data import open_dataset

    if backend not in ("lava", "emulate"):
        raise InputError(f"Unknown backend `{backend}`; use lava or emulate.")
    if samples < 1 or batch_size < 1:
        raise InputError(f"--samples and --batch-size must be at least 1 (got {samples} and {batch_size}).")
    compiled = load(build_dir)
    manifest = compiled.manifest
    # first: a changed source file is the likelier mistake than the data
    gm, partitions = reference if reference is not None else rebuild_reference(manifest)
    size, timesteps = _input_geometry(manifest)
    dataset = open_dataset(data, train=False, size=size, timesteps=timesteps, samples=samples, seed=seed)
    count = min(samples, len(dataset))
    stages = manifest.stages
    equal = entries = agree = right_ref = right_dep = 0
    worst, elapsed = 0.0, 0.0
    for start in range(0, count, batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, count))]
        x = torch.stack([item[0] for item in items])
        labels = torch.tensor([item[1] for item in items])
        began = time.perf_counter()
        reference = reference_stages(gm, partitions, x)
        reference_seconds = time.perf_counter() - began
        began = time.perf_counter()
        tensor = x
        for i, stage in enumerate(stages):
            if domain_of(stage.target) == "spiking":
                tensor = reference[stage.name] if backend == "emulate" else run_stage(stage, compiled.directory, x)
                cut = reference[stage.name]
                equal += int((tensor == cut).sum())
                entries += cut.numel()
            else:
                tensor = run_stage(stage, compiled.directory, tensor)
        elapsed += time.perf_counter() - began
        if backend == "emulate":  # its spiking stage *is* slayer's forward, computed above
            elapsed += reference_seconds
        expected = reference["output"]
        worst = max(worst, float((tensor - expected).abs().max()))
        agree += int((tensor.argmax(-1) == expected.argmax(-1)).sum())
        right_ref += int((expected.argmax(-1) == labels).sum())
        right_dep += int((tensor.argmax(-1) == labels).sum())
        if progress:
            progress(len(items))
    quantized = any(stage.quantization for stage in stages)
    if count == 0:
        raise InputError(f"The dataset `{data}` has no samples to verify.")
    spike_match = None if backend == "emulate" or not entries else equal / entries
    return Report(backend, count, spike_match, agree / count, worst,
                  right_ref / count, right_dep / count, elapsed / count,
                  (right_dep - right_ref) / count, quantized)
