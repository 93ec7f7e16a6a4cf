"""A sigma-delta (SDNN) front end with a dense head: the shape of lava-dl's PilotNet SDNN.

slayer's sigma-delta blocks (`Input` -> `Conv` -> `Conv` -> `Flatten` -> `Dense`) send
graded spikes (the change of each ReLU activation, when it exceeds the threshold); the
accumulator sums them over windows of I steps (the activation's change per window), and a
small ANN head reads those sums. netx runs the front end as Delta -> SigmaDelta layers.

    hybridc compile examples/sdnn/model.py --target loihi+jetson -o build/
"""

import torch
from lava.lib.dl import slayer

from hybridc.nn import Accumulator

NEURON = {"threshold": 0.125, "activation": torch.nn.functional.relu}


class SdnnHybrid(torch.nn.Module):
    def __init__(self, size: int = 16, timesteps: int = 8, interval: int = 4, classes: int = 4,
                 weight_scale: float = 2.0):
        super().__init__()
        sd = slayer.block.sigma_delta
        side = (size + 1) // 2
        side = (side + 1) // 2
        self.snn = torch.nn.Sequential(
            sd.Input(NEURON),
            sd.Conv(NEURON, 2, 6, 3, stride=2, padding=1, weight_scale=weight_scale),
            sd.Conv(NEURON, 6, 8, 3, stride=2, padding=1, weight_scale=weight_scale),
            sd.Flatten(),
            sd.Dense(NEURON, 8 * side * side, 24, weight_scale=weight_scale),
        )
        self.accumulator = Accumulator(interval)
        self.head = torch.nn.Sequential(torch.nn.Linear(24 * (timesteps // interval), 16), torch.nn.ReLU(),
                                        torch.nn.Linear(16, classes))

    def forward(self, frames):
        return self.head(self.accumulator(self.snn(frames)))


def build(size: int = 16, timesteps: int = 8, interval: int = 4, seed: int = 0, batch: int = 1):
    """(model, example_input): frames that drift slowly over time, values in [0, 2)."""
    torch.manual_seed(seed)
    model = SdnnHybrid(size, timesteps, interval).eval()
    g = torch.Generator().manual_seed(seed + 1)
    base = torch.rand(batch, 2, size, size, 1, generator=g)
    drift = torch.rand(batch, 2, size, size, 1, generator=g) * torch.linspace(0, 1, timesteps)
    return model, base + drift


model, example_input = build()
