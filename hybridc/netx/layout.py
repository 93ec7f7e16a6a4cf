"""netx's tensor layout against PyTorch's, and the conversions between them.

netx (and Lava) order a spatial tensor (W, H, C), time last; PyTorch orders it (C, H, W).
A flat tensor (F,) is the same in both. A netx file stores layer shapes in PyTorch order
(slayer's export), while the manifest gives a loihi stage's inputs and outputs in netx's
order ("WHCT"), which Lava's ports take. Every flip between the two is one of these.
"""

import numpy as np
import torch

from ..errors import LoweringError

__all__ = ["flip_spatial", "from_netx", "netx_layout", "pytorch_shape", "to_netx"]


def netx_layout(shape) -> tuple:
    """PyTorch (C,H,W,T) -> netx (W,H,C,T); flat (F,T) stays."""
    if len(shape) == 4:
        c, h, w, t = shape
        return (w, h, c, t), "WHCT"
    if len(shape) == 2:
        return tuple(shape), "FT"
    raise LoweringError(f"The Loihi stage takes (C,H,W,T) or (F,T) spikes; got a tensor of shape {shape}.")


def pytorch_shape(netx_shape) -> tuple:
    """A netx (W, H, C) shape in PyTorch's (C, H, W) order; (F,) stays."""
    return tuple(reversed(netx_shape)) if len(netx_shape) == 3 else tuple(netx_shape)


def flip_spatial(x):
    """One sample's (W, H, C) as (C, H, W), or back (reversing three axes is its own inverse).
    Takes a numpy array or a Lava port alike (both have `transpose(axes)`)."""
    return x.transpose([2, 1, 0])


def to_netx(x: torch.Tensor) -> np.ndarray:
    """A PyTorch batch (N, C, H, W, T) as a netx numpy batch (N, W, H, C, T); (N, F, T) unchanged."""
    return (x.permute(0, 3, 2, 1, 4) if x.dim() == 5 else x).detach().cpu().numpy()


def from_netx(y: np.ndarray) -> torch.Tensor:
    """A netx batch (N, W, H, C, T) as a float32 PyTorch tensor (N, C, H, W, T); (N, F, T) unchanged."""
    t = torch.from_numpy(np.ascontiguousarray(y)).float()
    return t.permute(0, 3, 2, 1, 4) if t.dim() == 5 else t
