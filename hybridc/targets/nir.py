"""NIR (the Neuromorphic Intermediate Representation): the spiking half as a NIR graph
file, the format SpiNNaker2, Xylo, Speck and other toolchains import (`nir.write`).

Each slayer block becomes its synapse node (Conv2d, Linear; Pool as a SumPool2d whose
constant weight goes into the CubaLIF's w_in) followed by a CubaLIF node. Weights
and thresholds are slayer's fixed-point integers (the ones the Loihi target writes),
so one unit is one weight step. NIR's CubaLIF is a continuous-time ODE; with an Euler
step of one timestep it reproduces slayer's neuron as closely as NIR allows:

    I[t] = (1 - 1/tau_syn) I[t-1] + (w_in/tau_syn) x[t]    with tau_syn = 4096/iDecay, w_in = tau_syn
    v[t] = (1 - 1/tau_mem) v[t-1] + (r/tau_mem) I[t]       with tau_mem = 4096/vDecay, r = tau_mem
    spike when v > v_threshold (= vThMant), then v = v_reset = 0

(the new current drives the voltage, as in slayer and in Norse's NIR import; a consumer
whose Euler step uses I[t-1] is one step later per layer).

What NIR cannot express exactly (documented in docs/targets.md): slayer's fixed-point
rounding of the decays (right shifts), the one-step delay per layer that slayer's
delay_shift models (recorded as `metadata["lead_steps"]` so a simulator can align its
output), and zero decay (tau = infinity is written as 1e12 timesteps).

nir 1.0.8 infers a Conv2d's input channels from `weight.shape[1]`, which is wrong for a
grouped conv: `nir.read` of such a file fails its own type check. So grouped convs are
written as the equivalent full conv (block-diagonal weight, groups = 1), and a Pool as
NIR's own SumPool2d, which every NIR consumer reads.
"""

from math import prod
from pathlib import Path

import numpy as np
from torch.fx.passes.operator_support import create_op_support

from ..digest import sha256
from ..errors import LoweringError, reporting
from ..manifest import Stage, TensorSpec
from . import loihi_neurons as neuron_models
from .base import Target
from .loihi_graph import is_chain
from .slayer_blocks import (
    NEURON_MODELS,
    SUPPORTED,
    check_fixed_point,
    count_synapses,
    fixed_point_weight,
    is_recurrent,
    lag_steps,
    layer_step,
    node_problem,
    pool_weight,
)

NO_DECAY_TAU = 1e12


def _tau(decay) -> np.ndarray:
    decay = np.asarray(decay, dtype=np.float64)
    return np.where(decay > 0, 4096.0 / np.maximum(decay, 1e-30), NO_DECAY_TAU)


def neuron_node(nir, block, shape, input_weight=1.0):
    """CubaLIF for a block's neuron; `input_weight` scales its input (a pool's weight)."""
    params = block.neuron.device_params
    tau_syn = np.broadcast_to(_tau(params["iDecay"]), shape).astype(np.float64).copy()
    tau_mem = np.broadcast_to(_tau(params["vDecay"]), shape).astype(np.float64).copy()
    return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem.copy(), v_leak=np.zeros(shape),
                       v_threshold=np.full(shape, float(params["vThMant"])), v_reset=np.zeros(shape),
                       w_in=tau_syn * float(input_weight))


def ungrouped(weight: np.ndarray, groups: int) -> np.ndarray:
    """A grouped conv weight (C_out, C_in/groups, kh, kw) as the equal full conv weight
    (C_out, C_in, kh, kw): each output channel's group block in place, zeros elsewhere."""
    if groups == 1:
        return weight
    c_out, c_group = weight.shape[:2]
    full = np.zeros((c_out, c_group * groups, *weight.shape[2:]), dtype=weight.dtype)
    per_group = c_out // groups
    for o in range(c_out):
        g = o // per_group
        full[o, g * c_group:(g + 1) * c_group] = weight[o]
    return full


def synapse_node(nir, block, in_shape, out_shape):
    """(NIR synapse node, weight folded into the neuron's input) for one slayer block."""
    from lava.lib.dl import slayer

    cuba = slayer.block.cuba
    if isinstance(block, cuba.Dense):
        weight = fixed_point_weight(block.synapse).reshape(out_shape[0], -1)
        return nir.Linear(weight=weight.astype(np.float32)), 1.0
    s = block.synapse
    if isinstance(block, cuba.Pool):
        (constant,) = set(pool_weight(block, 1).ravel().tolist())
        return nir.SumPool2d(kernel_size=np.array(s.kernel_size[:2]), stride=np.array(s.stride[:2]),
                             padding=np.array(s.padding[:2])), constant
    weight = ungrouped(fixed_point_weight(s), int(s.groups))
    return nir.Conv2d(input_shape=tuple(in_shape[1:]), weight=weight.astype(np.float32),
                      stride=tuple(s.stride[:2]), padding=tuple(s.padding[:2]), dilation=tuple(s.dilation[:2]),
                      groups=1, bias=np.zeros(out_shape[0], dtype=np.float32)), 1.0


def _nir_problem(submodules, node) -> str:
    """Loihi's predicate, restricted to CUBA: the graph is written with CubaLIF nodes."""
    problem = node_problem(submodules, node)
    if problem or node.op != "call_module":
        return problem
    block = submodules[node.target]
    if is_recurrent(block):
        return ("hybridc's NIR target writes feed-forward graphs; a Recurrent block's feedback (a cycle in NIR) "
                "is lowered for Loihi only (netx's dense_rec). Use --target loihi+... for recurrent networks.")
    family = neuron_models.family_of(block)
    if family not in ("", "cuba"):
        return (f"hybridc writes NIR graphs with CubaLIF neurons only, and this is a slayer `{family}` block "
                "(use --target loihi+... for sigma-delta and resonate-and-fire networks).")
    return ""


class NirTarget(Target):
    """Loihi's support predicate and fixed-point limits for CUBA blocks (`slayer_blocks`): what
    netx can run, NIR can describe, in the same fixed-point integers."""

    name = "nir"
    domain = "spiking"
    supported_ops = [op for op in SUPPORTED if "sigma_delta" not in op and ".rf" not in op and "Recurrent" not in op]
    neuron_models = NEURON_MODELS[:1]
    supports = create_op_support(lambda submodules, node: not _nir_problem(submodules, node))

    def why_unsupported(self, submodules, node) -> str:
        return _nir_problem(submodules, node)

    def check_ranges(self, block, where: str, on_overflow: str) -> list:
        """The weights and thresholds written are Loihi's fixed-point integers: the same limits."""
        return check_fixed_point(block, where, on_overflow)

    def preprocess(self, partition, gm, workdir: Path) -> Stage:
        import nir
        from lava.lib.dl import slayer

        cuba = slayer.block.cuba
        if not is_chain(partition):
            raise LoweringError(
                f"The spiking stage `{partition.name}` branches (ADD, concatenation or fan-out inside it); the nir "
                "target writes chains only. Compile for --target loihi+..., which lowers branching stages."
            )
        in_shape = tuple(partition.inputs[0].meta["shape"][1:-1])  # PyTorch layout without time
        nodes = {"input": nir.Input(input_type={"input": np.array(in_shape)})}
        chain = ["input"]
        shape = in_shape
        neurons = synapses = layers = lead = 0
        for node in partition.nodes:
            block = gm.get_submodule(node.target)
            if isinstance(block, slayer.neuron.Dropout) or (isinstance(block, cuba.Input) and block.neuron is None):
                continue
            name = node.name
            if isinstance(block, cuba.Flatten):
                nodes[name] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
                chain.append(name)
                shape = (prod(shape),)
                continue
            out_shape = tuple(node.meta["shape"][1:-1])
            with reporting(layer_step(node, block)):
                synapse, input_weight = synapse_node(nir, block, shape, out_shape)
                nodes[f"{name}.synapse"] = synapse
                nodes[f"{name}.neuron"] = neuron_node(nir, block, out_shape, input_weight)
            chain += [f"{name}.synapse", f"{name}.neuron"]
            neurons += prod(out_shape)
            synapses += count_synapses(block, shape)
            layers += 1
            lead += 1 - lag_steps(block)
            shape = out_shape
        nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
        chain.append("output")
        graph = nir.NIRGraph(nodes=nodes, edges=list(zip(chain, chain[1:])),
                             metadata={"producer": "hybridc", "dt": 1.0, "units": "slayer fixed point",
                                       "lead_steps": lead})
        path = Path(workdir) / f"{partition.name}.nir"
        nir.write(str(path), graph)
        if partition.inputs[0].op == "call_module":  # an Encoder: graded spikes
            raise LoweringError(f"The nir target writes stages fed binary spikes; stage `{partition.name}` is fed "
                                f"graded spikes by `{partition.inputs[0].name}`. Use --target loihi+... for it.")
        if len(partition.outputs) > 1:
            raise LoweringError(f"The nir target writes one output per spiking stage; stage `{partition.name}` "
                                f"sends out {', '.join(n.name for n in partition.outputs)}. Tap one layer, or "
                                "use --target loihi+... for several taps.")
        out_node = partition.outputs[0]
        return Stage(
            name=partition.name, target=self.name, artifact=path.name, sha256=sha256(path),
            inputs=[TensorSpec("spikes_in", [*in_shape, partition.inputs[0].meta["shape"][-1]], "float32",
                               "CHWT" if len(in_shape) == 3 else "FT", node=partition.inputs[0].name)],
            outputs=[TensorSpec(out_node.name, list(out_node.meta["shape"][1:]), "float32",
                                "CHWT" if len(shape) == 3 else "FT", node=out_node.name)],
            delay=0, layers=layers, neurons=int(neurons), synapses=int(synapses),
        )
