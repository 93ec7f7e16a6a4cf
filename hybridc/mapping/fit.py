"""Will it fit: the mapping pass after lowering. Each spiking layer of every loihi stage, read
from the netx files the target wrote, is split into core-sized groups under every per-core
limit the system's chip defines; groups go onto cores in order (one group per core), and
each chip takes a run of them, the runs chosen so that the fewest input axons cross between
chips (`place`), or, where that crosses fewer, each chip takes the same share of every layer
(`place_in_stripes`: with tiles, a band of rows through the network). A build that cannot fit
is refused
with a MappingError naming the layer, the constraint, the figure against the limit and the
smallest shipped system that would hold it.

A group is a contiguous range of a layer's output neurons in one of two orders, all groups of
a layer the same size but the last: (C, H, W), a channel's rows at a time, or for a conv layer
(H, W, C), spatial tiles: every channel of a band of rows, as Lava lays out a conv. A conv
layer takes the order with fewer input axons a core among those within 2% of the fewest
cores (tiles read a few
rows of the input where a channel's band reads all its rows; and a spike of the layer before
reaches the one or two tiles below it instead of every channel's band). Per group, exactly: neurons; synapses (the
connections that land inside the input, padding excluded); synapse memory (weight bits x
stored weights: one per connection, or with conv weight sharing one kernel per output
channel the group holds). Bounded from above: input axons (the box of input channels x rows
x columns the group's outputs read; exact for a dense layer), output axons (a neuron's spike
once per core of the next layer it can reach) and extra synapses of a branching stage
(spread evenly over the neurons they end on, reading their whole source). Per layer, the
input axons whose source neuron (in the layer before it in its chain) sits on another chip:
what crosses between chips, counted on the same boxes.
"""

from dataclasses import dataclass, field
from math import ceil, prod

import numpy as np

from ..errors import MappingError
from ..netx.layout import pytorch_shape
from .layers import read_layers, read_synapses
from .systems import System, resolve, shipped_systems

# constraint -> (per-group figure, what the message calls it)
CONSTRAINTS = {
    "neurons_per_core": ("neurons", "neurons"),
    "synapses_per_core": ("synapses", "synapses"),
    "synapse_bits_per_core": ("synapse_bits", "bits of synapse memory"),
    "input_axons_per_core": ("input_axons", "input axons"),
    "output_axons_per_core": ("output_axons", "output axons"),
}
UNBOUNDED = 1 << 62
ORDERS = ("CHW", "HWC")  # a channel's rows at a time; spatial tiles (every channel of a band of rows)


def in_order(triple, order: str) -> tuple:
    """A (C, H, W)-ordered triple (a shape, a box) in the axis order `order`."""
    return tuple(triple) if order == "CHW" else (triple[1], triple[2], triple[0])


@dataclass
class Unit:
    """One layer with neurons, the extra synapses ending on it, and its split."""

    stage: str
    where: dict  # {"layer": i} or {"segment": k, "layer": j}
    layer: object  # mapping.layers.LoihiLayer
    extras: list = field(default_factory=list)  # LoihiLayers of extra synapses ending here
    next: "Unit" = None  # the layer it feeds in its chain (None: it leaves the chain)
    prev: "Unit" = None  # the layer feeding it in its chain (None: the chain's input)
    size: int = 0  # neurons per group
    groups: int = 0
    order: str = "CHW"  # the order the groups are runs of (ORDERS); HWC only for conv layers
    worst: dict = field(default_factory=dict)  # figure -> the largest value over its groups
    first_core: int = 0  # in a contiguous packing (what the refusal names)
    chip_of: object = None  # np.ndarray: the chip of each group, once placed
    core_of: object = None  # np.ndarray: the core of each group (chip x cores_per_chip + index on it)

    def name(self) -> str:
        seg = f"segment {self.where['segment']} " if "segment" in self.where else ""
        shape = "x".join(map(str, self.layer.shape))
        return f"stage `{self.stage}` {seg}layer {self.where['layer']} ({self.layer.kind} {shape})"


def read_units(stages, directory) -> list:
    """The layers with neurons of every loihi stage, in manifest order."""
    units = []
    for stage in stages:
        if stage.target != "loihi":
            continue
        if stage.segments:
            into = {}
            synapses = read_synapses(directory / stage.links["artifact"], stage.links["synapses"],
                                     UNBOUNDED, UNBOUNDED)
            for link, synapse in zip(stage.links["synapses"], synapses):
                into.setdefault((link["target"]["segment"], link["target"]["layer"]), []).append(synapse)
            for k, spec in enumerate(stage.segments):
                layers = read_layers(directory / spec["artifact"], pytorch_shape(spec["input_shape"]),
                                     UNBOUNDED, UNBOUNDED, input_neurons=False)
                units += _chain([Unit(stage.name, {"segment": k, "layer": j}, layer, into.get((k, j), []))
                                 for j, layer in enumerate(layers)])
        else:
            layers = read_layers(directory / stage.artifact, stage.inputs[0].pytorch_shape()[:-1],
                                 UNBOUNDED, UNBOUNDED)
            units += _chain([Unit(stage.name, {"layer": layer.index}, layer) for layer in layers])
    return units


def _chain(units) -> list:
    """The units with neurons, each told the next it feeds."""
    chain = [unit for unit in units if unit.layer.neurons]
    for a, b in zip(chain, chain[1:]):
        a.next, b.prev = b, a
    return chain


def _conv_geometry(layer):
    c_in, h_in, w_in = layer.in_shape[:3]
    c_out, h_out, w_out = layer.shape[:3]
    return c_in, h_in, w_in, c_out, h_out, w_out


def _taps(n_out, n_in, kernel, stride, padding, dilation) -> np.ndarray:
    """Kernel taps inside the input for each output position along one axis."""
    pos = np.arange(n_out)[:, None] * stride - padding + np.arange(kernel)[None, :] * dilation
    return ((pos >= 0) & (pos < n_in)).sum(1)


def _reach(lo, hi, n_in, kernel, stride, padding, dilation):
    """First and last input position (inclusive) read by outputs lo..hi along one axis."""
    first = np.maximum(lo * stride - padding, 0)
    last = np.minimum(hi * stride - padding + dilation * (kernel - 1), n_in - 1)
    return first, last


def _boxes(layer, starts, ends, order: str = "CHW"):
    """For each group [start, end) of a conv layer's outputs (flat indices in `order`), the box
    of its input it reads: ((first, last) channel, (first, last) row, (first, last) column),
    inclusive."""
    c_in, h_in, w_in, c_out, h_out, w_out = _conv_geometry(layer)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = layer.kernel, layer.stride, layer.padding, layer.dilation
    plane, per_group_in, out_per_group = h_out * w_out, c_in // layer.groups, c_out // layer.groups
    if order == "HWC":  # positions pa..pb, every channel of them unless the group is one position's
        pa, pb = starts // c_out, (ends - 1) // c_out
        ra, rb = pa // w_out, pb // w_out
        one_row, one_position = ra == rb, pa == pb
        ca, cb = np.where(one_row, pa % w_out, 0), np.where(one_row, pb % w_out, w_out - 1)
        first_c, last_c = np.where(one_position, starts % c_out, 0), np.where(one_position, (ends - 1) % c_out, c_out - 1)
        channels = (first_c // out_per_group * per_group_in, (last_c // out_per_group + 1) * per_group_in - 1)
        return channels, _reach(ra, rb, h_in, kh, sh, ph, dh), _reach(ca, cb, w_in, kw, sw, pw, dw)
    first_c, last_c = starts // plane, (ends - 1) // plane
    many = last_c > first_c
    pa, pb = starts % plane, (ends - 1) % plane
    ra, rb = np.where(many, 0, pa // w_out), np.where(many, h_out - 1, pb // w_out)
    one_row = (ra == rb) & ~many
    ca, cb = np.where(one_row, pa % w_out, 0), np.where(one_row, pb % w_out, w_out - 1)
    channels = (first_c // out_per_group * per_group_in, (last_c // out_per_group + 1) * per_group_in - 1)
    return channels, _reach(ra, rb, h_in, kh, sh, ph, dh), _reach(ca, cb, w_in, kw, sw, pw, dw)


def _size(box) -> np.ndarray:
    size = 1
    for first, last in box:
        size = size * np.maximum(last - first + 1, 0)
    return size


def _below(box, x, shape, integral=None) -> np.ndarray:
    """How many input positions of each box have a flat (C, H, W) index below x; with
    `integral` (a summed-volume table of weights, `_integral`), the sum of their weights."""
    (c0, c1), (r0, r1), (k0, k1) = box
    _, height, width = shape[:3]
    c, rest = x // (height * width), x % (height * width)
    r, k = rest // width, rest % width
    inside = (c >= c0) & (c <= c1)
    in_row = inside & (r >= r0) & (r <= r1)
    if integral is not None:
        whole = _box_sum(integral, c0, np.minimum(c, c1 + 1), r0, r1 + 1, k0, k1 + 1)
        cc = np.minimum(c, integral.shape[0] - 2)
        part = np.where(inside, _box_sum(integral, cc, cc + 1, r0, np.minimum(r, r1 + 1), k0, k1 + 1), 0.0)
        rr = np.minimum(r, integral.shape[1] - 2)
        row = np.where(in_row, _box_sum(integral, cc, cc + 1, rr, rr + 1, k0, np.minimum(k, k1 + 1)), 0.0)
        return whole + part + row
    rows, cols = np.maximum(r1 - r0 + 1, 0), np.maximum(k1 - k0 + 1, 0)
    whole = np.clip(np.minimum(c, c1 + 1) - c0, 0, None) * rows * cols
    part = np.clip(np.minimum(r, r1 + 1) - r0, 0, None) * cols
    part = part + np.where(in_row, np.clip(np.minimum(k, k1 + 1) - k0, 0, None), 0)
    return whole + np.where(inside, part, 0)


def group_figures(unit: Unit, size: int, chip, order: str = None) -> dict:
    """figure -> array over the layer's groups of `size` neurons in `order` (default: the unit's)."""
    layer, total, order = unit.layer, unit.layer.neurons, order or unit.order
    starts = np.arange(0, total, size, dtype=np.int64)
    ends = np.minimum(starts + size, total)
    n = ends - starts
    weight_bits = chip.get("weight_bits", 0)
    if layer.kind == "input":
        synapses, stored, axons = np.zeros_like(n), np.zeros_like(n), n.copy()
    elif layer.kind == "dense":
        fan_in = prod(layer.in_shape)
        feedback = total if layer.recurrent else 0  # a recurrent layer also reads its own spikes
        synapses = n * (fan_in * layer.copies + feedback)
        stored, axons = synapses, np.full_like(n, fan_in + feedback)
    else:
        c_in, h_in, w_in, c_out, h_out, w_out = _conv_geometry(layer)
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = layer.kernel, layer.stride, layer.padding, layer.dilation
        per_group_in = c_in // layer.groups
        plane = h_out * w_out
        fan = per_group_in * np.outer(_taps(h_out, h_in, kh, sh, ph, dh), _taps(w_out, w_in, kw, sw, pw, dw)).ravel()
        prefix = np.concatenate([[0], np.cumsum(fan, dtype=np.int64)])
        if order == "HWC":  # flat index = position x c_out + channel; every channel of a position has its fan
            padded = np.concatenate([fan, [0]]).astype(np.int64)

            def upto(x):
                return c_out * prefix[x // c_out] + (x % c_out) * padded[x // c_out]

            first, last = starts // c_out, (ends - 1) // c_out
            channels = np.where(last - first >= 2, c_out, np.where(
                last == first, (ends - 1) % c_out - starts % c_out + 1,
                np.minimum(c_out, c_out - starts % c_out + (ends - 1) % c_out + 1)))
        else:
            def upto(x):
                return (x // plane) * prefix[-1] + prefix[x % plane]

            channels = (ends - 1) // plane - starts // plane + 1
        synapses = upto(ends) - upto(starts)
        stored = channels * per_group_in * kh * kw if chip.get("conv_weight_sharing", False) else synapses
        axons = _size(_boxes(layer, starts, ends, order))
    for extra in unit.extras:  # spread evenly over the neurons they end on; the whole source read
        share = -(-extra.synapses * n // total)
        synapses, stored = synapses + share, stored + share
        axons = axons + prod(extra.in_shape)
    figures = {"neurons": n, "synapses": synapses, "input_axons": axons,
               "output_axons": n * _destinations(unit)}
    if weight_bits:
        figures["synapse_bits"] = stored * weight_bits
    return figures


def _destinations(unit: Unit) -> int:
    """Cores of the next layer one neuron's spike reaches (an upper bound for conv; 1 where the
    layer leaves its chain: to the stage output or another segment)."""
    nxt = unit.next
    if nxt is None:
        return 1
    if nxt.layer.kind != "conv":
        return nxt.groups
    c_in, h_in, w_in, c_out, h_out, w_out = _conv_geometry(nxt.layer)
    plane, fed = h_out * w_out, c_out // nxt.layer.groups
    rows = min(h_out, ceil(nxt.layer.dilation[0] * (nxt.layer.kernel[0] - 1) / nxt.layer.stride[0]) + 1)
    if nxt.order == "HWC":  # the output rows a spike lands in, every channel: a run of rows x w_out x c_out
        return min(ceil(rows * w_out * c_out / nxt.size) + 1, nxt.groups)
    if nxt.size >= plane:
        reach = ceil(fed * plane / nxt.size) + 1
    else:  # the rows of one channel a neuron's spike lands in, whole rows
        reach = fed * (ceil(rows * w_out / nxt.size) + 1)
    return min(reach, nxt.groups)


def _limits(chip) -> dict:
    return {c: chip.get(c) for c in CONSTRAINTS if chip.get(c) is not None}


def _over(unit, size, chip, limits, order=None):
    """(constraint, worst figure) of the first limit groups of `size` break, or None."""
    figures = group_figures(unit, size, chip, order)
    for constraint, limit in limits.items():
        worst = int(figures[CONSTRAINTS[constraint][0]].max())
        if worst > limit:
            return constraint, worst
    return None


TILE_SPARE = 0.02  # tiles may take this many more cores than a channel's rows (then the fewest axons win)


def split(unit: Unit, chip, spare: float = TILE_SPARE) -> None:
    """Choose the order and the largest group size under which every group meets every limit:
    for a conv layer the order with fewer input axons a group among those needing at most
    `spare` more groups than the fewest (ties stay in (C, H, W)); a MappingError if one neuron
    does not fit."""
    orders = ORDERS if unit.layer.kind == "conv" else ORDERS[:1]
    found, failure = [], None
    for order in orders:
        try:
            size = _largest_size(unit, chip, order)
        except _Unsplittable as exc:
            failure = failure or exc
            continue
        figures = group_figures(unit, size, chip, order)
        found.append((-(-unit.layer.neurons // size), int(figures["input_axons"].max()), ORDERS.index(order),
                      order, size, figures))
    if not found:
        raise failure
    fewest = min(groups for groups, *_ in found)
    near = [f for f in found if f[0] <= fewest * (1 + spare)]
    _, _, _, unit.order, unit.size, figures = min(near, key=lambda f: (f[1], f[0], f[2]))
    unit.groups = -(-unit.layer.neurons // unit.size)
    unit.worst = {name: int(values.max()) for name, values in figures.items()}


def _largest_size(unit: Unit, chip, order: str) -> int:
    """The largest group size (bisection, then whole conv channels or rows tried) under which
    every group in `order` meets every limit; _Unsplittable if one neuron does not fit."""
    limits = _limits(chip)
    total = unit.layer.neurons
    cap = min(total, limits["neurons_per_core"])
    if _over(unit, cap, chip, limits, order) is None:
        return cap
    broken = _over(unit, 1, chip, limits, order)
    if broken is not None:
        raise _Unsplittable(unit, *broken)
    good, bad = 1, cap
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if _over(unit, mid, chip, limits, order) is None else (good, mid)
    size = good
    if unit.layer.kind == "conv":  # aligned to channels (or rows), a group holds fewer kernels (input rows)
        c, h, w = unit.layer.shape[:3]
        whole = h * w if order == "CHW" else w * c
        aligned = [whole * m for m in range(cap // whole, 0, -1)] + [whole // k for k in range(1, 65)]
        size = max([size] + [a for a in aligned if size < a <= cap
                             and _over(unit, a, chip, limits, order) is None][:1])
    return size


class _Unsplittable(Exception):
    def __init__(self, unit, constraint, figure):
        super().__init__(constraint)
        self.unit, self.constraint, self.figure = unit, constraint, figure


def layout(units, chip, spare: float = TILE_SPARE) -> None:
    """Split every unit for `chip`, each chain from its end (output axons need the next split)."""
    for unit in reversed(units):
        split(unit, chip, spare)


def cores_needed(units) -> int:
    return sum(unit.groups for unit in units)


def _holds(system: System, units_for) -> bool:
    try:
        units = units_for(system.chip)
    except _Unsplittable:
        return False
    return cores_needed(units) <= system.cores


def _smallest(units_for, chosen: System) -> str:
    default = resolve().name  # among systems of as many cores, the default first
    for system in sorted(shipped_systems().values(), key=lambda s: (s.cores, s.name != default)):
        if system.name != chosen.name and _holds(system, units_for):
            return (f"The smallest shipped system that holds it: {system.name} ({system.chips:,} chip(s) of "
                    f"{system.chip.name}, {system.cores:,} cores).")
    return "No shipped system holds it."


def _figure_note(chip, constraint) -> str:
    figure = chip.figures[constraint]
    return f"{constraint} of {chip.name}, {figure.kind}: {figure.source}"


def map_stages(stages, directory, system=None) -> dict:
    """The manifest's `mapping` for the loihi stages of a build in `directory` (None when the
    build has none), or a MappingError when they do not fit `system` (a name, file or System)."""
    system = resolve(system)
    if not any(stage.target == "loihi" for stage in stages):
        return None
    cache = {}

    def units_for(chip, spare=TILE_SPARE):
        """The units split for `chip`; spare 0: the fewest cores, whatever the axons."""
        key = (chip.name, spare)
        if key not in cache:
            units = read_units(stages, directory)
            try:
                layout(units, chip, spare)
            except _Unsplittable as exc:
                cache[key] = exc
            else:
                cache[key] = units
        if isinstance(cache[key], _Unsplittable):
            raise cache[key]
        return cache[key]

    def fewest_cores(chip):
        return units_for(chip, 0.0)

    chip = system.chip
    try:
        units = units_for(chip)
    except _Unsplittable as exc:
        what = CONSTRAINTS[exc.constraint][1]
        raise MappingError(
            f"The build does not fit {system.name}: {exc.unit.name()} cannot be split small enough. One neuron "
            f"needs {exc.figure:,} {what}, over the {chip.get(exc.constraint):,} a core allows "
            f"({_figure_note(chip, exc.constraint)}). hybridc splits a layer by its output neurons only, so no "
            f"number of {chip.name} chips holds it. {_smallest(fewest_cores, system)} Or change the "
            "layer (fewer inputs per neuron), or pass a system file with better figures (--system FILE)."
        ) from None
    packed = pack(units, chip)
    core = int(packed[-1]) + 1 if len(packed) else 0
    if core > system.cores:  # tiles' spare cores do not fit: the fewest cores instead
        units = fewest_cores(chip)
        packed = pack(units, chip)
        core = int(packed[-1]) + 1 if len(packed) else 0
    position = 0
    for unit in units:
        unit.first_core = int(packed[position]) if unit.groups else 0
        position += unit.groups
    if core > system.cores:
        first = next(u for u in units if u.first_core + u.groups > system.cores)
        chips = -(-core // chip.get("cores_per_chip"))
        raise MappingError(
            f"The build does not fit {system.name} ({system.chips:,} chip(s) of {chip.name}, {system.cores:,} "
            f"cores): it needs {core:,} cores, against the {system.cores:,} of the system (cores_per_chip "
            f"{chip.get('cores_per_chip'):,} x {system.chips:,} chip(s)). "
            f"{first.name()} is the first layer past the last core: it needs cores {first.first_core:,} to "
            f"{first.first_core + first.groups - 1:,} ({first.groups:,} groups of up to {first.size:,} neurons, "
            f"{first.layer.neurons:,} neurons in all). {chips:,} chips of {chip.name} would hold it. "
            f"{_smallest(fewest_cores, system)} Pass --system NAME|FILE."
        )
    place(units, chip.get("cores_per_chip"), system.chips, packed)
    if len(packed) and packed[-1] == len(packed) - 1:  # one group a core: stripes may cross less
        in_order_placement = [(unit.chip_of, unit.core_of) for unit in units]
        crossed = sum(crossing(unit) for unit in units)
        if not crossed or not place_in_stripes(units, chip.get("cores_per_chip"), system.chips) \
                or sum(crossing(unit) for unit in units) >= crossed:
            for unit, (chip_of, core_of) in zip(units, in_order_placement):
                unit.chip_of, unit.core_of = chip_of, core_of
    return _record(units, system)


def _reader(unit: Unit):
    """below(x): for each group of the unit, how many neurons of the layer before it in its
    chain with a flat index below x it reads (None where that layer is not its whole input)."""
    source = unit.prev
    if source is None or prod(unit.layer.in_shape) != source.layer.neurons:
        return None
    starts = np.arange(0, unit.layer.neurons, unit.size, dtype=np.int64)
    if unit.layer.kind == "conv":  # the box in the order the source's neurons are numbered in
        box = in_order(_boxes(unit.layer, starts, np.minimum(starts + unit.size, unit.layer.neurons), unit.order),
                       source.order)
        return lambda x: _below(box, np.int64(x), in_order(unit.layer.in_shape[:3], source.order))
    return lambda x: np.full(len(starts), x, dtype=np.int64)  # a dense layer reads all of its input


MAX_PLACEMENT_WORK = 1 << 18  # groups x chips tried; beyond it, the contiguous packing stands


def pack(units, chip) -> np.ndarray:
    """The core of each group, in order (0, 1, ... counting cores, not yet placed on chips).
    A group has a core of its own, unless the chip lets layers share cores
    (`layers_share_cores`): then it joins the core before it when that core holds no group
    of its layer and every limit holds for the sum of the groups on it."""
    total = sum(unit.groups for unit in units)
    if not chip.get("layers_share_cores", False):
        return np.arange(total, dtype=np.int64)
    limits = _limits(chip)
    core_of, core, sums, held, position = np.empty(total, dtype=np.int64), -1, {}, set(), 0
    for unit in units:
        figures = group_figures(unit, unit.size, chip)
        for g in range(unit.groups):
            values = {c: int(figures[CONSTRAINTS[c][0]][g]) for c in limits}
            if core >= 0 and id(unit) not in held and all(sums[c] + values[c] <= limits[c] for c in limits):
                sums = {c: sums[c] + values[c] for c in limits}
            else:
                core, sums, held = core + 1, values, set()
            held.add(id(unit))
            core_of[position] = core
            position += 1
    return core_of


def place(units, per_chip: int, chips: int, packed=None) -> None:
    """Cores (`packed`: the core of each group in order; by default one core a group) onto
    chips, in order, each chip a run of at most `per_chip` cores: the runs (found by dynamic
    programming over where each chip ends) that minimise the input axons crossing chips,
    using at most `chips` chips; among equal costs the fullest leading chips, so without a
    better cut it is the contiguous packing. Exact for this in-order placement: a group's
    crossing axons depend only on which earlier cores share its chip."""
    groups = sum(unit.groups for unit in units)
    packed = np.arange(groups, dtype=np.int64) if packed is None else np.asarray(packed)
    total = int(packed[-1]) + 1 if groups else 0
    needed = -(-total // per_chip)
    most = min(chips, needed + 2)
    position, on_core = 0, [[] for _ in range(total)]
    for unit in units:
        unit.position, unit.cores_in_order = position, packed[position:position + unit.groups]
        for core in set(unit.cores_in_order.tolist()):
            on_core[core].append(unit)
        position += unit.groups
    if needed <= 1 or total * most > MAX_PLACEMENT_WORK:
        ends = list(range(per_chip, total, per_chip)) + [total]
    else:
        readers = {id(unit): _reader(unit) for unit in units}
        cost = np.full((most + 1, total + 1), np.inf)
        back = np.zeros((most + 1, total + 1), dtype=np.int64)
        cost[0, 0] = 0.0
        for i in range(total):
            window = min(total, i + per_chip) - i
            weights = np.zeros(window)
            for unit in {id(u): u for core in on_core[i:i + window] for u in core}.values():
                read = readers[id(unit)]
                if read is None:
                    continue
                source = unit.prev  # its neurons on cores before core i
                before = min(source.layer.neurons,
                             int(np.searchsorted(source.cores_in_order, i)) * source.size)
                cores = unit.cores_in_order
                inside = (cores >= i) & (cores < i + window)
                np.add.at(weights, cores[inside] - i, read(before)[inside])
            added = np.cumsum(weights)  # crossing axons of a chip holding cores i..j-1
            for k in range(1, most + 1):
                if not np.isfinite(cost[k - 1, i]):
                    continue
                candidate = cost[k - 1, i] + added
                current = cost[k, i + 1:i + 1 + window]
                better = candidate <= current  # ties: the later start, a fuller chip before it
                current[better] = candidate[better]
                back[k, i + 1:i + 1 + window][better] = i
        chosen = min(range(1, most + 1), key=lambda k: (cost[k, total], k))
        ends, j = [], total
        for k in range(chosen, 0, -1):
            ends.append(j)
            j = int(back[k, j])
        ends.reverse()
    chip_of, core_of, begin = np.empty(total, dtype=np.int64), np.empty(total, dtype=np.int64), 0
    for chip, end in enumerate(ends):
        chip_of[begin:end] = chip
        core_of[begin:end] = chip * per_chip + np.arange(end - begin)
        begin = end
    for unit in units:
        unit.chip_of = chip_of[unit.cores_in_order]
        unit.core_of = core_of[unit.cores_in_order]


def place_in_stripes(units, per_chip: int, chips: int) -> bool:
    """Each chip a stripe of every layer: chip c of n takes the groups of each layer from
    round(groups x c / n) to round(groups x (c + 1) / n), layer after layer on its cores. Spatial
    tiles make a stripe a band of rows, so a tile reads the layer before from its own chip
    except at the stripe's edges. n: the fewest chips whose stripes fit; False if none of the
    system's chips do. (The caller keeps the placement crossing fewer axons.)"""
    total = sum(unit.groups for unit in units)
    for count in range(max(2, -(-total // per_chip)), min(chips, -(-total // per_chip) + 2) + 1):
        bounds = [[round(unit.groups * c / count) for c in range(count + 1)] for unit in units]
        if max(sum(b[c + 1] - b[c] for b in bounds) for c in range(count)) > per_chip:
            continue
        cores = {unit_index: np.empty(unit.groups, dtype=np.int64) for unit_index, unit in enumerate(units)}
        for c in range(count):
            core = c * per_chip
            for unit_index, b in enumerate(bounds):
                cores[unit_index][b[c]:b[c + 1]] = np.arange(core, core + b[c + 1] - b[c])
                core += b[c + 1] - b[c]
        for unit_index, unit in enumerate(units):
            unit.core_of = cores[unit_index]
            unit.chip_of = unit.core_of // per_chip
        return True
    return False


def crossing(unit: Unit) -> int:
    """Input axons of the unit's groups whose source neuron sits on another chip: for each
    group, the distinct neurons of the layer before it in its chain that it reads (its input
    box) on chips other than its own. Along chains only; the stage input and a branching
    stage's extra synapses are not counted."""
    source = unit.prev
    if source is None or prod(unit.layer.in_shape) != source.layer.neurons:
        return 0
    return int(crossing_from(unit.layer, unit.size, unit.chip_of, source.size, source.chip_of,
                             order=unit.order, source_order=source.order, source_shape=source.layer.shape))


def crossing_from(layer, size: int, chip_of, source_size: int, source_chip_of, weights=None,
                  order: str = "CHW", source_order: str = "CHW", source_shape=None) -> float:
    """What a layer split into groups of `size` (group i on chip chip_of[i], runs in `order`)
    reads from the layer before it (groups of `source_size` on source_chip_of, runs in
    `source_order`) across chips: the input axons, or with `weights` (one value per source
    neuron, (C, H, W) order: spikes, say) the sum of the weights over them, each source neuron
    counted once per group that reads it. source_shape: the source layer's (C, H, W), needed
    for weights of a tiled source read by a dense layer (whose input is flat)."""
    chip_of, source_chip_of = np.asarray(chip_of), np.asarray(source_chip_of)
    starts = np.arange(0, layer.neurons, size, dtype=np.int64)
    sources = prod(layer.in_shape)
    if weights is not None:  # numbered as the source's groups number its neurons
        weights = np.asarray(weights, dtype=np.float64)
        if source_order == "HWC":
            weights = weights.reshape(tuple(source_shape or layer.in_shape)[:3]).transpose(1, 2, 0)
    if layer.kind == "conv":
        box = in_order(_boxes(layer, starts, np.minimum(starts + size, layer.neurons), order), source_order)
        shape = in_order(layer.in_shape[:3], source_order)
        integral = None if weights is None else _integral(weights.reshape(shape))

        def below(x):
            return _below(box, np.int64(x), shape, integral)
    else:  # a dense layer reads all of its input
        prefix = None if weights is None else np.concatenate([[0.0], np.cumsum(weights.reshape(-1))])

        def below(x):
            return np.full(len(starts), x if prefix is None else prefix[x])

    total = 0.0
    for chip in np.unique(source_chip_of):
        held = np.nonzero(source_chip_of == chip)[0]
        lo, hi = held[0] * source_size, min(sources, (held[-1] + 1) * source_size)
        total += float((below(hi) - below(lo))[chip_of != chip].sum())
    return total


def _integral(weights) -> np.ndarray:
    """A (C+1, H+1, W+1) summed-volume table: [c, r, k] is the sum over [:c, :r, :k]."""
    table = np.zeros(tuple(n + 1 for n in weights.shape))
    table[1:, 1:, 1:] = weights.cumsum(0).cumsum(1).cumsum(2)
    return table


def _box_sum(table, c0, c1, r0, r1, k0, k1):
    """Sum over channels [c0, c1), rows [r0, r1), columns [k0, k1) (empty where a bound is
    reversed)."""
    c1, r1, k1 = np.maximum(c1, c0), np.maximum(r1, r0), np.maximum(k1, k0)
    return (table[c1, r1, k1] - table[c0, r1, k1] - table[c1, r0, k1] - table[c1, r1, k0]
            + table[c0, r0, k1] + table[c0, r1, k0] + table[c1, r0, k0] - table[c0, r0, k0])


def _runs(cores, per_chip: int) -> list:
    """[first, last] of each run of consecutive cores on one chip."""
    runs = []
    for core in (int(c) for c in cores):
        if runs and runs[-1][1] == core - 1 and core % per_chip:
            runs[-1][1] = core
        else:
            runs.append([core, core])
    return runs


def _record(units, system: System) -> dict:
    limits = _limits(system.chip)
    layers, crossings, used_cores = [], 0, set()
    for unit in units:
        crossed = crossing(unit)
        crossings += crossed
        for core in unit.core_of:
            used_cores.add(int(core))
        ratios = {c: unit.worst[CONSTRAINTS[c][0]] / limit for c, limit in limits.items()}
        layers.append({
            "stage": unit.stage, **unit.where, "kind": unit.layer.kind, "shape": list(unit.layer.shape),
            "neurons": unit.layer.neurons, "synapses": unit.layer.synapses + sum(e.synapses for e in unit.extras),
            "groups": unit.groups, "neurons_per_group": unit.size, "order": unit.order,
            "cores": _runs(unit.core_of, system.chip.get("cores_per_chip")), "chips": sorted({int(c) for c in unit.chip_of}),
            "bound_by": max(ratios, key=ratios.get), "axons_from_other_chips": crossed,
            "per_core": {name: unit.worst[name] for name in ("neurons", "synapses", "synapse_bits", "input_axons",
                                                             "output_axons") if name in unit.worst},
        })
    cores_per_chip = system.chip.get("cores_per_chip")
    per_chip = {}
    for core in used_cores:
        per_chip[core // cores_per_chip] = per_chip.get(core // cores_per_chip, 0) + 1
    used = len(used_cores)
    neurons = sum(unit.layer.neurons for unit in units)
    capacity = used * system.chip.get("neurons_per_core")
    return {
        "system": system.describe(),
        "layers": layers,
        "utilisation": {
            "cores_used": used, "chips_used": len(per_chip),
            "cores_fraction": round(used / system.cores, 6), "axons_crossing_chips": crossings,
            "neurons": neurons, "neurons_fraction_of_used_cores": round(neurons / capacity, 6) if capacity else 0.0,
            "per_chip": [{"chip": chip, "cores": count} for chip, count in sorted(per_chip.items())],
        },
    }
