"""A NIR front trained in Norse, joined to a dense head: `hybridc.nn.NIR` reads front.nir
(Norse's `to_nir` export, written by train.py) as slayer cuba blocks for Loihi; spike counts
per window (Accumulator) feed the PyTorch head trained with it (head.pt).

    hybridc compile examples/nir_import/model.py -o build/nir --verify

`--verify` checks Lava against the quantized blocks (exact) and reports how far those
blocks agree with the float original (Norse's `from_nir` of the same graph).
"""

import importlib.util
from pathlib import Path

import torch

import hybridc
from hybridc.data import SyntheticGestures
from hybridc.nn import Accumulator

HERE = Path(__file__).resolve().parent
# train.py's sizes and head, loaded by path (a plain `import train` could find another example's)
_spec = importlib.util.spec_from_file_location("nir_import_train", HERE / "train.py")
train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train)
INTERVAL, SIZE, TIMESTEPS, batches, head_net = train.INTERVAL, train.SIZE, train.TIMESTEPS, train.batches, train.head_net

# dt is in the unit of the graph's tau: Norse's to_nir(..., dt=1.0) writes tau in seconds
# (LIFBoxCell's default tau_mem = 10 ms is 0.01), and Norse integrated the front with a
# 1 ms Euler step while training, so one Loihi time step is dt = 1e-3 s (decay dt/tau = 0.1).
front = hybridc.nn.NIR(HERE / "front.nir", dt=1e-3)
head = head_net()
head.load_state_dict(torch.load(HERE / "head.pt", weights_only=True))
model = torch.nn.Sequential(front, Accumulator(INTERVAL), head).eval()

# 8 test samples of hybridc's synthetic gestures (not seen in training): (8, 128, 16) spikes
example_input, example_labels = batches(SyntheticGestures(8, SIZE, TIMESTEPS, seed=10_000))
