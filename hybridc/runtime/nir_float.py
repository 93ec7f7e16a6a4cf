"""A NIR graph's float semantics, simulated by hybridc: the second reference of an imported
graph (runtime/nir_reference.py), for chains and for graphs that split and join.

Each time step runs every node once, in topological order, so a join reads the values its
branches computed in the same step (nirtorch's executor, under Norse's `from_nir`, runs the
nodes depth first, so there a join reads the other branch's previous step). Each node
computes what Norse's `from_nir` (norse 1.1.0, `norse/torch/utils/import_nir.py`) builds for
it, with the same float32 operations in the same order, so on a chain the spikes equal
Norse's bit for bit (tests/test_nir_import.py checks the test chains and the shipped
examples/nir_import/front.nir):

    Linear, Affine, Conv2d   torch's linear / conv2d with the node's weight (and bias)
    SumPool2d                torch's lp_pool2d with norm 1 (Norse's LPPool2d: a sum)
    AvgPool2d                torch's avg_pool2d (Norse has none: that node is hybridc's alone)
    Flatten                  every axis but the batch (the only Flatten the importer takes)
    LIF      v += dt/tau (r I + v_leak - v)                       spike when v > v_threshold, v = 0
    CubaLIF  i += dt/tau_syn (v_leak - i + w_in I);  v += dt/tau_mem (r i + v_leak - v);  same spike
    IF       v += r I                                              same spike

where I is the sum of the node's inputs of this step. Norse's LIF ignores r and warns unless
it is 1 (what Norse writes); here r scales I as in NIR's ODE, which equals Norse at r = 1.
IF is Norse's `IAFCell`: the input is added whole, without dt (a discrete integrator), where
the importer follows NIR's ODE (v += r dt I, nir_import's docstring): the two agree when
r dt = 1 (a graph written with dt = 1), and otherwise the reference's figure shows the
difference, the question the figure is there to raise. Samples run one at a time, unbatched,
as Norse runs them: a batched matmul may sum in another order, and one rounding is enough to
move a spike that sits on its threshold.

Recurrence (N -> R -> N, nir_import's accepted cycle): R is run after N each step and N
adds R's value of the step before, R s[t-1], none at the first step. That is nirtorch's
executor under Norse (a source not yet computed this step is read from the last step's
cache) and snnTorch's RLeaky (`beta mem + input + recurrent(spk)`, spk of the step before).
"""

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UnsupportedLayerError
from ..nir_import import structure

__all__ = ["NODES", "simulate_graph"]

NODES = ("Input", "Output", "Linear", "Affine", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten", "CubaLIF", "LIF", "IF")


def _tensor(value):
    """A parameter as Norse reads it: float32, torch tensors as they are."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value.detach().float()
    return torch.as_tensor(np.asarray(value, dtype=np.float64)).float()


def _pair(value, default):
    if value is None:
        return (default, default)
    value = [int(v) for v in np.ravel(value.detach().cpu().numpy() if hasattr(value, "detach") else value)]
    return (value[0], value[0]) if len(value) == 1 else tuple(value[:2])


def _step(kind, node):
    """(initial state, step(I, state, dt) -> (value, state)) for one node, unbatched."""
    get = lambda field: _tensor(getattr(node, field, None))  # noqa: E731
    if kind in ("Linear", "Affine"):
        weight, bias = get("weight"), get("bias") if kind == "Affine" else None
        return None, lambda x, s, dt: (F.linear(x, weight, bias), s)
    if kind == "Conv2d":
        weight, bias = get("weight"), get("bias")
        geometry = dict(stride=_pair(node.stride, 1), padding=_pair(node.padding, 0),
                        dilation=_pair(node.dilation, 1), groups=int(np.ravel(node.groups)[0]))
        return None, lambda x, s, dt: (F.conv2d(x, weight, bias, **geometry), s)
    if kind in ("SumPool2d", "AvgPool2d"):
        kernel, stride = _pair(node.kernel_size, 1), _pair(node.stride, 1)
        if kind == "SumPool2d":
            return None, lambda x, s, dt: (F.lp_pool2d(x, 1, kernel, stride), s)
        padding = _pair(node.padding, 0)
        return None, lambda x, s, dt: (F.avg_pool2d(x, kernel, stride, padding), s)
    if kind == "Flatten":
        return None, lambda x, s, dt: (x.flatten(), s)
    threshold = get("v_threshold")
    r = get("r") if get("r") is not None else torch.tensor(1.0)
    leak = get("v_leak") if get("v_leak") is not None else torch.tensor(0.0)

    def fire(v):
        z = torch.gt(v - threshold, torch.as_tensor(0.0)).to(v.dtype)
        return z, (1 - z) * v + z * 0.0  # Norse's reset_value to v_reset = 0 (the importer takes no other)

    if kind == "IF":
        def if_step(x, v, dt):  # Norse's IAFCell: no dt
            return fire(v + r * x)
        return torch.tensor(0.0), if_step
    if kind == "LIF":
        rate = 1 / get("tau")

        def lif_step(x, v, dt):
            v = v + dt * rate * (r * x + leak - v)
            return fire(v)
        return leak.clone(), lif_step
    # CubaLIF: Norse's CubaLIF module, a LIBoxCell (tau_syn) then a LIFBoxCell (tau_mem)
    syn_rate, mem_rate, w_in = 1 / get("tau_syn"), 1 / get("tau_mem"), get("w_in")
    w_in = w_in if w_in is not None else torch.tensor(1.0)

    def cuba_step(x, state, dt):
        i, v = state
        i = i + dt * syn_rate * ((leak - i) + w_in * x)
        v = v + dt * mem_rate * (r * i + leak - v)
        z, v = fire(v)
        return z, (i, v)
    return (leak.clone(), leak.clone()), cuba_step


@torch.no_grad()
def simulate_graph(graph, x: torch.Tensor, dt: float) -> torch.Tensor:
    """The NIR graph's output for `x` (N, ..., T), time last, in float32, no delays: every
    node once a step, in topological order; the edges into a node summed (NIR's rule)."""
    order, pred, _, input_name, output_name, loops = structure(graph)
    steps = {}
    for name in order:
        kind = type(graph.nodes[name]).__name__
        if kind not in NODES:
            raise UnsupportedLayerError(f"NIR node `{name}` ({kind}): hybridc's float simulation of a NIR graph "
                                        f"runs {', '.join(NODES)} nodes only.")
        if kind not in ("Input", "Output"):
            steps[name] = _step(kind, graph.nodes[name])
    samples = []
    for sample in x.float():
        state = {name: initial for name, (initial, _) in steps.items()}
        outputs, before = [], {}
        for t in range(sample.shape[-1]):
            value = {input_name: sample[..., t]}
            for name in order:
                if name == input_name:
                    continue
                inputs = [value[p] for p in pred[name]]
                if loops.get(name) in before:  # the recurrent synapse's value of the step before
                    inputs.append(before[loops[name]])
                total = inputs[0]
                for term in inputs[1:]:
                    total = total + term
                if name == output_name:
                    value[name] = total
                    continue
                value[name], state[name] = steps[name][1](total, state[name], dt)
            outputs.append(value[output_name])
            before = value
        samples.append(torch.stack(outputs, dim=-1))
    return torch.stack(samples)
