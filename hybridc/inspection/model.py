"""What inspection shows, computed once from a CompiledModel: stages, cuts and nodes."""

import json
from dataclasses import asdict, dataclass, field
from math import prod
from typing import Optional

import networkx as nx

FORMAT = "hybridc-inspect/1"


def count_dtype(interval: int) -> tuple:
    """(dtype name, bits) of the smallest unsigned integer holding a count of `interval` spikes."""
    if interval == 1:
        return "bit", 1
    for name, bits in (("uint8", 8), ("uint16", 16), ("uint32", 32)):
        if interval < 2 ** bits:
            return name, bits
    return "uint64", 64


@dataclass
class CutBytes:
    spikes: int  # spike entries per inference (without batch)
    raw_bytes: float  # those spikes as bits
    counts: int  # accumulated values per inference
    count_dtype: str
    accumulated_bytes: float
    packed_count_bits: int = 1  # ceil(log2(I+1)): a count packed as tightly as it fits
    packed_counts_bytes: int = 0  # the counts at those bits, whole bytes (what a "counts" link sends)
    packed_spikes_bytes: int = 0  # the spikes at 1 bit, whole bytes (what a "spikes" link sends)
    packed_spikes_bits: int = 1  # bits per spike: 1, or a graded (sigma-delta) value's message bits


def cut_bytes(shape, timesteps: int, interval: int, windows: int) -> CutBytes:
    """Bytes per inference crossing a cut of spike tensor `shape` (without batch, time last),
    raw as one bit per spike, and after an accumulator of `interval` as integer counts."""
    spikes = prod(shape)
    counts = spikes // timesteps * windows
    dtype, bits = count_dtype(interval)
    packed = interval.bit_length()
    return CutBytes(spikes, spikes / 8, counts, dtype, counts * bits / 8, packed, -(-counts * packed // 8),
                    -(-spikes // 8))


@dataclass
class StageRow:
    name: str
    target: str
    layers: int
    inputs: list  # "LAYOUT AxBxC"
    outputs: list
    neurons: int
    synapses: int
    parameters: int
    nodes: int


@dataclass
class CutRow:
    source: str  # stage names
    destination: str
    tensor: str
    shape: list  # PyTorch layout, without batch
    layout: str
    interval: int
    windows: int
    fold: bool
    bytes: CutBytes
    wire: str = "spikes"  # the manifest's wire format: "spikes", "counts", "values" or an Encoder's "graded"
    wire_bytes: int = 0  # payload bytes per inference in that form
    conversion: str = "accumulator"  # "accumulator" (spiking -> dense), "encoder" (dense -> spiking), "none"
    bits: int = 1  # per value crossing the link, in the wire format (1 for raw spikes)
    node: str = ""  # the fx node whose value crosses
    input: str = ""  # the consumer stage's input it feeds
    scale: Optional[int] = None  # "values": the integer on the wire is value x scale
    wire_shape: list = field(default_factory=list)  # what crosses in that form, without batch
    summed: bool = False  # the sender sums windows of `interval` steps (counts, summed values)

    def conversion_text(self) -> str:
        if self.conversion == "encoder":
            return f"encoder {self.bits}-bit graded spikes" + (f", hold {self.interval}" if self.interval > 1 else "")
        if self.conversion == "none":
            return "none"
        return f"accumulator I={self.interval}, {self.windows} windows{', folded' if self.fold else ''}"

    def bytes_text(self) -> str:
        """The tensor's sizes per inference in the forms the compiler chose between."""
        b = self.bytes
        if self.conversion == "encoder":
            return f"{b.raw_bytes:,.0f} B ({b.spikes:,} values of {self.bits} bits) per inference"
        if self.wire == "values":
            each = f"{b.raw_bytes:,.0f} B ({b.spikes:,} graded values of {b.packed_spikes_bits} bits)"
            if b.counts == b.spikes:
                return each + " per inference"
            return f"{each} -> {b.accumulated_bytes:,.0f} B ({b.counts:,} window sums of {self.bits} bits) per inference"
        return (f"{b.raw_bytes:,.0f} B raw ({b.spikes:,} spikes as bits) -> "
                f"{b.accumulated_bytes:,.0f} B ({b.counts:,} {b.count_dtype} counts) per inference")

    def wire_label(self) -> str:
        """Short, for a drawn edge: `(I=4) values 18-bit x4096, 108 B per inference`."""
        scale = f" x{self.scale}" if self.scale else ""
        interval = f"(I={self.interval}) " if self.interval else ""
        return f"{interval}{self.wire} {self.bits}-bit{scale}, {self.wire_bytes:,} B per inference"

    def wire_text(self) -> str:
        """What the manifest records crossing the link: form, bits per value, bytes per inference."""
        form = {"spikes": "raw spikes", "counts": f"counts of I={self.interval}", "graded": "graded spikes (encoder)",
                "values": "values (graded" + (f", summed over I={self.interval})" if self.summed else ")")
                }.get(self.wire, self.wire)
        scale = f", integer = value x {self.scale}" if self.scale else ""
        return (f"wire: {form}{scale}, {'x'.join(map(str, self.wire_shape))} at {self.bits} bit"
                f"{'s' if self.bits > 1 else ''} = {self.wire_bytes:,} B per inference")


def cut_row(manifest, edge) -> CutRow:
    """One edge between two stages, with what crosses the link per inference."""
    conv, shape = edge.conversion, edge.shape
    producer = manifest.stage(edge.producer["stage"]).output(edge.producer["tensor"])
    ends = dict(source=edge.producer["stage"], destination=edge.consumer["stage"], tensor=edge.producer["tensor"],
                shape=shape, layout=edge.layout, node=producer.node or edge.producer["tensor"],
                input=edge.consumer["input"], conversion=conv.kind, bits=edge.bits_per_value)
    steps = shape[-1] if shape else 1
    if conv.kind == "encoder":
        values = prod(shape)
        b = CutBytes(values, edge.bytes_per_inference, values, f"uint{conv.bits}", edge.bytes_per_inference)
        return CutRow(**ends, interval=conv.hold, windows=steps, fold=False, bytes=b, wire="graded",
                      wire_bytes=-(-values * conv.bits // 8), wire_shape=list(shape))
    interval, windows, fold = ((conv.interval, conv.windows, conv.fold) if conv.kind == "accumulator"
                               else (1, steps, False))
    wire = (manifest.stage(edge.consumer["stage"]).wire or {}).get(edge.consumer["input"])
    if wire is not None:  # bytes of the spike tensor, raw and accumulated, whichever form crosses
        ends.update(shape=list(wire.spikes_shape), layout=edge.layout[:-1] + "T")
        steps = wire.spikes_shape[-1]
    if wire is not None and wire.format == "values":  # graded spikes: each step's values, or window sums
        each = (producer.graded or {}).get("message_bits", wire.bits)
        spikes, sent = prod(wire.spikes_shape), prod(wire.shape)
        b = CutBytes(spikes, -(-spikes * each // 8), sent, f"int{wire.bits}", wire.bytes_per_inference,
                     wire.bits, wire.bytes_per_inference, -(-spikes * each // 8), each)
    else:
        b = cut_bytes(ends["shape"], steps, interval, windows)
    return CutRow(**ends, interval=interval, windows=windows, fold=fold, bytes=b,
                  wire=wire.format if wire else "spikes",
                  wire_bytes=wire.bytes_per_inference if wire else b.packed_spikes_bytes,
                  scale=wire.scale if wire else None, wire_shape=list(wire.shape) if wire else list(ends["shape"]),
                  summed=bool(wire and wire.summed))


def lowered_to(stage) -> dict:
    """fx node -> which segment's layer and which extra synapses a branching Loihi stage made of
    it, from the manifest's wiring (builds from before `segments[].nodes` give {})."""
    names, where = {}, {}
    for k, segment in enumerate(stage.segments or []):
        for j, node in enumerate(segment.get("nodes") or []):
            names[(k, j)] = node
            where[node] = f"segment {k} layer {j} ({segment['artifact']})"
    for link in (stage.links or {}).get("synapses", []):
        target = names.get((link["target"]["segment"], link["target"]["layer"]))
        if target is None:
            continue
        source = link["source"]
        source = ("the stage input" if source.get("segment") is None
                  else names.get((source["segment"], source["layer"]), f"segment {source['segment']} layer "
                                                                       f"{source['layer']}"))
        where[target] += f" + extra synapse {link['synapse']} from {source} ({stage.links['artifact']})"
    return where


RECURRENT_LOWERING = ("netx dense_rec layer: a feedback synapse (out x out) from its own spikes into its neurons, "
                      "delivered one step later")


def feedback_nodes(graph, manifest) -> list:
    """The fx nodes lowered with a feedback synapse onto their own neurons: slayer Recurrent
    blocks in a Loihi stage (netx's `dense_rec`)."""
    loihi = {stage.name for stage in manifest.stages if stage.target == "loihi"}
    return [n for n, d in graph.nodes(data=True) if d.get("module_type") == "Recurrent" and d.get("partition") in loihi]


def _spec(s) -> str:
    return f"{s.layout} {'x'.join(map(str, s.shape))}"


def partition_graph(compiled) -> nx.DiGraph:
    """Stages as nodes (with their sizes), cut tensors on the edges (with their bytes)."""
    inspection = Inspection(compiled)
    graph = nx.DiGraph()
    for stage in inspection.stages:
        graph.add_node(stage.name, **asdict(stage))
    for cut in inspection.cuts:
        graph.add_edge(cut.source, cut.destination, **asdict(cut))
    return graph


class Inspection:
    def __init__(self, compiled):
        if compiled.graph is None:
            from ..errors import ArtifactError

            raise ArtifactError(f"{compiled.directory} has no graph.json, which inspection reads; recompile the "
                                "model to write it.")
        self.compiled = compiled
        manifest = compiled.manifest
        self.timesteps = manifest.timesteps
        self.graph = compiled.graph
        self.stages = []
        for stage in manifest.stages:
            members = [d for _, d in self.graph.nodes(data=True) if d.get("partition") == stage.name]
            self.stages.append(StageRow(
                stage.name, stage.target, stage.layers or sum(1 for d in members if d["parameters"]),
                [_spec(s) for s in stage.inputs], [_spec(s) for s in stage.outputs],
                stage.neurons or 0, stage.synapses or 0, sum(d["parameters"] for d in members), len(members),
            ))
        self.cuts = [cut_row(manifest, edge) for edge in manifest.edges
                     if edge.producer["stage"] is not None and edge.consumer["stage"] is not None]
        self.edges = manifest.edges  # every edge, also from the model input and to its output
        self.lowered_to = {name: where for stage in manifest.stages for name, where in lowered_to(stage).items()}
        self.feedback = feedback_nodes(self.graph, manifest)
        for name in self.feedback:
            self.lowered_to.setdefault(name, RECURRENT_LOWERING)
        # fx node -> the NIR nodes its block came from (hybridc.nn.NIR), as the manifest records them
        self.nir_nodes = {name: list(nodes) for stage in manifest.stages
                          for name, nodes in (stage.nir_nodes or {}).items()}

    # --- renderings ------------------------------------------------------------------

    def nodes(self) -> list:
        """Every fx node once, in graph order, with the attributes the renderings show."""
        order = list(nx.topological_sort(self.graph))
        return [{"name": n, **{k: self.graph.nodes[n].get(k) for k in
                              ("op", "call", "module_type", "shape", "dtype", "target", "partition",
                               "parameters", "accumulator", "recognised_from")},
                 # the branches: what each node reads (an ADD/cat inside a spiking stage reads several)
                 "reads": sorted(self.graph.predecessors(n), key=order.index),
                 "lowered_to": self.lowered_to.get(n),
                 # only on blocks of hybridc.nn.NIR modules: a model without them shows as before
                 **({"nir": self.nir_nodes[n]} if n in self.nir_nodes else {})} for n in order]

    def cores(self) -> dict:
        """The build's mapping chip by chip: the system, its utilisation, and for every chip
        used its cores, neurons and the layers on it (each with its run of cores there)."""
        mapping = self.compiled.manifest.mapping
        if mapping is None:
            from ..errors import InputError

            raise InputError("This build records no mapping onto cores and chips: it has no loihi stage. "
                             "--level cores shows where a loihi stage's layers sit on a system.")
        per_chip = mapping["system"]["cores_per_chip"]
        chips, seen = {}, {}
        for layer in mapping["layers"]:
            done = 0  # groups of the layer on earlier runs
            for first, last in layer["cores"]:
                groups = last - first + 1
                neurons = (min(layer["neurons"], (done + groups) * layer["neurons_per_group"])
                           - done * layer["neurons_per_group"])
                done += groups
                chip = chips.setdefault(first // per_chip, {"chip": first // per_chip, "cores": 0,
                                                            "cores_per_chip": per_chip, "neurons": 0, "layers": []})
                seen.setdefault(first // per_chip, set()).update(range(first, last + 1))  # shared cores once
                chip["cores"] = len(seen[first // per_chip])
                chip["neurons"] += neurons
                chip["layers"].append({**{k: layer[k] for k in ("stage", "segment", "layer", "kind", "shape")
                                          if k in layer}, "cores": [first, last], "groups": groups,
                                       "neurons": neurons})
        return {"system": {k: v for k, v in mapping["system"].items() if k != "figures"},
                "figures": mapping["system"]["figures"], "utilisation": mapping["utilisation"],
                "chips": [chips[c] for c in sorted(chips)]}

    def to_dict(self, level: str = "stages") -> dict:
        data = self._stages_dict()
        if level == "cores":
            data["cores"] = self.cores()
        return data

    def _stages_dict(self) -> dict:
        return {
            "format": FORMAT,
            "timesteps": self.timesteps,
            "target": self.compiled.manifest.target,
            "stages": [asdict(s) for s in self.stages],
            "cuts": [asdict(c) for c in self.cuts],
            "stage_edges": [asdict(e) for e in self.edges],
            "nodes": self.nodes(),
            "edges": [[a, b] for a, b in self.graph.edges],
        }

    def to_json(self, level: str = "stages") -> str:
        """level "cores" adds `cores`, the mapping chip by chip."""
        return json.dumps(self.to_dict(level), indent=2) + "\n"

    def table(self, level: str = "stages"):
        """level: "stages" (a row per stage and cut), "nodes" (a row per fx node) or "cores"
        (a row per chip and layer of the mapping)."""
        from .table import cores_table, nodes_table, stages_table

        return {"nodes": nodes_table, "cores": cores_table}.get(level, stages_table)(self)

    def to_dot(self) -> str:
        from .dot import to_dot

        return to_dot(self)

    def to_html(self, path=None, level: str = "stages") -> str:
        """level "cores" adds a table of the chips and cores the loihi stages take."""
        from .html import to_html

        page = to_html(self, level=level)
        if path is not None:
            from pathlib import Path

            Path(path).write_text(page, encoding="utf-8")
        return page

    def _repr_html_(self) -> str:
        from .html import to_html

        return to_html(self, standalone=False)
