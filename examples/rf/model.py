"""A resonate-and-fire front end with a dense head.

Two slayer `rf.Dense` layers of resonators (complex weights, a decaying rotation of the
membrane state; a spike when the phase crosses zero with the real part above threshold)
read unary input spikes; the accumulator counts their output spikes per window and a small
ANN head classifies. netx runs the front end as complex-dense layers of Lava's `RF`
neurons. `family="rf_iz"` builds the RF-Izhikevich variant.

    hybridc compile examples/rf/model.py --target loihi+jetson -o build/
"""

import torch
from lava.lib.dl import slayer

from hybridc.nn import Accumulator

NEURON = {"threshold": 0.5, "period": 8, "decay": 0.1}


class RfHybrid(torch.nn.Module):
    def __init__(self, features: int = 40, hidden: int = 24, outputs: int = 16, timesteps: int = 32,
                 interval: int = 8, classes: int = 4, family: str = "rf", weight_scale: float = 3.0):
        super().__init__()
        blocks = getattr(slayer.block, family)
        self.snn = torch.nn.Sequential(blocks.Dense(NEURON, features, hidden, weight_scale=weight_scale),
                                       blocks.Dense(NEURON, hidden, outputs, weight_scale=weight_scale))
        self.accumulator = Accumulator(interval)
        self.head = torch.nn.Sequential(torch.nn.Linear(outputs * (timesteps // interval), 16), torch.nn.ReLU(),
                                        torch.nn.Linear(16, classes))

    def forward(self, spikes):
        return self.head(self.accumulator(self.snn(spikes)))


def build(family: str = "rf", timesteps: int = 32, interval: int = 8, seed: int = 0, batch: int = 1,
          density: float = 0.3):
    """(model, example_input): random unary spikes, (batch, 40, timesteps)."""
    torch.manual_seed(seed)
    model = RfHybrid(timesteps=timesteps, interval=interval, family=family).eval()
    g = torch.Generator().manual_seed(seed + 1)
    return model, (torch.rand(batch, 40, timesteps, generator=g) < density).float()


model, example_input = build()
