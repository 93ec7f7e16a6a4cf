"""Small hybrids beyond one cut (16x16, T=8), shared by the stage-graph tests and the examples'
tests: several taps, an ANN front end, and SNN -> ANN -> SNN -> ANN."""

import torch
from helpers import NEURON, load_example, spikes
from lava.lib.dl import slayer

from hybridc.nn import Accumulator, Encoder


def MultiTap():
    """Spike-FlowNet in miniature (examples/spike_flownet): three spiking layers each feed the
    dense decoder, through accumulators of intervals 4, 2 and 8."""
    return load_example("spike_flownet").SpikeFlowNet()


def AnnFirst():
    """examples/ann_frontend at 16x16: a dense frame encoder per window hands graded spikes
    (4 bits, each window held for 2 steps) to a spiking network, whose counts feed a head."""
    return load_example("ann_frontend").FrameEncoderSNN(size=16)


class Alternating(torch.nn.Module):
    """SNN -> ANN -> SNN -> ANN: per-window counts go through a dense layer and come back to
    a second spiking layer as 3-bit graded spikes."""

    def __init__(self, classes=5):
        super().__init__()
        self.s1 = slayer.block.cuba.Conv(NEURON, 2, 4, 3, stride=2, padding=1, weight_scale=3)
        self.acc1 = Accumulator(2, fold=False)  # (N, 4, 8, 8, 4 windows)
        self.mix = torch.nn.Conv3d(4, 4, (3, 3, 1), padding=(1, 1, 0))
        self.encode = Encoder(bits=3, hold=2)  # back to 8 steps
        self.s2 = slayer.block.cuba.Conv(NEURON, 4, 8, 3, stride=2, padding=1, weight_scale=1)
        self.acc2 = Accumulator(8)
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, classes))

    def forward(self, x):
        counts = self.acc1(self.s1(x))
        graded = self.encode(torch.relu(self.mix(counts)) * 6)
        return self.head(self.acc2(self.s2(graded)))


def example_input(kind: str, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Spikes (N, 2, 16, 16, 8) for the spiking-first models; real frames (N, 2, 16, 16, 4) for AnnFirst."""
    if kind == "ann_first":
        return torch.rand(batch, 2, 16, 16, 4, generator=torch.Generator().manual_seed(seed)) * 2
    return spikes(batch, 2, 16, 16, 8, density=0.3, seed=seed)


class AlternatingWithSkip(torch.nn.Module):
    """SNN -> ANN -> SNN -> ANN whose dense head also reads the model input (a skip from the
    input): four stages, the input crossing to two of them."""

    def __init__(self, classes=5):
        super().__init__()
        self.s1 = slayer.block.cuba.Conv(NEURON, 2, 4, 3, stride=2, padding=1, weight_scale=3)
        self.acc1 = Accumulator(2, fold=False)  # I=2: raw spikes cross (as small as the counts)
        self.mix = torch.nn.Conv3d(4, 4, (3, 3, 1), padding=(1, 1, 0))
        self.encode = Encoder(bits=3, hold=2)
        self.s2 = slayer.block.cuba.Conv(NEURON, 4, 8, 3, stride=2, padding=1, weight_scale=1)
        self.acc2 = Accumulator(8)  # 4-bit counts cross
        self.head = torch.nn.Linear(8 * 4 * 4 + 2, classes)

    def forward(self, x):
        graded = self.encode(torch.relu(self.mix(self.acc1(self.s1(x)))) * 6)
        counts = self.acc2(self.s2(graded)).flatten(1)
        return self.head(torch.cat([counts, x.mean((2, 3, 4))], dim=1))
