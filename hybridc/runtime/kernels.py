"""The emulator's hot loops on the CPU, compiled with numba: one pass over memory each.

Found by profiling S2A4 at 128x128 on one thread: a LIF layer written as torch ops costs
nine passes over its state per step (decay, truncate, add, clamp, compare, reset...), each
paying torch's dispatch; fused into one loop over the neurons per step, with the state in
registers, it runs about 8x faster. The same for checking that an input is unary (a compare,
an or, a reduction, or a sort for `torch.unique`), which here is one read of the input.

Each kernel computes exactly what its torch counterpart does (`emulator/neurons.py` keeps
those for other devices, and tests hold the two equal): float64 on integer values below
2**53, IEEE operations in the same order, no fastmath. Compiled on first use and cached
beside this file (`cache=True`).
"""

import numpy as np
import torch
from numba import njit

__all__ = ["count_not_unary", "lif_float"]


@njit(cache=True)
def _count_not_unary(values):
    bad = 0
    for i in range(values.shape[0]):  # branch-free, so it vectorises: v (v - 1) is 0 for 0 and 1 only
        value = values[i]
        bad += np.int64(value * (value - 1.0) != 0)
    return bad


def count_not_unary(x: torch.Tensor) -> int:
    """How many entries of a CPU tensor are neither 0 nor 1 (NaN counts), in one read."""
    x = x.detach()
    if x.dtype in (torch.float16, torch.bfloat16):  # numpy has no bfloat16; both widen exactly
        x = x.float()
    return int(_count_not_unary(x.contiguous().reshape(-1).numpy()))


@njit(cache=True)
def _lif_float(currents, lag, current_factor, voltage_factor, threshold, bias, wrap_current, spikes):
    n_samples, steps, width = currents.shape
    limit = float(1 << 23)
    u = np.zeros(width)
    v = np.zeros(width)
    for n in range(n_samples):
        u[:] = 0.0
        v[:] = 0.0
        for t in range(steps):
            arriving = t >= lag
            for m in range(width):
                current = np.trunc(u[m] * current_factor)
                if arriving:
                    current += currents[n, t - lag, m] * 64.0
                if wrap_current:
                    if current > limit:
                        current -= 2.0 * limit
                    elif current <= -limit:
                        current += 2.0 * limit
                u[m] = current
                voltage = np.trunc(v[m] * voltage_factor) + current + bias[m]
                voltage = min(max(voltage, -limit + 1.0), limit - 1.0)
                fired = voltage > threshold
                spikes[n, t, m] = fired
                v[m] = 0.0 if fired else voltage


def _memory_order(x: torch.Tensor) -> list:
    """The permutation of x's dims in memory order (outermost first): (N, T, ...) keeps N, T
    first; a channels_last (N, T, C, H, W) gives (0, 1, 3, 4, 2)."""
    return [0, 1] + sorted(range(2, x.dim()), key=lambda d: (-x.stride(d), d))


def lif_float(neuron, currents: torch.Tensor, wrap_current: bool, lag: int) -> torch.Tensor:
    """`neurons._lif_float` for a CPU tensor: (N, T, ...) integer-valued currents -> (N, T, ...)
    bool spikes in the same memory layout, Lava's LIF step for step."""
    order = _memory_order(currents)
    flat = currents.permute(order).contiguous()  # a view's copy only when not already in that order
    shape = flat.shape
    flat = flat.reshape(shape[0], shape[1], -1)
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.to(torch.float64)
    state_shape = currents.shape[2:]
    if neuron.bias is not None:
        bias = neuron.bias.to(torch.float64).expand(state_shape).permute([d - 2 for d in order[2:]])
        bias = bias.reshape(-1).contiguous().numpy()
    else:
        bias = np.zeros(flat.shape[2])
    spikes = np.empty(flat.shape, dtype=np.bool_)
    _lif_float(flat.numpy(), lag, neuron.current_factor / 4096, neuron.voltage_factor / 4096,
               float(neuron.threshold), bias, bool(wrap_current), spikes)
    inverse = [order.index(d) for d in range(len(order))]
    return torch.from_numpy(spikes).reshape(shape).permute(inverse)
