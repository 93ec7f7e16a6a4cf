"""The synapses netx builds, as Lava's fixed-point process models compute them: a layer's
synaptic input each step, before the one-step hop to its neurons. Shared by the chain runner
and the graph runner (an extra synapse of a branching stage is one of these too).

- Dense (`lava/proc/dense/models.py`, bit-accurate): weights clipped to 8 bits and
  truncated to `num_weight_bits` (done when the file is decoded), accumulation shifted by
  `weight_exp` (arithmetic shift), sent as int32; a DelayDense shifts each delay's share on
  its own and sends it that many steps later.
- Conv (`lava/proc/conv/models.py`, fixed_pt): integer correlation, *no* weight exponent,
  wrapped to 24 bits (`signed_clamp`).

Products run in float on integer values (float32 where every partial sum stays below 2**24,
else float64: exact below 2**53, as Lava's scipy conv), then int64 with Lava's wraps.
"""

import torch
import torch.nn.functional as F

from .decode import Layer
from .neurons import wrap_int

__all__ = ["conv_currents", "dense_currents", "recurrent_feedback"]


def _shift(x: torch.Tensor, exponent: int) -> torch.Tensor:
    """Lava's Dense: left shift for a positive exponent, arithmetic right shift otherwise."""
    return x << exponent if exponent > 0 else x >> -exponent


def _numbers(spikes: torch.Tensor, graded: bool, dtype: torch.dtype) -> torch.Tensor:
    """Messages as floats of `dtype` for a product: payloads as they are, spikes as 0/1 (bool
    through uint8, which torch converts about twice as fast)."""
    if not graded and spikes.dtype == torch.bool:
        spikes = spikes.view(torch.uint8)
    elif not graded and spikes.dtype != torch.float32:
        spikes = spikes != 0
    return spikes.to(dtype)


def _largest_sum(weight: torch.Tensor, spikes: torch.Tensor, graded: bool) -> float:
    """A bound on every partial sum of an output: sum of |weights| per output x largest input."""
    largest = float(weight.abs().reshape(weight.shape[0], -1).sum(1).max()) if weight.numel() else 0.0
    if graded and spikes.numel():
        largest *= float(torch.maximum(spikes.max(), -spikes.min()))
    return largest


def _exact_dtype(largest: float) -> torch.dtype:
    """float32 where every partial sum stays below 2**24 (float32 then sums integers exactly),
    else float64 (exact below 2**53)."""
    return torch.float32 if largest < 2 ** 24 else torch.float64


def dense_currents(layer: Layer, spikes: torch.Tensor, graded: bool, imaginary: bool = False) -> torch.Tensor:
    """(N, T, in) -> (N, T, out) synaptic input each step, before the one-step hop.
    imaginary: the imaginary synapse of a complex (RF) layer."""
    weight, exponent = (layer.weight_imag, layer.weight_exp_imag) if imaginary else (layer.weight, layer.weight_exp)
    dtype = _exact_dtype(_largest_sum(weight, spikes, graded))
    s = _numbers(spikes, graded, dtype)

    def product(weight):  # float BLAS on integers: exact (see _exact_dtype), unlike slow int64 matmul
        return (s @ weight.T.to(dtype)).to(torch.int64)

    if layer.delays is None or imaginary:  # the int32 accumulator wraps before the shift, as in Lava
        return wrap_int(_shift(wrap_int(product(weight), 32), exponent), 32)
    # DelayDense: each delay's share is shifted on its own, then arrives `delay` steps later
    total = torch.zeros(s.shape[:-1] + (weight.shape[0],), dtype=torch.int64, device=s.device)
    steps = s.shape[1]
    for d in torch.unique(layer.delays).tolist():
        part = _shift(product(torch.where(layer.delays == d, weight, 0)), exponent)
        if d < steps:
            total[:, d:] += part[:, :steps - d]
    return wrap_int(total, 32)


def conv_currents(layer: Layer, spikes: torch.Tensor, graded: bool) -> torch.Tensor:
    """(N, T, C, H, W) -> (N, T, C', H', W'): Lava's conv (scipy's convolve2d summed in float64,
    so exact on integers below 2**53, truncated to int32), wrapped to 24 bits. The float conv is
    exact while every partial sum stays below the mantissa: float32 when the largest possible sum
    (sum of |weights| per output x largest input) is below 2**24, else float64."""
    n, t = spikes.shape[:2]
    largest = _largest_sum(layer.weight, spikes, graded)
    dtype = _exact_dtype(largest)
    s = _numbers(spikes, graded, dtype)
    out = F.conv2d(s.reshape(n * t, *spikes.shape[2:]), layer.weight.to(dtype), stride=layer.stride,
                   padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
    if graded or largest >= 2 ** 23:  # truncation as `.astype(int32)`, then Lava's 24-bit clamp
        out = wrap_int(out.to(torch.int64), 24)
    return out.reshape(n, t, *out.shape[1:])  # binary input: already exact integers, kept in float


def recurrent_feedback(layer: Layer):
    """A dense_rec layer's feedback synapse (netx's RecurrentDense: a Dense from the layer's
    `s_out` back into its `a_in`) as a step function: the layer's (N, out) spikes at step t-1
    -> (N, out) what that Dense sends at step t (its own int32 wrap and weight_exp shift).
    None for a layer without feedback."""
    if layer.weight_rec is None:
        return None
    weight = layer.weight_rec.T.to(torch.float64)

    def feedback(spikes: torch.Tensor) -> torch.Tensor:
        product = (spikes.to(torch.float64) @ weight).to(torch.int64)
        return wrap_int(_shift(wrap_int(product, 32), layer.weight_exp), 32)

    return feedback
