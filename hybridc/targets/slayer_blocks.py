"""slayer blocks as Loihi's fixed point sees them, shared by the targets that lower slayer
networks (`loihi`, its branching stages in `loihi_graph`, and `nir`).

What netx can run (the support predicate `node_problem` and its `SUPPORTED` list), how each
block is written into a netx layer group (`writers`), the synapses it makes
(`count_synapses`), the steps by which Lava trails PyTorch through it (`lag_steps`), and
Loihi's fixed-point limits on its weights and threshold (`check_fixed_point`).

netx builds layers `layer/0`, `layer/1`, ... strictly in order and implements only input,
flatten, dense and conv. So, like netx's own `create_<type>` functions, there is one
`write_<type>` per slayer block: Conv, Dense and Flatten reuse slayer's own `export_hdf5`
(the fixed-point integers slayer would export), Pool becomes a depthwise conv with the
pool's constant weight, and neuron Dropout (identity at inference) writes nothing. A cuba
Recurrent block is netx's own `dense_rec` layer (slayer's export): netx wires its feedback
synapse from the layer's spikes into its own neurons, so the chain stays one stock file. Neuron
families other than CUBA (sigma-delta, resonate-and-fire) are described in `loihi_neurons`.
"""

from functools import cache

import numpy as np
import torch

from ..errors import NumericsError
from . import loihi_neurons as neuron_models

__all__ = ["SUPPORTED", "NEURON_MODELS", "V_TH_MAX", "W_LIMIT", "node_problem", "block_problem", "pool_problem",
           "writers", "write_exported", "write_pool", "write_nothing", "fixed_point_weight", "pool_weight",
           "count_synapses", "conv_synapses", "recurrent_synapses", "builds_layer", "lag_steps", "layer_step",
           "check_fixed_point", "is_recurrent"]
V_TH_MAX = (1 << 17) - 1  # Loihi threshold mantissa, unsigned 17 bits
W_LIMIT = 256  # 8-bit weight mantissa: even values in [-256, 254]


def _slayer():
    from lava.lib.dl import slayer

    return slayer


# --- one writer per supported block -------------------------------------------------

def write_exported(block, group):
    block.export_hdf5(group)


def fixed_point_weight(synapse) -> np.ndarray:
    """The integer weights slayer itself exports (its own descaling), without the time axis."""
    weight = synapse.pre_hook_fx(synapse.weight, descale=True).detach().cpu().numpy()
    return weight.reshape(weight.shape[:-1])


def pool_weight(block, channels: int) -> np.ndarray:
    """netx has no pool layer: a slayer Pool is a shared (1,1,k,k) kernel of one constant
    weight, i.e. a depthwise conv with that weight on every channel: (channels, 1, k, k)."""
    kernel = fixed_point_weight(block.synapse).reshape(block.synapse.kernel_size[:2])
    return np.broadcast_to(kernel, (channels, 1, *kernel.shape)).copy()


def write_pool(block, group):
    synapse = block.synapse
    channels = int(block.neuron.shape[0])
    group.create_dataset("type", (1,), "S10", [b"conv"])
    group.create_dataset("shape", data=np.array(block.neuron.shape))
    group.create_dataset("weight", data=pool_weight(block, channels))
    group.create_dataset("stride", data=np.array(synapse.stride[:2]))
    group.create_dataset("padding", data=np.array(synapse.padding[:2]))
    group.create_dataset("dilation", data=np.array(synapse.dilation[:2]))
    group.create_dataset("groups", data=channels)
    for key, value in block.neuron.device_params.items():
        group.create_dataset(f"neuron/{key}", data=value)


def write_nothing(block, group):
    pass


@cache
def writers():
    """slayer block class -> writer; built once (every node of every compile asks)."""
    block = _slayer().block
    cuba, sd = block.cuba, block.sigma_delta
    table = {
        cuba.Conv: write_exported,
        cuba.Dense: write_exported,
        cuba.Flatten: write_exported,
        cuba.Input: write_exported,
        cuba.Pool: write_pool,
        cuba.Recurrent: write_exported,  # netx's `dense_rec`: input and feedback weights, one neuron group
        sd.Input: write_exported,  # the Delta encoder
        sd.Conv: write_exported,
        sd.Dense: write_exported,
        sd.Flatten: write_exported,
        sd.Output: write_exported,  # a Sigma layer (sigma_output)
        sd.Pool: write_pool,
        _slayer().neuron.Dropout: write_nothing,
    }
    for family in (block.rf, block.rf_iz):
        table[family.Dense] = neuron_models.write_rf
        table[family.Flatten] = write_exported
    return table


SUPPORTED = ["slayer.block.cuba.Conv", "slayer.block.cuba.Dense (learned delays too)", "slayer.block.cuba.Pool",
             "slayer.block.cuba.Flatten", "slayer.block.cuba.Recurrent (netx's dense_rec layer)",
             "slayer.block.cuba.Input (without neuron, delay_shift=False)",
             "slayer.block.sigma_delta.Input (with neuron: the Delta encoder), .Conv, .Pool, .Flatten, "
             ".Dense, .Output (ReLU, one threshold per layer)",
             "slayer.block.rf.Dense, slayer.block.rf_iz.Dense (+ .Flatten)",
             "slayer.neuron.Dropout (identity at inference)"]
NEURON_MODELS = [text for _, text in neuron_models.FAMILIES.values()]


# --- support predicates (torch.fx operator_support style) -----------------------------

def is_recurrent(block) -> bool:
    """A slayer Recurrent block (any family): a feedback synapse from its spikes into its neurons."""
    return isinstance(block, _slayer().block.base.AbstractRecurrent)


def recurrent_problem(block) -> str:
    """Why hybridc cannot lower this Recurrent block, or '' when it can (cuba: netx's dense_rec)."""
    family = neuron_models.family_of(block)
    if family != "cuba":
        return (f"hybridc lowers slayer's Recurrent only with CUBA neurons (slayer.block.cuba.Recurrent, netx's "
                f"dense_rec layer); netx builds its dense_rec feedback into a neuron's single `a_in`, which the "
                f"{family} neuron does not have (it takes a real and an imaginary input, or is not in netx). Use "
                "slayer.block.cuba.Recurrent, or a feed-forward Dense of this family.")
    synapses = (block.input_synapse, block.recurrent_synapse)
    if any(s.weight_norm_enabled for s in synapses):
        return ("weight_norm=True: slayer's export removes weight normalisation from the input synapse only, so the "
                "file would hold the feedback weights' direction without their norm. Build the Recurrent block "
                "with weight_norm=False (or call disable_weight_norm() on both synapses) before compiling.")
    return ""


# slayer block kinds netx has no layer for, in any family: (base classes, reason; {name} is the block's class)
_NO_NETX_LAYER = (
    (("AbstractAffine",), "an Affine block is a non-spiking readout (its neurons' state, no spikes), and a Loihi "
     "stage sends only spikes. End the spiking stage before it and read out in the dense part: an Accumulator, "
     "then torch.nn.Linear."),
    (("AbstractAverage",), "an Average block averages spikes over neurons into real values in PyTorch; a Loihi "
     "stage sends only spikes. Average in the dense part instead (after an Accumulator)."),
    (("AbstractKWTA",), "KWTA keeps the k strongest neurons each step by ranking them, which no netx layer or Lava "
     "process does. Use a Dense block (or a cuba.Recurrent block, whose negative feedback weights can learn the "
     "lateral inhibition)."),
    (("AbstractTimeDecimation",), "TimeDecimation merges `factor` steps into one, while a Loihi stage runs one "
     "step per input step. Decimate in the dense part: an Accumulator with interval = factor counts each window."),
    (("AbstractConvT", "AbstractUnpool"), "netx has no transposed-convolution or unpool layer. The exact form, a "
     "dense layer from every input neuron to each output its kernel reaches, hands on a flat vector that netx's "
     "conv layers cannot read, and netx stores it as a full in x out matrix (a 16x32x32 -> 8x64x64 {name} would "
     "hold 537 million 8-bit weights, 4,096 times Loihi 2's 128 KB of memory per core). Upsample in the dense "
     "part instead (torch.nn.ConvTranspose2d or Upsample after the Accumulator)."),
)


def kind_problem(block) -> str:
    """Why no family's block of this kind can run on Loihi (netx has no such layer), or ''.
    docs/targets.md lists every slayer block with its decision."""
    base = _slayer().block.base
    for classes, reason in _NO_NETX_LAYER:
        if isinstance(block, tuple(getattr(base, c) for c in classes)):
            return reason.format(name=type(block).__name__)
    return ""


def block_problem(block) -> str:
    """Why netx cannot run this block, or '' when it can."""
    problem = kind_problem(block)
    if problem:
        return problem
    if is_recurrent(block):
        problem = recurrent_problem(block)
        if problem:
            return problem
    family_problem = neuron_models.family_problem(block)
    if family_problem:
        return family_problem
    if type(block) not in writers():
        return (f"hybridc's Loihi target has no lowering for slayer `{type(block).__module__}."
                f"{type(block).__name__}` (netx's HDF5 reader implements input, conv, dense and flatten layers).")
    if isinstance(block, _slayer().block.cuba.Input) and block.neuron is not None:
        return ("a netx input layer takes its data through the neuron bias, not as a spike "
                "stream, so an Input block with a neuron cannot receive the model's input "
                "(use Input without neuron_params, or start with a Conv/Dense block).")
    if isinstance(block, _slayer().block.cuba.Input) and block.delay_shift:
        return ("slayer cannot run an Input block without a neuron when delay_shift=True; "
                "build it with delay_shift=False (it is then only the input's shape).")
    if getattr(block, "delay", None) is not None:
        problem = delay_problem(block)
        if problem:
            return problem
    if getattr(block, "count_log", False):
        return "count_log=True makes the block return a tuple; build it with count_log=False."
    return ""


MAX_DELAY = 62  # Loihi 2's longest synaptic delay; netx clips longer ones with only a warning


def exported_delays(block) -> torch.Tensor:
    """A block's learned axonal delays as slayer's `export_hdf5` writes them: clamped to
    [0, max_delay] (`Delay.clamp`), then floored (`block/base.py`, `delay(d)`). Its forward
    shifts by `int(d / sampling_time)` (`utils/time/shift.py`): the same steps for d >= 0."""
    block.delay.clamp()
    return torch.floor(block.delay.delay.detach()).flatten()


def delay_problem(block) -> str:
    """Why a block's learned delays cannot be exact on Loihi, or "". slayer delays a block's
    output spikes; netx gives a dense layer's `delay` to the synapses into its own neurons (one
    per output neuron, a DelayDense), which delays the neuron's whole trajectory by as much:
    the same spikes, as long as nothing drives the neuron before its input arrives (no bias)."""
    slayer = _slayer()
    if not isinstance(block, slayer.block.base.AbstractDense) or is_recurrent(block):
        return ("learned axonal delays (delay=True) on a non-Dense block: netx applies delays to dense "
                "layers only (its conv layer has none). Put the delay on a Dense block (e.g. after a "
                "Flatten), or build this block with delay=False.")
    if block.delay.sampling_time != 1:
        return (f"its axonal delay has sampling_time {block.delay.sampling_time}; Loihi counts delays in "
                "whole time steps. Build the Delay with sampling_time=1.")
    if getattr(block.neuron, "bias", None) is not None:
        return ("learned axonal delays on a neuron with a bias: netx delays the neuron's input, which "
                "equals slayer's delayed output only when nothing drives the neuron before it.")
    if block.delay.delay.numel() > 1 or block.delay.init:
        longest = float(exported_delays(block).max())
        if longest > MAX_DELAY:
            return (f"a learned axonal delay of {longest:g} steps, beyond Loihi's {MAX_DELAY} (netx would clip "
                    f"it silently). Retrain with the Delay's max_delay={MAX_DELAY}.")
    return ""


def pool_problem(block, in_shape) -> str:
    """slayer's Pool pads odd sizes at the bottom/right only and pools over channels*rows
    merged, so its windows straddle channels unless H and W are multiples of the kernel.
    A symmetric-padding Loihi conv reproduces it exactly only in the plain case."""
    s = block.synapse
    k, stride = tuple(s.kernel_size[:2]), tuple(s.stride[:2])
    if tuple(s.padding[:2]) != (0, 0) or tuple(s.dilation[:2]) != (1, 1) or stride != k:
        return (f"hybridc lowers Pool exactly only with stride = kernel, no padding and no dilation "
                f"(got kernel {k}, stride {stride}, padding {tuple(s.padding[:2])}).")
    if len(in_shape) == 4 and (in_shape[1] % k[0] or in_shape[2] % k[1]):
        return (f"its input is {in_shape[1]}x{in_shape[2]}, not a multiple of the {k[0]}x{k[1]} kernel: "
                "slayer then pads only the bottom/right and its windows straddle channels, which "
                "Loihi's conv cannot reproduce. Make the pooled size a multiple of the kernel "
                "(crop/pad the input, or change the previous layer's stride/padding).")
    return ""


def node_problem(submodules, node) -> str:
    if node.op != "call_module":
        return "only slayer blocks run on Loihi; this is a tensor operation."
    block = submodules[node.target]
    problem = block_problem(block)
    if not problem and isinstance(block, _slayer().block.base.AbstractPool) and node.all_input_nodes:
        problem = pool_problem(block, node.all_input_nodes[0].meta.get("shape", ())[1:])
    base = _slayer().block.base
    if isinstance(block, (base.AbstractConvT, base.AbstractUnpool)) and node.all_input_nodes:
        ins, outs = node.all_input_nodes[0].meta.get("shape", ())[1:-1], node.meta.get("shape", ())[1:-1]
        if ins and outs:
            problem += f" This one, {'x'.join(map(str, ins))} -> {'x'.join(map(str, outs))}, would hold " \
                       f"{int(np.prod(ins)) * int(np.prod(outs)):,} weights."
    return problem


# --- counts and timing -----------------------------------------------------------------

def _taps_inside(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Along one axis: kernel taps landing inside an input of `size`, summed over the outputs."""
    outputs = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    return sum(0 <= o * stride - padding + j * dilation < size for o in range(outputs) for j in range(kernel))


def conv_synapses(in_shape, out_shape, kernel, stride, padding, groups, dilation=(1, 1)) -> int:
    """Connections of a conv layer, counting only taps that land inside the input
    (padding removes some). The count separates by axis: every output neuron's fan-in is
    (input channels per group) x (taps inside along H) x (along W)."""
    c_in, height, width = in_shape[:3]
    taps = (_taps_inside(height, kernel[0], stride[0], padding[0], dilation[0])
            * _taps_inside(width, kernel[1], stride[1], padding[1], dilation[1]))
    return c_in // groups * taps * int(out_shape[0])


def recurrent_synapses(block) -> int:
    """The feedback synapses of a Recurrent block (out x out, netx's `weight_rec`); 0 otherwise."""
    return int(block.recurrent_synapse.out_channels) ** 2 if is_recurrent(block) else 0


def count_synapses(block, in_shape) -> int:
    """Exact count of synapses: dense is in*out (twice for a complex synapse: netx writes
    its real and imaginary weights, two Dense processes), plus out*out feedback synapses for
    a Recurrent block, conv/pool by `conv_synapses`."""
    base = _slayer().block.base
    if is_recurrent(block):
        return int(block.input_synapse.in_channels * block.input_synapse.out_channels) + recurrent_synapses(block)
    if isinstance(block, (base.AbstractDense, _slayer().block.sigma_delta.Output)):
        copies = 2 if isinstance(block.synapse, _slayer().synapse.complex.ComplexLayer) else 1
        return int(block.synapse.in_channels * block.synapse.out_channels) * copies
    if isinstance(block, (base.AbstractConv, base.AbstractPool)):
        s = block.synapse
        # a Pool applies one shared kernel per channel: a depthwise conv
        groups = in_shape[0] if isinstance(block, base.AbstractPool) else s.groups
        return conv_synapses(in_shape[:3], block.neuron.shape, s.kernel_size[:2], s.stride[:2], s.padding[:2],
                             groups, s.dilation[:2])
    return 0


def builds_layer(block) -> bool:
    """Whether netx builds a layer for this block (its index is what a tap names)."""
    base = _slayer().block.base
    return not isinstance(block, base.AbstractFlatten) and not (isinstance(block, base.AbstractInput)
                                                                 and block.neuron is None)


def lag_steps(block) -> int:
    """Steps by which Lava's output trails PyTorch's for this block. slayer's
    delay_shift models Loihi's one-step hop per layer; without it Lava lags a step.
    A neuron-less Input block is only a shape in netx and (with delay_shift=False,
    the only way slayer can run it) the identity in PyTorch."""
    slayer = _slayer()
    if isinstance(block, (slayer.neuron.Dropout, slayer.block.base.AbstractFlatten, slayer.block.base.AbstractInput)):
        return 0
    return 0 if block.delay_shift else 1


def layer_step(node, block) -> str:
    """How `reporting` names the layer being lowered."""
    return f"layer `{node.name}` ({type(block).__name__})"


# --- fixed-point limits ----------------------------------------------------------------

def check_fixed_point(block, where: str, on_overflow: str) -> list:
    """Loihi's fixed-point limits: 8-bit weight mantissas in [-256, 254] (slayer clips to
    them in its own forward too, so clipping keeps PyTorch and Lava equal) and an
    unsigned 17-bit threshold mantissa (no clipping can keep the model's meaning). Raises
    NumericsError; returns notes on weights clipped with on_overflow='clip'."""
    notes = []
    neuron = getattr(block, "neuron", None)
    if neuron is None:
        return notes
    v_th = float(neuron.threshold) * float(neuron.w_scale)
    # a delta encoder (the Input layer) may have threshold 0: it then sends every change. Any
    # other layer needs a mantissa of at least 1 (slayer turns a sigma-delta threshold of 0
    # into 2^-12, which netx cannot load or Lava runs differently)
    low_ok = v_th >= 0 if neuron_models.is_delta_input(block) else v_th >= 1
    if not (low_ok and v_th <= V_TH_MAX):
        raise NumericsError(
            f"{where}: threshold {float(neuron.threshold):g} is {v_th:g} in Loihi's fixed point "
            f"(threshold x {neuron.w_scale}), outside the threshold mantissa range 1..{V_TH_MAX}. "
            "Scale the threshold and the weights down together."
        )
    if isinstance(block, _slayer().block.base.AbstractPool):
        return notes
    synapses = ([block.input_synapse, block.recurrent_synapse] if is_recurrent(block)
                else [getattr(block, "synapse", None)])
    for synapse in synapses:
        weight = getattr(synapse, "weight", None)
        if weight is None:
            continue
        # min(w) x scale is min(w x scale): a positive scale keeps the order under rounding
        low, high = (float(v) * neuron.w_scale for v in torch.aminmax(weight.detach()))
        if low < -W_LIMIT - 1 or high > W_LIMIT - 1:
            worst = low if -low - W_LIMIT > high - W_LIMIT else high
            message = (f"{where}: weight {worst / neuron.w_scale:g} is {worst:g} in Loihi's "
                       f"fixed point, outside the 8-bit weight range [-{W_LIMIT}, {W_LIMIT - 2}]")
            if on_overflow == "error":
                raise NumericsError(
                    message + ". slayer clips it silently; pass --on-overflow clip (on_overflow="
                    "'clip') to accept that clipping, or retrain with smaller weights / a larger "
                    "weight exponent."
                )
            notes.append(message + "; clipped, as slayer's own forward does.")
    return notes
