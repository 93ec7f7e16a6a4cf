"""A hypothesis generator of random hybrid models: a chain of slayer blocks, an
accumulator, then random dense layers; and stage graphs around it: extra taps on
spiking layers (each with its own accumulator), a dense front end handing graded
spikes to the SNN through an Encoder (ANN first), and a second spiking stage after the
dense code (SNN -> ANN -> SNN -> ANN); and branching spiking stages: a layer's input is
the previous layer's spikes plus (SEW ADD) or concatenated with (cat) an earlier layer's
or the stage input's spikes; cuba chains of dense layers sometimes hold a Recurrent layer.
fused_specs draws models as users write them: a second input (frame, vector or spikes),
two outputs, attention heads (MultiheadAttention, TransformerEncoderLayer, SDPA).
Used by test_fuzz.py (fast profile in
`make test`, long profile in `make fuzz`)."""

from dataclasses import dataclass, field
from math import prod

import torch
from hypothesis import strategies as st
from lava.lib.dl import slayer

from hybridc.nn import Accumulator, Encoder


@dataclass
class Spec:
    """Everything needed to rebuild a generated model: printable, so a failing example
    can be pasted into a regression test."""

    timesteps: int
    interval: int
    fold: bool
    input_shape: tuple  # without batch and time
    neuron: dict
    spiking: list  # ("conv", out, k, stride, pad, groups) | ("pool", k) | ("flatten",) | ("dense", out) | ("output", out)
    #                | ("recurrent", out): slayer's cuba.Recurrent | ("delayed", out): cuba.Dense(delay=True)
    dense: list  # ("conv", out, k) | ("bn",) | ("relu",) | ("maxpool",) | ("avgpool",) | ("dropout",) | ("flatten",) | ("linear", out)
    weight_scale: float = 2.0
    seed: int = 0
    density: float = 0.3
    notes: list = field(default_factory=list)
    # slayer.block family: cuba, sigma_delta (graded input and spikes; ReLU added in build), rf, rf_iz
    family: str = "cuba"
    target: str = "loihi+jetson"  # test_fuzz.py runs every spec strategy once per target pair
    # stage graphs beyond one cut
    taps: list = field(default_factory=list)  # (spiking layer index, interval): extra cuts into the head
    front: tuple = None  # (bits, hold, gain): a dense per-window front end, then Encoder -> the SNN (cuba)
    second: tuple = None  # (bits, hold, gain, out, encoder): dense per window -> Encoder -> one more cuba layer
    # branching spiking stages: (kind, src, dst): spiking layer dst reads its input + (or cat with) the
    # output of layer src (-1: the stage input); kind "add" or "cat"
    branches: list = field(default_factory=list)



def _conv_out(size, k, s, p):
    return (size + 2 * p - k) // s + 1


@st.composite
def specs(draw):
    timesteps = draw(st.sampled_from([4, 6, 8, 9, 12]))
    divisors = [d for d in range(1, timesteps + 1) if timesteps % d == 0]
    # mostly valid intervals; sometimes one that does not divide T (must be refused)
    interval = draw(st.integers(2, 5)) if draw(st.integers(0, 7)) == 0 else draw(st.sampled_from(divisors))
    family = draw(st.sampled_from(["cuba", "cuba", "sigma_delta", "rf", "rf_iz"]))
    if family == "sigma_delta":
        neuron = {"threshold": draw(st.sampled_from([0.0, 0.02, 0.1, 0.125, 0.3, 0.5]))}
    elif family in ("rf", "rf_iz"):
        neuron = {"threshold": draw(st.sampled_from([0.1, 0.25, 0.5, 1.0])),
                  # slayer itself asserts period >= 4 when the block is built
                  "period": draw(st.sampled_from([4, 6.5, 8, 12, 20])),
                  "decay": draw(st.sampled_from([0.0, 0.02, 0.1, 0.3]))}
    else:
        neuron = {
            "threshold": draw(st.sampled_from([0.5, 0.75, 0.9, 1.0, 1.01, 1.25, 1.5, 2.0])),
            "current_decay": draw(st.sampled_from([0.0, 0.1, 0.25, 0.3, 0.5, 0.9, 1.0])),
            "voltage_decay": draw(st.sampled_from([0.0, 0.05, 0.25, 0.5, 0.75, 1.0])),
            "tau_grad": 0.01, "scale_grad": 1.0,
        }
    # netx runs resonate-and-fire layers as dense layers only (an RF conv must be refused)
    flat = draw(st.booleans()) if family not in ("rf", "rf_iz") or draw(st.integers(0, 5)) == 0 else True
    spiking, dense = [], []
    if flat:
        features = draw(st.integers(4, 40))
        input_shape = (features,)
        for _ in range(draw(st.integers(1, 3))):
            # a cuba chain sometimes holds a recurrent layer (netx's dense_rec) or learned delays (a DelayDense)
            pick = draw(st.integers(0, 5)) if family == "cuba" else 5
            kind = "recurrent" if pick == 0 else "delayed" if pick == 1 else "dense"
            spiking.append((kind, draw(st.integers(2, 32))))
        shape = (spiking[-1][1],)
    else:
        channels, side = draw(st.integers(1, 3)), draw(st.integers(6, 20))
        input_shape = (channels, side, side)
        c, s = channels, side
        for _ in range(draw(st.integers(1, 3))):
            kind = draw(st.sampled_from(["conv", "conv", "pool"]))
            if kind == "pool" and s >= 4:
                exact = [k for k in (2, 3) if s % k == 0]
                # mostly kernels that divide the size; sometimes an odd size, which slayer pads
                # at the bottom/right only and hybridc must refuse
                k = draw(st.sampled_from(exact)) if exact and draw(st.integers(0, 5)) else 2
                spiking.append(("pool", k))
                s = (s + s % k) // k
            else:
                k = draw(st.sampled_from([1, 3, 5])) if s >= 5 else 1
                stride = draw(st.sampled_from([1, 2]))
                pad = draw(st.integers(0, k // 2))
                groups = c if (c > 1 and draw(st.integers(0, 4)) == 0) else 1
                out = groups * draw(st.integers(1, 6)) if groups > 1 else draw(st.integers(2, 8))
                spiking.append(("conv", out, k, stride, pad, groups))
                c, s = out, _conv_out(s, k, stride, pad)
        shape = (c, s, s)
        if draw(st.integers(0, 3)) == 0:
            spiking.append(("flatten",))
            spiking.append(("dense", draw(st.integers(2, 24))))
            shape = (spiking[-1][1],)
    if family == "sigma_delta" and spiking[-1][0] == "dense" and draw(st.booleans()):
        spiking[-1] = ("output", spiking[-1][1])  # a Sigma layer: the decoded sum crosses the cut
    fold = True if len(shape) == 1 else draw(st.booleans())
    if len(shape) == 3 and fold:
        for _ in range(draw(st.integers(0, 3))):
            dense.append(draw(st.sampled_from([("conv", draw(st.integers(2, 8)), draw(st.sampled_from([1, 3]))),
                                               ("bn",), ("relu",), ("maxpool",), ("avgpool",)])))
    dense.append(("flatten",))
    for _ in range(draw(st.integers(0, 2))):
        dense.append(draw(st.sampled_from([("linear", draw(st.integers(2, 16))), ("relu",), ("dropout",)])))
    dense.append(("linear", draw(st.integers(2, 6))))
    spec = Spec(timesteps, interval, fold, input_shape, neuron, spiking, dense,
                weight_scale=draw(st.sampled_from([2.0, 3.0, 4.0, 6.0])), seed=draw(st.integers(0, 2**16)),
                density=draw(st.sampled_from([0.3, 0.5, 0.7])), family=family)
    holds = [d for d in divisors if d < timesteps] or [1]
    # an Encoder's graded spikes feed binary-spike (cuba) networks; the second spiking stage is cuba too
    if family == "cuba" and draw(st.integers(0, 3)) == 0:  # ANN first
        spec.front = (draw(st.sampled_from([2, 4, 8])), draw(st.sampled_from(holds)),
                      draw(st.sampled_from([1.0, 2.0, 4.0])))
    if len(spiking) >= 2 and draw(st.integers(0, 2)) == 0:  # several taps, intervals of their own
        for index in sorted(set(draw(st.lists(st.integers(0, len(spiking) - 2), min_size=1, max_size=2)))):
            spec.taps.append((index, draw(st.sampled_from(divisors))))
    if family == "cuba" and not spec.front and len(spiking) >= 2 and draw(st.integers(0, 2)) == 0:
        shapes = _shapes(input_shape, spiking)  # shapes[i + 1]: output of layer i; shapes[0]: the input
        for _ in range(draw(st.integers(1, 2))):
            dst = draw(st.integers(1, len(spiking) - 1))
            src = draw(st.integers(-1, dst - 1))
            here, there = shapes[dst], shapes[src + 1]
            if here == there and draw(st.integers(0, 2)):
                spec.branches.append(("add", src, dst))
            # a grouped conv must still divide its channels (torch itself refuses otherwise)
            elif here[1:] == there[1:] and spiking[dst][0] in ("conv", "dense", "recurrent", "delayed", "pool") and (
                    spiking[dst][0] != "conv" or there[0] % spiking[dst][5] == 0):
                spec.branches.append(("cat", src, dst))
        spec.branches = sorted(set(spec.branches), key=lambda b: (b[2], b[1]))[:1] if any(
            b[0] == "cat" for b in spec.branches) else sorted(set(spec.branches), key=lambda b: (b[2], b[1]))
    if family == "cuba" and interval in divisors and draw(st.integers(0, 3)) == 0:  # SNN -> ANN -> SNN -> ANN
        spec.fold = False
        spec.dense = [("flatten",), ("linear", draw(st.integers(2, 6)))]
        spec.second = (draw(st.sampled_from([2, 3, 4])), draw(st.sampled_from([1, 2])),
                       draw(st.sampled_from([1.0, 2.0, 3.0])), draw(st.integers(2, 6)),
                       draw(st.integers(0, 9)) > 0)  # sometimes no Encoder: must be refused
    return spec


def _shapes(input_shape, spiking) -> list:
    """The input shape, then each spiking layer's output shape (without batch and time)."""
    shapes = [tuple(input_shape)]
    for layer in spiking:
        shape = shapes[-1]
        if layer[0] == "conv":
            side = _conv_out(shape[1], layer[2], layer[3], layer[4])
            shapes.append((layer[1], side, side))
        elif layer[0] == "pool":
            side = (shape[1] + shape[1] % layer[1]) // layer[1]
            shapes.append((shape[0], side, side))
        elif layer[0] == "flatten":
            shapes.append((shape[0] * shape[1] * shape[2],))
        else:
            shapes.append((layer[1],))
    return shapes


def _per_window(shape):
    """A dense layer applied to each time step (or window) alone: the last axis is left alone."""
    if len(shape) == 3:
        return torch.nn.Conv3d(shape[0], shape[0], (3, 3, 1), padding=(1, 1, 0))
    return torch.nn.Conv1d(shape[0], shape[0], 1)


class Generated(torch.nn.Module):
    """front? -> spiking chain (with taps) -> accumulator -> [dense -> Encoder -> spiking -> accumulator]? -> head."""

    def __init__(self, front, encode, spiking, taps, accumulator, second, head, final, branches=()):
        super().__init__()
        self.branches = list(branches)
        self.front, self.encode = front, encode
        self.spiking = torch.nn.ModuleList(spiking)
        self.taps = torch.nn.ModuleDict(taps)
        self.accumulator = accumulator
        self.second = second  # None or ModuleList [dense, Encoder or Identity, spiking block, accumulator]
        self.head, self.final = head, final

    def forward(self, x):
        if self.front is not None:
            x = self.encode(torch.relu(self.front(x)) * self.gain)
        tapped, outputs, stage_input = [], [], x
        for i, block in enumerate(self.spiking):
            for kind, src, dst in self.branches:  # SEW ADD / concatenation with an earlier layer
                if dst == i:
                    other = stage_input if src < 0 else outputs[src]
                    x = x + other if kind == "add" else torch.cat([x, other], dim=1)
            x = block(x)
            outputs.append(x)
            if str(i) in self.taps:
                tapped.append(self.taps[str(i)](x).flatten(1))
        y = self.accumulator(x)
        if self.second is not None:
            dense, encode, block, accumulator = self.second
            y = accumulator(block(encode(torch.relu(dense(y)) * self.second_gain)))
        y = self.head(y)
        if self.final is not None:
            y = self.final(torch.cat([y.flatten(1), *tapped], dim=1))
        return y


def build(spec: Spec):
    """(model, example_input) for a spec. Dense layer sizes are inferred from shapes."""
    if isinstance(spec, NirSpec):
        return build_nir(spec)
    torch.manual_seed(spec.seed)
    blocks = getattr(slayer.block, spec.family)
    neuron = dict(spec.neuron)
    layers = []
    # Lava's Conv synapse wraps each step's input sum at 24 bits (+-32 activation units, see
    # docs/targets.md): smaller weights and averaging pools keep random models inside that range
    sigma_delta = spec.family == "sigma_delta"
    scale = spec.weight_scale / 4 if sigma_delta else spec.weight_scale
    if sigma_delta:
        neuron["activation"] = torch.nn.functional.relu
        layers.append(blocks.Input(neuron))  # netx's Delta encoder
    shape = spec.input_shape
    outputs = []
    for i, layer in enumerate(spec.spiking):
        for kind, src, dst in spec.branches:
            if dst == i and kind == "cat":  # the layer reads its input and the earlier tensor side by side
                other = spec.input_shape if src < 0 else outputs[src]
                shape = (shape[0] + other[0], *shape[1:])
        if layer[0] == "conv":
            _, out, k, stride, pad, groups = layer
            layers.append(blocks.Conv(neuron, shape[0], out, k, stride=stride, padding=pad,
                                      groups=groups, weight_scale=scale))
            side = _conv_out(shape[1], k, stride, pad)
            shape = (out, side, side)
        elif layer[0] == "pool":
            k = layer[1]
            layers.append(blocks.Pool(neuron, k, weight_scale=scale / k ** 2 if sigma_delta else scale))
            side = (shape[1] + shape[1] % k) // k  # slayer pads odd sizes by size % k
            shape = (shape[0], side, side)
        elif layer[0] == "flatten":
            layers.append(blocks.Flatten())
            shape = (shape[0] * shape[1] * shape[2],)
        elif layer[0] == "recurrent":  # writes persistent_state into `neuron`: later blocks keep state too
            layers.append(blocks.Recurrent(neuron, shape[0], layer[1], weight_scale=scale))
            shape = (layer[1],)
        elif layer[0] == "delayed":  # learned axonal delays, set as training would leave them (0 to 4 steps)
            block = blocks.Dense(neuron, shape[0], layer[1], weight_scale=scale, delay=True)
            block.delay.delay.data = torch.rand(layer[1], generator=torch.Generator().manual_seed(spec.seed + i)) * 5
            block.delay.init = True
            layers.append(block)
            shape = (layer[1],)
        elif layer[0] == "output":
            layers.append(blocks.Output(neuron, shape[0], layer[1], weight_scale=scale))
            shape = (layer[1],)
        else:
            layers.append(blocks.Dense(neuron, shape[0], layer[1], weight_scale=scale))
            shape = (layer[1],)
        outputs.append(shape)
    spiking, layers = layers, []
    snn_shape = shape
    accumulator = Accumulator(spec.interval, fold=spec.fold)
    windows = max(spec.timesteps // spec.interval, 1)
    shape = (shape[0] * windows, *shape[1:]) if spec.fold else (*shape, windows)
    second = None
    if spec.second:
        bits, hold, gain, out, with_encoder = spec.second
        block = (slayer.block.cuba.Conv(spec.neuron, snn_shape[0], out, 3, padding=1, weight_scale=1)
                 if len(snn_shape) == 3 else slayer.block.cuba.Dense(spec.neuron, snn_shape[0], out, weight_scale=1))
        steps = windows * hold
        second = torch.nn.ModuleList([_per_window(snn_shape), Encoder(bits, hold) if with_encoder else
                                      torch.nn.Identity(), block, Accumulator(steps)])
        shape = (out, *snn_shape[1:])
    for layer in spec.dense:
        kind = layer[0]
        if kind == "conv" and len(shape) == 3 and shape[1] >= layer[2]:
            layers.append(torch.nn.Conv2d(shape[0], layer[1], layer[2]))
            shape = (layer[1], shape[1] - layer[2] + 1, shape[2] - layer[2] + 1)
        elif kind == "bn" and len(shape) == 3:
            bn = torch.nn.BatchNorm2d(shape[0])
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            layers.append(bn)
        elif kind in ("maxpool", "avgpool") and len(shape) == 3 and shape[1] >= 2:
            layers.append(torch.nn.MaxPool2d(2) if kind == "maxpool" else torch.nn.AvgPool2d(2))
            shape = (shape[0], shape[1] // 2, shape[2] // 2)
        elif kind == "relu":
            layers.append(torch.nn.ReLU())
        elif kind == "dropout":
            layers.append(torch.nn.Dropout(0.3))
        elif kind == "flatten":
            layers.append(torch.nn.Flatten())
            shape = (int(torch.tensor(shape).prod()),)
        elif kind == "linear" and len(shape) == 1:
            layers.append(torch.nn.Linear(shape[0], layer[1]))
            shape = (layer[1],)
    offset = 1 if sigma_delta else 0  # spec.taps index spec.spiking; a sigma-delta chain starts with its Input
    taps = {str(i + offset): Accumulator(interval) for i, interval in spec.taps}
    front = encode = None
    g = torch.Generator().manual_seed(spec.seed + 1)
    if spec.front:
        bits, hold, _ = spec.front
        front, encode = _per_window(spec.input_shape), Encoder(bits, hold)
        x = torch.rand(1, *spec.input_shape, spec.timesteps // hold, generator=g) * 2
    elif spec.family == "sigma_delta":  # graded frames, in and beyond slayer's 8-bit input range
        x = torch.rand(1, *spec.input_shape, spec.timesteps, generator=g) * 5 * spec.density
    else:
        x = (torch.rand(1, *spec.input_shape, spec.timesteps, generator=g) < spec.density).float()
    final = torch.nn.LazyLinear(layers[-1].out_features) if taps and isinstance(layers[-1], torch.nn.Linear) else None
    if final is not None:
        layers[-1] = torch.nn.ReLU()
    model = Generated(front, encode, spiking, taps, accumulator, second, torch.nn.Sequential(*layers), final,
                      spec.branches).eval()
    model.gain = spec.front[2] if spec.front else 1.0
    model.second_gain = spec.second[2] if spec.second else 1.0
    try:
        with torch.no_grad():
            model(x)  # materialises the lazy layer
    except Exception:  # noqa: BLE001 - e.g. an interval that does not divide T: compile refuses it
        pass
    return model, x


# --- random NIR graphs, imported by hybridc.nn.NIR ---------------------------------------

# What a NIR spec may break on purpose; each must be refused with a hybridc.errors subclass
# (the structural ones are drawn into the graph, the others applied to its nodes in build_nir).
NIR_FAULTS = ("tau_below_dt", "v_leak", "v_reset", "bias", "per_neuron_threshold", "zero_threshold",
              "delay_node", "cycle", "dangling", "unequal_join", "odd_pool")


@dataclass
class NirSpec:
    """A random NIR graph, printable: its nodes as (name, NIR class, structure) and edges,
    the weights drawn from `seed` when it is built (build_nir), wrapped as
    hybridc.nn.NIR(graph, dt) -> Accumulator -> Flatten -> Linear. `fault`, if set, names
    what the graph breaks on purpose (NIR_FAULTS): such a spec must be refused."""

    timesteps: int
    interval: int
    dt: float
    input_shape: tuple  # without batch and time
    nodes: list  # (name, "Linear" | "Affine" | "Conv2d" | "SumPool2d" | "AvgPool2d" | "Flatten" | neuron, params)
    edges: list
    output: str  # the value the Output node reads
    classes: int = 3
    seed: int = 0
    density: float = 0.4
    fault: str = None
    target: str = "loihi+jetson"


class _Draft:
    """A NIR graph being drawn: nodes, edges, and per value (Input, neuron or Flatten node)
    its shape and its depth in synapse -> neuron pairs."""

    def __init__(self, input_shape):
        self.nodes, self.edges = [], []
        self.shape, self.depth = {"input": tuple(input_shape)}, {"input": 0}

    def node(self, kind, params, reads=()):
        name = f"{kind.lower()}{len(self.nodes)}"
        self.nodes.append((name, kind, params))
        self.edges += [(r, name) for r in reads]
        return name


def _nir_neuron(draw, dt, shape) -> tuple:
    kind = draw(st.sampled_from(["CubaLIF", "LIF", "IF"]))
    # threshold: q times the largest effective weight into the neuron (build_nir), so layers spike
    params = {"shape": tuple(shape), "q": draw(st.sampled_from([0.25, 0.5, 1.0, 2.0])),
              "r": draw(st.sampled_from([0.5, 1.0, 2.0])), "zero_d": draw(st.booleans())}
    if kind == "CubaLIF":
        params.update(tau_syn=dt * draw(st.sampled_from([1, 2, 4, 10])), tau_mem=dt * draw(st.sampled_from([1, 2, 5, 20])),
                      w_in=draw(st.sampled_from([1.0, 2.0])))
    elif kind == "LIF":
        params["tau"] = dt * draw(st.sampled_from([1, 2, 5, 10, 50]))
    return kind, params


def _nir_layer(draw, g, dt, groups, pool=False, out=None, same_size=False) -> str:
    """One synapse -> neuron pair reading `groups` (per synapse node, the values it sums; several
    synapse nodes: a join); returns the neuron's name. Spatial inputs get Conv2d or a pool."""
    first = g.shape[groups[0][0]]
    depth = g.depth[groups[0][0]]
    if len(first) == 1:
        out = out or draw(st.integers(2, 16))
        synapses = [g.node(draw(st.sampled_from(["Linear", "Affine"])), {"in": g.shape[grp[0]][0], "out": out}, grp)
                    for grp in groups]
        shape = (out,)
    else:
        c, h, w = first
        divisors = [k for k in (2, 3) if h % k == 0 and w % k == 0]
        pooled = pool or (divisors and len(groups) == 1 and not same_size and not draw(st.integers(0, 2)))
        if not pooled:
            k = 1 if h < 3 else draw(st.sampled_from([1, 3])) if same_size else draw(st.sampled_from([1, 2, 3]))
            stride = 1 if same_size else draw(st.sampled_from([1, 1, 2]))
            pad = k // 2 if same_size else draw(st.integers(0, k // 2))
            out = out or draw(st.integers(1, 4))
            synapses = [g.node("Conv2d", {"in": g.shape[grp[0]][0], "out": out, "k": k, "stride": stride,
                                          "pad": pad, "input_shape": (h, w)}, grp) for grp in groups]
            side = lambda n: (n + 2 * pad - k) // stride + 1  # noqa: E731
            shape = (out, side(h), side(w))
        else:  # an odd pool (on purpose): a kernel of 2 over an odd size, which Loihi cannot pool exactly
            k = 2 if pool else draw(st.sampled_from(divisors))
            synapses = [g.node(draw(st.sampled_from(["SumPool2d", "AvgPool2d"])), {"k": k}, groups[0])]
            shape = (c, h // k, w // k)
    neuron_kind, params = _nir_neuron(draw, dt, shape)
    name = g.node(neuron_kind, params, synapses)
    g.shape[name], g.depth[name] = shape, depth + 1
    return name


def _nir_flatten(g, value) -> str:
    name = g.node("Flatten", {"shape": g.shape[value]}, [value])
    g.shape[name], g.depth[name] = (prod(g.shape[value]),), g.depth[value]
    return name


@st.composite
def nir_specs(draw, fault="random"):
    """A random NIR graph the importer takes: a chain, or a trunk that splits into two equally
    long branches joined again (two synapse nodes into one neuron: a concatenation) or summed
    (a spike ADD into one synapse), then a tail; Linear/Affine on vectors, Conv2d and pools on
    (C, H, W), a Flatten between. About one in six breaks one rule (NIR_FAULTS), or `fault` names it."""
    timesteps = draw(st.sampled_from([8, 12, 16]))
    interval = draw(st.sampled_from([d for d in (2, 4) if timesteps % d == 0]))
    dt = draw(st.sampled_from([1e-3, 1e-3, 1.0]))
    if fault == "random":  # else the fault asked for (None: none)
        fault = draw(st.sampled_from(NIR_FAULTS)) if draw(st.integers(0, 5)) == 0 else None
    flat = fault != "odd_pool" and draw(st.booleans())
    side = draw(st.sampled_from([5, 7, 9])) if fault == "odd_pool" else draw(st.integers(4, 9))
    input_shape = (draw(st.integers(4, 24)),) if flat else (draw(st.integers(1, 3)), side, side)
    g = _Draft(input_shape)
    fork = fault == "unequal_join" or draw(st.booleans())
    value = "input"
    if fault == "odd_pool":
        value = _nir_layer(draw, g, dt, [[value]], pool=True)
    for _ in range(draw(st.integers(0 if fork or fault == "odd_pool" else 1, 2))):
        value = _nir_layer(draw, g, dt, [[value]])
    if fork:
        length = draw(st.integers(1, 2))
        merge = draw(st.sampled_from(["join", "add"]))
        ends = []
        for branch in range(2):
            end = value
            steps = length + (1 if fault == "unequal_join" and branch else 0)
            for step in range(steps):
                # an ADD sums values of one shape: both branches end in as many channels/features
                out = 3 + (len(input_shape) == 1) * 5 if merge == "add" and step == steps - 1 else None
                end = _nir_layer(draw, g, dt, [[end]], out=out, same_size=True)
            ends.append(end)
        groups = [ends] if merge == "add" else [[ends[0]], [ends[1]]]
        value = _nir_layer(draw, g, dt, groups, same_size=len(g.shape[ends[0]]) == 3 and merge == "join")
    for _ in range(draw(st.integers(0, 1))):
        value = _nir_layer(draw, g, dt, [[value]])
    if len(g.shape[value]) == 3 and draw(st.booleans()):
        value = _nir_layer(draw, g, dt, [[_nir_flatten(g, value)]])
    seed = draw(st.integers(0, 2**16))
    return NirSpec(timesteps, interval, dt, input_shape, g.nodes, g.edges, value, classes=draw(st.integers(2, 5)),
                   seed=seed, density=draw(st.sampled_from([0.4, 0.6])), fault=fault)


def _nir_node(kind, params, rng):
    """(its weight, or the pool's constant, for the neuron's threshold; the nir node) of one
    drafted synapse or Flatten node, weights drawn from `rng` with a positive shift so layers spike."""
    import nir
    import numpy as np

    if kind in ("Linear", "Affine"):
        weight = rng.normal(size=(params["out"], params["in"])) + rng.choice([0.5, 1.0])
        return weight, (nir.Linear(weight=weight) if kind == "Linear"
                        else nir.Affine(weight=weight, bias=np.zeros(params["out"])))
    if kind == "Conv2d":
        weight = rng.normal(size=(params["out"], params["in"], params["k"], params["k"])) + rng.choice([0.5, 1.0])
        return weight, nir.Conv2d(input_shape=params["input_shape"], weight=weight, stride=params["stride"],
                                  padding=params["pad"], dilation=1, groups=1, bias=np.zeros(params["out"]))
    if kind in ("SumPool2d", "AvgPool2d"):
        k = np.array([params["k"]] * 2)
        pool = getattr(nir, kind)(kernel_size=k, stride=k, padding=np.array([0, 0]))
        return np.array([1.0 if kind == "SumPool2d" else 1.0 / params["k"] ** 2]), pool
    if kind == "Flatten":
        return None, nir.Flatten(input_type={"input": np.array(params["shape"])}, start_dim=0, end_dim=-1)
    raise ValueError(kind)


def _nir_neuron_node(kind, params, top, dt):
    """A neuron node whose threshold is q times the largest effective weight into it (`top`:
    the synapses' largest |weight|), times its input factor (hybridc.nir_import's formulas)."""
    import nir
    import numpy as np

    p = params
    factor = {"CubaLIF": lambda: p.get("w_in", 1) * dt / p.get("tau_syn", 1) * p["r"] * dt / p.get("tau_mem", 1),
              "LIF": lambda: p["r"] * dt / p.get("tau", 1), "IF": lambda: p["r"] * dt}[kind]()
    values = {"r": p["r"], "v_threshold": p["q"] * top * factor, "v_reset": 0.0}
    if kind == "CubaLIF":
        values.update(tau_syn=p["tau_syn"], tau_mem=p["tau_mem"], w_in=p["w_in"], v_leak=0.0)
    elif kind == "LIF":
        values.update(tau=p["tau"], v_leak=0.0)
    values = {k: np.array(v) if p["zero_d"] else np.full(p["shape"], v) for k, v in values.items()}
    return getattr(nir, kind)(**values)


def build_nir(spec: NirSpec):
    """(model, example input) for a NirSpec: the graph (faults applied), hybridc.nn.NIR(graph,
    dt) -> Accumulator -> Flatten -> Linear head. hybridc.nn.NIR raises its refusals here."""
    import nir
    import numpy as np

    from hybridc.nn import NIR

    rng = np.random.default_rng(spec.seed)
    nodes, weights = {"input": nir.Input(input_type={"input": np.array(spec.input_shape)})}, {}
    pred = {}
    for a, b in spec.edges:
        pred.setdefault(b, []).append(a)
    for name, kind, params in spec.nodes:
        if kind in ("CubaLIF", "LIF", "IF"):
            top = max(float(np.abs(weights[s]).max()) for s in pred[name])
            nodes[name] = _nir_neuron_node(kind, params, top, spec.dt)
        else:
            weights[name], nodes[name] = _nir_node(kind, params, rng)
    edges = list(spec.edges) + [(spec.output, "output")]
    out_shape = next(params["shape"] for name, _, params in spec.nodes if name == spec.output)
    nodes["output"] = nir.Output(output_type={"output": np.array(out_shape)})
    _nir_fault(spec, nodes, edges)
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    torch.manual_seed(spec.seed)
    front = NIR(graph, dt=spec.dt)
    windows = spec.timesteps // spec.interval
    head = torch.nn.Linear(prod(out_shape) * windows, spec.classes)
    model = torch.nn.Sequential(front, Accumulator(spec.interval), torch.nn.Flatten(), head).eval()
    g = torch.Generator().manual_seed(spec.seed + 1)
    x = (torch.rand(1, *spec.input_shape, spec.timesteps, generator=g) < spec.density).float()
    return model, x


def _first(nodes, kinds):
    return next((name for name, node in nodes.items() if type(node).__name__ in kinds), None)


def _nir_fault(spec, nodes, edges):
    """Break the built graph the way spec.fault says (the structural faults are drawn in
    already); a fault with nothing to apply to (a tau in an IF-only graph) falls back to a
    Delay node before the output, which hybridc does not import either."""
    import nir
    import numpy as np

    fault = spec.fault
    neuron = _first(nodes, ("CubaLIF", "LIF", "IF"))
    leaky = _first(nodes, ("CubaLIF", "LIF"))
    biased = _first(nodes, ("Affine", "Conv2d"))
    shape = {name: params["shape"] for name, _, params in spec.nodes if "q" in params}  # neurons
    if fault == "tau_below_dt" and leaky:
        setattr(nodes[leaky], "tau_mem" if hasattr(nodes[leaky], "tau_mem") else "tau", np.array(spec.dt / 2))
    elif fault == "v_leak" and leaky:
        nodes[leaky].v_leak = np.array(0.1)
    elif fault == "v_reset":
        nodes[neuron].v_reset = np.array(-0.5)
    elif fault == "bias" and biased:
        nodes[biased].bias = np.asarray(nodes[biased].bias, dtype=float) + 0.5
    elif fault == "per_neuron_threshold" and prod(shape[neuron]) > 1:
        threshold = np.full(shape[neuron], float(np.ravel(nodes[neuron].v_threshold)[0]))
        threshold.flat[0] *= 2
        nodes[neuron].v_threshold = threshold
    elif fault == "zero_threshold":
        nodes[neuron].v_threshold = np.zeros_like(np.asarray(nodes[neuron].v_threshold, dtype=float))
    elif fault == "cycle":
        first_synapse = next(b for a, b in edges if a == "input")
        edges.append((spec.output, first_synapse))
    elif fault == "dangling":
        nodes["spare"] = nir.IF(r=np.array(1.0), v_threshold=np.array(1.0), v_reset=np.array(0.0))
        edges.append((spec.output, "spare"))
    elif fault not in (None, "unequal_join", "odd_pool"):  # delay_node, and the fallback
        nodes["delay"] = nir.Delay(delay=np.ones(1))
        edges.remove((spec.output, "output"))
        edges += [(spec.output, "delay"), ("delay", "output")]


# --- models as users write them: several inputs, several outputs, attention heads ----------

HEADS = ("mlp", "mha", "encoder", "sdpa")


@dataclass
class FusedSpec:
    """A spiking stage on events, optionally a second input (a frame through a CNN, a feature
    vector through an MLP, or spikes through a spiking stage of its own) fused before the head,
    a head (`mlp` on the folded counts; `mha`, `encoder`, `sdpa`: the windows as tokens through
    nn.MultiheadAttention, nn.TransformerEncoderLayer or F.scaled_dot_product_attention) and one
    or two outputs."""

    timesteps: int
    interval: int
    events: tuple  # ("dense", features) | ("conv", channels, side)
    width: int  # the spiking stage's output features
    side: tuple = None  # None | ("image", channels, side) | ("vector", features) | ("spikes", features)
    head: str = "mlp"
    outputs: int = 1
    neuron: dict = None
    seed: int = 0
    density: float = 0.3
    target: str = "loihi+jetson"


@st.composite
def fused_specs(draw, head=None):
    timesteps = draw(st.sampled_from([4, 6, 8]))
    events = draw(st.sampled_from([("dense", draw(st.integers(4, 24))),
                                   ("conv", draw(st.integers(1, 3)), draw(st.sampled_from([4, 6, 8])))]))
    # the first choice of a list is what hypothesis draws first: each head starts from another side input
    sides = [("spikes", draw(st.integers(3, 16))), ("image", draw(st.integers(1, 3)), draw(st.sampled_from([4, 6]))),
             ("vector", draw(st.integers(2, 12))), None]
    turn = HEADS.index(head) if head else 0
    targets = ["loihi+jetson", "loihi+jetson-int8", "loihi+cpu"]
    side = draw(st.sampled_from(sides[turn:] + sides[:turn]))
    neuron = {"threshold": draw(st.sampled_from([0.5, 1.0, 1.25])),
              "current_decay": draw(st.sampled_from([0.0, 0.25, 0.5])),
              "voltage_decay": draw(st.sampled_from([0.0, 0.25, 0.5])), "tau_grad": 0.01, "scale_grad": 1.0}
    return FusedSpec(timesteps, draw(st.sampled_from([d for d in (1, 2, 3, 4) if timesteps % d == 0])), events,
                     draw(st.sampled_from([4, 8, 12])), side, head or draw(st.sampled_from(HEADS)),
                     draw(st.sampled_from([2, 1])), neuron, draw(st.integers(0, 2**16)), draw(st.sampled_from([0.3, 0.5])),
                     draw(st.sampled_from(targets[turn % 3:] + targets[:turn % 3])))


class Fused(torch.nn.Module):
    """events -> spiking stage -> Accumulator -> head, with the side input fused before the
    output layer(s); Fused2 takes the side input as forward()'s second argument."""

    def __init__(self, spec: FusedSpec):
        super().__init__()
        cuba, p, windows = slayer.block.cuba, spec.neuron, spec.timesteps // spec.interval
        if spec.events[0] == "dense":
            blocks = [cuba.Dense(p, spec.events[1], spec.width, weight_scale=3)]
        else:
            _, channels, size = spec.events
            blocks = [cuba.Conv(p, channels, 4, 3, padding=1, stride=2, weight_scale=3), cuba.Flatten(),
                      cuba.Dense(p, 4 * (size // 2) ** 2, spec.width, weight_scale=3)]
        self.snn = torch.nn.Sequential(*blocks)
        self.tokens = spec.head != "mlp"
        self.acc = Accumulator(spec.interval, fold=not self.tokens)
        self.head = spec.head
        if self.tokens:
            d = 8
            self.embed = torch.nn.Linear(spec.width, d)
            self.pos = torch.nn.Parameter(torch.randn(1, windows, d) * 0.1)
            if spec.head == "mha":
                self.attn, self.norm = torch.nn.MultiheadAttention(d, 2, batch_first=True), torch.nn.LayerNorm(d)
            elif spec.head == "encoder":
                self.attn = torch.nn.TransformerEncoderLayer(d, 2, 16, dropout=0.0, batch_first=True,
                                                             activation="gelu")
            else:
                self.qkv = torch.nn.Linear(d, 3 * d)
        kind = spec.side[0] if spec.side else None
        if kind == "image":
            self.other = torch.nn.Sequential(torch.nn.Conv2d(spec.side[1], 3, 3, padding=1), torch.nn.ReLU(),
                                             torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten())
        elif kind == "vector":
            self.other = torch.nn.Sequential(torch.nn.Linear(spec.side[1], 8), torch.nn.ReLU())
        elif kind == "spikes":
            self.other = torch.nn.Sequential(cuba.Dense(p, spec.side[1], 6, weight_scale=3),
                                             Accumulator(spec.interval), torch.nn.Flatten())
        self.out = torch.nn.LazyLinear(4)
        self.out2 = torch.nn.LazyLinear(2) if spec.outputs == 2 else None

    def fused(self, events, other):
        counts = self.acc(self.snn(events))
        if not self.tokens:
            h = counts.flatten(1)
        else:
            tokens = self.embed(counts.permute(0, 2, 1)) + self.pos
            if self.head == "mha":
                attended, _ = self.attn(tokens, tokens, tokens, need_weights=False)
                tokens = self.norm(tokens + attended)
            elif self.head == "encoder":
                tokens = self.attn(tokens)
            else:
                q, k, v = self.qkv(tokens).chunk(3, dim=-1)
                tokens = tokens + torch.nn.functional.scaled_dot_product_attention(q, k, v)
            h = tokens.mean(1)
        if other is not None:
            h = torch.cat([h, self.other(other)], dim=1)
        y = self.out(h)
        return (y, self.out2(torch.relu(h))) if self.out2 is not None else y

    def forward(self, events):
        return self.fused(events, None)


class Fused2(Fused):
    def forward(self, events, other):
        return self.fused(events, other)


def build_fused(spec: FusedSpec):
    """(model, example input: one tensor or (events, side input)) for a FusedSpec."""
    torch.manual_seed(spec.seed)
    model = (Fused2 if spec.side else Fused)(spec).eval()
    g = torch.Generator().manual_seed(spec.seed + 1)
    shape = (spec.events[1],) if spec.events[0] == "dense" else (spec.events[1], spec.events[2], spec.events[2])
    events = (torch.rand(2, *shape, spec.timesteps, generator=g) < spec.density).float()
    x = events
    if spec.side:
        kind = spec.side[0]
        other = (torch.rand(2, spec.side[1], spec.side[2], spec.side[2], generator=g) if kind == "image"
                 else torch.randn(2, spec.side[1], generator=g) if kind == "vector"
                 else (torch.rand(2, spec.side[1], spec.timesteps, generator=g) < spec.density).float())
        x = (events, other)
    with torch.no_grad():
        model(*x) if isinstance(x, tuple) else model(x)  # materialises the lazy layers
    return model, x
