"""Loihi 2 through Lava: a spiking chain becomes one netx HDF5 network.

A branching stage (spike ADD, concatenation, fan-out) is cut into chains by
`loihi_graph`, each written here, plus the extra synapses that join them.

netx builds layers `layer/0`, `layer/1`, ... strictly in order, one per slayer block,
each written by that block's writer in `slayer_blocks` (which also holds what netx can
run, the synapse counts and Loihi's fixed-point limits, shared with the nir target).
Neuron families other than CUBA (sigma-delta, resonate-and-fire) are described in
`loihi_neurons`.
"""

from math import prod
from pathlib import Path

import torch
from torch.fx.passes.operator_support import create_op_support

from ..digest import sha256
from ..errors import LoweringError, NumericsError, reporting
from ..manifest import Stage, TensorSpec
from ..netx import writer as netx_writer
from ..netx.layout import netx_layout
from . import loihi_graph as branching
from . import loihi_neurons as neuron_models
from .base import Target
from .slayer_blocks import (
    NEURON_MODELS,
    SUPPORTED,
    builds_layer,
    check_fixed_point,
    count_synapses,
    lag_steps,
    layer_step,
    node_problem,
    write_nothing,
    writers,
)

CONV_INPUT_BITS = 24  # Lava's fixed-point Conv synapse wraps each step's input sum to 24 bits
GRADED_PAYLOAD = 1 << 12  # a sigma-delta graded spike carries its value x 2^12 (netx's spike_exp + ...)


def _is_supported(submodules, node) -> bool:
    return not node_problem(submodules, node)


# --- shapes and counts -----------------------------------------------------------------

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


def _overflow(message: str, fix: str, on_overflow: str) -> list:
    if on_overflow == "error":
        raise NumericsError(f"{message}. {fix}, or pass --on-overflow clip (on_overflow='clip') to build it anyway "
                            "and accept the difference.")
    return [message + "; built anyway (on_overflow='clip'): Lava will differ on those neurons."]


def _check_conv_input(block, inputs, where: str, on_overflow: str) -> list:
    """Lava's fixed-point Conv synapse wraps each step's input sum (sum of weight x graded
    spike, weight mantissa x value x 2^12) to 24 bits; slayer adds in float. A step input
    outside [-2^23, 2^23) (+-32 at slayer's 64-per-unit weights) reaches the neuron's sigma
    with the wrong sign in Lava, and that neuron's graded spikes differ from slayer's for
    good, even where slayer's activation stays small (a large negative input is hidden by
    the ReLU)."""
    with torch.no_grad():
        step_input = block.synapse(inputs[0])  # slayer's per-step synaptic input, in activation units
    limit = (1 << (CONV_INPUT_BITS - 1)) / (float(block.neuron.w_scale) * GRADED_PAYLOAD)
    low, high = (float(v) for v in torch.aminmax(step_input))
    if low >= -limit and high < limit:
        return []
    worst = low if -low >= high else high
    count = int(((step_input < -limit) | (step_input >= limit)).flatten(0, -2).any(-1).sum())
    return _overflow(f"{where}: on the example input, a step's synaptic input reaches {worst:g} at {count} "
                     f"neuron(s); Lava's Conv synapse wraps it to 24 bits ([-{limit:g}, {limit:g}) in the "
                     "activation's units), so those neurons' graded spikes would differ from PyTorch's "
                     "from that step on (slayer's activation may still look small: the ReLU hides a large "
                     "negative input)",
                     "Scale this layer's weights (or its input) down until every step's input sum stays "
                     "inside that range", on_overflow)


def _check_cuba_state(block, inputs, where: str, on_overflow: str) -> list:
    """Lava's fixed-point CUBA neuron keeps its current u and voltage v in 24 bits (u wraps
    outside (-2^23, 2^23], v saturates at -2^23 + 1), in units of s_scale (4096) per one of
    slayer's float units; slayer keeps both in float. A layer whose summed input, integrated
    by a slow current decay, leaves that range spikes differently in Lava from then on."""
    with torch.no_grad():
        current, voltage = block.neuron.dynamics(block.synapse(inputs[0]))
    limit = (1 << (CONV_INPUT_BITS - 1)) / float(block.neuron.s_scale)
    low, high = (float(v) for v in torch.aminmax(current))
    lowest = float(voltage.min())
    if low > -limit and high <= limit and lowest > -limit:
        return []
    state, worst = ("current", low if -low >= high else high) if not (low > -limit and high <= limit) \
        else ("voltage", lowest)
    return _overflow(f"{where}: on the example input, the neurons' {state} reaches {worst:g}, outside Loihi's "
                     f"24-bit state ({-limit:g} to {limit:g} in slayer's units), which Lava wraps (current) or "
                     "saturates (voltage) and slayer does not; those neurons would spike differently in Lava",
                     "Scale this layer's weights down, or use a faster current decay, until the state stays "
                     "inside that range", on_overflow)


class LoihiTarget(Target):
    name = "loihi"
    domain = "spiking"
    supported_ops = SUPPORTED
    neuron_models = NEURON_MODELS
    supports = create_op_support(_is_supported)

    def check_ranges(self, block, where: str, on_overflow: str) -> list:
        """Loihi's fixed-point limits on weights and thresholds (`slayer_blocks.check_fixed_point`)."""
        return check_fixed_point(block, where, on_overflow)

    def checks_activity(self, block) -> bool:
        """Whether `check_activity` has something to measure on this block: a sigma-delta
        Conv or Pool (both become a Lava Conv synapse, whose input sum wraps at 24 bits), or a
        CUBA neuron (whose current wraps, and whose voltage saturates, at 24 bits)."""
        from lava.lib.dl import slayer

        if not neuron_models.has_neuron(block):
            return False
        family = neuron_models.family_of(block)
        if family == "cuba":
            return not getattr(block.neuron, "persistent_state", False) and hasattr(block, "synapse")
        return family == "sigma_delta" and isinstance(block, (slayer.block.base.AbstractConv,
                                                              slayer.block.base.AbstractPool))

    def check_activity(self, block, inputs, where: str, on_overflow: str) -> list:
        """Limits of Loihi's 24-bit state that slayer, adding in float, does not have; measured
        on the example input, since they depend on the data."""
        if neuron_models.family_of(block) == "cuba":
            return _check_cuba_state(block, inputs, where, on_overflow)
        return _check_conv_input(block, inputs, where, on_overflow)

    def why_unsupported(self, submodules, node) -> str:
        return node_problem(submodules, node)

    def preprocess(self, partition, gm, workdir: Path) -> Stage:
        from ..nn import Encoder

        blocks = [gm.get_submodule(n.target) for n in partition.nodes if n.op == "call_module"]
        _check_families(partition, blocks)
        if not branching.is_chain(partition):
            return branching.preprocess_branching(self, partition, gm, workdir)
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
                writer = writers()[type(block)]
                if writer is not write_nothing:
                    with reporting(layer_step(node, block)):
                        writer(block, group.create_group(str(len(group))))
                        synapses += count_synapses(block, shape)
                    if getattr(block, "neuron", None) is not None:
                        neurons += prod(node.meta["shape"][1:-1])  # an Output block has no neuron.shape
                    if builds_layer(block):
                        layer, last = layer + 1, block
                lag += lag_steps(block)
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
