"""Small branching spiking hybrids (2x16x16 spikes, T=8): SEW-ADD residual, a skip over two
layers, a two-branch concatenation, fan-out into a later ADD, a concatenation of
flattened branches into a dense layer, and merges feeding merges (chained ADD and cat).
Shared by the branching tests and the fuzzer's checks; BRANCH_MODELS lists them with inputs."""

import torch
from helpers import NEURON, spikes
from lava.lib.dl import slayer

from hybridc.nn import Accumulator, Encoder


def conv(c_in, c_out, stride=1, scale=3):
    return slayer.block.cuba.Conv(NEURON, c_in, c_out, 3, stride=stride, padding=1, weight_scale=scale)


class Head(torch.nn.Module):
    """Counts over the whole window into a linear classifier (dense, on the Jetson side)."""

    def __init__(self, features, classes=5):
        super().__init__()
        self.acc = Accumulator(8)
        self.fc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(features, classes))

    def forward(self, spikes):
        return self.fc(self.acc(spikes))


class SewResidual(torch.nn.Module):
    """SEW-ResNet's ADD block: c3 reads c2(c1) + c1 (spike sums 0..2)."""

    def __init__(self, skip=True):
        super().__init__()
        self.skip = skip
        self.c1, self.c2, self.c3 = conv(2, 4, stride=2), conv(4, 4), conv(4, 6, stride=2, scale=2)
        self.head = Head(6 * 4 * 4)

    def forward(self, x):
        a = self.c1(x)
        b = self.c2(a)
        return self.head(self.c3(b + a if self.skip else b))


class SkipTwo(torch.nn.Module):
    """A skip over two layers: c4 reads c3(c2(c1)) + c1, paths of 2 and 0 extra hops."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.c3, self.c4 = conv(2, 4, stride=2), conv(4, 4), conv(4, 4), conv(4, 6, 2, 2)
        self.head = Head(6 * 4 * 4)

    def forward(self, x):
        a = self.c1(x)
        return self.head(self.c4(self.c3(self.c2(a)) + a))


class TwoBranchCat(torch.nn.Module):
    """Two branches of different depth concatenated along channels into c4."""

    def __init__(self):
        super().__init__()
        self.c1 = conv(2, 4, stride=2)
        self.left = conv(4, 3)
        self.right1, self.right2 = conv(4, 4), conv(4, 5)
        self.c4 = conv(8, 6, stride=2, scale=2)
        self.head = Head(6 * 4 * 4)

    def forward(self, x):
        a = self.c1(x)
        return self.head(self.c4(torch.cat([self.left(a), self.right2(self.right1(a))], dim=1)))


class FanOutAdd(torch.nn.Module):
    """c1 feeds two layers whose spikes are added later: c4(c2(c1) + c3(c1)); c1 is also tapped."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.c3 = conv(2, 4, stride=2), conv(4, 4), conv(4, 4, scale=4)
        self.c4 = conv(4, 6, stride=2, scale=2)
        self.head, self.tap = Head(6 * 4 * 4), Head(4 * 8 * 8)

    def forward(self, x):
        a = self.c1(x)
        return self.head(self.c4(self.c2(a) + self.c3(a))) + self.tap(a)


class FlatCat(torch.nn.Module):
    """A conv branch and a dense branch, flattened and concatenated into a dense layer; the
    stage input is also added into the second layer (x + c0(x))."""

    def __init__(self):
        super().__init__()
        self.c0 = conv(2, 2)
        self.c1 = conv(2, 4, stride=2)
        self.flat = slayer.block.cuba.Flatten()
        self.flat2 = slayer.block.cuba.Flatten()
        self.d1 = slayer.block.cuba.Dense(NEURON, 4 * 8 * 8, 12, weight_scale=3)
        self.d2 = slayer.block.cuba.Dense(NEURON, 4 * 8 * 8 + 12, 10, weight_scale=3)
        self.head = Head(10)

    def forward(self, x):
        a = self.c1(self.c0(x) + x)
        f = self.flat(a)
        return self.head(self.d2(torch.cat([self.flat2(a), self.d1(f)], dim=1)))


def example_input(batch=1, seed=0, density=0.3):
    """The spikes these models read: (batch, 2, 16, 16, 8)."""
    return spikes(batch, 2, 16, 16, 8, density=density, seed=seed)


class LaggingResidual(torch.nn.Module):
    """The residual with blocks built with delay_shift=False on the long path: in Lava c2's
    spikes trail PyTorch by one more step than c1's, so c1's path into c3 must wait a step
    (a conv synapse as a DelayDense). dense=True: the same with dense layers."""

    def __init__(self, dense=False):
        super().__init__()
        if dense:
            make = lambda i, o, **kw: slayer.block.cuba.Dense(NEURON, i, o, weight_scale=3, **kw)  # noqa: E731
            self.c1, self.c2, self.c3 = make(2 * 16 * 16, 24), make(24, 24, delay_shift=False), make(24, 10)
            self.flat = slayer.block.cuba.Flatten()
        else:
            self.c1 = conv(2, 4, stride=2)
            self.c2 = slayer.block.cuba.Conv(NEURON, 4, 4, 3, padding=1, weight_scale=3, delay_shift=False)
            self.c3 = slayer.block.cuba.Conv(NEURON, 4, 6, 3, stride=2, padding=1, weight_scale=2, delay_shift=False)
            self.flat = None
        self.head = Head(10 if dense else 6 * 4 * 4)

    def forward(self, x):
        a = self.c1(self.flat(x) if self.flat is not None else x)
        return self.head(self.c3(self.c2(a) + a))


class GradedBranch(torch.nn.Module):
    """ANN first: a dense front end sends 3-bit graded spikes (Encoder); the spiking stage
    concatenates them with c1's spikes into c2, so the stage input also feeds an extra synapse
    (with 3 message bits)."""

    def __init__(self):
        super().__init__()
        self.front = torch.nn.Conv3d(2, 2, (1, 1, 1))
        self.encode = Encoder(bits=3, hold=1)
        self.c1 = conv(2, 4, scale=1)
        self.c2, self.c3 = conv(6, 6, stride=2, scale=1), conv(6, 6, stride=2, scale=1)
        self.head = Head(6 * 4 * 4)

    def forward(self, x):
        graded = self.encode(torch.relu(self.front(x)) * 3)
        return self.head(self.c3(self.c2(torch.cat([self.c1(graded), graded], dim=1))))


class ChainedAdd(torch.nn.Module):
    """A sum feeding a sum: c4 reads (c2 + c1) + c3, the first sum's only user is the second.
    fan_out=True: the first sum also feeds c3 (SEW's stacked residuals, s + c3(s))."""

    def __init__(self, fan_out=False):
        super().__init__()
        self.fan_out = fan_out
        self.c1, self.c2, self.c3, self.c4 = conv(2, 4, stride=2), conv(4, 4), conv(4, 4), conv(4, 6, 2, 2)
        self.head = Head(6 * 4 * 4)

    def forward(self, x):
        a = self.c1(x)
        b = self.c2(a)
        if self.fan_out:
            s = b + a
            return self.head(self.c4(s + self.c3(s)))
        return self.head(self.c4((b + a) + self.c3(b)))


class ChainedCat(torch.nn.Module):
    """A concatenation of a concatenation: c4 reads cat(cat(c1, c2), c3) along channels."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.c3 = conv(2, 4, stride=2), conv(4, 4), conv(4, 4)
        self.c4 = conv(12, 6, stride=2, scale=2)
        self.head = Head(6 * 4 * 4)

    def forward(self, x):
        a = self.c1(x)
        b = self.c2(a)
        return self.head(self.c4(torch.cat([torch.cat([a, b], dim=1), self.c3(b)], dim=1)))


# Every branching model with an input, by name: the netx writer and the spike-merge tagging
# tests run each. GradedBranch's dense front end reads real-valued frames.
BRANCH_MODELS = {
    "SewResidual": lambda: (SewResidual(), example_input()),
    "SkipTwo": lambda: (SkipTwo(), example_input()),
    "TwoBranchCat": lambda: (TwoBranchCat(), example_input()),
    "FanOutAdd": lambda: (FanOutAdd(), example_input()),
    "FlatCat": lambda: (FlatCat(), example_input()),
    "LaggingResidual": lambda: (LaggingResidual(), example_input()),  # a conv as a DelayDense matrix
    "LaggingResidual-dense": lambda: (LaggingResidual(dense=True), example_input()),  # a copied synapse + delay
    "GradedBranch": lambda: (GradedBranch(), torch.rand(1, 2, 16, 16, 8)),  # the stage input on an extra synapse
    "ChainedAdd-fan-out": lambda: (ChainedAdd(fan_out=True), example_input()),  # merges of merges
    "ChainedCat": lambda: (ChainedCat(), example_input()),
}
