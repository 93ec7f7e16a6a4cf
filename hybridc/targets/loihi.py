"""Loihi 2 through Lava: a spiking chain becomes one netx HDF5 network.

A branching stage (spike ADD, concatenation, fan-out) is cut into chains by
`loihi_graph`, each written here, plus the extra synapses that join them.

netx builds layers `layer/0`, `layer/1`, ... strictly in order and implements
only input, flatten, dense and conv. So, like netx's own `create_<type>`
functions, there is one `write_<type>` per slayer block here: Conv, Dense and
Flatten reuse slayer's own `export_hdf5` (the fixed-point integers slayer would
export), Pool becomes a depthwise conv with the pool's constant weight, and
neuron Dropout (identity at inference) writes nothing. Neuron families other than
CUBA (sigma-delta, resonate-and-fire) are described in `loihi_neurons`.
"""

from functools import cache
from math import prod
from pathlib import Path

import numpy as np
import torch
from torch.fx.passes.operator_support import create_op_support

from ..digest import sha256
from ..errors import LoweringError, reporting
from ..manifest import Stage, TensorSpec
from ..netx import writer as netx_writer
from ..netx.layout import netx_layout
from . import loihi_graph as branching
from . import loihi_neurons as neuron_models

V_TH_MAX = (1 << 17) - 1  # Loihi threshold mantissa, unsigned 17 bits
W_LIMIT = 256  # 8-bit weight mantissa: even values in [-256, 254]
CONV_INPUT_BITS = 24  # Lava's fixed-point Conv synapse wraps each step's input sum to 24 bits
GRADED_PAYLOAD = 1 << 12  # a sigma-delta graded spike carries its value x 2^12 (netx's spike_exp + ...)


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
def _writers():
    """slayer block class -> writer; built once (every node of every compile asks)."""
    block = _slayer().block
    cuba, sd = block.cuba, block.sigma_delta
    writers = {
        cuba.Conv: write_exported,
        cuba.Dense: write_exported,
        cuba.Flatten: write_exported,
        cuba.Input: write_exported,
        cuba.Pool: write_pool,
        sd.Input: write_exported,  # the Delta encoder
        sd.Conv: write_exported,
        sd.Dense: write_exported,
        sd.Flatten: write_exported,
        sd.Output: write_exported,  # a Sigma layer (sigma_output)
        sd.Pool: write_pool,
        _slayer().neuron.Dropout: write_nothing,
    }
    for family in (block.rf, block.rf_iz):
        writers[family.Dense] = neuron_models.write_rf
        writers[family.Flatten] = write_exported
    return writers


SUPPORTED = ["slayer.block.cuba.Conv", "slayer.block.cuba.Dense", "slayer.block.cuba.Pool",
             "slayer.block.cuba.Flatten",
             "slayer.block.cuba.Input (without neuron, delay_shift=False)",
             "slayer.block.sigma_delta.Input (with neuron: the Delta encoder), .Conv, .Pool, .Flatten, "
             ".Dense, .Output (ReLU, one threshold per layer)",
             "slayer.block.rf.Dense, slayer.block.rf_iz.Dense (+ .Flatten)",
             "slayer.neuron.Dropout (identity at inference)"]
NEURON_MODELS = [text for _, text in neuron_models.FAMILIES.values()]


# --- support predicates (torch.fx operator_support style) -----------------------------

def _problem(block) -> str:
    """Why netx cannot run this block, or '' when it can."""
    family_problem = neuron_models.family_problem(block)
    if family_problem:
        return family_problem
    if type(block) not in _writers():
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
        return "learnable axonal delays (delay=True) are not lowered by hybridc yet."
    if getattr(block, "count_log", False):
        return "count_log=True makes the block return a tuple; build it with count_log=False."
    return ""


def _pool_problem(block, in_shape) -> str:
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


def _node_problem(submodules, node) -> str:
    if node.op != "call_module":
        return "only slayer blocks run on Loihi; this is a tensor operation."
    block = submodules[node.target]
    problem = _problem(block)
    if not problem and isinstance(block, _slayer().block.base.AbstractPool) and node.all_input_nodes:
        problem = _pool_problem(block, node.all_input_nodes[0].meta.get("shape", ())[1:])
    return problem


def _is_supported(submodules, node) -> bool:
    return not _node_problem(submodules, node)


# --- shapes and counts -----------------------------------------------------------------

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


def _synapses(block, in_shape) -> int:
    """Exact count of synapses: dense is in*out (twice for a complex synapse: netx writes
    its real and imaginary weights, two Dense processes), conv/pool by `conv_synapses`."""
    base = _slayer().block.base
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


def _builds_layer(block) -> bool:
    """Whether netx builds a layer for this block (its index is what a tap names)."""
    base = _slayer().block.base
    return not isinstance(block, base.AbstractFlatten) and not (isinstance(block, base.AbstractInput)
                                                                 and block.neuron is None)


def _lag(block) -> int:
    """Steps by which Lava's output trails PyTorch's for this block. slayer's
    delay_shift models Loihi's one-step hop per layer; without it Lava lags a step.
    A neuron-less Input block is only a shape in netx and (with delay_shift=False,
    the only way slayer can run it) the identity in PyTorch."""
    slayer = _slayer()
    if isinstance(block, (slayer.neuron.Dropout, slayer.block.base.AbstractFlatten, slayer.block.base.AbstractInput)):
        return 0
    return 0 if block.delay_shift else 1


def _check_families(partition, blocks) -> None:
    """One netx network runs one neuron family here: the scales of graded values are
    per family, and a sigma-delta network must start at netx's Delta encoder."""
    families = sorted({neuron_models.family_of(b) for b in blocks if neuron_models.has_neuron(b)})
    if len(families) > 1:
        raise LoweringError(
            f"The spiking partition `{partition.name}` mixes neuron families ({', '.join(families)}); hybridc lowers "
            "one family per Loihi stage. Build the spiking half from one slayer.block family."
        )
    if families == ["sigma_delta"] and not neuron_models.is_delta_input(blocks[0]):
        raise LoweringError(
            f"The sigma-delta partition `{partition.name}` starts with `{type(blocks[0]).__name__}`, not with a "
            "sigma_delta.Input block with neuron_params: netx feeds a sigma-delta network through its Delta "
            "input layer. Add slayer.block.sigma_delta.Input(neuron_params) first."
        )


def layer_step(node, block) -> str:
    """How `reporting` names the layer being lowered."""
    return f"layer `{node.name}` ({type(block).__name__})"


class LoihiTarget:
    name = "loihi"
    domain = "spiking"
    supported_ops = SUPPORTED
    neuron_models = NEURON_MODELS
    supports = create_op_support(_is_supported)

    def __init__(self, options=None):
        self.options = options or {}

    def check_ranges(self, block, where: str, on_overflow: str) -> list:
        """Loihi's fixed-point limits: 8-bit weight mantissas in [-256, 254] (slayer clips to
        them in its own forward too, so clipping keeps PyTorch and Lava equal) and an
        unsigned 17-bit threshold mantissa (no clipping can keep the model's meaning)."""
        from ..errors import NumericsError

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
        synapse = getattr(block, "synapse", None)
        weight = getattr(synapse, "weight", None)
        if weight is not None and not isinstance(block, _slayer().block.base.AbstractPool):
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

    def checks_activity(self, block) -> bool:
        """Whether `check_activity` has something to measure on this block: a sigma-delta
        Conv or Pool (both become a Lava Conv synapse, whose input sum wraps at 24 bits)."""
        slayer = _slayer()
        return (neuron_models.family_of(block) == "sigma_delta" and neuron_models.has_neuron(block)
                and isinstance(block, (slayer.block.base.AbstractConv, slayer.block.base.AbstractPool)))

    def check_activity(self, block, inputs, where: str, on_overflow: str) -> list:
        """Lava's fixed-point Conv synapse wraps each step's input sum (sum of weight x graded
        spike, weight mantissa x value x 2^12) to 24 bits; slayer adds in float. A step input
        outside [-2^23, 2^23) (+-32 at slayer's 64-per-unit weights) reaches the neuron's sigma
        with the wrong sign in Lava, and that neuron's graded spikes differ from slayer's for
        good, even where slayer's activation stays small (a large negative input is hidden by
        the ReLU). Measured on the example input: the condition depends on the data."""
        from ..errors import NumericsError

        with torch.no_grad():
            step_input = block.synapse(inputs[0])  # slayer's per-step synaptic input, in activation units
        limit = (1 << (CONV_INPUT_BITS - 1)) / (float(block.neuron.w_scale) * GRADED_PAYLOAD)
        low, high = (float(v) for v in torch.aminmax(step_input))
        if low >= -limit and high < limit:
            return []
        worst = low if -low >= high else high
        count = int(((step_input < -limit) | (step_input >= limit)).flatten(0, -2).any(-1).sum())
        message = (f"{where}: on the example input, a step's synaptic input reaches {worst:g} at {count} "
                   f"neuron(s); Lava's Conv synapse wraps it to 24 bits ([-{limit:g}, {limit:g}) in the "
                   "activation's units), so those neurons' graded spikes would differ from PyTorch's "
                   "from that step on (slayer's activation may still look small: the ReLU hides a large "
                   "negative input)")
        if on_overflow == "error":
            raise NumericsError(message + ". Scale this layer's weights (or its input) down until every "
                                "step's input sum stays inside that range, or pass --on-overflow clip "
                                "(on_overflow='clip') to build it anyway and accept the difference.")
        return [message + "; built anyway (on_overflow='clip'): Lava will differ on those neurons."]

    def why_unsupported(self, submodules, node) -> str:
        return _node_problem(submodules, node)

    def preprocess(self, partition, gm, workdir: Path) -> Stage:
        from ..nn import Encoder

        blocks = [gm.get_submodule(n.target) for n in partition.nodes if n.op == "call_module"]
        _check_families(partition, blocks)
        if not branching.is_chain(partition):
            return branching.preprocess_branching(self, partition, gm, workdir, _writers(),
                                                  (_synapses, _builds_layer, _lag, netx_layout))
        source = partition.inputs[0]
        in_shape = source.meta["shape"][1:]
        path = Path(workdir) / f"{partition.name}.net"
        neurons = synapses = 0
        shape = in_shape
        layer, lag, taps, last = -1, 0, {}, None  # node -> (netx layer index, delay, that layer's block)
        with netx_writer.File(path) as h5:
            group = h5.create_group("layer")
            for node in partition.nodes:
                block = gm.get_submodule(node.target)
                writer = _writers()[type(block)]
                if writer is not write_nothing:
                    with reporting(layer_step(node, block)):
                        writer(block, group.create_group(str(len(group))))
                        synapses += _synapses(block, shape)
                    if getattr(block, "neuron", None) is not None:
                        neurons += prod(node.meta["shape"][1:-1])  # an Output block has no neuron.shape
                    if _builds_layer(block):
                        layer, last = layer + 1, block
                lag += _lag(block)
                taps[node] = (layer, lag, last)
                shape = node.meta["shape"][1:]
        outputs = []
        for node in partition.outputs:
            index, delay, block = taps[node]
            if index < 0:
                raise LoweringError(
                    f"`{node.name}` sends its value out of the spiking stage before any Loihi layer has "
                    "run (it is the stage's input), so there are no spikes to tap. Read the tensor "
                    "before the spiking stage instead."
                )
            netx_out, out_layout = netx_layout(node.meta["shape"][1:])
            graded = neuron_models.graded_output(block)
            outputs.append(TensorSpec(node.name, list(netx_out), "int32" if graded else "float32", out_layout,
                                      graded=graded, node=node.name, layer=index, delay=delay))
        netx_in, in_layout = netx_layout(in_shape)
        graded_in = neuron_models.graded_input(blocks[0])
        encoder = gm.get_submodule(source.target) if source.op == "call_module" else None
        return Stage(
            name=partition.name, target=self.name, artifact=path.name, sha256=sha256(path),
            inputs=[TensorSpec("graded_in" if graded_in else "spikes_in", list(netx_in),
                               "int32" if graded_in else "float32", in_layout, graded=graded_in, node=source.name)],
            outputs=outputs,
            delay=outputs[-1].delay, layers=layer + 1,
            neurons=int(neurons), synapses=int(synapses),
            input_bits=encoder.bits if isinstance(encoder, Encoder) else None,
        )
