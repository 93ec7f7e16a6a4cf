# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The emulator's hot loops on the CPU, compiled ahead of time (Cython): one pass over memory each.

Found by profiling S2A4 at 128x128 on one thread: a LIF layer written as torch ops costs
nine passes over its state per step (decay, truncate, add, clamp, compare, reset...), each
paying torch's dispatch; fused into one loop over the neurons per step, with the state in
registers, it runs about 8x faster. The same for checking that an input is unary (one read
instead of compares, an or and a reduction) and for laying spikes out channels innermost
(a step and a channel at a time, counting non-unary entries on the way, instead of torch's
strided copy and a second read).

Compiled when hybridc is installed, not at run time: a JIT (numba, used before) keeps LLVM
resident, about 115 MiB of a process that must stream a data set in 500 MiB.

Each kernel computes exactly what its torch counterpart does (`emulator/neurons.py` keeps
those for other devices, and tests hold the two equal): float64 on integer values below
2**53, IEEE operations in the same order (trunc aside: see `_trunc`), no fast-math and no
fused multiply-add (setup.py builds with -ffp-contract=off).
"""

import numpy as np
import torch

__all__ = ["count_not_unary", "lif_float", "spikes_channels_last"]

ctypedef fused real:
    float
    double


cdef Py_ssize_t _count_not_unary(const real[::1] values) noexcept nogil:
    cdef Py_ssize_t i, bad = 0
    cdef real value, one = 1
    cdef int flags
    for i in range(values.shape[0]):  # branch-free, so it vectorises: v (v - 1) is 0 for 0 and 1 only
        value = values[i]
        bad += <int>(value * (value - one) != 0)
    return bad


def count_not_unary(x: torch.Tensor) -> int:
    """How many entries of a CPU tensor are neither 0 nor 1 (NaN counts), in one read."""
    x = x.detach()
    if x.dtype != torch.float32:  # other dtypes widen exactly enough: only 0 and 1 land on 0 and 1
        x = x.to(torch.float64)
    values = x.contiguous().reshape(-1).numpy()
    if x.dtype == torch.float32:
        return _count_not_unary[float](values)
    return _count_not_unary[double](values)


cdef inline double _trunc(double x) noexcept nogil:
    # trunc through int32, which the vector units convert several at a time (libm's trunc is a
    # call per value on baseline x86-64): exact while |x| < 2**31, which `_lif_step` watches
    # (past it the run is discarded). Only the sign of a zero can differ (+0 for -0.5), and no
    # comparison or sum downstream sees it.
    return <double><int>x


cdef inline Py_ssize_t _lif_step(const real* arriving, double* u, double* v, const double* bias, double* fired,
                                 unsigned char* spikes, Py_ssize_t width, double current_factor,
                                 double voltage_factor, double threshold) noexcept nogil:
    # one step of every neuron, without a branch (selects only) and in doubles only (the bytes
    # are written by a second loop), so both loops vectorise. The current's wrap is always
    # applied (a no-op until a current passes 2**23). Returns how many values left the range
    # where float64 equals Lava's int32 arithmetic: an input of 2**24 or more (its << 6 would
    # wrap), a current before its wrap or a voltage before its clamp of 2**31 or more.
    cdef Py_ssize_t m, overflow = 0
    cdef double limit = <double>(1 << 23), wide = 2147483648.0, current, voltage, below, above, a
    for m in range(width):
        a = <double>arriving[m]
        current = _trunc(u[m] * current_factor) + a * 64.0
        overflow += <int>((a >= 16777216.0) | (a <= -16777216.0) | (current >= wide) | (current <= -wide))
        below, above = current - 2.0 * limit, current + 2.0 * limit  # both computed: selects, not branches
        current = below if current > limit else current
        current = above if current <= -limit else current
        u[m] = current
        voltage = _trunc(v[m] * voltage_factor) + current + bias[m]
        overflow += <int>((voltage >= wide) | (voltage <= -wide))
        voltage = -limit + 1.0 if voltage < -limit + 1.0 else voltage
        voltage = limit - 1.0 if voltage > limit - 1.0 else voltage
        fired[m] = 1.0 if voltage > threshold else 0.0
        v[m] = 0.0 if voltage > threshold else voltage
    for m in range(width):
        spikes[m] = <unsigned char>fired[m]
    return overflow


cdef Py_ssize_t _lif(const real[:, :, ::1] currents, Py_ssize_t lag, double current_factor, double voltage_factor,
                     double threshold, const double[::1] bias, unsigned char[:, :, ::1] spikes,
                     double[::1] u, double[::1] v, double[::1] fired, const real[::1] silence) noexcept nogil:
    cdef Py_ssize_t n, t, m, width = currents.shape[2], overflow = 0
    for n in range(currents.shape[0]):
        for m in range(width):
            u[m] = 0.0
            v[m] = 0.0
        for t in range(currents.shape[1]):  # the first `lag` steps receive nothing (zeros)
            overflow += _lif_step(&currents[n, t - lag, 0] if t >= lag else &silence[0], &u[0], &v[0], &bias[0],
                                  &fired[0], &spikes[n, t, 0], width, current_factor, voltage_factor, threshold)
            if overflow:
                return overflow
    return overflow


def _memory_order(x: torch.Tensor) -> list:
    """The permutation of x's dims in memory order (outermost first): (N, T, ...) keeps N, T
    first; a channels_last (N, T, C, H, W) gives (0, 1, 3, 4, 2)."""
    return [0, 1] + sorted(range(2, x.dim()), key=lambda d: (-x.stride(d), d))


def lif_float(neuron, currents: torch.Tensor, lag: int):
    """`neurons._lif_float` for a CPU tensor: (N, T, ...) integer-valued currents -> (N, T, ...)
    bool spikes in the same memory layout, Lava's LIF step for step; None for an input of
    2**24 or more or where one of Lava's int32 sums would overflow (the caller then runs the
    int64 step). It checks the bounds as it goes, so the caller needs no pass to find them."""
    order = _memory_order(currents)
    flat = currents.detach().permute(order).contiguous()  # a view's copy only when not already in that order
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
    spikes = np.empty(flat.shape, dtype=np.uint8)
    u, v, fired = (np.empty(flat.shape[2]) for _ in range(3))
    silence = np.zeros(flat.shape[2], dtype=flat.numpy().dtype)
    args = (lag, neuron.current_factor / 4096, neuron.voltage_factor / 4096, float(neuron.threshold), bias,
            spikes, u, v, fired, silence)
    if flat.dtype == torch.float32:
        overflow = _lif[float](flat.numpy(), *args)
    else:
        overflow = _lif[double](flat.numpy(), *args)
    if overflow:
        return None
    inverse = [order.index(d) for d in range(len(order))]
    return torch.from_numpy(spikes.view(np.bool_)).reshape(shape).permute(inverse)


cdef Py_ssize_t _channels_last(const real[:, :, :, :, ::1] x, float[:, :, :, :, ::1] out) noexcept nogil:
    # x (N, C, H, W, T) -> out (N, T', H, W, C), T' >= T, one row h of a sample at a time (C
    # blocks of W x T, a few KB, read from cache): counted in one contiguous pass, then copied
    # a step and a channel at a time, so the inner loop is two fixed strides the compiler
    # vectorises (with the channel innermost it could not: its count is only known at run time)
    cdef Py_ssize_t n, c, h, w, t, bad = 0
    cdef Py_ssize_t channels = x.shape[1], height = x.shape[2], width = x.shape[3], steps = x.shape[4]
    cdef Py_ssize_t plane = height * width * steps  # one channel of a sample in x
    cdef Py_ssize_t step_size = height * width * channels  # one step of a sample in out
    cdef const real* row
    cdef const real* source
    cdef float* target
    cdef real value, one = 1
    for n in range(x.shape[0]):
        for h in range(height):
            row = &x[n, 0, h, 0, 0]
            for c in range(channels):
                source = row + c * plane
                for w in range(width * steps):
                    value = source[w]
                    bad += <int>(value * (value - one) != 0)
            for t in range(steps):
                for c in range(channels):
                    source = row + c * plane + t
                    target = &out[n, 0, h, 0, 0] + t * step_size + c
                    for w in range(width):
                        target[w * channels] = <float>source[w * steps]
    return bad


def spikes_channels_last(x: torch.Tensor, out: torch.Tensor) -> int:
    """Copies (N, C, H, W, T) spikes (float32 or float64, C-contiguous) into the first T steps
    of a C-contiguous float32 (N, T', H, W, C) buffer, what `out[:, :T].copy_(x.permute(0, 4, 2,
    3, 1))` does, and returns how many entries are neither 0 nor 1: one pass, as fast as the
    copy alone (memory-bound), where torch's copy and `count_not_unary` take about 2x as long."""
    x = x.detach()
    n, c, h, w, t = x.shape  # the loops index without bounds checks: the shapes must agree
    if out.dtype != torch.float32 or out.dim() != 5 or out.shape[0] != n or out.shape[1] < t or \
            tuple(out.shape[2:]) != (h, w, c) or not out.is_contiguous():
        raise ValueError(f"spikes_channels_last: out {tuple(out.shape)} {out.dtype} cannot hold x {tuple(x.shape)}")
    if x.dtype == torch.float32:
        return _channels_last[float](x.numpy(), out.numpy())
    return _channels_last[double](x.numpy(), out.numpy())
