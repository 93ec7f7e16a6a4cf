"""A SEW-ResNet-style hybrid (Fang et al., NeurIPS 2021) in miniature: a spiking residual
backbone on Loihi, a dense head on the Jetson.

A stem convolution, then two spike-element-wise residual blocks with the ADD connection
(`block(s) + s`: spike sums 0..2 reach the next layer's synapse), a downsampling
convolution, then spike counts into a linear classifier. On Loihi each ADD becomes a copy
of the consumer's synapse taking the skip's spikes into the same neurons (Lava sums the
currents exactly); the build holds stock netx chains plus those synapses.

    python -m hybridc.cli compile examples/sew_resnet/model.py -o build/sew
    python -m hybridc.cli inspect build/sew --level nodes
    python -m hybridc.cli verify build/sew --trust-source
"""

import torch
from lava.lib.dl import slayer

from hybridc.nn import Accumulator

NEURON = {"threshold": 1.0, "current_decay": 0.3, "voltage_decay": 0.25, "tau_grad": 0.01, "scale_grad": 1.0}


def conv(c_in, c_out, stride=1, scale=3.0):
    return slayer.block.cuba.Conv(NEURON, c_in, c_out, 3, stride=stride, padding=1, weight_scale=scale)


class SewBlock(torch.nn.Module):
    """Two convolutions and SEW's ADD: out = conv2(conv1(s)) + s (a sum of spikes, not spikes)."""

    def __init__(self, channels):
        super().__init__()
        self.conv1, self.conv2 = conv(channels, channels), conv(channels, channels)

    def forward(self, spikes):
        return self.conv2(self.conv1(spikes)) + spikes


class SewResNet(torch.nn.Module):
    """Input (N, 2, H, W, T) events, H and W multiples of 4; output (N, classes) logits."""

    def __init__(self, classes: int = 5, channels: int = 4, size: int = 16, timesteps: int = 8):
        super().__init__()
        self.stem = conv(2, channels, stride=2)
        self.block1, self.block2 = SewBlock(channels), SewBlock(channels)
        self.down = conv(channels, 2 * channels, stride=2, scale=2.0)
        self.counts = Accumulator(timesteps)
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * channels * (size // 4) ** 2, classes))

    def forward(self, events):
        s = self.block2(self.block1(self.stem(events)))
        return self.head(self.counts(self.down(s)))


torch.manual_seed(0)
model = SewResNet().eval()
example_input = (torch.rand(1, 2, 16, 16, 8) < 0.3).float()
