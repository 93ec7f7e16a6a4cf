"""Run a NIR stage by reading its graph back with a real NIR consumer: Norse's
`norse.torch.from_nir`, which builds PyTorch modules from the NIR nodes (float32, Euler
step dt from the graph's metadata). So the file that ships is what runs, read by a
library other than the one that wrote it; its spikes are compared with PyTorch's in
tests/test_nir_sim.py and docs/targets.md.

NIR has no per-layer delay, while slayer's delay_shift (and Loihi) add one step per
layer: the graph records that as `metadata["lead_steps"]`, and the output is delayed by
it so that it lines up with PyTorch's.
"""

import contextlib
import io
import warnings
from pathlib import Path

import torch

from ..errors import ArtifactError, InputError
from ..manifest import Stage


def load_module(path: Path):
    """(Norse module, dt, lead_steps) for a NIR file."""
    import nir

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        from norse.torch import from_nir

        try:
            graph = nir.read(str(path))
        except (OSError, KeyError, ValueError) as exc:
            raise ArtifactError(f"{path} is not a NIR graph nir can read ({exc}); recompile.") from None
        metadata = graph.metadata or {}
        dt = float(metadata.get("dt", 1.0))
        module = from_nir(graph, ignore_warnings=True, dt=dt)
    return module.eval(), int(metadata.get("lead_steps", 0))


@torch.no_grad()
def simulate(module, sample: torch.Tensor) -> torch.Tensor:
    """One sample (no batch axis, time last) through the module, step by step. NIR shapes
    have no batch axis (its Flatten counts from the channel axis), so samples go one at a time."""
    state, outputs = None, []
    for t in range(sample.shape[-1]):
        out, state = module(sample[..., t], state)
        outputs.append(out)
    return torch.stack(outputs, dim=-1)


def delayed(y: torch.Tensor, steps: int) -> torch.Tensor:
    """y shifted `steps` later along time (zeros first), same length."""
    if steps <= 0:
        return y
    out = torch.zeros_like(y)
    out[..., steps:] = y[..., : y.shape[-1] - steps]
    return out


def run_stage(stage: Stage, build_dir: Path, x: torch.Tensor, progress=None) -> torch.Tensor:
    spec = stage.inputs[0]
    expected = tuple(spec.shape[:-1])
    if x.dim() != len(spec.shape) + 1 or tuple(x.shape[1:-1]) != expected:
        raise InputError(
            f"Stage `{stage.name}` (nir) expects spikes of PyTorch shape (N, {', '.join(map(str, expected))}, T), "
            f"got {tuple(x.shape)}."
        )
    module, lead = load_module(Path(build_dir) / stage.artifact)
    outputs = []
    for sample in x.float():
        outputs.append(simulate(module, sample))
        if progress:
            progress()
    return delayed(torch.stack(outputs), lead)
