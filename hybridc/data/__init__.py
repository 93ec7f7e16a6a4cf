"""Event data for training and verifying hybrids: DvsGesture read from disk, and a
synthetic DVS-like gesture set that needs no download. Both give samples of shape
(2, H, W, T): two polarities (ON, OFF), unary spikes, time last, and an int label."""

from .augment import jitter
from .dvsgesture import DVSGesture
from .synthetic import SyntheticGestures

__all__ = ["SyntheticGestures", "DVSGesture", "jitter", "open_dataset"]


def open_dataset(spec: str, train: bool = False, size: int = 32, timesteps: int = 16, samples=None, seed: int = 0):
    """'synthetic' or 'dvsgesture:PATH' -> a dataset (used by the CLI's --data)."""
    from ..errors import InputError

    if spec == "synthetic":
        return SyntheticGestures(samples or 256, size=size, timesteps=timesteps, seed=seed + (0 if train else 10_000))
    if spec.startswith("dvsgesture:"):
        return DVSGesture(spec.split(":", 1)[1], train=train, size=size, timesteps=timesteps)
    raise InputError(f"Unknown --data `{spec}`; use `synthetic` or `dvsgesture:PATH`.")
