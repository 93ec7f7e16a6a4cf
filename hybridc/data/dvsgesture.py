"""DvsGesture from a local directory, binned as in the paper: 10 ms frames of 2x128x128,
16 frames per sample, unary spikes.

Reads the layout `tonic.datasets.DVSGesture` downloads and unpacks (the preprocessed
release by the tonic authors, each recording already cut into one file per gesture):

    PATH/[DVSGesture/]ibmGestureTrain/user01_fluorescent/0.npy   # label 0 .. 10
    PATH/[DVSGesture/]ibmGestureTest/user24_led/3.npy

Each .npy holds an (n, 4) array of events: x, y, polarity, timestamp in ms. The train
and test folders are the original split by subject (users 1-23 train, 24-29 test).
hybridc reads the files itself (tonic's dataset class insists on its download archive).
"""

from pathlib import Path

import numpy as np
import torch

from ..errors import InputError

SENSOR = 128
FRAME_MS = 10


def bin_events(events: np.ndarray, size: int = 128, timesteps: int = 16, frame_ms: int = FRAME_MS,
               start_ms=None) -> torch.Tensor:
    """(n, 4) events [x, y, p, t_ms] -> (2, size, size, timesteps) unary spikes.
    Frames are `frame_ms` wide from `start_ms` (default: the first event)."""
    events = np.asarray(events)
    out = np.zeros((2, size, size, timesteps), dtype=np.float32)
    if len(events) == 0:
        return torch.from_numpy(out)
    t = events[:, 3].astype(np.float64)
    start = t.min() if start_ms is None else start_ms
    frame = ((t - start) // frame_ms).astype(np.int64)
    keep = (frame >= 0) & (frame < timesteps)
    x = (events[keep, 0].astype(np.int64) * size) // SENSOR
    y = (events[keep, 1].astype(np.int64) * size) // SENSOR
    p = (events[keep, 2] > 0).astype(np.int64)
    out[1 - p, y, x, frame[keep]] = 1.0  # channel 0: ON (p=1), channel 1: OFF
    return torch.from_numpy(out)


class DVSGesture(torch.utils.data.Dataset):
    classes = ["hand clap", "right hand wave", "left hand wave", "right arm cw", "right arm ccw",
               "left arm cw", "left arm ccw", "arm roll", "air drums", "air guitar", "other"]

    def __init__(self, root, train: bool = True, size: int = 128, timesteps: int = 16, transform=None):
        root = Path(root)
        folder = "ibmGestureTrain" if train else "ibmGestureTest"
        candidates = [root / folder, root / "DVSGesture" / folder]
        directory = next((c for c in candidates if c.is_dir()), None)
        if directory is None:
            raise InputError(
                f"No DvsGesture {folder}/ under {root} (looked in {', '.join(map(str, candidates))}). "
                "Point --data dvsgesture:PATH at the folder tonic.datasets.DVSGesture unpacks into."
            )
        self.files = sorted(f for f in directory.glob("user*_*/*.npy") if f.stem.isdigit())
        if not self.files:
            raise InputError(f"{directory} holds no userNN_lighting/N.npy sample files.")
        self.labels = [int(f.stem) for f in self.files]
        self.users = [int(f.parent.name.split("_", 1)[0][4:]) for f in self.files]
        self.size, self.timesteps, self.transform = size, timesteps, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        try:
            events = np.load(self.files[index], allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"Cannot read {self.files[index]}: {exc}") from None
        x = bin_events(events, self.size, self.timesteps)
        if self.transform is not None:
            x = self.transform(x)
        return x, self.labels[index]
