"""NIR graphs in: a NIR graph (a file or an in-memory `nir.NIRGraph`) as lava-dl slayer cuba
blocks, which `hybridc.nn.NIR` runs and the loihi target lowers like any slayer block.

Sources of the formulas: NIR's neuron ODEs (nir 1.0.8, `nir/ir/neuron.py`), integrated with
an Euler step dt the way Norse's `from_nir` does (`norse/torch/utils/import_nir.py`: a
CubaLIF is `w_in * x` into a leaky integrator `LIBoxCell(tau_syn)`, times `r`, into
`LIFBoxCell(tau_mem)`; the new current drives the voltage), and slayer's cuba neuron
(`lava/lib/dl/slayer/neuron/cuba.py`, `dynamics/leaky_integrator.py`):

    NIR CubaLIF, Euler step dt (Norse):
        I[t] = (1 - dt/tau_syn) I[t-1] + (dt/tau_syn) w_in (W x)[t]
        v[t] = (1 - dt/tau_mem) v[t-1] + (dt/tau_mem) r I[t]       spike when v > v_threshold, v = 0
    slayer cuba:
        u[t] = (1 - current_decay) u[t-1] + (W' x)[t]
        v[t] = (1 - voltage_decay) v[t-1] + u[t]                     spike when v > threshold, v = 0

so, with u = (dt/tau_mem) r I,

    current_decay = dt/tau_syn        voltage_decay = dt/tau_mem
    W' = s * W * w_in * (dt/tau_syn) * r * (dt/tau_mem)   (w_in, r fold into each output's row)
    threshold' = s * v_threshold

NIR LIF (tau dv/dt = v_leak - v + r I, no synaptic memory): current_decay = 1,
voltage_decay = dt/tau, W' = s * W * r * dt/tau. NIR IF (dv/dt = r I): current_decay = 1,
voltage_decay = 0, W' = s * W * r * dt (Norse's IAFCell adds its input unscaled, ignoring r
and dt: the NIR ODE is followed here). A SumPool2d's weight is 1 (an AvgPool2d's 1/(kh*kw))
times the same factor; slayer's Pool shares one weight, so that factor must be uniform.

The per-layer scale s leaves spikes unchanged (v and the threshold scale together) and puts
the layer into Loihi's fixed point as slayer quantizes it (`quantize_8bit`: weights in steps
of 2/64, i.e. even integers in [-256, 254] after slayer's x64 descaling; threshold mantissa
int(threshold x 64) in 1..2^17-1; decays round(4096 x decay)): in integer units (one unit =
1/64 in slayer's float), s = 1 when the weights are already even integers in range and the
threshold an integer (a graph hybridc's own NIR export wrote: then this is that export's
inverse, bit for bit), else s = min(254 / max|W'|, (2^17-1) / v_threshold), so the largest
weight uses the whole 8-bit range. What is lost: the weights' rounding to 128 levels per
sign, the threshold's to an integer, the decays' to 1/4096 (and Loihi truncates the decayed
state towards zero). Each slayer block (delay_shift, the default) also delays its output by
one step, Loihi's hop per layer, which the float NIR simulation does not have.

Graphs, not only chains: a node's value may feed several synapse nodes (a split); edges into
one synapse node are summed (NIR's rule: a spike ADD, `a + b` in the forward); several
synapse nodes into one neuron node (a join: NIR sums their currents) become one block over
their inputs concatenated along channels, weights side by side (`torch.cat`), with one
scale s for the joined weights. Both are merges of spikes feeding a synapse, which the loihi
target lowers exactly (docs/architecture.md, branching spiking stages).

Recurrence: one cycle is imported, the one a recurrent SNN exports (snnTorch's RLeaky and
RSynaptic `export_to_nir`): a neuron node N (CubaLIF, LIF, IF) read by a Linear (or zero-bias
Affine) node R of out x out weights that feeds only N and is read only by N (N -> R -> N).
Timing, from the sources: nirtorch's GraphExecutor (under Norse's `from_nir`,
`nirtorch/graph_executor.py`) runs N before R each step and gives N, for a source not yet
computed this step, that source's value of the step before, so N reads R s[t-1] (nothing at
the first step); snnTorch's RLeaky computes `beta mem + input + recurrent(spk)` with the
spikes of the step before; slayer's Recurrent computes s[t] = f(W x[t] + R s[t-1])
(`custom_recurrent`). They agree, so no delay is added: N and R become one
`slayer.block.cuba.Recurrent`, R entering the same synapse as W (NIR sums the edges into N):
R' = s * R * w_in * (dt/tau_syn) * r * (dt/tau_mem) per row (the same factor as W), one scale
s over [W' | R'] (the loihi target lowers it as netx's `dense_rec`, exactly). The feed-forward
synapses of a recurrent neuron must be Linear/Affine (slayer's Recurrent is dense).

Refused, each with `UnsupportedLayerError` (or `NumericsError` for values) naming the node:
node types other than Input, Output, Linear, Affine (zero bias), Conv2d, SumPool2d, AvgPool2d,
Flatten, CubaLIF, LIF, IF (LI with its own reason: a non-spiking readout belongs in the dense
head; Delay: per-neuron axonal delays, which it lowers only inside a slayer Dense block); per-neuron time constants or thresholds (slayer's cuba decays and
threshold are per layer); non-zero v_leak or v_reset; dt/tau > 1 (the Euler step is then no
decay); cycles other than N -> R -> N; joins of paths of different length (each block's one-step delay would misalign
the terms; no compensating delay is added yet); joins of pools or of convs of different
geometry; several Input or Output nodes; shapes that cannot be inferred. What exporters hand over is
repaired, each repair logged naming the node: torch tensors become numpy, 0-d neuron
parameters are broadcast to the layer, a batch axis is dropped from the Input type, empty
types are inferred from the neighbouring nodes. `normalised(graph, dt)` writes the same repairs
into a graph, so that `nir.write` can write it (it cannot write Norse 1.1.0's 0-d parameters).
"""

import logging
from math import prod
from pathlib import Path

import numpy as np

from .errors import ModelFileError, NumericsError, UnsupportedLayerError, reporting

log = logging.getLogger("hybridc.nir_import")

W_TOP = 254  # the largest 8-bit weight mantissa slayer keeps (targets/slayer_blocks.W_LIMIT - 2)
V_TH_MAX = (1 << 17) - 1  # Loihi's threshold mantissa (targets/slayer_blocks.V_TH_MAX)
UNIT = 64  # slayer's neuron scale: one fixed-point unit is 1/64 in slayer's float
SYNAPSES = ("Linear", "Affine", "Conv2d", "SumPool2d", "AvgPool2d")
NEURONS = ("CubaLIF", "LIF", "IF")
RECURRENT_SYNAPSES = ("Linear", "Affine")
SUPPORTED = ("Input", "Output", "Flatten") + SYNAPSES + NEURONS
# node types with a reason of their own (the others get the list of what is imported)
REFUSED = {
    "LI": "a leaky integrator is a non-spiking readout (its value is its voltage; no spikes leave it), and Loihi "
          "sends only spikes out of a spiking stage. Put the readout in the dense head: import the graph up to "
          "the last spiking layer (end it at that CubaLIF/LIF/IF node), then an Accumulator and a torch.nn.Linear "
          "(or the leaky filter written in PyTorch) after hybridc.nn.NIR.",
    "Delay": "per-neuron axonal delays standing alone; the loihi target lowers delays only as the output "
             "delays of a slayer Dense block (slayer.block.cuba.Dense(..., delay=True)), which the NIR import does "
             "not build yet. Remove the Delay node (fold it into the timing of the data), or write that layer as a "
             "slayer Dense block with delay=True.",
}


class Layer:
    """One slayer block to build: `kind` (dense, conv, pool, flatten), the NIR nodes it comes
    from (its synapse nodes, then its neuron node), its input and output shapes (no batch, no
    time), where its input comes from (per synapse node, the names of the values it sums;
    several synapse nodes read their inputs concatenated along channels) and, for a block
    with a neuron, the float weight and threshold in fixed-point units and the decays."""

    def __init__(self, kind, nodes, in_shape, out_shape, inputs, depth=0, **params):
        self.kind, self.nodes, self.in_shape, self.out_shape = kind, tuple(nodes), tuple(in_shape), tuple(out_shape)
        self.depth = depth  # slayer blocks (Flatten aside) from the graph's input to this block's output
        self.inputs = tuple(tuple(group) for group in inputs)  # per synapse, the values summed into it
        self.output = self.nodes[-1]
        self.params = params

    def __repr__(self):
        return f"Layer({self.kind}, {self.nodes}, {self.in_shape} -> {self.out_shape})"


def _where(name, node) -> str:
    return f"NIR node `{name}` ({type(node).__name__})"


def load(graph_or_path):
    """A nir.NIRGraph from a path (nir.read) or the graph itself."""
    import nir

    if isinstance(graph_or_path, (str, Path)):
        try:
            return nir.read(str(graph_or_path))
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise ModelFileError(f"{graph_or_path} is not a NIR graph nir can read ({type(exc).__name__}: {exc}). "
                                 "Write it with nir.write, or pass the in-memory nir.NIRGraph.") from None
    if not isinstance(graph_or_path, nir.NIRGraph):
        raise ModelFileError(f"hybridc.nn.NIR takes a .nir path or a nir.NIRGraph, got {type(graph_or_path).__name__}.")
    return graph_or_path


def _numpy(value):
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy().astype(np.float64), True
    if value is None:
        return None, False
    return np.asarray(value, dtype=np.float64), False


def _type_shape(types) -> tuple:
    """The one shape in a NIR type dict, () when it is empty or missing."""
    for value in (types or {}).values():
        value, _ = _numpy(value)
        if value is not None and value.size:
            return tuple(int(v) for v in value.ravel())
    return ()


def recurrent_synapses(graph) -> dict:
    """{neuron node: its recurrent synapse node} for the one cycle hybridc imports: a Linear
    (or Affine) node R read only by a CubaLIF/LIF/IF node N and feeding only N (N -> R -> N),
    which becomes slayer's cuba.Recurrent (module docstring, "Recurrence")."""
    nodes, edges = graph.nodes, [tuple(e) for e in graph.edges]
    loops = {}
    for name, node in nodes.items():
        if type(node).__name__ not in RECURRENT_SYNAPSES:
            continue
        sources = [a for a, b in edges if b == name]
        targets = [b for a, b in edges if a == name]
        if (len(sources) == 1 and targets == sources and sources[0] != name
                and type(nodes[sources[0]]).__name__ in NEURONS and sources[0] not in loops):
            loops[sources[0]] = name
    return loops


def structure(graph):
    """(names in topological order, predecessors, successors, the Input's name, the Output's
    name, {neuron: its recurrent synapse}) of a NIR graph. The feedback edge R -> N of each
    recurrent synapse is left out of the predecessors and successors (R is ordered after N:
    N reads R's value of the step before); other cycles, several inputs or outputs and nodes
    off the path are refused."""
    nodes, edges = graph.nodes, [tuple(e) for e in graph.edges]
    for a, b in edges:
        for end in (a, b):
            if end not in nodes:
                raise UnsupportedLayerError(f"The NIR graph has an edge {a} -> {b} to a node `{end}` it does not define.")
    loops = recurrent_synapses(graph)
    feedback = {(r, n) for n, r in loops.items()}
    forward = [e for e in edges if e not in feedback]
    succ = {name: [b for a, b in forward if a == name] for name in nodes}
    pred = {name: [a for a, b in forward if b == name] for name in nodes}
    indegree = {name: len(pred[name]) for name in nodes}
    ready, order = [n for n in nodes if indegree[n] == 0], []
    while ready:  # Kahn's algorithm: what it cannot order is on or after a cycle
        name = ready.pop(0)
        order.append(name)
        for b in succ[name]:
            indegree[b] -= 1
            if indegree[b] == 0:
                ready.append(b)
    if len(order) < len(nodes):
        cycle = [n for n in nodes if n not in order]
        trimmed = True
        while trimmed:  # drop what only hangs off the cycle downstream
            keep = [n for n in cycle if any(b in cycle for b in succ[n])]
            trimmed, cycle = len(keep) < len(cycle), keep
        raise UnsupportedLayerError(
            f"The NIR graph has a cycle through node(s) {', '.join(f'`{n}`' for n in cycle)} that hybridc does not "
            "import. It imports one kind of recurrence, a neuron node N (CubaLIF, LIF or IF) with a recurrent "
            "Linear (or zero-bias Affine) node R of out x out weights, N -> R -> N, R read by nothing else and fed "
            "by nothing else (what snnTorch's RLeaky/RSynaptic export): slayer's cuba.Recurrent. Write other "
            "recurrent layers in PyTorch as slayer.block.cuba.Recurrent, or import the feed-forward part only.")
    inputs = [n for n in nodes if type(nodes[n]).__name__ == "Input"]
    outputs = [n for n in nodes if type(nodes[n]).__name__ == "Output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise UnsupportedLayerError(f"hybridc imports NIR graphs with one Input and one Output node; this one has "
                                    f"inputs {inputs} and outputs {outputs}.")

    full_succ = {name: [b for a, b in edges if a == name] for name in nodes}
    full_pred = {name: [a for a, b in edges if b == name] for name in nodes}

    def reach(start, step):
        seen, todo = set(), [start]
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo += step[name]
        return seen

    off = set(nodes) - (reach(inputs[0], full_succ) & reach(outputs[0], full_pred))
    if off:
        raise UnsupportedLayerError(f"The NIR graph's node(s) {', '.join(f'`{n}`' for n in sorted(off))} are not on a "
                                    f"path from `{inputs[0]}` to `{outputs[0]}`; remove them.")
    return order, pred, succ, inputs[0], outputs[0], loops


def _param(name, node, field, repairs):
    value, was_torch = _numpy(getattr(node, field, None))
    if was_torch:
        repairs.add("torch tensors converted to numpy")
    if value is not None and (np.any(np.isnan(value)) or (not field.startswith("tau") and np.any(np.isinf(value)))):
        raise NumericsError(f"{_where(name, node)}: `{field}` holds NaN or infinite values (an infinite tau, no "
                            "decay, is the only infinity accepted).")
    return value


def _uniform(name, node, field, value, shape, repairs, per_row=False):
    """`value` broadcast to the layer's `shape` (0-d parameters as the exporters write them);
    refuses a value that differs across neurons (across channels too unless per_row)."""
    if value is None:
        raise UnsupportedLayerError(f"{_where(name, node)} has no `{field}`.")
    if value.ndim == 0 or value.size == 1:
        if value.ndim == 0:
            repairs.add(f"0-d `{field}` broadcast to {shape}")
        return np.full(shape, float(value.ravel()[0]))
    try:
        full = np.broadcast_to(value.reshape(value.shape), shape)
    except ValueError:
        raise UnsupportedLayerError(f"{_where(name, node)}: `{field}` has shape {value.shape}, the layer {shape}: "
                                    "the shapes do not match.") from None
    rows = full.reshape(shape[0], -1)
    if per_row:
        if not np.all(rows == rows[:, :1]):
            raise UnsupportedLayerError(f"{_where(name, node)}: `{field}` differs across the neurons of a channel; "
                                        "hybridc folds it into the synapse weights, which a conv shares over space.")
    elif not np.all(full == full.ravel()[0]):
        raise UnsupportedLayerError(
            f"{_where(name, node)}: `{field}` differs across neurons (from {full.min():g} to {full.max():g}); "
            "slayer's cuba decays and threshold are one per layer. Make it uniform.")
    return np.array(full, dtype=np.float64)


def neuron_parameters(name, node, shape, dt, repairs) -> dict:
    """current_decay, voltage_decay, the input factor per output row (w_in, r, dt/tau folded)
    and the threshold of one NIR neuron node over a layer of `shape` (see the module docstring)."""
    kind = type(node).__name__
    get = lambda field, per_row=False: _uniform(name, node, field, _param(name, node, field, repairs), shape, repairs,  # noqa: E731
                                                per_row)
    for field in ("v_leak", "v_reset"):
        value = _param(name, node, field, repairs)
        if value is not None and np.any(value != 0):
            raise UnsupportedLayerError(
                f"{_where(name, node)}: non-zero `{field}` ({float(np.max(np.abs(value))):g}); slayer's cuba "
                "neuron leaks and resets to 0. Shift the threshold instead, or retrain with 0.")
    threshold = get("v_threshold").ravel()[0]
    r = get("r", per_row=True)
    if kind == "CubaLIF":
        tau_syn, tau_mem, w_in = get("tau_syn").ravel()[0], get("tau_mem").ravel()[0], get("w_in", per_row=True)
        decays = {"tau_syn": tau_syn, "tau_mem": tau_mem}
        current, voltage = dt / tau_syn, dt / tau_mem
        factor = w_in * current * r * voltage
    elif kind == "LIF":
        tau = get("tau").ravel()[0]
        decays = {"tau": tau}
        current, voltage = 1.0, dt / tau
        factor = r * voltage
    else:  # IF
        decays = {}
        current, voltage = 1.0, 0.0
        factor = r * dt
    for field, tau in decays.items():
        if not (tau > 0 and dt / tau <= 1):
            raise NumericsError(
                f"{_where(name, node)}: dt/{field} = {dt:g}/{tau:g} = {dt / tau:g}, outside (0, 1]: the Euler step "
                "is then no decay. Pass dt in the graph's time unit (hybridc.nn.NIR(graph, dt=...)). Norse 1.1.0's "
                "to_nir writes tau = dt/tau_mem_inv: export with to_nir(model, sample, dt=1.0) to get tau in seconds.")
    if not threshold > 0:
        raise NumericsError(f"{_where(name, node)}: v_threshold {threshold:g} is not positive; Loihi's threshold "
                            "mantissa is unsigned.")
    return {"current_decay": float(current), "voltage_decay": float(voltage),
            "factor": factor.reshape(shape[0], -1)[:, 0], "threshold": float(threshold)}


def scale(weight: np.ndarray, threshold: float) -> float:
    """The per-layer scale s (module docstring): 1 when the weights are even integers in
    range and the threshold an integer (Loihi's units already), else the largest weight at 254."""
    top = float(np.max(np.abs(weight))) if weight.size else 0.0
    even = np.abs(weight / 2 - np.round(weight / 2)) <= 1e-6
    if (np.all(even) and weight.min(initial=0) >= -W_TOP - 2 and top <= W_TOP
            and abs(threshold - round(threshold)) <= 1e-6 and 1 <= round(threshold) <= V_TH_MAX):
        return 1.0
    if top == 0:
        return 1.0 if 1 <= threshold <= V_TH_MAX else V_TH_MAX / threshold / 2
    return min(W_TOP / top, V_TH_MAX / threshold)


def _conv_out(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _pair(value, default):
    value, _ = _numpy(value)
    if value is None:
        return (default, default)
    value = [int(v) for v in np.ravel(value)]
    return (value[0], value[0]) if len(value) == 1 else tuple(value[:2])


def _synapse(name, node, shape, repairs):
    """(kind, output shape, weight (out, in[, kh, kw]) or the pool's constant, geometry) of a synapse node."""
    kind = type(node).__name__
    if kind in ("Linear", "Affine"):
        weight = _param(name, node, "weight", repairs)
        bias = _param(name, node, "bias", repairs) if kind == "Affine" else None
        if bias is not None and np.any(bias != 0):
            raise UnsupportedLayerError(
                f"{_where(name, node)} has a non-zero bias: hybridc does not import biases yet (bias support "
                "comes later). Train without a bias (torch.nn.Linear(..., bias=False)).")
        if len(shape) != 1 or shape[0] != weight.shape[1]:
            if prod(shape) == weight.shape[1] and len(shape) > 1:
                raise UnsupportedLayerError(f"{_where(name, node)} reads a {shape} input: add a NIR Flatten before it.")
            raise UnsupportedLayerError(f"{_where(name, node)}: its weight takes {weight.shape[1]} inputs, the node "
                                        f"before it gives {shape}.")
        return "dense", (weight.shape[0],), weight, {}
    if len(shape) != 3:
        raise UnsupportedLayerError(f"{_where(name, node)} needs a (C, H, W) input, the node before gives {shape}.")
    c, h, w = shape
    if kind == "Conv2d":
        weight = _param(name, node, "weight", repairs)
        bias = _param(name, node, "bias", repairs)
        if bias is not None and np.any(bias != 0):
            raise UnsupportedLayerError(f"{_where(name, node)} has a non-zero bias: hybridc does not import biases "
                                        "yet (bias support comes later).")
        if isinstance(node.padding, str):
            raise UnsupportedLayerError(f"{_where(name, node)}: string padding {node.padding!r}; give numbers.")
        stride, padding = _pair(node.stride, 1), _pair(node.padding, 0)
        dilation, groups = _pair(node.dilation, 1), int(np.ravel(_numpy(node.groups)[0])[0])
        if weight.shape[1] * groups != c:
            raise UnsupportedLayerError(f"{_where(name, node)}: weight {weight.shape} with groups={groups} takes "
                                        f"{weight.shape[1] * groups} channels, the node before gives {c}.")
        out = (weight.shape[0], *(_conv_out(s, k, st, p, d) for s, k, st, p, d in
                                  zip((h, w), weight.shape[2:], stride, padding, dilation)))
        return "conv", out, weight, {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    # SumPool2d, AvgPool2d
    kernel, stride, padding = _pair(node.kernel_size, 1), _pair(node.stride, 1), _pair(node.padding, 0)
    if stride != kernel or padding != (0, 0) or h % kernel[0] or w % kernel[1]:
        raise UnsupportedLayerError(
            f"{_where(name, node)}: kernel {kernel}, stride {stride}, padding {padding} on a {h}x{w} input; Loihi "
            "computes a pool exactly only with stride = kernel, no padding and a size that is a multiple of it.")
    constant = 1.0 if kind == "SumPool2d" else 1.0 / (kernel[0] * kernel[1])
    return "pool", (c, h // kernel[0], w // kernel[1]), constant, {"kernel": kernel}


def _check_type(name, node, field, expected, repairs):
    declared = _type_shape(getattr(node, field, None))
    if not declared:
        repairs.add(f"empty {field} inferred as {list(expected)}")
    elif declared == (1, *expected):
        repairs.add(f"batch axis dropped from its {field} {list(declared)}")
    elif declared != tuple(expected):
        raise UnsupportedLayerError(f"{_where(name, node)}: its {field} is {list(declared)}, but the graph gives "
                                    f"{list(expected)} there.")


def _input_shape(graph, name, first_name, repairs_of):
    """The Input node's shape without a batch axis, inferred from `first_name` (a node it
    feeds) when its type is empty."""
    node = graph.nodes[name]
    shape = _type_shape(node.input_type) or _type_shape(node.output_type)
    first = graph.nodes[first_name]
    kind = type(first).__name__
    wanted = None
    if kind in ("Linear", "Affine"):
        wanted = 1
        if not shape:
            weight, _ = _numpy(first.weight)
            shape = (weight.shape[1],)
            repairs_of(name).add(f"empty input type inferred as {list(shape)} from `{first_name}`")
    elif kind in ("Conv2d", "SumPool2d", "AvgPool2d"):
        wanted = 3
        if not shape and kind == "Conv2d" and getattr(first, "input_shape", None) is not None:
            c = int(_numpy(first.weight)[0].shape[1]) * int(np.ravel(_numpy(first.groups)[0])[0])
            shape = (c, *(int(v) for v in np.ravel(_numpy(first.input_shape)[0])[-2:]))
            repairs_of(name).add(f"empty input type inferred as {list(shape)} from `{first_name}`")
    if not shape:
        raise UnsupportedLayerError(f"{_where(name, node)} has no input type and the shape cannot be inferred from "
                                    f"`{first_name}`: give the Input node its type.")
    if wanted and len(shape) == wanted + 1 and shape[0] == 1:
        repairs_of(name).add(f"batch axis dropped from its type {list(shape)}")
        shape = shape[1:]
    return tuple(shape)


def _join(name, node, terms):
    """One synapse over the concatenation of a join's inputs: (kind, in shape, out shape, weight,
    geometry) from each synapse node's (name, kind, in shape, out shape, weight, geometry)."""
    kinds = {t[1] for t in terms}
    outs = {t[3] for t in terms}
    names = ", ".join(f"`{t[0]}`" for t in terms)
    if len(kinds) > 1 or "pool" in kinds or len(outs) > 1:
        raise UnsupportedLayerError(f"{_where(name, node)} joins {names}: hybridc imports a join of Linear/Affine "
                                    "nodes, or of Conv2d nodes of one geometry, into one neuron node (their inputs "
                                    "concatenated, their weights side by side); not this mix.")
    kind = kinds.pop()
    if kind == "conv":
        geometries = {tuple(sorted(t[5].items())) for t in terms}
        kernels = {t[4].shape[2:] for t in terms}
        spatial = {t[2][1:] for t in terms}
        if len(geometries) > 1 or len(kernels) > 1 or len(spatial) > 1 or terms[0][5]["groups"] != 1:
            raise UnsupportedLayerError(f"{_where(name, node)} joins convolutions {names} of different kernel, "
                                        "stride, padding, dilation or input size, or grouped ones; hybridc joins "
                                        "ungrouped convolutions of one geometry only.")
        in_shape = (sum(t[2][0] for t in terms), *terms[0][2][1:])
    else:
        in_shape = (sum(t[2][0] for t in terms),)
    return kind, in_shape, terms[0][3], np.concatenate([t[4] for t in terms], axis=1), terms[0][5]


def parse(graph, dt: float) -> tuple:
    """(input shape, [Layer] in graph order, the Input node's name, the name of the value the
    Output reads) for a NIR graph; every repair logged, one message per node."""
    if not dt > 0:
        raise NumericsError(f"dt must be positive, got {dt!r}.")
    nodes = graph.nodes
    for name, node in nodes.items():
        kind = type(node).__name__
        if node is None:
            raise UnsupportedLayerError(
                f"NIR node `{name}` is empty (None): the exporter did not translate that module (Norse 1.1.0's "
                "to_nir writes None for torch.nn.Flatten). Fill the node in (nir.Flatten(...)) before importing.")
        if kind in REFUSED:
            raise UnsupportedLayerError(f"{_where(name, node)}: {REFUSED[kind]}")
        if kind not in SUPPORTED:
            raise UnsupportedLayerError(
                f"{_where(name, node)}: hybridc does not import {kind} nodes yet; it imports "
                f"{', '.join(SUPPORTED)}. Remove the node or replace it by a supported one.")
    order, pred, succ, input_name, output_name, loops = structure(graph)
    recurrent = set(loops.values())
    repairs = {}

    def repairs_of(name):
        return repairs.setdefault(name, set())

    def kind_of(name):
        return type(nodes[name]).__name__

    if not succ[input_name] or kind_of(succ[input_name][0]) == "Output":
        raise UnsupportedLayerError("The NIR graph has no synapse -> neuron pair: nothing spiking to import.")
    in_shape = _input_shape(graph, input_name, succ[input_name][0], repairs_of)
    shape, depth = {input_name: in_shape}, {input_name: 0}  # per value: its shape, the slayer blocks before it

    def summed(name, node):
        """The values a synapse (or Flatten, Output) node reads, summed: their common shape and depth."""
        sources = pred[name]
        for source in sources:
            if kind_of(source) in SYNAPSES:
                raise UnsupportedLayerError(f"{_where(name, node)} reads the synapse node `{source}` directly; "
                                            "hybridc imports a synapse followed by a CubaLIF, LIF or IF node.")
        if len({shape[s] for s in sources}) > 1:
            raise UnsupportedLayerError(f"{_where(name, node)} sums {', '.join(sources)} of different shapes "
                                        f"{[list(shape[s]) for s in sources]}.")
        if len({depth[s] for s in sources}) > 1:
            raise UnsupportedLayerError(_depth_message(name, node, sources, depth))
        return sources, shape[sources[0]], depth[sources[0]]

    layers = []
    for name in order:
        node, kind = nodes[name], kind_of(name)
        if name == input_name:
            continue
        if kind == "Output":
            if len(pred[name]) > 1:
                raise UnsupportedLayerError(f"{_where(name, node)} sums {', '.join(pred[name])}: Loihi sends only a "
                                            "layer's own spikes out of a spiking stage. Sum them in the dense part.")
            _, value_shape, _ = summed(name, node)
            _check_type(name, node, "output_type", value_shape, repairs_of(name))
        elif kind == "Flatten":
            sources, value_shape, value_depth = summed(name, node)
            if len(sources) > 1:
                raise UnsupportedLayerError(f"{_where(name, node)} reads {', '.join(sources)}: a Flatten reads one "
                                            "node; flatten each and sum after a synapse.")
            start, end = int(getattr(node, "start_dim", 0)), int(getattr(node, "end_dim", -1))
            declared = _type_shape(node.input_type)
            if declared and len(declared) == len(value_shape) + 1 and start >= 1:  # a batch axis in its type
                start, end = start - 1, end - 1 if end > 0 else end
                repairs_of(name).add("start_dim counted without the batch axis")
            if start != 0 or end not in (-1, len(value_shape) - 1):
                raise UnsupportedLayerError(f"{_where(name, node)}: flattens dims {start}..{end} of "
                                            f"{list(value_shape)}; hybridc imports a Flatten of every axis only.")
            _check_type(name, node, "input_type", value_shape, repairs_of(name))
            layers.append(Layer("flatten", [name], value_shape, (prod(value_shape),), [sources], depth=value_depth))
            shape[name], depth[name] = (prod(value_shape),), layers[-1].depth
        elif name in recurrent:
            continue  # built with the neuron it feeds back into
        elif kind in SYNAPSES:
            if len(succ[name]) != 1 or kind_of(succ[name][0]) not in NEURONS:
                raise UnsupportedLayerError(
                    f"{_where(name, node)} feeds {', '.join(succ[name]) or 'nothing'}: hybridc imports a synapse "
                    "node followed by exactly one CubaLIF, LIF or IF node.")
        else:  # a neuron node: one block with the synapse nodes that feed it
            synapses = pred[name]
            for synapse in synapses:
                if kind_of(synapse) not in SYNAPSES:
                    raise UnsupportedLayerError(
                        f"{_where(name, node)} follows `{synapse}` directly: hybridc imports synapse -> neuron "
                        "pairs (Linear/Affine/Conv2d/SumPool2d/AvgPool2d, then CubaLIF/LIF/IF).")
            terms, inputs, depths = [], [], {}
            for synapse in synapses:
                sources, value_shape, depths[synapse] = summed(synapse, nodes[synapse])
                block, out, weight, geometry = _synapse(synapse, nodes[synapse], value_shape, repairs_of(synapse))
                _check_type(synapse, nodes[synapse], "input_type", value_shape, repairs_of(synapse))
                terms.append((synapse, block, value_shape, out, weight, geometry))
                inputs.append(sources)
            if len(set(depths.values())) > 1:
                raise UnsupportedLayerError(_depth_message(name, node, list(depths), depths))
            if len(terms) == 1:
                _, block, block_in, out, weight, geometry = terms[0]
            else:
                block, block_in, out, weight, geometry = _join(name, node, terms)
            _check_type(name, node, "input_type", out, repairs_of(name))
            _check_type(name, node, "output_type", out, repairs_of(name))
            p = neuron_parameters(name, node, out, dt, repairs_of(name))
            if block == "pool":
                if not np.all(p["factor"] == p["factor"][0]):
                    raise UnsupportedLayerError(f"{_where(name, node)}: w_in or r differs across channels after "
                                                f"the pool `{synapses[0]}`; slayer's Pool shares one weight.")
                weight = np.array(weight * p["factor"][0])
            else:
                weight = weight * p["factor"].reshape(-1, *([1] * (weight.ndim - 1)))
            extra, nodes_of = {}, [*synapses, name]
            if name in loops:
                rec = _recurrent_weight(loops[name], nodes[loops[name]], name, node, block, out, repairs_of)
                extra["weight_rec"] = rec * p["factor"][:, None]  # the same synapse: the same factor
                block, nodes_of = "recurrent", [*synapses, loops[name], name]
            s = scale(np.concatenate([np.atleast_1d(weight).reshape(len(p["factor"]), -1) if block != "pool"
                                      else np.atleast_1d(weight), *extra.values()], axis=-1), p["threshold"])
            threshold = round(p["threshold"] * s)
            if not 1 <= threshold <= V_TH_MAX:
                raise NumericsError(f"{_where(name, node)}: the threshold is {threshold} in Loihi's fixed point at "
                                    f"the scale that fits the weights, outside 1..{V_TH_MAX}.")
            extra = {key: value * s for key, value in extra.items()}
            layers.append(Layer(block, nodes_of, block_in, out, inputs, next(iter(depths.values())) + 1, **extra,
                                weight=weight * s,
                                threshold=threshold, scale=s, current_decay=p["current_decay"],
                                voltage_decay=p["voltage_decay"], **geometry))
            shape[name], depth[name] = out, layers[-1].depth
    for name, done in repairs.items():
        if done:
            log.warning("NIR node `%s` (%s) repaired: %s.", name, type(nodes[name]).__name__, "; ".join(sorted(done)))
    if not any(layer.kind != "flatten" for layer in layers):
        raise UnsupportedLayerError("The NIR graph has no synapse -> neuron pair: nothing spiking to import.")
    return in_shape, layers, input_name, pred[output_name][0]


def _recurrent_weight(rec_name, rec_node, name, node, block, out, repairs_of):
    """The recurrent synapse R's (out, out) weight, for the neuron node `name` it feeds back into."""
    if block != "dense":
        raise UnsupportedLayerError(
            f"{_where(name, node)} has the recurrent synapse `{rec_name}` but reads a {block} synapse: slayer's "
            "cuba.Recurrent (what hybridc lowers) is dense; a recurrent neuron node must read Linear/Affine nodes.")
    kind, _, weight, _ = _synapse(rec_name, rec_node, out, repairs_of(rec_name))
    if kind != "dense" or weight.shape != (out[0], out[0]):
        raise UnsupportedLayerError(f"{_where(rec_name, rec_node)} feeds `{name}` back into itself with a weight "
                                    f"of shape {list(weight.shape)}; a recurrent synapse is {out[0]} x {out[0]}.")
    _check_type(rec_name, rec_node, "input_type", out, repairs_of(rec_name))
    _check_type(rec_name, rec_node, "output_type", out, repairs_of(rec_name))
    return weight


def _depth_message(name, node, sources, depth) -> str:
    paths = ", ".join(f"`{s}` after {depth[s]}" for s in sources)
    return (f"{_where(name, node)} joins paths of different length ({paths} slayer blocks): each block delays its "
            "spikes by one step (Loihi's hop), which the NIR graph does not, so the terms would meet misaligned; "
            "hybridc does not add the compensating delay yet. Join paths with the same number of synapse -> neuron "
            "pairs.")


def build(layer: Layer):
    """The slayer cuba block for one Layer (weights and threshold in slayer's float: units / 64)."""
    import torch
    from lava.lib.dl import slayer

    cuba = slayer.block.cuba
    if layer.kind == "flatten":
        return cuba.Flatten()
    p = layer.params
    neuron = {"threshold": p["threshold"] / UNIT, "current_decay": p["current_decay"],
              "voltage_decay": p["voltage_decay"], "tau_grad": 1.0, "scale_grad": 1.0}
    weight = torch.as_tensor(np.asarray(p["weight"]) / UNIT, dtype=torch.float32)
    if layer.kind == "recurrent":  # slayer computes s[t] = f(W x[t] + R s[t-1]), NIR's timing
        block = cuba.Recurrent(neuron, layer.in_shape[0], layer.out_shape[0])
        block.input_synapse.weight.data = weight.reshape(block.input_synapse.weight.shape)
        rec = torch.as_tensor(np.asarray(p["weight_rec"]) / UNIT, dtype=torch.float32)
        block.recurrent_synapse.weight.data = rec.reshape(block.recurrent_synapse.weight.shape)
    elif layer.kind == "dense":
        block = cuba.Dense(neuron, layer.in_shape[0], layer.out_shape[0])
        block.synapse.weight.data = weight.reshape(block.synapse.weight.shape)
    elif layer.kind == "conv":
        block = cuba.Conv(neuron, layer.in_shape[0], layer.out_shape[0], tuple(weight.shape[2:]),
                          stride=p["stride"], padding=p["padding"], dilation=p["dilation"], groups=p["groups"])
        block.synapse.weight.data = weight[..., None].contiguous()
    else:
        block = cuba.Pool(neuron, p["kernel"], stride=p["kernel"])
        block.synapse.weight.data.fill_(float(weight))
    return block


def import_graph(graph_or_path, dt: float = 1.0) -> tuple:
    """(input shape, [(block name, slayer block, Layer)] in graph order, the Input node's name,
    the name of the value the Output reads) for a NIR graph or file. A block is named after its
    first NIR node."""
    graph = load(graph_or_path)
    # a graph malformed in a way no check above foresees still ends as one hybridc error
    with reporting("import of the NIR graph", error=UnsupportedLayerError):
        in_shape, layers, input_name, output = parse(graph, float(dt))
        blocks, used = [], set()
        for layer in layers:
            key = "".join(c if c.isalnum() or c == "_" else "_" for c in layer.nodes[0]) or "node"
            while key in used:
                key += "_"
            used.add(key)
            with reporting(f"NIR node(s) {', '.join(layer.nodes)}"):
                blocks.append((key, build(layer), layer))
    return in_shape, blocks, input_name, output


def normalised(graph_or_path, dt: float):
    """The graph with the repairs `parse` makes written into it, so that `nir.write` can write
    it and `nir.read` read it back: numpy parameters (not torch tensors), 0-d neuron parameters
    broadcast to the layer, no batch axis in the Input type, every type inferred from the graph
    (`parse` computes the shapes; each repair is logged there). A Conv2d gets its input's (H, W).
    `dt` (as for hybridc.nn.NIR) only serves the checks `parse` makes; parameters keep their values.
    Norse 1.1.0's to_nir graphs need this before `nir.write` (h5py refuses its 0-d parameters)."""
    import dataclasses

    import nir

    graph = load(graph_or_path)
    in_shape, layers, input_name, output = parse(graph, float(dt))
    shape = {input_name: in_shape}
    node_in, node_out = {}, {}
    for layer in layers:
        shape[layer.output] = layer.out_shape
        if layer.kind == "flatten":
            node_in[layer.output], node_out[layer.output] = layer.in_shape, layer.out_shape
            continue
        *synapses, neuron = layer.nodes
        for synapse, sources in zip(synapses, layer.inputs):
            node_in[synapse], node_out[synapse] = shape[sources[0]], layer.out_shape
        if layer.kind == "recurrent":  # the recurrent synapse, last before the neuron
            node_in[synapses[-1]] = node_out[synapses[-1]] = layer.out_shape
        node_in[neuron] = node_out[neuron] = layer.out_shape
    nodes = {}
    for name, node in graph.nodes.items():
        kind = type(node).__name__
        if kind == "Input":
            nodes[name] = nir.Input(input_type={"input": np.array(in_shape)})
            continue
        if kind == "Output":
            nodes[name] = nir.Output(output_type={"output": np.array(shape[output])})
            continue
        fields = {}
        for field in dataclasses.fields(node):
            if not field.init or field.name in ("input_type", "output_type"):
                continue
            value = getattr(node, field.name)
            if hasattr(value, "detach"):
                value = value.detach().cpu().numpy()
            if kind in NEURONS and isinstance(value, np.ndarray) and value.size == 1:
                value = np.full(node_out[name], value.ravel()[0], dtype=value.dtype)
            fields[field.name] = value
        if kind == "Flatten":
            fields["input_type"] = {"input": np.array(node_in[name])}
        if kind == "Conv2d":
            fields["input_shape"] = tuple(int(v) for v in node_in[name][1:])
        nodes[name] = type(node)(**fields)
    return nir.NIRGraph(nodes=nodes, edges=[tuple(e) for e in graph.edges])
