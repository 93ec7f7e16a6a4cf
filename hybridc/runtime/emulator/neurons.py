"""The neuron models netx builds, as Lava's fixed-point process models compute them: one
public step function per family, each (N, T, ...) synaptic input -> (N, T, ...) messages.

- LIF (`lava/proc/lif/models.py`, PyLifModelBitAcc): 12-bit decays rounded toward zero,
  input shifted left by 6, the current wrapped once at 24 bits, the voltage clipped to
  +-(2**23 - 1), bias mantissa (int16) << 6, spike when v > vThMant << 6, reset to 0.
- Sigma-delta (`lava/proc/sdn/models.py`, fixed_pt; netx's SDNN neuron): Delta for an input
  layer (input << 12, no synapse), SigmaDelta (sigma += input, ReLU, delta against the last
  activation plus residue, sent when |delta| >= vThMant << 12, as delta >> 6), Sigma for a
  `sigma_output` layer (the running sum itself). Their int32 payloads are graded spikes.
- Resonate-and-fire (`lava/proc/rf/models.py`, `lava/proc/rf_iz/models.py`, fixed_pt;
  netx's complex dense layers): the decayed rotation sign(x) * (|x| >> 12) in int64, both
  parts clipped to +-(2**23 - 1); RF spikes when the imaginary part crosses zero upward with
  the real part >= vth, RF_IZ when the imaginary part reaches vth (then real = 0, imag =
  vth - 1).

Every step function takes `lag`: the synapse sends at step t what it computed at t - 1 (its
buffer starts at 0), so the neuron at step t integrates currents[:, t - lag]; lag 0 is an
input layer fed at its neuron directly. A LIF with `feedback` (a recurrent layer) also
receives at step t what its feedback synapse makes of its own spikes of step t - 1 (the same
one-step hop), added to the input at `a_in` in int32. Values are int64 with the int32/int16 wrap-arounds
numpy applies in Lava made explicit.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

__all__ = ["DECAY_UNITY", "INT32_LIMIT", "RF_LIMIT", "SPIKE_EXP", "STATE_EXP", "STATE_SHIFT", "UV_LIMIT", "Neuron", "Resonator",
           "SigmaDelta", "lif", "resonate", "resonator", "sigma_delta", "wrap_int"]

UV_LIMIT = 1 << 23  # LIF current and voltage are 24-bit
INT32_LIMIT = 1 << 31  # where Lava's int32 sums wrap
DECAY_UNITY = 1 << 12
STATE_SHIFT = 6  # threshold, bias and synaptic input are MSB-aligned by 6 bits
SPIKE_EXP = STATE_EXP = 6  # netx's spike_exp and state_exp for sigma-delta neurons
RF_LIMIT = (1 << 23) - 1  # RF real and imaginary parts are clipped to 24 bits


def wrap_int(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's-complement wrap of int64 values to `bits` (what numpy does when it stores an
    int64 result into an int32/int16 array)."""
    half = 1 << (bits - 1)
    return torch.remainder(x + half, 1 << bits) - half


@dataclass
class Neuron:
    """Parameters of one LIF process as netx sets them (du = iDecay - 1, bias_exp 6)."""
    current_factor: int  # 4096 - (du + 1)
    voltage_factor: int  # 4096 - dv
    threshold: int  # vThMant << 6
    bias: Optional[torch.Tensor]  # bias_mant (int16) << 6, broadcastable to the state


@dataclass
class SigmaDelta:
    """A netx SDNN neuron: `delta` (Lava's Delta, an input layer), `sigma_delta` (SigmaDelta,
    ReLU) or `sigma` (Sigma, a `sigma_output` layer). Values as Lava's fixed-point Vars hold them."""
    mode: str
    threshold: int = 0  # vThMant << (spike_exp + state_exp)
    bias: Optional[torch.Tensor] = None  # sigma_delta: bias << (spike_exp + state_exp), int32


@dataclass
class Resonator:
    """A netx RF neuron: `rf` (Lava's RF, phase spikes) or `rf_iz` (RF_IZ, Izhikevich reset)."""
    mode: str
    sin_decay: int  # int32((1 - alpha) sin(2 pi / period) * 4096) after netx's float round trip
    cos_decay: int
    threshold: int  # int(vThMant * 64)


def resonator(mode: str, period, alpha, vth) -> Resonator:
    """Lava's RF / RF_IZ process parameters (state_exp 6, decay_bits 12) as its fixed-point
    model holds them: decays int32((1 - alpha) sin|cos(2 pi / period) * 4096), vth int(vth * 64)."""
    sin_int = np.int32((1 - alpha) * np.sin(np.pi * 2 * 1 / period) * (1 << 12))
    cos_int = np.int32((1 - alpha) * np.cos(np.pi * 2 * 1 / period) * (1 << 12))
    threshold = int(np.asarray(vth).reshape(-1)[0] * (1 << STATE_SHIFT))
    return Resonator(mode, int(np.asarray(sin_int).reshape(-1)[0]), int(np.asarray(cos_int).reshape(-1)[0]), threshold)


def lif(neuron: Neuron, currents: torch.Tensor, lag: int = 1, feedback=None, fused=None) -> torch.Tensor:
    """(N, T, ...) integer synaptic input (int64 or integer-valued float) computed each step
    -> (N, T, ...) bool spikes, Lava's LIF. Runs in float64 when that is exact (every input
    below 2**24, and no int32 sum of Lava's overflowing, which the float steps watch for), else
    in int64. feedback: (N, ...) spikes of step t - 1 -> (N, ...) int64
    input they send at step t (`synapses.recurrent_feedback`); then step by step in int64.
    fused: the float64 steps as one compiled loop (`runtime/kernels.pyx`) rather than torch
    ops; default: on the CPU, where it runs about 8x faster."""
    if feedback is not None:
        return _lif_int(neuron, currents, lag, feedback)
    if fused if fused is not None else currents.device.type == "cpu":
        from ..kernels import lif_float  # compiled at install; other devices run without it

        spikes = lif_float(neuron, currents, lag)  # checks its inputs' bound itself, in the same pass
        return spikes if spikes is not None else _lif_int(neuron, currents, lag)
    used = currents[:, :currents.shape[1] - lag]
    dims = [d for d in range(used.dim()) if d != 1]  # per step: two reductions, no |x| copy
    peak = torch.maximum(used.amax(dim=dims), -used.amin(dim=dims)) if used.numel() else None
    if peak is None or int(peak.max()) < 1 << 24:
        wrap_current = peak is not None and int(peak.sum()) << STATE_SHIFT >= UV_LIMIT
        spikes = _lif_float(neuron, currents, wrap_current, lag)
        if spikes is not None:
            return spikes
    return _lif_int(neuron, currents, lag)  # large inputs, or a sum past int32 (Lava wraps it)


def _lif_int(neuron: Neuron, currents: torch.Tensor, lag: int = 1, feedback=None) -> torch.Tensor:
    """Lava's LIF step by step in int64, every int32 wrap-around of numpy made explicit."""
    currents = currents.to(torch.int64)
    u = torch.zeros(currents.shape[:1] + currents.shape[2:], dtype=torch.int64, device=currents.device)
    v = torch.zeros_like(u)
    spikes = torch.empty(currents.shape, dtype=torch.bool, device=currents.device)
    for t in range(spikes.shape[1]):
        arriving = currents[:, t - lag] if t >= lag else torch.zeros_like(u)
        if feedback is not None and t >= 1:  # the feedback Dense sends its step t-1 spikes now
            arriving = wrap_int(arriving + feedback(spikes[:, t - 1]), 32)
        decayed = torch.div(u * neuron.current_factor, DECAY_UNITY, rounding_mode="trunc")
        u = wrap_int(decayed + wrap_int(arriving << STATE_SHIFT, 32), 32)
        u = torch.where(u > UV_LIMIT, u - 2 * UV_LIMIT, torch.where(u <= -UV_LIMIT, u + 2 * UV_LIMIT, u))
        volt = torch.div(v * neuron.voltage_factor, DECAY_UNITY, rounding_mode="trunc") + u
        if neuron.bias is not None:
            volt = volt + neuron.bias
        v = wrap_int(volt, 32).clamp(-UV_LIMIT + 1, UV_LIMIT - 1)
        fired = v > neuron.threshold
        v = v.masked_fill(fired, 0)
        spikes[:, t] = fired
    return spikes


def _lif_float(neuron: Neuron, currents: torch.Tensor, wrap_current: bool, lag: int = 1):
    """The same step on float64 holding integers, for inputs below 2**24 (input << 6 fits int32),
    or None where one of Lava's int32 sums would overflow: the current before its 24-bit wrap,
    or the voltage before its clamp, reaching 2**31. The wrap subtracts 2**24 only once, so a
    large input held for many steps can drive the current that far. Short of it every int32 wrap
    is a no-op and every value an integer below 2**53, so float64 is exact: `u * (f / 4096)` is
    exact (f / 4096 is a power-of-two fraction, the product has at most 43 significant bits);
    trunc rounds toward zero as Lava's sign * (|x| >> 12) does. wrap_current: whether the
    24-bit wrap can happen at all (the sum over time of the largest input says so)."""
    current_factor = neuron.current_factor / DECAY_UNITY
    voltage_factor = neuron.voltage_factor / DECAY_UNITY
    bias = neuron.bias.to(torch.float64) if neuron.bias is not None else None
    u = torch.zeros_like(currents[:, 0], dtype=torch.float64)  # in the currents' layout (channels_last)
    v = torch.zeros_like(u)
    spikes = torch.empty_like(currents, dtype=torch.bool)
    overflow = torch.zeros((), dtype=torch.bool, device=currents.device)
    for t in range(spikes.shape[1]):
        u.mul_(current_factor).trunc_()
        if t >= lag:
            u.add_(currents[:, t - lag], alpha=1 << STATE_SHIFT)
        if wrap_current:  # only then can the current reach 2**23, let alone 2**31
            overflow |= (u.abs() >= INT32_LIMIT).any()
            u = torch.where(u > UV_LIMIT, u - 2 * UV_LIMIT, torch.where(u <= -UV_LIMIT, u + 2 * UV_LIMIT, u))
        v.mul_(voltage_factor).trunc_().add_(u)
        if bias is not None:
            v.add_(bias)
        if wrap_current:
            overflow |= (v.abs() >= INT32_LIMIT).any()
        v.clamp_(-UV_LIMIT + 1, UV_LIMIT - 1)
        fired = torch.gt(v, neuron.threshold, out=spikes[:, t])
        v.masked_fill_(fired, 0)
    return None if bool(overflow) else spikes


def _arrivals(currents: torch.Tensor, lag: int) -> torch.Tensor:
    """What reaches the neuron at each step: currents delayed by `lag` steps (zeros first), int64."""
    currents = currents.to(torch.int64)
    if not lag:
        return currents
    return torch.cat([torch.zeros_like(currents[:, :lag]), currents[:, :currents.shape[1] - lag]], dim=1)


def sigma_delta(neuron: SigmaDelta, currents: torch.Tensor, lag: int = 1) -> torch.Tensor:
    """(N, T, ...) synaptic input -> (N, T, ...) int64 graded spikes, Lava's fixed-point Delta,
    SigmaDelta or Sigma process step for step (int32 state, arithmetic shifts)."""
    arriving = _arrivals(currents, lag)
    if neuron.mode == "delta":  # a_in << (spike_exp + state_exp) is the activation itself
        activation = wrap_int(arriving << (SPIKE_EXP + STATE_EXP), 32)
    else:
        sigma = wrap_int(torch.cumsum(arriving, dim=1), 32)  # sigma += a_in, wrapping as the int32 Var
        if neuron.mode == "sigma":
            return sigma
        if neuron.bias is not None:
            sigma = wrap_int(sigma + neuron.bias, 32)
        activation = sigma.clamp(min=0)  # ReLU
    out = torch.empty_like(activation)
    previous = torch.zeros_like(activation[:, 0])
    residue = torch.zeros_like(previous)
    for t in range(activation.shape[1]):
        delta = wrap_int(activation[:, t] - previous + residue, 32)
        sent = torch.where(delta.abs() >= neuron.threshold, delta, 0)
        residue = delta - sent
        previous = activation[:, t]
        out[:, t] = sent >> STATE_EXP
    return out


def resonate(neuron: Resonator, real_currents: torch.Tensor, imag_currents: torch.Tensor, lag: int = 1) -> torch.Tensor:
    """Lava's fixed-point RF / RF_IZ step for step: (N, T, F) real and imaginary synaptic input
    (`lag` steps late: one as the Dense synapses send it) -> (N, T, F) bool spikes."""
    real_in = wrap_int(_arrivals(real_currents, lag) << STATE_SHIFT, 32)
    imag_in = wrap_int(_arrivals(imag_currents, lag) << STATE_SHIFT, 32)
    real = torch.zeros_like(real_in[:, 0])
    imag = torch.zeros_like(real)
    spikes = torch.empty(real_in.shape, dtype=torch.bool, device=real_in.device)

    def scale(x):  # sign(x) * (|x| >> 12)
        return torch.div(x, DECAY_UNITY, rounding_mode="trunc")

    for t in range(real_in.shape[1]):
        new_real = scale(neuron.cos_decay * real) - scale(neuron.sin_decay * imag) + real_in[:, t]
        new_imag = scale(neuron.sin_decay * real) + scale(neuron.cos_decay * imag) + imag_in[:, t]
        new_real = new_real.clamp(-RF_LIMIT, RF_LIMIT)
        new_imag = new_imag.clamp(-RF_LIMIT, RF_LIMIT)
        if neuron.mode == "rf":
            fired = (new_real >= neuron.threshold) & (new_imag >= 0) & (imag < 0)
            real, imag = new_real, new_imag
        else:
            fired = new_imag >= neuron.threshold
            real = new_real.masked_fill(fired, 0)
            imag = torch.where(fired, neuron.threshold - 1, new_imag)
        spikes[:, t] = fired
    return spikes
