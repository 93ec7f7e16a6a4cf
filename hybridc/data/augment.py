"""The paper's augmentation: temporal jitter (+-4 frames) and spatial jitter (+-20 px at 128x128)."""

import torch


def jitter(x: torch.Tensor, generator: torch.Generator, temporal: int = 4, spatial: int = 20) -> torch.Tensor:
    """Shift one (C, H, W, T) sample in time and space, filling with zeros (no wrap-around).
    `spatial` is in pixels of a 128x128 frame and scales with the frame size."""
    _, h, w, t = x.shape
    limit = min(max(round(spatial * h / 128), 0), h - 1, w - 1)
    temporal = min(temporal, t - 1)  # a shift as long as the axis would leave nothing
    dy, dx = (int(v) for v in torch.randint(-limit, limit + 1, (2,), generator=generator))
    dt = int(torch.randint(-temporal, temporal + 1, (1,), generator=generator))
    out = torch.zeros_like(x)
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    ts, td = (slice(0, t - dt), slice(dt, t)) if dt >= 0 else (slice(-dt, t), slice(0, t + dt))
    out[:, yd, xd, td] = x[:, ys, xs, ts]
    return out


class Jitter:
    """Picklable transform with its own seeded generator."""

    def __init__(self, seed: int = 0, temporal: int = 4, spatial: int = 20):
        self.generator = torch.Generator().manual_seed(seed)
        self.temporal, self.spatial = temporal, spatial

    def __call__(self, x):
        return jitter(x, self.generator, self.temporal, self.spatial)
