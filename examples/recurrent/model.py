"""A recurrent spiking front end with a dense head, on (N, F, T) data.

A slayer `cuba.Dense` layer reads F input channels of unary spikes (an audio front end's
channels, as in the Spiking Heidelberg Digits), a `cuba.Recurrent` layer feeds its own
spikes back into its neurons (s[t] = f(W x[t] + R s[t-1])), and a second Dense layer
narrows it; the accumulator counts the spikes per window and a small ANN head classifies.
netx runs the recurrent layer as its own `dense_rec` layer: the spiking stage is one stock
netx file.

    hybridc compile examples/recurrent/model.py --target loihi+jetson -o build/recurrent --verify
"""

import torch
from lava.lib.dl import slayer

from hybridc.nn import Accumulator

NEURON = {"threshold": 1.0, "current_decay": 0.3, "voltage_decay": 0.25, "tau_grad": 0.01, "scale_grad": 1.0}


class RecurrentHybrid(torch.nn.Module):
    def __init__(self, features: int = 40, hidden: int = 32, outputs: int = 16, timesteps: int = 32,
                 interval: int = 8, classes: int = 4, weight_scale: float = 3.0):
        super().__init__()
        # each block gets its own copy: slayer's Recurrent writes persistent_state into the dict it is given
        self.snn = torch.nn.Sequential(
            slayer.block.cuba.Dense(dict(NEURON), features, hidden, weight_scale=weight_scale),
            slayer.block.cuba.Recurrent(dict(NEURON), hidden, hidden, weight_scale=weight_scale),
            slayer.block.cuba.Dense(dict(NEURON), hidden, outputs, weight_scale=weight_scale))
        self.accumulator = Accumulator(interval)
        self.head = torch.nn.Sequential(torch.nn.Linear(outputs * (timesteps // interval), 16), torch.nn.ReLU(),
                                        torch.nn.Linear(16, classes))

    def forward(self, spikes):
        return self.head(self.accumulator(self.snn(spikes)))


def build(timesteps: int = 32, interval: int = 8, seed: int = 0, batch: int = 1, density: float = 0.3):
    """(model, example_input): random unary spikes, (batch, 40, timesteps)."""
    torch.manual_seed(seed)
    model = RecurrentHybrid(timesteps=timesteps, interval=interval).eval()
    g = torch.Generator().manual_seed(seed + 1)
    return model, (torch.rand(batch, 40, timesteps, generator=g) < density).float()


model, example_input = build()
