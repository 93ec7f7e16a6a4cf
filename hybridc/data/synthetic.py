"""Eleven deterministic DVS-like gesture classes rendered as ON/OFF events, no download.

Each class is a moving intensity pattern (edges sweeping four ways, a bar rotating
either way, a blob waving sideways or up and down, a ring growing or shrinking, two
blobs clapping). Events are emitted where the rendered intensity rises (ON) or falls
(OFF) between frames by more than a contrast threshold, as a DVS camera does, plus
random noise events. Sample i of a seeded set is always the same.
"""

import numpy as np
import torch

CLASSES = ["edge right", "edge left", "edge down", "edge up", "bar cw", "bar ccw",
           "wave sideways", "wave vertical", "ring grow", "ring shrink", "clap"]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def _intensity(label: int, t: np.ndarray, yy: np.ndarray, xx: np.ndarray, rng) -> np.ndarray:
    """Intensity video (T, H, W) in [0, 1] for one class, with random phase/position/speed."""
    sharp = 12.0
    speed = rng.uniform(0.7, 1.3)
    cx, cy = rng.uniform(-0.15, 0.15, size=2)
    phase = rng.uniform(0, 2 * np.pi)
    tt = t[:, None, None]
    progress = (tt - 0.5) * 1.6 * speed + rng.uniform(-0.1, 0.1)
    if label < 4:  # edges sweeping right, left, down, up
        coordinate = [xx, -xx, yy, -yy][label]
        return _sigmoid(sharp * (progress - coordinate))
    if label < 6:  # a bar through the centre rotating clockwise / anticlockwise
        angle = phase + (1 if label == 4 else -1) * 2.2 * speed * tt
        distance = np.abs((xx - cx) * np.sin(angle) - (yy - cy) * np.cos(angle))
        return _sigmoid(sharp * (0.12 - distance))
    if label < 8:  # a blob waving sideways / up and down
        offset = 0.45 * np.sin(phase + 2 * np.pi * 1.5 * speed * tt)
        bx, by = (cx + offset, cy) if label == 6 else (cx, cy + offset)
        return _sigmoid(sharp * (0.22 - np.hypot(xx - bx, yy - by)))
    if label < 10:  # a ring growing / shrinking
        radius = 0.1 + 0.6 * (tt if label == 8 else 1 - tt) * speed
        return _sigmoid(sharp * (0.07 - np.abs(np.hypot(xx - cx, yy - cy) - radius)))
    gap = 0.1 + 0.35 * np.abs(np.sin(phase + 2 * np.pi * speed * tt))  # two blobs clapping
    left = np.hypot(xx - (cx - gap), yy - cy)
    right = np.hypot(xx - (cx + gap), yy - cy)
    return np.maximum(_sigmoid(sharp * (0.15 - left)), _sigmoid(sharp * (0.15 - right)))


def render(label: int, size: int, timesteps: int, rng, contrast: float = 0.08, noise: float = 0.005):
    """(2, size, size, timesteps) float32 unary spikes: channel 0 ON, channel 1 OFF."""
    axis = np.linspace(-1, 1, size)
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    t = np.linspace(0, 1, timesteps + 1)
    video = _intensity(label, t, yy, xx, rng)
    change = np.diff(video, axis=0)  # (T, H, W)
    on = change > contrast
    off = change < -contrast
    spikes = np.stack([on, off]).astype(np.float32)  # (2, T, H, W)
    spikes = np.maximum(spikes, (rng.random(spikes.shape) < noise).astype(np.float32))
    return spikes.transpose(0, 2, 3, 1)  # (2, H, W, T)


class SyntheticGestures(torch.utils.data.Dataset):
    """`samples` deterministic samples, balanced over the 11 classes."""

    classes = CLASSES

    def __init__(self, samples: int = 512, size: int = 32, timesteps: int = 16, seed: int = 0, transform=None):
        self.samples, self.size, self.timesteps, self.seed, self.transform = samples, size, timesteps, seed, transform

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, index: int):
        if not 0 <= index < self.samples:
            raise IndexError(index)
        label = index % len(CLASSES)
        rng = np.random.default_rng([self.seed, index])
        x = torch.from_numpy(render(label, self.size, self.timesteps, rng))
        if self.transform is not None:
            x = self.transform(x)
        return x, label
