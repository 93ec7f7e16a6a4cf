"""A loihi stage's inputs and outputs, shared by its two runners (Lava, `lava.py`, and the
emulator, `emulator/`): both check the input the same way, tap the same layers and hand
back the same values, so each lives here once, below both."""

import numpy as np
import torch

from ..errors import InputError
from ..manifest import Stage
from ..netx.layout import to_netx

__all__ = ["check_input", "count_not_unary", "from_wire", "not_unary_error", "stage_taps", "to_graded"]


def check_input(stage: Stage, x: torch.Tensor, data: np.ndarray = None, unary: bool = True) -> np.ndarray:
    """The input as netx receives it, or InputError: binary spikes, an Encoder's graded
    spikes (stage.input_bits), or real values for a sigma-delta input (spec.graded).
    unary=False leaves out the check that spikes are 0 or 1, for a caller that counts them
    while it copies the input anyway (the emulator) and raises `not_unary_error` itself."""
    spec = stage.inputs[0]
    if data is None:
        data = to_netx(x)
    if x.dim() not in (3, 5) or data.shape[1:-1] != tuple(spec.shape[:-1]):
        raise InputError(
            f"Stage `{stage.name}` (loihi) expects spikes of PyTorch shape (N, "
            f"{', '.join(map(str, spec.pytorch_shape()[:-1]))}, T), got {tuple(x.shape)}."
        )
    if spec.graded:  # sigma-delta input: real values, rounded to the grid of its Delta input layer
        return to_graded(spec.graded, data)
    # unary: one read of the input (a sort for the message only on failure)
    if stage.input_bits:  # graded spikes from an Encoder: unsigned integers of input_bits bits
        top = (1 << stage.input_bits) - 1
        if x.numel() and not (float(x.min()) >= 0 and float(x.max()) <= top and bool(torch.equal(x, x.trunc()))):
            raise InputError(
                f"Stage `{stage.name}` (loihi) receives graded spikes of {stage.input_bits} bits (integers "
                f"0..{top}), but the input holds values {_some_values(x)}...; pass it through "
                f"hybridc.nn.Encoder(bits={stage.input_bits})."
            )
    elif unary and x.dtype != torch.bool and count_not_unary(x):
        raise not_unary_error(stage, x)
    return data


def not_unary_error(stage: Stage, x: torch.Tensor) -> InputError:
    """The error for a unary stage input `x` holding values other than 0 and 1."""
    return InputError(
        f"Stage `{stage.name}` (loihi) receives unary spikes, but the input holds values "
        f"{_some_values(x)}...; binarise it (e.g. `(x > 0).float()`)."
    )


def count_not_unary(x: torch.Tensor) -> int:
    """Entries neither 0 nor 1: one compiled read on the CPU, torch's compares elsewhere."""
    if x.device.type == "cpu":
        from . import kernels  # compiled at install; other devices run without it

        return kernels.count_not_unary(x)
    return int(torch.count_nonzero(torch.ne(x, 0) & torch.ne(x, 1)))


def _some_values(x: torch.Tensor) -> list:
    """The first distinct values of a rejected input, for the message (sorting is only paid
    on the error path: checking a valid batch must stay cheap)."""
    return torch.unique(x)[:6].tolist()


def to_graded(graded: dict, values: np.ndarray) -> np.ndarray:
    """Real values -> the integers a Delta encoder receives: value x scale, rounded to the
    grid slayer's input quantisation uses (round half to even, like torch.round) and clipped."""
    step = graded.get("step", 1)
    low, high = graded.get("range", (-(1 << 23), (1 << 23) - 1))
    return np.clip(np.round(values * graded["scale"] / step) * step, low, high)


def stage_taps(stage: Stage) -> list:
    """[(netx layer index or None for the last, delay), ...], one per stage output."""
    return [(out.layer, out.delay if out.delay is not None else stage.delay) for out in stage.outputs]


def from_wire(spec, out: torch.Tensor) -> torch.Tensor:
    """A tap's integers as PyTorch's values: graded (sigma-delta) outputs are value x scale."""
    return out / spec.graded["scale"] if spec.graded else out
