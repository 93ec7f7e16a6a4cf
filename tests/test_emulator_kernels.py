"""The emulator's compiled CPU loops (runtime/kernels.pyx) against the torch ops they replace.

The Lava comparisons (test_emulator*.py) run the compiled LIF on every build; these check
the torch path that runs on other devices stays equal to it on what builds rarely reach:
the 24-bit current wrap, the voltage clamp, biases, an input layer's lag 0, int64 currents,
channels_last layouts. And the input check: exactly the entries that are not 0 or 1.
"""

import numpy as np
import pytest
import torch
from hybridc.runtime.kernels import count_not_unary
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridc.runtime import kernels
from hybridc.runtime.emulator.neurons import Neuron, lif


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), lag=st.sampled_from([0, 1]), scale=st.sampled_from([3, 300, 200_000]),
       biased=st.booleans(), integer=st.booleans(), channels_last=st.booleans(),
       decays=st.tuples(st.integers(0, 4096), st.integers(0, 4096)), threshold=st.integers(1, 1 << 20))
def test_fused_lif_equals_torch_ops(seed, lag, scale, biased, integer, channels_last, decays, threshold):
    g = torch.Generator().manual_seed(seed)
    currents = torch.randint(-scale, scale + 1, (3, 9, 4, 5, 6), generator=g)
    if channels_last:  # the layout the conv hands the neurons
        currents = currents.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    currents = currents if integer else currents.float()
    bias = (torch.randint(-(1 << 12), 1 << 12, (4, 1, 1), generator=g) << 6) if biased else None
    neuron = Neuron(current_factor=decays[0], voltage_factor=decays[1], threshold=threshold << 6, bias=bias)
    fused = lif(neuron, currents, lag, fused=True)
    plain = lif(neuron, currents, lag, fused=False)
    assert fused.shape == plain.shape and fused.dtype == torch.bool
    assert torch.equal(fused, plain)


def test_fused_lif_wraps_and_clamps():
    """Currents near 2**23 after the << 6: both paths wrap the current and clamp the voltage."""
    currents = torch.full((1, 12, 3), 100_000.0)
    currents[0, :, 1] = -100_000.0
    neuron = Neuron(current_factor=4096, voltage_factor=4096, threshold=1 << 30, bias=None)
    assert torch.equal(lif(neuron, currents, fused=True), lif(neuron, currents, fused=False))
    neuron.threshold = 1 << 20
    spikes = lif(neuron, currents, fused=True)
    assert torch.equal(spikes, lif(neuron, currents, fused=False)) and spikes.any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64, torch.bfloat16])
def test_count_not_unary(dtype):
    x = (torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0)) < 0.4).to(dtype)
    assert count_not_unary(x) == 0
    x[0, 1, 2, 3] = 2
    x[1, 0, 0, 0] = -1
    assert count_not_unary(x) == 2
    if dtype.is_floating_point:
        x[1, 2, 4, 6] = 0.5
        x[1, 2, 4, 5] = float("nan")
        assert count_not_unary(x) == 4
        tiny = torch.zeros(3, dtype=dtype)
        tiny[1] = torch.finfo(dtype).tiny
        assert count_not_unary(tiny) == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spikes_channels_last_equals_the_strided_copy(dtype):
    """The blocked layout copy writes what torch's permuted copy writes, only the first T steps, and
    counts the entries that are not 0 or 1."""
    x = (torch.rand(3, 5, 7, 9, 6, generator=torch.Generator().manual_seed(1)) < 0.3).to(dtype)
    x[0, 1, 2, 3, 4] = 0.5  # copied as is and counted: the error is the runner's
    out = torch.full((3, 8, 7, 9, 5), -1.0)
    assert kernels.spikes_channels_last(x, out) == 1
    assert torch.equal(out[:, :6], x.permute(0, 4, 2, 3, 1).float())
    assert bool((out[:, 6:] == -1).all())


def _lava_lif(neuron, currents, lag):
    """Lava's PyLifModelBitAcc step (lava/proc/lif/models.py, subthr_dynamics and reset) line
    for line in numpy int32, one sample (T, width) of integer currents: an oracle that shares no
    code with the emulator."""
    u = np.zeros(currents.shape[1], np.int32)
    v = np.zeros(currents.shape[1], np.int32)
    limit = 2 ** 23
    out = []
    with np.errstate(over="ignore"):
        for t in range(currents.shape[0]):
            a_in = currents[t - lag].astype(np.int32) if t >= lag else np.zeros_like(u)
            decayed = np.int64(u) * neuron.current_factor
            decayed = np.int32(np.sign(decayed) * np.right_shift(np.abs(decayed), 12))
            decayed += np.left_shift(a_in, 6)
            wrapped = np.where(decayed > limit, decayed - 2 * limit, decayed)
            wrapped = np.where(wrapped <= -limit, decayed + 2 * limit, wrapped)
            u[:] = wrapped
            volt = np.int64(v) * neuron.voltage_factor
            volt = np.int32(np.sign(volt) * np.right_shift(np.abs(volt), 12))
            v[:] = np.clip(volt + u, -limit + 1, limit - 1)
            fired = v > neuron.threshold
            v[fired] = 0
            out.append(fired.copy())
    return np.stack(out)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("level", [2**17, 277_928, 2**20, 2**23])
def test_float_steps_give_way_where_lavas_int32_sums_wrap(fused, level):
    """An input held high while the current barely decays: the 24-bit wrap takes off 2**24 once
    a step, so from about 2**18 a step (64 x 2**18 = 2**24) the current climbs until Lava's int32
    sum wraps. Both float paths see it coming and hand over to the int64 step; below that the
    float steps run (and are exact) where they used to."""
    neuron = Neuron(current_factor=4095, voltage_factor=4096, threshold=100 << 6, bias=None)
    currents = torch.full((2, 300, 3), float(level))
    currents[1, :, 1] = -level
    expected = np.stack([_lava_lif(neuron, sample.numpy(), 0) for sample in currents])
    got = lif(neuron, currents, 0, fused=fused).numpy()
    assert np.array_equal(got, expected), f"{(got != expected).sum()} of {got.size} spikes differ"
    assert expected.any() and not expected.all()
