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
        if spiking_layers == 0:  # the ANN baseline sums the raw input events
            interval = interval or timesteps
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


class SpikingBaseline(torch.nn.Module):
    """The paper's SNN baseline: six spiking convs and spiking dense layers. Its class
    scores are spike rates (`.mean(-1)`, recognised by hybridc as an accumulator with
    I=T); it is trained here with cross-entropy on the rates (the paper used slayer's
    SpikeRate loss)."""

    def __init__(self, size: int = 128, timesteps: int = 16, classes: int = 11, weight_scale: float = 2.0):
        super().__init__()
        blocks = []
        for i in range(6):
            if i:
                blocks.append(slayer.neuron.Dropout(p=0.05))
            blocks.append(slayer.block.cuba.Conv(NEURON, CHANNELS[i], CHANNELS[i + 1], 3, stride=2, padding=1,
                                                 weight_scale=weight_scale))
        spatial = size
        for _ in range(6):
            spatial = _conv_out(spatial)
        blocks += [slayer.block.cuba.Flatten(),
                   slayer.block.cuba.Dense(NEURON, CHANNELS[6] * spatial * spatial, 128, weight_scale=weight_scale),
                   slayer.block.cuba.Dense(NEURON, 128, classes, weight_scale=weight_scale)]
        self.snn = torch.nn.Sequential(*blocks)
        self.gain = torch.nn.Parameter(torch.tensor(10.0))  # rates are in [0, 1]: scale them to logits

    def forward(self, spikes):
        return self.snn(spikes).mean(-1) * self.gain


def build_model(split: str = "S2A4", interval: int = 4, size: int = 128, timesteps: int = 16, seed: int = 0):
    """One member of the family: S1A5 .. S6A0, `ANN` (accumulator on the raw input, six
    Conv2d) or `SNN` (the spiking baseline)."""
    torch.manual_seed(seed)
    if split == "ANN":
        return HybridSxAy(0, interval, size, timesteps).eval()
    if split == "SNN":
        return SpikingBaseline(size, timesteps).eval()
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}, ANN or SNN")
    return HybridSxAy(SPLITS[split], interval, size, timesteps).eval()


def build(split: str = "S2A4", interval: int = 4, size: int = 128, timesteps: int = 16, seed: int = 0,
          batch: int = 1, density: float = 0.2):
    """(model, example_input) for one member; example_input is random spikes. As an entry:
    hybridc compile model.py --entry build --set split=S3A3 --set size=32"""
    model = build_model(split, interval, size, timesteps, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    example_input = (torch.rand(batch, 2, size, size, timesteps, generator=generator) < density).float()
    return model, example_input


model, example_input = build()
