"""The SxAy hybrid family of Seekings et al. (arXiv 2407.08704) on DvsGesture.

Six 3x3/stride-2/padding-1 convolutions, channels 2->4->8->16->32->64->128; the first
x are spiking (slayer CUBA-LIF, spike dropout 0.05 between them), then the
accumulator folds T/I windows of spike counts into channels, then the other y
convs run as a ReLU ANN with the dense head 512 -> 2056 -> 128 -> 11.

    hybridc compile examples/dvs_gesture/model.py --target loihi+jetson -o build/
"""

import torch
from lava.lib.dl import slayer

from hybridc.nn import Accumulator

CHANNELS = [2, 4, 8, 16, 32, 64, 128]
SPLITS = {"S1A5": 1, "S2A4": 2, "S3A3": 3, "S4A2": 4, "S5A1": 5, "S6A0": 6}
NEURON = {  # the paper's CUBA-LIF neuron
    "threshold": 1.0,
    "current_decay": 0.3,
    "voltage_decay": 0.25,
    "tau_grad": 0.01,
    "scale_grad": 1.0,
}


def _conv_out(size: int) -> int:
    return (size + 2 - 3) // 2 + 1


class HybridSxAy(torch.nn.Module):
    def __init__(self, spiking_layers: int, interval: int, size: int = 128, timesteps: int = 16,
                 classes: int = 11, weight_scale: float = 2.0):
        super().__init__()
        if timesteps % interval:
            raise ValueError(f"timesteps={timesteps} is not a multiple of interval={interval}")
        spiking = []
        for i in range(spiking_layers):
            if i:
                spiking.append(slayer.neuron.Dropout(p=0.05))
            spiking.append(slayer.block.cuba.Conv(NEURON, CHANNELS[i], CHANNELS[i + 1], 3, stride=2,
                                                  padding=1, weight_scale=weight_scale))
        self.snn = torch.nn.Sequential(*spiking)
        self.accumulator = Accumulator(interval)
        dense = []
        in_channels = CHANNELS[spiking_layers] * (timesteps // interval)
        for i in range(spiking_layers, 6):
            dense += [torch.nn.Conv2d(in_channels, CHANNELS[i + 1], 3, stride=2, padding=1), torch.nn.ReLU()]
            in_channels = CHANNELS[i + 1]
        spatial = size
        for _ in range(6):
            spatial = _conv_out(spatial)
        self.ann = torch.nn.Sequential(
            *dense,
            torch.nn.Flatten(),
            torch.nn.Linear(CHANNELS[6] * spatial * spatial, 2056), torch.nn.ReLU(), torch.nn.Dropout(0.25),
            torch.nn.Linear(2056, 128), torch.nn.ReLU(), torch.nn.Dropout(0.25),
            torch.nn.Linear(128, classes),
        )

    def forward(self, spikes):
        return self.ann(self.accumulator(self.snn(spikes)))


def build(split: str = "S2A4", interval: int = 4, size: int = 128, timesteps: int = 16, seed: int = 0,
          batch: int = 1, density: float = 0.2):
    """(model, example_input) for one SxAy member; example_input is random spikes."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    torch.manual_seed(seed)
    model = HybridSxAy(SPLITS[split], interval, size, timesteps).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    example_input = (torch.rand(batch, 2, size, size, timesteps, generator=generator) < density).float()
    return model, example_input


model, example_input = build()
