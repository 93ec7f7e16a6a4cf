"""Run one stage of a build on the backend its artifact format needs."""

from pathlib import Path

import torch

from ..errors import ArtifactError, InputError
from ..manifest import Stage
from ..targets.registry import get_runner

# lava: each target's own simulator or runtime (Lava fixed_pt for netx, onnxruntime for ONNX);
# emulate: a target's registered batched emulator of that simulator where it has one.
BACKENDS = ("lava", "emulate")


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise InputError(f"Unknown backend `{backend}`; use {' or '.join(BACKENDS)} (lava: Lava's bit-accurate "
                         "simulator, one sample at a time; emulate: hybridc's batched bit-exact emulator of it).")
    return backend


def run_stage(stage: Stage, build_dir: Path, x: torch.Tensor, progress=None, backend: str = "lava"):
    """Stage output for input `x` (PyTorch layout, batch first): Lava (or its emulator) for a
    netx stage, onnxruntime for an ONNX stage."""
    runner = get_runner(stage.target, check_backend(backend))
    if runner is None:
        raise ArtifactError(
            f"Stage `{stage.name}` is a {stage.target} artifact ({stage.artifact}) and hybridc has no "
            f"{stage.target.upper()} simulator to run it. Load it with that chip's toolchain, or compile with --target "
            "loihi+... to run and verify in Lava."
        )
    return runner(stage, Path(build_dir), arriving_form(stage, x), progress=progress)


def accumulate(spikes: torch.Tensor, wire) -> torch.Tensor:
    """The accumulator's window counts (N, *lead, K) of spikes (N, *lead, T), as the sending
    side of a "counts" (or summed "values") link computes them: exact in float32."""
    lead = spikes.shape[:-1]
    return spikes.reshape(*lead, wire.windows, wire.interval).sum(-1)


def arriving_form(stage: Stage, x):
    """`x` as the stage's input expects it: a stage whose input arrives as window sums (counts,
    or summed graded values: the wire format chosen at compile time) is handed them, even
    when the caller holds the spikes.
    x: one tensor, or {input name: tensor} for a stage with several inputs."""
    if isinstance(x, dict):
        return {name: _arriving(stage, name, value) for name, value in x.items()}
    return _arriving(stage, stage.inputs[0].name, x) if stage.inputs else x


def _arriving(stage: Stage, name: str, x: torch.Tensor) -> torch.Tensor:
    for spec in [s for s in stage.inputs if s.name == name]:
        wire = (stage.wire or {}).get(spec.name)
        if wire is not None and wire.summed and list(x.shape[1:]) == list(wire.spikes_shape):
            return accumulate(x, wire)
    return x
