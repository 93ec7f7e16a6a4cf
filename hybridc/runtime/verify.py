"""Parity between a compiled build and the PyTorch model it came from.

Three checks: the Lava (or emulated Lava) spikes at the cut equal PyTorch's (every entry, every step),
the ONNX stage fed PyTorch's cut tensor equals the PyTorch dense half, and the
whole deployment run end to end equals model(x).
"""

from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.fx

from ..errors import reporting
from ..frontend.capture import run_capturing
from ..targets.registry import domain_of
from .run import run
from .stages import run_stage


@dataclass
class Parity:
    samples: int
    spike_match: Optional[float]  # fraction of equal entries at the cut (loihi vs PyTorch)
    cut_entries: Optional[int]
    onnx_max_abs_err: Optional[float]  # dense stage fed PyTorch's cut
    run_max_abs_err: float  # whole deployment vs model(x)
    argmax_agreement: float
    backend: str = "lava"  # what ran the spiking stage: Lava, or hybridc's emulator of it

    def as_dict(self) -> dict:
        return asdict(self)


def reference_stages(gm: torch.fx.GraphModule, partitions, x: torch.Tensor) -> dict:
    """PyTorch's value at each partition's output, computed by the traced model."""
    wanted = {p.outputs[0].name: p.name for p in partitions}
    output, values = run_capturing(gm, x, wanted)
    return {**{wanted[name]: value for name, value in values.items()}, "output": output}


def spike_agreement(spikes: torch.Tensor, reference: torch.Tensor) -> dict:
    """How close two spike tensors are: `equal`, the fraction of equal entries (high even for
    two silent tensors), and `dice`, 2|A and B| / (|A| + |B|) over the spikes themselves,
    which a sparse tensor cannot pass by staying silent."""
    both = float((spikes * reference).sum())
    total = float(spikes.sum() + reference.sum())
    return {"equal": float((spikes == reference).float().mean()), "dice": 2 * both / total if total else 1.0}


@torch.no_grad()
def verify(compiled, x: torch.Tensor, progress=None, backend: str = "lava") -> Parity:
    from ..errors import ArtifactError

    gm = compiled.module
    if gm is None:
        raise ArtifactError("verify needs the PyTorch model as reference: call it on the result of "
                            "hybridc.compile(...), not on a build loaded from disk.")
    with reporting("running the PyTorch model for reference"):
        reference = reference_stages(gm, compiled.fx_partitions, x)
    deployed, per_stage = run(compiled, x, return_stages=True, progress=progress, backend=backend)
    spike_match = cut_entries = onnx_err = None
    stages = compiled.manifest.stages
    for i, stage in enumerate(stages):
        if domain_of(stage.target) == "spiking":
            ref = reference[stage.name]
            spike_match = float((per_stage[stage.name] == ref).float().mean())
            cut_entries = int(ref.numel())
        elif i > 0:
            fed = reference[stages[i - 1].name]
            onnx_out = run_stage(stage, compiled.directory, fed)
            onnx_err = float((onnx_out - reference[stage.name]).abs().max())
    final_ref = reference["output"]
    run_err = float((deployed - final_ref).abs().max())
    agree = float((deployed.argmax(-1) == final_ref.argmax(-1)).float().mean()) if final_ref.dim() > 1 else 1.0
    return Parity(int(x.shape[0]), spike_match, cut_entries, onnx_err, run_err, agree, backend)


__all__ = ["Parity", "verify", "reference_stages", "spike_agreement"]
