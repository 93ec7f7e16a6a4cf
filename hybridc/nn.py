"""Modules a hybrid model is written with. Pure torch: importing this is cheap."""

import torch

from .errors import TimestepError


def _whole_number(value, what: str, high: int = None, why: str = "") -> int:
    """int(value) when it is in 1..high (or positive), else a TimestepError naming `what`."""
    if not 1 <= int(value) <= (high or int(value)):
        allowed = f"an integer in 1..{high}{why}" if high else "a positive integer"
        raise TimestepError(f"{what} must be {allowed}, got {value!r}.")
    return int(value)


class Accumulator(torch.nn.Module):
    """The bridge between the spiking and the dense half (Seekings et al. 2024).

    Sums spikes over non-overlapping windows of `interval` timesteps. With
    `fold=True` (the paper's design) the T/interval windows are folded into the
    feature axis, channel-major, so a conv ANN can consume them:
    (N, C, H, W, T) -> (N, C*T/I, H, W), channel c*(T/I)+k holds window k of c;
    (N, F, T) -> (N, F*T/I). With `fold=False` the window axis stays last:
    (..., T) -> (..., T/I). `interval=1, fold=False` is the identity: raw spikes.
    """

    def __init__(self, interval: int, fold: bool = True):
        super().__init__()
        self.interval = _whole_number(interval, "Accumulator interval")
        self.fold = bool(fold)

    def extra_repr(self) -> str:
        return f"interval={self.interval}, fold={self.fold}"

    def windows(self, timesteps: int) -> int:
        if timesteps % self.interval:
            raise TimestepError(
                f"The accumulator sums windows of I={self.interval} timesteps but its input has "
                f"T={timesteps} timesteps, and {timesteps} is not a multiple of {self.interval}. "
                f"Choose an interval that divides T (divisors of {timesteps}: "
                f"{[d for d in range(1, timesteps + 1) if timesteps % d == 0]}) or change T."
            )
        return timesteps // self.interval

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        *lead, timesteps = spikes.shape
        windows = self.windows(timesteps)
        counts = spikes.reshape(*lead, windows, self.interval).sum(-1)
        if not self.fold:
            return counts
        n, c, *spatial = lead
        # (N, C, *S, K) -> (N, C, K, *S) -> (N, C*K, *S): channel-major fold.
        order = [0, 1, counts.dim() - 1] + list(range(2, counts.dim() - 1))
        return counts.permute(*order).reshape(n, c * windows, *spatial)


class _RoundClamp(torch.autograd.Function):
    """clamp(round(x), 0, top) forward, identity backward: the straight-through estimator."""

    @staticmethod
    def forward(ctx, x, top):
        return torch.clamp(torch.round(x), 0, top)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class Encoder(torch.nn.Module):
    """The bridge from dense code back into a spiking stage (dense -> spiking edge).

    Loihi receives graded spikes: unsigned integers of `bits` bits. So that PyTorch
    computes what the chip will, the model says so here: the output is
    clamp(round(x), 0, 2**bits - 1) with time (or windows) on the last axis, each step
    repeated `hold` times along it (an ANN working on T/hold windows hands T steps to
    the SNN). The gradient passes straight through the rounding, so the model trains.
    """

    def __init__(self, bits: int = 8, hold: int = 1):
        super().__init__()
        self.bits = _whole_number(bits, "Encoder bits", high=24, why=" (Loihi's graded-spike payload)")
        self.hold = _whole_number(hold, "Encoder hold")

    def extra_repr(self) -> str:
        return f"bits={self.bits}, hold={self.hold}"

    @property
    def top(self) -> int:
        return (1 << self.bits) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.requires_grad:
            values = _RoundClamp.apply(x, self.top)
        else:  # plain operators: what torch.onnx writes into the dense stage
            values = torch.clamp(torch.round(x), 0, self.top)
        if self.hold == 1:
            return values
        return values.unsqueeze(-1).expand(*([-1] * values.dim()), self.hold).flatten(-2)


def start_at_rest(block, args=None):
    """Forward pre-hook: a slayer block with persistent state starts each call from rest (its
    neuron states, spike state and delay buffer zeroed), as each sample does on Loihi."""
    neuron = block.neuron
    for name, value in list(neuron.named_buffers(recurse=False)):
        if name.endswith("_state"):
            setattr(neuron, name, torch.zeros(1, dtype=value.dtype, device=value.device))
    if isinstance(getattr(block, "spike_state", None), torch.Tensor):
        block.spike_state = torch.zeros(1, dtype=block.spike_state.dtype, device=block.spike_state.device)
    if getattr(block, "delay_buffer", None) is not None:
        block.delay_buffer = None


class NIR(torch.nn.Module):
    """A NIR graph (a .nir path or an in-memory `nir.NIRGraph`) as a spiking block of a hybrid
    model: `self.front = hybridc.nn.NIR(graph, dt=1e-3)`, input (N, F, T) or (N, C, H, W, T),
    spikes out, time last. `dt` is the Euler step in the graph's time unit (seconds for
    graphs from Norse or snnTorch: 1e-3 is Norse's default; 1.0 for graphs hybridc wrote).

    The graph becomes lava-dl slayer cuba blocks (one per synapse -> neuron pair, and
    Flatten), held in `blocks` and run in graph order, so hybridc's tracer sees them as
    leaves and the loihi target lowers them like any slayer block. `sources` maps each block
    to the NIR nodes it came from; `graph` keeps the graph itself, the float original. Formulas,
    repairs and refusals: `hybridc.nir_import`.
    """

    def __init__(self, graph_or_path, dt: float = 1.0):
        super().__init__()
        from .nir_import import import_graph, load

        self.dt = float(dt)
        # the graph as loaded, in float: the original `compile --verify` compares the import with
        # (hybridc.runtime.nir_reference); the blocks below are its quantized copy
        self.graph = load(graph_or_path)
        self.input_shape, imported, self.input_name, self.output_name = import_graph(self.graph, self.dt)
        self.blocks = torch.nn.ModuleDict({key: block for key, block, _ in imported})
        self.sources = {key: layer.nodes for key, _, layer in imported}
        # per block: per synapse node, the values it sums; the value the block writes
        self.wiring = {key: (layer.inputs, layer.output) for key, _, layer in imported}
        # slayer blocks from input to output: each delays by one step, which the float graph does not
        self.depth = next(layer.depth for _, _, layer in imported if layer.output == self.output_name)
        for key, block, layer in imported:
            if layer.kind == "recurrent":  # slayer's Recurrent keeps state between calls; Loihi starts at rest
                block.register_forward_pre_hook(start_at_rest)

    def extra_repr(self) -> str:
        return f"dt={self.dt:g}, input_shape={self.input_shape}"

    def values(self, spikes: torch.Tensor) -> dict:
        """{NIR node name: its spikes} for the Input and every neuron and Flatten node."""
        values = {self.input_name: spikes}
        for key, block in self.blocks.items():
            inputs, output = self.wiring[key]
            terms = []
            for group in inputs:  # NIR sums the edges into a node: spike ADD
                term = values[group[0]]
                for name in group[1:]:
                    term = term + values[name]
                terms.append(term)
            # several synapse nodes into one neuron: one synapse over their inputs side by side
            values[output] = block(terms[0] if len(terms) == 1 else torch.cat(terms, dim=1))
        return values

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        return self.values(spikes)[self.output_name]
