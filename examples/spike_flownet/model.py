"""A Spike-FlowNet-style hybrid (Lee et al., ECCV 2020) in miniature: several cuts.

A spiking encoder of three 3x3/stride-2 CUBA-LIF convolutions runs on Loihi; the
spikes of *every* encoder layer (three taps on one netx network) are accumulated,
each over its own interval, and feed a dense U-Net decoder on the Jetson through skip
connections. The decoder predicts a 2-channel optical-flow map at half resolution.

    python -m hybridc.cli compile examples/spike_flownet/model.py -o build/flownet
    python -m hybridc.cli inspect build/flownet
"""

import torch
from lava.lib.dl import slayer

from hybridc.nn import Accumulator

NEURON = {"threshold": 1.0, "current_decay": 0.3, "voltage_decay": 0.25, "tau_grad": 0.01, "scale_grad": 1.0}


class SpikeFlowNet(torch.nn.Module):
    """Input (N, 2, H, W, T) events, H and W multiples of 8; output (N, 2, H/2, W/2) flow."""

    def __init__(self, timesteps: int = 8, intervals=(4, 2, 8), weight_scale: float = 3.0):
        super().__init__()
        self.e1 = slayer.block.cuba.Conv(NEURON, 2, 4, 3, stride=2, padding=1, weight_scale=weight_scale)
        self.e2 = slayer.block.cuba.Conv(NEURON, 4, 8, 3, stride=2, padding=1, weight_scale=weight_scale)
        self.e3 = slayer.block.cuba.Conv(NEURON, 8, 8, 3, stride=2, padding=1, weight_scale=weight_scale)
        # one accumulator per tap, each with its own interval: windows fold into channels
        self.acc1, self.acc2, self.acc3 = (Accumulator(i) for i in intervals)
        c1, c2, c3 = (c * timesteps // i for c, i in zip((4, 8, 8), intervals))
        up = torch.nn.Upsample(scale_factor=2)
        self.dec3 = torch.nn.Sequential(torch.nn.Conv2d(c3, 8, 3, padding=1), torch.nn.ReLU(), up)
        self.dec2 = torch.nn.Sequential(torch.nn.Conv2d(8 + c2, 8, 3, padding=1), torch.nn.ReLU(), up)
        self.flow = torch.nn.Conv2d(8 + c1, 2, 3, padding=1)

    def forward(self, events):
        s1 = self.e1(events)
        s2 = self.e2(s1)
        s3 = self.e3(s2)
        d = self.dec3(self.acc3(s3))
        d = self.dec2(torch.cat([d, self.acc2(s2)], dim=1))
        return self.flow(torch.cat([d, self.acc1(s1)], dim=1))


torch.manual_seed(0)
model = SpikeFlowNet().eval()
example_input = (torch.rand(1, 2, 32, 32, 8) < 0.3).float()
