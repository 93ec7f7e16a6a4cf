"""An ANN front end feeding a spiking network (Tianjic-style ANN -> SNN hybrid units).

A dense frame encoder runs on the Jetson once per window; `hybridc.nn.Encoder` turns
its real output into 4-bit graded spikes, each window held for 2 timesteps, which
Loihi receives in the first synapse of a spiking classifier (netx
`input_message_bits=4`). The spike counts go back to a linear head on the Jetson:
three stages, ann1 -> snn -> ann2.

    python -m hybridc.cli compile examples/ann_frontend/model.py -o build/frontend
"""

import torch
from lava.lib.dl import slayer

from hybridc.nn import Accumulator, Encoder

NEURON = {"threshold": 1.0, "current_decay": 0.3, "voltage_decay": 0.25, "tau_grad": 0.01, "scale_grad": 1.0}


class FrameEncoderSNN(torch.nn.Module):
    """Input (N, 2, H, W, windows) real frames, H and W multiples of 4; output (N, classes)."""

    def __init__(self, size: int = 32, windows: int = 4, hold: int = 2, bits: int = 4, classes: int = 5):
        super().__init__()
        self.frame = torch.nn.Conv3d(2, 4, (3, 3, 1), padding=(1, 1, 0))  # one 2D conv per window
        self.encode = Encoder(bits=bits, hold=hold)
        self.s1 = slayer.block.cuba.Conv(NEURON, 4, 6, 3, stride=2, padding=1, weight_scale=1)
        self.s2 = slayer.block.cuba.Conv(NEURON, 6, 8, 3, stride=2, padding=1, weight_scale=2)
        self.acc = Accumulator(windows * hold)
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8 * (size // 4) ** 2, classes))

    def forward(self, frames):
        graded = self.encode(torch.relu(self.frame(frames)) * 4)
        return self.head(self.acc(self.s2(self.s1(graded))))


torch.manual_seed(0)
model = FrameEncoderSNN().eval()
example_input = torch.rand(1, 2, 32, 32, 4) * 2
