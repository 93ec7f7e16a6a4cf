"""The deployment manifest: what each device runs, in what order, on which tensors.

A dataclass tree serialised to `manifest.json` and checked against the JSON Schema
shipped beside this module (copied to docs/manifest.schema.json). Format 2 records
the stage graph: stages in a topological order and every edge between them (with
the conversion at the edge and what crosses the link). Format-1 builds (one spiking
stage, then one dense stage) are upgraded on load: their edges follow from the chain.
"""

import json
import re
from dataclasses import dataclass, field, fields
from functools import cache
from math import prod
from pathlib import Path
from typing import Optional

from .errors import ArtifactError

FORMAT = "hybridc-manifest/2"
FORMAT_V1 = "hybridc-manifest/1"
SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")


@dataclass
class TensorSpec:
    name: str
    shape: list  # without the batch axis
    dtype: str
    layout: str  # axis letters without batch: "WHCT" (netx), "CHWT"/"FT" (PyTorch), ...
    # graded values (sigma-delta): integer on the wire = value x graded["scale"]; inputs also
    # give the grid ("step", "range") the integers are rounded and clipped to
    graded: Optional[dict] = None
    node: Optional[str] = None  # the model's fx node whose value this is (the producer, for inputs)
    layer: Optional[int] = None  # loihi outputs: the netx layer tapped
    delay: Optional[int] = None  # loihi outputs: steps by which Lava lags PyTorch at this tap
    segment: Optional[int] = None  # loihi outputs of a branching stage: the segment holding `layer`

    def pytorch_shape(self) -> tuple:
        """The shape in PyTorch's layout: netx's (W, H, C, T) becomes (C, H, W, T)."""
        if self.layout == "WHCT":
            w, h, c, t = self.shape
            return (c, h, w, t)
        return tuple(self.shape)


@dataclass
class AccumulatorSpec:
    interval: int
    windows: int
    fold: bool


@dataclass
class WireSpec:
    """How one stage input travels over a link, chosen at compile time: raw spikes
    at 1 bit each, or the accumulator's counts at `bits` = ceil(log2(interval+1)) bits each,
    whichever is smaller. With "counts" the sender runs the accumulator and the stage's input
    (its ONNX input) is the counts tensor (spikes_shape without T, then `windows`).
    "values": graded (sigma-delta) spikes, sent as signed integers value x `scale` packed at
    `bits` bits; the sender sums them over windows of `interval` steps (1: sent as they are).
    "held": an Encoder's graded spikes (unsigned, `bits` bits), each value held `interval`
    steps: one step per window crosses and the receiver repeats it `interval` times."""
    format: str  # "spikes", "counts", "values" or "held"
    bits: int
    interval: int
    windows: int
    spikes_shape: list  # the spike tensor the producer emits, PyTorch layout, without batch
    scale: Optional[int] = None  # "values": the integer on the wire is value x scale

    @property
    def summed(self) -> bool:
        """Whether the sender sums windows, so window sums (not the spikes) cross and arrive."""
        return self.format == "counts" or self.format == "values" and self.interval > 1

    @property
    def shape(self) -> list:
        """What crosses the link, without batch: one step per window when the sender sums or
        the receiver repeats them."""
        windowed = self.summed or self.format == "held"
        return [*self.spikes_shape[:-1], self.windows] if windowed else list(self.spikes_shape)

    @property
    def bytes_per_inference(self) -> int:
        """Payload bytes of one sample on the link: every value at `bits` bits, packed."""
        values = 1
        for n in self.shape:
            values *= n
        return -(-values * self.bits // 8)


@dataclass
class Stage:
    name: str
    target: str
    artifact: str  # relative to the manifest
    sha256: str
    inputs: list
    outputs: list
    # loihi stages
    delay: Optional[int] = None
    layers: Optional[int] = None
    neurons: Optional[int] = None
    synapses: Optional[int] = None
    # jetson stages
    accumulator: Optional[AccumulatorSpec] = None
    opset: Optional[int] = None
    quantization: Optional[dict] = None  # jetson-int8 stages
    wire: Optional[dict] = None  # input name -> WireSpec, for inputs that arrive over a link as spikes/counts
    input_bits: Optional[int] = None  # loihi stages fed graded spikes (from an Encoder)
    # branching loihi stages (targets/loihi_graph.py): stock netx chains ("segments", the first is
    # `artifact`), each fed by the stage input or a layer of an earlier segment, and the extra
    # synapses ("links": netx layer groups in links["artifact"]) from a source into a layer's neurons
    segments: Optional[list] = None
    links: Optional[dict] = None
    # fx node -> the NIR nodes its slayer block came from, for blocks of hybridc.nn.NIR modules
    # (for inspection: a build names them without the graph); absent when the stage has none
    nir_nodes: Optional[dict] = None

    def files(self) -> list:
        """(file name, sha256) of every file the stage reads from the build directory."""
        files = [(self.artifact, self.sha256)]
        files += [(s["artifact"], s["sha256"]) for s in (self.segments or [])[1:]]
        if self.links:
            files.append((self.links["artifact"], self.links["sha256"]))
        return files

    def to_dict(self) -> dict:
        return _without_none(_plain(self))

    def input(self, name: str) -> TensorSpec:
        return next(t for t in self.inputs if t.name == name)

    def output(self, name: str) -> TensorSpec:
        return next(t for t in self.outputs if t.name == name)


@dataclass
class Conversion:
    """What happens to a tensor on an edge: nothing, an Accumulator (spiking -> dense) or an
    Encoder (dense -> spiking), and which side's artifact computes it."""

    kind: str  # "none" | "accumulator" | "encoder"
    runs_on: Optional[str] = None  # "producer" | "consumer"
    interval: Optional[int] = None
    windows: Optional[int] = None
    fold: Optional[bool] = None
    bits: Optional[int] = None
    hold: Optional[int] = None
    node: Optional[str] = None  # the fx node of the Accumulator/Encoder


@dataclass
class Edge:
    """One tensor from a producer (a stage's output, or the model input when stage is None)
    to a consumer (a stage's input, or the model output when stage is None)."""

    producer: dict  # {"stage": name | None, "tensor": output name}
    consumer: dict  # {"stage": name | None, "input": input name}
    conversion: Conversion
    shape: list  # what crosses the link, without batch (PyTorch layout)
    layout: str
    dtype: str
    bits_per_value: int
    bytes_per_inference: float


def layer_key(source: dict):
    """A branching stage's link end or segment input (`{"segment": k, "layer": j}`) as the
    (segment, layer) pair that names a layer; None for the stage input (no segment)."""
    return None if source.get("segment") is None else (source["segment"], source["layer"])


def payload_bytes(shape, bits: int) -> float:
    """Bytes per inference of a tensor of `shape` (no batch) packed at `bits` per value."""
    return prod(shape) * bits / 8


@cache
def _field_names(cls) -> tuple:
    return tuple(f.name for f in fields(cls))


def _plain(value):
    """dataclasses.asdict without its deep copies (the manifest holds only JSON values, and
    it is written at every compile)."""
    if hasattr(type(value), "__dataclass_fields__"):
        return {name: _plain(getattr(value, name)) for name in _field_names(type(value))}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _without_none(value):
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


@dataclass
class Source:
    path: Optional[str]
    sha256: Optional[str]
    # how the reference model was built, so `hybridc verify` can rebuild it
    entry: Optional[str] = None
    args: dict = field(default_factory=dict)
    weights: Optional[str] = None
    weights_sha256: Optional[str] = None


@dataclass
class Manifest:
    target: str
    timesteps: int
    source: Optional[Source]  # None when compiled from Python (no model file to rebuild from)
    stages: list
    hybridc_version: str
    format: str = FORMAT
    extra: dict = field(default_factory=dict)
    edges: list = field(default_factory=list)
    # the loihi stages on the cores and chips of a system (mapping/fit.py); None: no loihi stage
    mapping: Optional[dict] = None

    def to_dict(self) -> dict:
        data = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name not in ("stages", "edges")}
        if self.source is not None and self.source.path is None:
            data["source"] = None
        data["stages"] = [s.to_dict() for s in self.stages]
        data["edges"] = [{**_plain(e), "conversion": _without_none(_plain(e.conversion))} for e in self.edges]
        return {f.name: data[f.name] for f in fields(self)  # in field order, as in every manifest written
                if f.name != "mapping" or self.mapping is not None}

    def edges_into(self, stage: Optional[str]) -> list:
        """Edges whose consumer is `stage` (None: the model output)."""
        return [e for e in self.edges if e.consumer["stage"] == stage]

    def edges_from(self, stage: Optional[str]) -> list:
        return [e for e in self.edges if e.producer["stage"] == stage]

    def to_json(self) -> str:
        """Indented JSON laid out as json.dumps(indent=2) lays it out (floats below 1e-4 are
        written without an exponent). orjson: the standard library's indenting encoder is
        pure Python and cost a tenth of a small compile."""
        import orjson

        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n"

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    @classmethod
    def from_dict(cls, data: dict) -> "Manifest":
        if isinstance(data, dict) and data.get("format") == FORMAT_V1:
            data = upgrade_v1(data)
        validate(data)
        stages = []
        for s in data["stages"]:
            s = dict(s)
            s["inputs"] = [TensorSpec(**t) for t in s["inputs"]]
            s["outputs"] = [TensorSpec(**t) for t in s["outputs"]]
            if "accumulator" in s:
                s["accumulator"] = AccumulatorSpec(**s["accumulator"])
            if "wire" in s:
                s["wire"] = {name: WireSpec(**w) for name, w in s["wire"].items()}
            stages.append(Stage(**s))
        edges = [Edge(**{**e, "conversion": Conversion(**e["conversion"])}) for e in data["edges"]]
        return cls(target=data["target"], timesteps=data["timesteps"], source=Source(**data["source"]) if data["source"] else None,
                   stages=stages, hybridc_version=data["hybridc_version"], format=data["format"],
                   extra=data.get("extra", {}), edges=edges, mapping=data.get("mapping"))


def upgrade_v1(data: dict) -> dict:
    """A format-1 manifest (a chain of stages, one tensor between each) as format 2: the
    edges are the chain, the accumulator of a dense stage sits on the edge into it."""
    import copy

    data = copy.deepcopy(data)
    stages = data.get("stages")
    if not isinstance(stages, list) or not stages or not all(isinstance(s, dict) for s in stages):
        return data  # validate() names what is wrong
    edges = []
    try:
        previous = None  # (stage name, tensor spec)
        for stage in stages:
            spec = stage["inputs"][0]
            acc = stage.get("accumulator")
            if previous is None:
                bits = 1 if stage["target"] in ("loihi", "nir") else 32
                conversion = {"kind": "none"}
            elif acc:  # counts cross when the stage records that wire format (format 1 had none)
                wire = (stage.get("wire") or {}).get(spec["name"]) or {}
                counts = wire.get("format") == "counts"
                bits = wire["bits"] if counts else 1
                conversion = {"kind": "accumulator", "runs_on": "producer" if counts else "consumer", **acc}
            else:
                bits, conversion = 1 if spec["layout"].endswith("T") else 32, {"kind": "none"}
            shape = (TensorSpec(**spec).pytorch_shape())
            edges.append({"producer": {"stage": previous[0] if previous else None,
                                       "tensor": previous[1]["name"] if previous else "input"},
                          "consumer": {"stage": stage["name"], "input": spec["name"]},
                          "conversion": conversion, "shape": list(shape),
                          "layout": spec["layout"].replace("WHC", "CHW"), "dtype": spec["dtype"],
                          "bits_per_value": bits, "bytes_per_inference": payload_bytes(shape, bits)})
            if stage["target"] in ("loihi", "nir"):  # format 1 named a spiking output after its fx node
                stage["outputs"][0].setdefault("node", stage["outputs"][0]["name"])
            previous = (stage["name"], stage["outputs"][0])
        out = previous[1]
        edges.append({"producer": {"stage": previous[0], "tensor": out["name"]},
                      "consumer": {"stage": None, "input": "output"}, "conversion": {"kind": "none"},
                      "shape": out["shape"], "layout": out["layout"], "dtype": out["dtype"],
                      "bits_per_value": 32, "bytes_per_inference": payload_bytes(out["shape"], 32)})
    except (KeyError, IndexError, TypeError, ValueError):
        return data  # not a well-formed format-1 manifest: validate() reports it
    data["edges"] = edges
    data["format"] = FORMAT
    return data


def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


# Bounds JSON Schema cannot state: the elements of one tensor (a sample), checked in code.
MAX_TENSOR_ELEMENTS = 1 << 26


def _validator():
    """A draft 2020-12 validator whose `integer` is a Python int only: JSON Schema counts 2.0 as
    an integer, which would reach numpy as a float shape."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool))
    return jsonschema.validators.extend(base, type_checker=checker)(schema())


def _where(path) -> str:
    return "/".join(str(p) for p in path) or "(top level)"


def validate(data: dict) -> None:
    """Check a manifest read from a build directory, which may come from anyone: its format,
    the schema (with bounds on every string, shape and count), then what a schema cannot say."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ArtifactError(
            f"This manifest has format {found!r:.80}; this hybridc reads {FORMAT!r} and {FORMAT_V1!r}. "
            "Recompile the model with this version of hybridc."
        )
    from jsonschema.exceptions import best_match

    error = best_match(_validator().iter_errors(data))
    if error is not None:
        message = error.message if len(error.message) <= 200 else error.message[:200] + "..."
        raise ArtifactError(f"manifest.json is not valid at `{_where(error.absolute_path)}`: {message}. "
                            "The build is damaged or was not written by this hybridc; recompile the model.")
    _check_consistency(data)


def _check_consistency(data: dict) -> None:
    def refuse(where, what):
        raise ArtifactError(f"manifest.json is not valid at `{where}`: {what}. The build is damaged or was "
                            "not written by this hybridc; recompile the model.")

    for i, stage in enumerate(data["stages"]):  # Python's `$` lets one trailing newline through a pattern
        for key in ("name", "artifact"):
            if stage[key].endswith("\n"):
                refuse(f"stages/{i}/{key}", f"{stage[key]!r} ends in a newline")
    for kind in ("name", "artifact"):
        seen = set()
        for i, stage in enumerate(data["stages"]):
            if stage[kind] in seen:
                refuse(f"stages/{i}/{kind}", f"{stage[kind]!r} names two stages")
            seen.add(stage[kind])
    for i, stage in enumerate(data["stages"]):
        for side in ("inputs", "outputs"):
            for j, tensor in enumerate(stage[side]):
                where = f"stages/{i}/{side}/{j}"
                if len(tensor["layout"]) != len(tensor["shape"]):
                    refuse(f"{where}/layout", f"layout {tensor['layout']!r} has {len(tensor['layout'])} axes "
                                              f"but the shape {tensor['shape']} has {len(tensor['shape'])}")
                if len(set(tensor["layout"])) != len(tensor["layout"]):
                    refuse(f"{where}/layout", f"layout {tensor['layout']!r} repeats an axis")
                elements = 1
                for size in tensor["shape"]:
                    elements *= size
                if elements > MAX_TENSOR_ELEMENTS:
                    refuse(f"{where}/shape", f"shape {tensor['shape']} holds {elements:,} values per sample, "
                                             f"more than the {MAX_TENSOR_ELEMENTS:,} hybridc accepts")
    for i, stage in enumerate(data["stages"]):
        _check_branching(stage, f"stages/{i}", refuse)
        layers = {node for segment in stage.get("segments") or [] for node in segment.get("nodes", [])}
        for node, names in (stage.get("nir_nodes") or {}).items():  # a branching stage names its layers
            if layers and node not in layers:
                refuse(f"stages/{i}/nir_nodes", f"{node!r} is none of the stage's layers")
            if node.endswith("\n") or any(name.endswith("\n") for name in names):
                refuse(f"stages/{i}/nir_nodes/{node.strip()}", "a name ends in a newline")
    _check_edges(data, refuse)
    if "mapping" in data:
        _check_mapping(data, refuse)


# chip figures that are costs (used by `profile`), not limits: mapping/systems.py reads them from
# system files, the manifest records them, and both hold them to this range
COST_FIGURES = ("chip_crossing_spike_energy_pj", "chip_crossing_spike_time_ns")
MAX_COST = 1e12


def _check_mapping(data: dict, refuse) -> None:
    """The mapping must add up: layers of loihi stages, each on `groups` cores (runs of
    consecutive cores, one run a chip, on later chips in turn, within the system, no core held
    by two layers except the last core of the layer before where the chip lets layers share),
    the chips those cores are on, and a utilisation that follows."""
    import bisect

    mapping, system = data["mapping"], data["mapping"]["system"]
    per_chip = system["cores_per_chip"]
    if per_chip < 1 or system["chips"] < 1 or system["cores"] != per_chip * system["chips"]:
        refuse("mapping/system/cores", f"{system['cores']} is not cores_per_chip {per_chip} x {system['chips']} chips")
    loihi = {stage["name"] for stage in data["stages"] if stage["target"] == "loihi"}
    sharing = (system["figures"].get("layers_share_cores") or {}).get("value") is True
    for name in COST_FIGURES:  # read into profile's totals: a number in range, as a system file must give it
        value = (system["figures"].get(name) or {}).get("value", 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_COST:
            refuse(f"mapping/system/figures/{name}/value", f"must be a number from 0 to {MAX_COST:g}, not {value!r:.40}")
    taken, previous_last, counts = [], None, {}  # taken: sorted disjoint [first, last] of cores held
    for i, layer in enumerate(mapping["layers"]):
        where = f"mapping/layers/{i}"
        if layer["stage"] not in loihi:
            refuse(f"{where}/stage", f"names {layer['stage']!r}, which is not a loihi stage of the build")
        if layer["groups"] != -(-layer["neurons"] // max(layer["neurons_per_group"], 1)):
            refuse(f"{where}/groups", f"{layer['groups']} groups of {layer['neurons_per_group']} do not hold "
                                      f"{layer['neurons']} neurons")
        if layer.get("order", "CHW") != "CHW" and layer["kind"] != "conv":
            refuse(f"{where}/order", f"spatial tiles ({layer['order']}) are for conv layers; this one is {layer['kind']}")
        held, chips = 0, []
        for first, last in layer["cores"]:
            shared = sharing and not chips and first == previous_last  # the last core of the layer before
            if last < first or last >= system["cores"] or first // per_chip != last // per_chip \
                    or chips and first // per_chip <= chips[-1]:
                refuse(f"{where}/cores", f"run {first}..{last} is not a run of cores on one chip, on a later chip "
                                         f"than the run before, within the system's {system['cores']} cores")
            own = (first + shared, last)
            at = bisect.bisect(taken, [own[0], own[1]])
            if own[0] <= own[1] and (at and taken[at - 1][1] >= own[0] or at < len(taken) and taken[at][0] <= own[1]):
                refuse(f"{where}/cores", f"run {first}..{last} holds cores another layer holds"
                                         + (" (only the last core of the layer before may be shared)" if sharing else ""))
            if own[0] <= own[1]:
                taken.insert(at, [own[0], own[1]])
            held += last - first + 1
            previous_last = last
            chips.append(first // per_chip)
            counts[chips[-1]] = counts.get(chips[-1], 0) + last - first + 1 - shared
        if held != layer["groups"]:
            refuse(f"{where}/cores", f"the runs hold {held} cores, not one for each of {layer['groups']} groups")
        if layer["chips"] != chips:
            refuse(f"{where}/chips", f"chips {layer['chips']} are not those of its cores ({chips})")
    for stage in data["stages"]:
        mapped = sum(layer["neurons"] for layer in mapping["layers"] if layer["stage"] == stage["name"])
        if stage["name"] in loihi and stage.get("neurons") is not None and mapped != stage["neurons"]:
            refuse("mapping/layers", f"the layers of stage `{stage['name']}` hold {mapped} neurons; the stage has "
                                     f"{stage['neurons']}")
    use = mapping["utilisation"]
    if use["axons_crossing_chips"] != sum(layer["axons_from_other_chips"] for layer in mapping["layers"]):
        refuse("mapping/utilisation/axons_crossing_chips", "is not the sum of the layers' axons_from_other_chips")
    if use["cores_used"] != sum(counts.values()) or use["chips_used"] != len(counts) or use["per_chip"] != [
            {"chip": chip, "cores": n} for chip, n in sorted(counts.items())]:
        refuse("mapping/utilisation", f"{use['cores_used']} cores on {use['chips_used']} chips ({use['per_chip']}) "
                                      f"do not follow from the layers' cores")


def _check_branching(stage: dict, where: str, refuse) -> None:
    """A branching loihi stage's wiring must name existing layers, and a segment may only be
    fed by an earlier one (so the graph has no cycle and every reference resolves)."""
    segments, links = stage.get("segments"), stage.get("links")
    if segments is None and links is None:
        return
    if segments is None or links is None or segments[0]["artifact"] != stage["artifact"]:
        refuse(where, "a branching stage needs both `segments` (the first being its artifact) and `links`")

    def check(source, at, before=None):
        if "segment" not in source:
            return
        k, j = source["segment"], source["layer"]
        limit = len(segments) if before is None else before
        if k >= limit or j >= segments[k]["layers"]:
            refuse(at, f"{source} names no layer of {'an earlier' if before is not None else 'a'} segment")

    for k, segment in enumerate(segments):
        check(segment["input"], f"{where}/segments/{k}/input", before=k)
        if len(segment.get("nodes", [None] * segment["layers"])) != segment["layers"]:
            refuse(f"{where}/segments/{k}/nodes", f"names {len(segment['nodes'])} nodes for {segment['layers']} layers")
    for n, link in enumerate(links["synapses"]):
        check(link["source"], f"{where}/links/synapses/{n}/source")
        if "segment" not in link["target"]:
            refuse(f"{where}/links/synapses/{n}/target", "an extra synapse must end in a segment's layer")
        check(link["target"], f"{where}/links/synapses/{n}/target")
    for t, tensor in enumerate(stage["outputs"]):
        if "segment" not in tensor or "layer" not in tensor:
            refuse(f"{where}/outputs/{t}", "an output of a branching stage names its segment and layer")
        check({"segment": tensor["segment"], "layer": tensor["layer"]}, f"{where}/outputs/{t}")
    names = [s["artifact"] for s in segments] + [links["artifact"]]
    if len(set(names)) != len(names):
        refuse(f"{where}/segments", "two parts of the stage name the same file")


def _held_shape(shape: list, held) -> list:
    """What crosses for a tensor of `shape` (time last) under a "held" wire format: one step
    per window of `interval` steps (None: a shape no edge has, when the steps do not fill the
    windows exactly)."""
    if not held:
        return shape
    if held.get("windows", 0) * held.get("interval", 0) != shape[-1]:
        return None
    return [*shape[:-1], held["windows"]]


def _check_edges(data: dict, refuse) -> None:
    """Edges must join what the stages declare: a stage that exists and one of its outputs
    (or the model input), a stage's input (or the model output), the shape the stage specs
    give that tensor, bytes that follow from shape and bits, and stages listed in an order
    where every producer runs before its consumers (so no cycle). Every stage input is fed by
    one tensor (several edges only where each applies its own accumulator to it), no edge is
    listed twice, and the model outputs are `output`, `output_1`, ... each fed by one edge:
    what the runtime relies on."""
    stages = {stage["name"]: (i, stage) for i, stage in enumerate(data["stages"])}

    def spec(where, side, end, key):
        """(run index, TensorSpec) of the tensor an edge end names; refuses a missing one."""
        if end["stage"] not in stages:
            refuse(f"{where}/stage", f"names stage {end['stage']!r}, which is not in `stages`")
        index, stage = stages[end["stage"]]
        found = next((t for t in stage[side] if t["name"] == end[key]), None)
        if found is None:
            refuse(f"{where}/{key}", f"stage `{end['stage']}` has no {side[:-1]} {end[key]!r} "
                                     f"(its {side}: {', '.join(t['name'] for t in stage[side])})")
        return index, TensorSpec(**found)

    fed, outputs, order, seen, shared = {}, [], [], [], {}
    for i, edge in enumerate(data["edges"]):
        where, producer, consumer = f"edges/{i}", edge["producer"], edge["consumer"]
        if edge in seen:
            refuse(where, f"repeats edge {seen.index(edge)}; each edge is listed once")
        seen.append(edge)
        conversion, shape = edge["conversion"], list(edge["shape"])
        if len(edge["layout"]) != len(shape):
            refuse(f"{where}/layout", f"layout {edge['layout']!r} does not have one letter per axis of {shape}")
        source = target = None
        if producer["stage"] is None:
            if not re.fullmatch(r"input(_[1-9][0-9]{0,2})?", producer["tensor"]):
                refuse(f"{where}/producer/tensor", f"an edge from the model inputs reads tensor `input` (or "
                                                   f"`input_1`, `input_2`... after it), not {producer['tensor']!r}")
        else:
            source = spec(f"{where}/producer", "outputs", producer, "tensor")
        if consumer["stage"] is None:
            if not re.fullmatch(r"output(_[1-9][0-9]{0,2})?", consumer["input"]):
                refuse(f"{where}/consumer/input", f"an edge to the model outputs feeds `output` (or `output_1`, "
                                                  f"`output_2`... after it), not {consumer['input']!r}")
            if consumer["input"] in outputs:
                refuse(f"{where}/consumer/input", f"model output `{consumer['input']}` is fed by an earlier edge "
                                                  "too; each output has one edge")
            outputs.append(consumer["input"])
        else:
            target = spec(f"{where}/consumer", "inputs", consumer, "input")
            key = (consumer["stage"], consumer["input"])
            if fed.setdefault(key, producer) != producer:
                refuse(f"{where}/consumer", f"input `{consumer['input']}` of stage `{consumer['stage']}` is fed "
                                            f"{fed[key]} by an earlier edge; each stage input reads one tensor")
            shared.setdefault(key, []).append((where, conversion))
        # an Encoder's held graded spikes cross one step per window; the receiver repeats them
        held = target and (stages[consumer["stage"]][1].get("wire") or {}).get(consumer["input"])
        held = held if isinstance(held, dict) and held.get("format") == "held" else None
        arriving = target and _held_shape(list(target[1].pytorch_shape()), held)
        if target is not None and arriving != shape:
            refuse(f"{where}/shape", f"shape {shape} differs from {arriving}, the shape of input "
                                     f"`{consumer['input']}` of stage `{consumer['stage']}`"
                                     + (" as its `held` wire format sends it" if held else ""))
        if source is not None:
            produced = list(source[1].pytorch_shape())
            counts = conversion["kind"] == "accumulator" and conversion.get("runs_on") == "producer"
            expected = [*produced[:-1], conversion["windows"]] if counts else _held_shape(produced, held)
            if expected != shape or counts and conversion["windows"] * conversion["interval"] != produced[-1]:
                refuse(f"{where}/shape", f"shape {shape} does not follow from output `{producer['tensor']}` of "
                                         f"stage `{producer['stage']}` ({produced}) and the edge's conversion")
        exact = payload_bytes(shape, edge["bits_per_value"])
        if edge["bytes_per_inference"] not in (exact, -(-exact // 1)):
            refuse(f"{where}/bytes_per_inference", f"{edge['bytes_per_inference']} bytes, but {shape} at "
                                                   f"{edge['bits_per_value']} bits per value is {exact:g} bytes")
        if source is not None and target is not None:
            order.append((where, producer["stage"], consumer["stage"], source[0], target[0]))
    for key, into in shared.items():  # several edges into one input: each its own accumulator of it
        nodes = [conversion.get("node") for _, conversion in into]
        for where, conversion in into[1:] if len(into) > 1 else ():
            if any(c["kind"] != "accumulator" for _, c in into) or len(set(nodes)) != len(nodes):
                refuse(where, f"is one of {len(into)} edges into input `{key[1]}` of stage `{key[0]}`; several edges "
                              "may feed one input only as accumulators of it, each its own (conversion.node)")
    for where, before, after, i, j in order:
        if i >= j:
            cycle = before == after or _reaches(order, after, before)
            refuse(where, f"stage `{before}` feeds stage `{after}`, "
                          + ("which feeds it back: the edges form a cycle, and no stage order can run them"
                             if cycle else "which is listed before it; stages are listed in the order they run"))
    for name, (i, stage) in stages.items():
        for j, tensor in enumerate(stage["inputs"]):
            if (name, tensor["name"]) not in fed:
                refuse(f"stages/{i}/inputs/{j}", f"no edge feeds input `{tensor['name']}` of stage `{name}`")
    if not outputs:
        refuse("edges", "no edge goes to the model output (consumer stage null); a build has at least one")
    expected = ["output"] + [f"output_{k}" for k in range(1, len(outputs))]
    if sorted(outputs, key=lambda name: int(name.rpartition("_")[2]) if "_" in name else 0) != expected:
        refuse("edges", f"the model outputs are {', '.join(sorted(outputs))}; {len(outputs)} output(s) are named "
                        f"{', '.join(expected)}")


def _reaches(order, start: str, goal: str) -> bool:
    """Whether stage `goal` is downstream of stage `start` along the edges between stages."""
    seen, frontier = set(), [start]
    while frontier:
        stage = frontier.pop()
        if stage == goal:
            return True
        if stage not in seen:
            seen.add(stage)
            frontier += [after for _, before, after, _, _ in order if before == stage]
    return False
