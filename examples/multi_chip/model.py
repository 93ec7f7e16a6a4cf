"""Three spiking convs on 2x256x256 event frames (2 -> 32, 32 -> 32 and 32 -> 64 channels at
stride 2, 3x3): 2,883,584 neurons, more than one Loihi 2 chip holds. Compile it for Kapoho
Point (8 chips) to see the layers split into spatial tiles and the spikes crossing chips:

    hybridc compile examples/multi_chip/model.py -o build --system kapoho-point
    hybridc inspect build --level cores
    hybridc profile build --samples 1 --data random:0.1
"""

import torch
from lava.lib.dl import slayer

from hybridc.nn import Accumulator

NEURON = {"threshold": 1.0, "current_decay": 0.25, "voltage_decay": 0.25, "tau_grad": 0.01, "scale_grad": 1.0}
torch.manual_seed(0)
model = torch.nn.Sequential(
    slayer.block.cuba.Conv(NEURON, 2, 32, 3, padding=1, weight_scale=3),
    slayer.block.cuba.Conv(NEURON, 32, 32, 3, padding=1, stride=2, weight_scale=3),
    slayer.block.cuba.Conv(NEURON, 32, 64, 3, padding=1, stride=2, weight_scale=3),
    Accumulator(4), torch.nn.Flatten(), torch.nn.LazyLinear(10)).eval()
example_input = (torch.rand(1, 2, 256, 256, 8) < 0.1).float()
with torch.no_grad():
    model(example_input)
