"""`hybridc profile`: per stage and in total, what one inference costs.

Sizes come from the artifacts (netx HDF5, ONNX); activity (spikes, synaptic ops) from
running samples through the Loihi stage's netx file in hybridc's bit-exact emulator of
Lava (runtime/emulator/), so any build profiles, even one compiled from Python;
energy and time from the per-operation figures of a
device profile. Every figure is an estimate from those inputs, not a measurement on
hardware, except the onnxruntime latency, which is measured on this machine.
"""

import json
from dataclasses import asdict, dataclass, field
from math import prod
from pathlib import Path

import torch

from ..build_dir.compiled import load
from ..build_dir.untrusted import parsing
from ..deploy.links import crossing_edges
from ..errors import InputError, reporting
from ..inspection.model import cut_bytes, cut_row
from ..manifest import COST_FIGURES, layer_key
from ..netx.layout import pytorch_shape
from . import loihi_counts, onnx_counts
from .devices import load_profile


@dataclass
class Profile:
    build: str
    samples: int
    timesteps: int
    devices: dict
    loihi: dict = field(default_factory=dict)
    jetson: dict = field(default_factory=dict)
    cut: dict = field(default_factory=dict)  # the first spiking -> dense edge (the paper's one cut)
    edges: list = field(default_factory=list)  # every edge between stages: bytes and link cost
    latency_s: dict = field(default_factory=dict)
    energy_j: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)  # what the totals leave out, and why
    measured: dict = field(default_factory=dict)  # from `hybridc pipeline --json`, beside the estimates
    data: str = ""  # the samples whose spikes were counted
    model: str = ""  # what the build was compiled from (describe_model)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def _stage_batches(compiled, stage, data, samples, seed=0, batch_size=16):
    """(count, description, batches): the samples' spikes as `stage` receives them, (N, ..., T)
    in PyTorch layout. A stage fed by other stages gets the input the emulated build gives it."""
    from ..data.sources import open_samples
    from ..runtime.dataset_verify import input_shape
    from ..runtime.emulator import stage_input
    from ..runtime.run import model_input_values, run_graph, stage_feeds

    manifest = compiled.manifest
    fed_by_input = all(e.producer["stage"] is None for e in manifest.edges_into(stage.name))
    dataset = open_samples(data, input_shape(manifest), train=False, samples=samples, seed=seed)
    count = min(samples, len(dataset))
    if count == 0:
        raise InputError(f"The data ({dataset.description}) has no samples to profile.")

    def batches():
        for start in range(0, count, batch_size):
            x, _ = dataset.batch(start, min(start + batch_size, count))
            values = model_input_values(manifest, x)  # {(None, input name): tensor}, each checked
            if not fed_by_input:
                values, _ = run_graph(manifest, compiled.directory, values, backend="emulate")
            x = stage_feeds(manifest, stage, values)
            if isinstance(x, dict):
                (x,) = x.values()
            yield stage_input(stage, x)  # what Lava's source holds: spikes, graded spikes, sigma-delta integers

    return count, dataset.description, batches()


def _drained(x, steps: int):
    """x with `steps` zero steps after it: the chip runs until the last layer's output is out."""
    return torch.cat([x, torch.zeros(*x.shape[:-1], steps, dtype=x.dtype)], dim=-1)


def _rates(totals: dict, units: list, count: int) -> list:
    """Per unit (its LoihiLayer, the key of what it reads, the key of its output or None):
    spikes in and out and synaptic ops per inference."""
    rows = []
    for layer, reads, key in units:
        counts = totals[reads]["counts"]
        sent = totals[key]["spikes"] if key is not None else 0.0  # a recurrent layer's own spikes feed back
        synops = loihi_counts.synaptic_ops(layer, tuple(counts.shape), counts.float(), sent)
        rows.append({"spikes_in": totals[reads]["spikes"] / count,
                     "spikes_out": totals[key]["spikes"] / count if key is not None else 0.0,
                     "synops": synops / count})
    return rows


@torch.no_grad()
def _activity(compiled, stage, layers, data, samples):
    """Average spikes and synaptic ops per inference for each Loihi layer of `stage`, from the
    emulator running the stage's netx file (what ships) for T + one step per layer, as the
    chip would."""
    from ..runtime.device import current, exact_arithmetic
    from ..runtime.emulator import emulate, on_device, read_stage_network

    count, description, batches = _stage_batches(compiled, stage, data, samples)
    device = current()
    names, emulated = read_stage_network(stage, compiled.directory)
    network = names, [on_device(layer, device) for layer in emulated]  # an input layer's neuron (a Delta encoder, an RF input) runs and is counted too
    if len(emulated) != len(layers):
        raise InputError(f"The netx file has {len(emulated)} layers to run but {len(layers)} to count; recompile.")
    totals = {}

    def tally(layer, inputs, outputs):  # (N, T, ...) spikes (graded: messages) in and out of one layer
        for key, spikes in (((id(layer), "in"), inputs), ((id(layer), "out"), outputs)):
            entry = totals.setdefault(key, {"spikes": 0.0, "counts": 0.0})
            spikes = spikes != 0
            entry["spikes"] += float(spikes.sum())
            entry["counts"] = entry["counts"] + spikes.sum((0, 1)).double().cpu()

    with exact_arithmetic(device):
        for x in batches:
            emulate(None, _drained(x, _hops(layers)).to(device), network=network, on_layer=tally,
                    input_message_bits=stage.input_bits or 0, feed_input_neuron=True)
    units = [(counted, (id(layer), "in"), (id(layer), "out")) for layer, counted in zip(network[1], layers)]
    inputs = [totals[(id(layer), "in")]["counts"] / count for layer in network[1]]  # per input neuron, an inference
    return _rates(totals, units, count), count, description, inputs


def _agrees(placed, layer) -> bool:
    """Whether a mapped layer (group size, chip of each group, neurons) is the layer the file holds."""
    size, chips, neurons, _ = placed
    return neurons == layer.neurons and size >= 1 and len(chips) == -(-neurons // size)


def _crossing_spikes(stage, layers, inputs, mapping) -> dict:
    """{layer index: spikes per inference that reach a core on another chip than the neuron
    that sent them} for the layers of a chain stage whose layer before it is mapped too: each
    input spike counted once per group on another chip that reads its neuron."""
    from ..mapping.fit import crossing_from

    per_chip = mapping["system"]["cores_per_chip"]
    placed = {}
    for entry in mapping["layers"]:
        if entry["stage"] == stage.name and "segment" not in entry:
            chips = [first // per_chip for first, last in entry["cores"] for _ in range(last - first + 1)]
            placed[entry["layer"]] = (entry["neurons_per_group"], chips, entry["neurons"], entry.get("order", "CHW"))
    found, previous = {}, None
    for layer, counts in zip(layers, inputs):
        if previous is not None and layer.index in placed and previous.index in placed \
                and prod(layer.in_shape) == previous.neurons and _agrees(placed[layer.index], layer) \
                and _agrees(placed[previous.index], previous):
            size, chips, _, order = placed[layer.index]
            source_size, source_chips, _, source_order = placed[previous.index]
            found[layer.index] = crossing_from(layer, size, chips, source_size, source_chips,
                                               weights=counts.numpy() if hasattr(counts, "numpy") else counts,
                                               order=order, source_order=source_order,
                                               source_shape=previous.shape)
        previous = layer if layer.neurons else previous
    return found


def _hops(layers) -> int:
    """Steps the last output trails the input: one per layer with synapses (an input layer's
    neuron takes the input the same step)."""
    return sum(layer.kind != "input" for layer in layers)


@torch.no_grad()
def _graph_activity(compiled, stage, units, data, samples):
    """The same for a branching stage, from the artifact emulator of its netx segments and
    extra synapses (runtime/emulator/graph.py): every layer's and every extra synapse's input
    spikes, run for T + one step per layer on the longest path."""
    import networkx as nx

    from ..runtime.emulator.graph import emulate_graph, layer_graph, read_graph

    count, description, batches = _stage_batches(compiled, stage, data, samples)
    graph = read_graph(stage, compiled.directory)
    wiring = layer_graph(stage, [len(layers) for layers in graph[0]])
    hops = len(nx.dag_longest_path(wiring))
    keys = [key for _, _, key in units if key is not None]
    totals = {key: {"spikes": 0.0, "counts": 0.0} for key in [None, *keys]}
    for x in batches:
        drained = _drained(x, hops)
        outputs = emulate_graph(stage, drained, graph, keys)
        for key, spikes in zip([None, *keys], [drained, *outputs]):  # (N, ..., T); graded: messages
            spikes = (spikes != 0).to(torch.int64)
            totals[key]["spikes"] += float(spikes.sum())
            totals[key]["counts"] = totals[key]["counts"] + spikes.sum((0, -1)).double()
    return _rates(totals, units, count), count, description, hops


def _graph_units(compiled, stage, chip) -> list:
    """(LoihiLayer, key it reads, key of its output or None, row fields) for every layer of every
    segment of a branching stage, each after the extra synapses ending on it (key None)."""
    units, into = [], {}
    with parsing(compiled.directory / stage.links["artifact"], "an HDF5 file of extra synapses", stage.name):
        synapses = loihi_counts.read_synapses(compiled.directory / stage.links["artifact"], stage.links["synapses"],
                                              chip["neurons_per_core"], chip["synapses_per_core"])
    for link, synapse in zip(stage.links["synapses"], synapses):
        into.setdefault((link["target"]["segment"], link["target"]["layer"]), []).append((link, synapse))
    for k, spec in enumerate(stage.segments):
        path = compiled.directory / spec["artifact"]
        with parsing(path, "a netx HDF5 network", stage.name):
            layers = loihi_counts.read_layers(path, pytorch_shape(spec["input_shape"]),
                                              chip["neurons_per_core"], chip["synapses_per_core"],
                                              input_neurons=False)  # segments are CUBA chains: no input neuron
        for j, layer in enumerate(layers):
            extra = into.get((k, j), [])
            for link, synapse in extra:
                units.append((synapse, layer_key(link["source"]), None,
                              {"layer": j, "segment": k, "synapse": link["synapse"],
                               "source": _where(link["source"]), "target": f"segment {k} layer {j}"}))
            if extra:  # the extra synapses sit on the cores of the neurons they end on
                total = layer.synapses + sum(synapse.synapses for _, synapse in extra)
                layer.cores = max(layer.cores, -(-total // chip["synapses_per_core"]))
            reads = (k, j - 1) if j else layer_key(spec["input"])
            units.append((layer, reads, (k, j), {"layer": j, "segment": k}))
    return units


def _where(source) -> str:
    return "stage input" if source.get("segment") is None else f"segment {source['segment']} layer {source['layer']}"


@reporting("profile", passing=())
def profile_build(build_dir, data=None, samples: int = 16, device_profile=None,
                  jetson: str = None, link: str = None, measure: bool = True, reference=None,
                  files=None, system=None) -> Profile:
    """Needs only the build: activity comes from emulating its Loihi stage, so no source model
    is imported. data: a --data spec (hybridc.data.sources) or None: synthetic gestures for
    event-frame builds, random spikes otherwise (the profile's `data` says which).
    system: map the Loihi stages onto this system (a name or file; MappingError if they do
    not fit) for their cores and chips; None: the mapping the build recorded, if any.
    `reference` and `files` are accepted for callers that still pass them."""
    if samples < 1:
        raise InputError(f"--samples must be at least 1, got {samples}.")
    compiled = load(build_dir)
    manifest = compiled.manifest
    mapping = manifest.mapping
    if system is not None:
        from ..mapping.fit import map_stages

        mapping = map_stages(manifest.stages, compiled.directory, system)
    mapped = {(la["stage"], la.get("segment"), la["layer"]): la["groups"] for la in (mapping or {}).get("layers", [])}
    devices = load_profile(device_profile, jetson, link)
    T = manifest.timesteps
    result = Profile(str(build_dir), 0, T, {"loihi": devices.loihi["name"], "jetson": devices.jetson["name"],
                                            "link": devices.link["name"], "jetson_profile": devices.names["jetson"],
                                            "link_profile": devices.names["link"]})
    result.model = describe_model(manifest)
    loihi_time = loihi_energy = jetson_time = jetson_energy = 0.0
    from ..targets.registry import domain_of

    loihi_stages, jetson_stages = [], []
    for s in manifest.stages:
        if s.target == "loihi":
            loihi_stages.append(s)
        elif domain_of(s.target) == "dense":
            jetson_stages.append(s)
        else:
            result.notes.append(f"stage `{s.name}` ({s.target}): no device profile for this target; its time and "
                                "energy are not estimated and not in the totals")
    if "nir" in {s.target for s in manifest.stages}:
        result.devices["loihi"] = "not estimated (nir)"
    for stage in loihi_stages:  # several Loihi stages run one after the other: their figures add up
        chip = devices.loihi
        stage_t = stage.inputs[0].shape[-1]
        if stage.segments:  # a branching stage: netx segments joined by extra synapses
            units = _graph_units(compiled, stage, chip)
            activity, result.samples, result.data, hops = _graph_activity(compiled, stage, [u[:3] for u in units],
                                                                          data, samples)
        else:
            path = compiled.directory / stage.artifact
            with parsing(path, "a netx HDF5 network", stage.name):
                layers = loihi_counts.read_layers(path, stage.inputs[0].pytorch_shape()[:-1],
                                                  chip["neurons_per_core"], chip["synapses_per_core"])
            units = [(layer, None, None, {"layer": layer.index}) for layer in layers]
            activity, result.samples, result.data, inputs = _activity(compiled, stage, layers, data, samples)
            hops = _hops(layers)
            if mapping:
                crossing = _crossing_spikes(stage, layers, inputs, mapping)
                for act, layer in zip(activity, layers):
                    act["crossing"] = crossing.get(layer.index, 0.0)
        for layer, _, _, fields in units:  # cores as the mapping placed the layer
            key = (stage.name, fields.get("segment"), fields["layer"])
            if layer.neurons and key in mapped:
                layer.cores = mapped[key]
        steps = stage_t + hops  # the last output leaves the pipeline after one step per layer
        rows = []
        stage_energy = 0.0
        busiest_step = 0.0
        pending = 0.0  # extra synapses' ops, done on the cores of the next layer (the one they end on)
        for (layer, _, _, fields), act in zip(units, activity):
            if layer.neurons:
                per_core_step = ((layer.neurons / layer.cores) * chip["neuron_update_time_ns"]
                                 + ((act["synops"] + pending) / stage_t / layer.cores) * chip["synop_time_ns"]) * 1e-9
                busiest_step = max(busiest_step, per_core_step)
                pending = 0.0
            else:
                pending += act["synops"]
            energy = (act["synops"] * chip["synop_energy_pj"] + layer.neurons * steps * chip["neuron_update_energy_pj"]
                      + act["spikes_out"] * chip["spike_energy_pj"]) * 1e-12
            stage_energy += energy
            kind = (layer.kind if layer.neurons else f"{layer.kind} synapse") + (" (recurrent)" if layer.recurrent else "")
            rows.append({"stage": stage.name, **fields, "type": kind,
                         "shape": list(layer.shape), "neurons": layer.neurons, "synapses": layer.synapses,
                         "cores": layer.cores, **({"max_delay": layer.max_delay} if layer.max_delay else {}),
                         "spikes_in": act["spikes_in"], "spikes_out": act["spikes_out"],
                         **({"spikes_from_other_chips": act["crossing"]} if "crossing" in act else {}),
                         "synaptic_ops": act["synops"], "energy_j": energy})
        loihi_time += steps * (busiest_step + chip["barrier_time_us"] * 1e-6)
        loihi_energy += stage_energy
        rows = result.loihi.get("layers", []) + rows
        result.loihi = {"layers": rows, "neurons": sum(r["neurons"] for r in rows),
                        "synapses": sum(r["synapses"] for r in rows), "cores": sum(r["cores"] for r in rows),
                        "chips": (mapping["utilisation"]["chips_used"] if mapping else
                                  -(-sum(r["cores"] for r in rows) // chip["cores_per_chip"])),
                        "spikes": sum(r["spikes_out"] for r in rows), "synaptic_ops": sum(r["synaptic_ops"] for r in rows),
                        "timesteps_run": result.loihi.get("timesteps_run", 0) + steps, "time_s": loihi_time,
                        "energy_j": loihi_energy}
    if loihi_stages and mapping:
        result.devices["system"] = mapping["system"]["name"]
        result.loihi["axons_crossing_chips"] = mapping["utilisation"]["axons_crossing_chips"]
        result.loihi["spikes_crossing_chips"] = sum(r.get("spikes_from_other_chips", 0.0)
                                                    for r in result.loihi["layers"])
        costs = {name: mapping["system"]["figures"].get(name) for name in COST_FIGURES}
        if all(costs.values()):  # the system gives what a spike between chips costs: charged apart
            crossed = result.loihi["spikes_crossing_chips"]
            energy = crossed * costs["chip_crossing_spike_energy_pj"]["value"] * 1e-12
            time = crossed * costs["chip_crossing_spike_time_ns"]["value"] * 1e-9
            result.loihi.update(energy_crossing_chips_j=energy, time_crossing_chips_s=time,
                                energy_j=result.loihi["energy_j"] + energy, time_s=result.loihi["time_s"] + time)
            loihi_energy, loihi_time = loihi_energy + energy, loihi_time + time
            result.notes.append("spikes crossing chips: costed apart (energy_crossing_chips_j, time_crossing_chips_s: "
                                "an inference's crossing spikes through one link in turn, an upper bound) from "
                                + "; ".join(f"{name} {figure['value']:g} ({figure['kind']}: {figure['source']})"
                                            for name, figure in costs.items()))
        elif len(mapping["utilisation"]["per_chip"]) > 1:
            result.notes.append("spikes crossing chips: counted (spikes_crossing_chips, per layer "
                                "spikes_from_other_chips, chains only) but not costed: no per-spike figure between "
                                "chips is published for this chip (a system file may give chip_crossing_spike_energy_pj "
                                "and chip_crossing_spike_time_ns); time and energy count them as spikes within a chip")
        result.notes.append(f"Loihi cores and chips: the mapping onto {mapping['system']['name']} "
                            f"({'--system' if system is not None else 'recorded at compile'}; an estimate from "
                            "the system's figures, docs/targets.md)")
    elif loihi_stages:
        result.notes.append("Loihi cores: the device profile's neurons and synapses per core (the build records "
                            "no mapping; pass --system to map it)")
    jetson_layers, macs_total, parameters, measured_all = [], 0, 0, []
    for stage in jetson_stages:  # several dense stages run one after the other: their figures add up
        gpu = devices.jetson
        path = compiled.directory / stage.artifact
        with parsing(path, "an ONNX model", stage.name):
            layers = onnx_counts.read_layers(path)
            stage_parameters = onnx_counts.parameters(path)
            macs = sum(layer.macs for layer in layers)
            measured = (onnx_counts.measure_latency(path, stage.inputs[0].shape)
                        if (measure or stage.target == "cpu") and len(stage.inputs) == 1 else None)
        measured_all.append(measured)
        if stage.target == "cpu":  # the host: its measured latency is the figure; its power is unknown
            jetson_time += measured or 0.0
            result.devices["jetson"] = "this host's CPU (measured; energy not estimated)"
            note = "cpu stage: latency measured with onnxruntime on this machine; energy not estimated"
        else:
            stage_time = (2 * macs / (gpu["peak_flops"] * gpu["efficiency"])
                          + len(layers) * gpu["launch_overhead_us"] * 1e-6)
            jetson_time += stage_time
            jetson_energy += stage_time * gpu["power_w"]
            note = ("jetson-int8 stage: estimated with the float peak figures (int8 runs faster)"
                    if stage.target == "jetson-int8" else None)
        if note and note not in result.notes:
            result.notes.append(note)
        jetson_layers += [{"stage": stage.name, **asdict(layer)} for layer in layers]
        macs_total += macs
        parameters += stage_parameters
    if jetson_stages:
        measured = (sum(measured_all) if None not in measured_all else None)
        result.jetson = {"target": jetson_stages[0].target, "layers": jetson_layers, "parameters": parameters,
                         "macs": macs_total, "time_s": jetson_time, "energy_j": jetson_energy,
                         "measured_onnxruntime_cpu_s": measured}
    link_time = link_energy = 0.0
    link = devices.link
    for edge in crossing_edges(manifest):  # every tensor crossing between two stages crosses the link
        # once, as deploy sends it: two edges into one input (two accumulators on one tap) are one link
        if edge.producer["stage"] is None or edge.consumer["stage"] is None:
            continue
        # in the wire format chosen at compile time: spikes (accumulator at the receiver), packed
        # counts (accumulator at the sender), or an Encoder's graded values
        sent = edge.bytes_per_inference
        edge_time = sent / link["bandwidth_bytes_per_s"] + link["latency_us"] * 1e-6
        edge_energy = sent * link["energy_pj_per_byte"] * 1e-12
        link_time += edge_time
        link_energy += edge_energy
        result.edges.append({"from": f"{edge.producer['stage']}/{edge.producer['tensor']}",
                             "to": f"{edge.consumer['stage']}/{edge.consumer['input']}",
                             "conversion": edge.conversion.kind, "shape": edge.shape,
                             "wire": cut_row(manifest, edge).wire,
                             "bits_per_value": edge.bits_per_value, "bytes_sent": sent,
                             "time_s": edge_time, "energy_j": edge_energy})
        conv = edge.conversion
        if result.cut or conv.kind == "encoder":
            continue
        wire = (manifest.stage(edge.consumer["stage"]).wire or {}).get(edge.consumer["input"])
        shape = list(wire.spikes_shape) if wire else edge.shape  # the spike tensor, whichever form crosses
        interval, windows, fold = ((conv.interval, conv.windows, conv.fold) if conv.kind == "accumulator"
                                   else (1, shape[-1], False))
        b = cut_bytes(shape, shape[-1], interval, windows)
        result.cut = {"tensor": edge.consumer["input"], "shape": shape, "interval": interval,
                      "wire": wire.format if wire else "spikes", "wire_bits": wire.bits if wire else 1,
                      "windows": windows, "fold": fold, "raw_bytes": b.raw_bytes, "raw_bytes_per_window": b.raw_bytes / windows,
                      "accumulated_bytes": b.accumulated_bytes, "accumulated_bytes_per_window": b.accumulated_bytes / windows,
                      "count_dtype": b.count_dtype, "bytes_sent": sent, "time_s": edge_time, "energy_j": edge_energy}
    overlap = 0.0
    if result.cut and len(manifest.stages) == 2 and not result.cut["fold"] and result.cut["windows"] > 1:
        # an ANN applied per window could start before the last window: an upper bound
        overlap = loihi_time * (result.cut["windows"] - 1) / result.cut["windows"]
    result.latency_s = {"loihi": loihi_time, "link": link_time, "jetson": jetson_time,
                        "total": loihi_time + link_time + jetson_time, "possible_overlap": overlap}
    result.energy_j = {"loihi": loihi_energy, "link": link_energy, "jetson": jetson_energy,
                       "total": loihi_energy + link_energy + jetson_energy}
    return result


def attach_measured(profile: Profile, stats_path) -> dict:
    """Put the figures `hybridc pipeline --json` measured beside the estimates: bytes per
    inference on each link (the cut's must equal the estimate for its wire format), per-stage
    and end-to-end latency and throughput (measured in simulators and onnxruntime on the
    machine that ran the pipeline, not on Loihi or a Jetson)."""
    try:
        stats = json.loads(Path(stats_path).read_text())
        edges, stages = stats["edges"], stats["stages"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{stats_path} is not a stats file written by `hybridc pipeline --json` ({exc}).") from None
    links = []
    estimated = {e["to"]: e["bytes_sent"] for e in profile.edges}  # per consumer input, as the manifest's edges
    for edge in edges:
        row = {"link": f"{edge['source']} -> {edge['destination']}", "form": edge["form"], "bits": edge["bits"],
               "measured_bytes_per_inference": edge.get("payload_bytes_per_inference"),
               "measured_message_bytes_per_inference": edge.get("message_bytes_per_inference"),
               "pipeline_predicted_bytes_per_inference": edge["predicted_payload_bytes_per_inference"]}
        if "tensor" in edge:  # stats of a stage graph (format 2): each link names its tensors
            row.update({"from": f"{edge['source']}/{edge['output']}", "to": f"{edge['destination']}/{edge['tensor']}"})
            if row["to"] in estimated and edge["source"] != "client":
                row["estimated_bytes_per_inference"] = estimated[row["to"]]
        elif profile.cut and edge["form"] in ("spikes", "counts") and edge["source"] != "client":
            row["estimated_bytes_per_inference"] = profile.cut["bytes_sent"]
        links.append(row)
    profile.measured = {
        "stats": str(stats_path), "samples": stats.get("samples"), "backend": stats.get("backend"),
        "throughput_per_s": stats.get("throughput_per_s"), "end_to_end_latency_s": stats.get("end_to_end_latency_s"),
        "stages": [{"stage": s["stage"], "target": s["target"], "compute_s": s["compute_s"],
                    "stage_latency_s": s["stage_latency_s"]} for s in stages],
        "links": links,
    }
    return profile.measured


def describe_model(manifest) -> str:
    """What a build was compiled from, for titles: `model.py build(split='S2A4', interval=4)`."""
    source = manifest.source
    if source is None or not source.path:
        return "a model compiled from Python"
    args = ", ".join(f"{k}={v!r}" for k, v in (source.args or {}).items())
    return Path(source.path).name + (f" {source.entry}({args})" if source.entry else "")


def chart(profile: Profile, path, title: str = None) -> None:
    """Latency and energy per inference by device, side by side on log scales (the Loihi
    and link parts are orders of magnitude below the Jetson's), each bar labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [p for p in ("loihi", "link", "jetson") if p in profile.latency_s]
    colours = {"loihi": "#f4a261", "link": "#d62828", "jetson": "#76b900"}
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, (name, values, scale, unit) in zip(axes, (("latency", profile.latency_s, 1e3, "ms"),
                                                      ("energy", profile.energy_j, 1e6, "uJ"))):
        shown = [values.get(part, 0.0) * scale for part in parts]
        positive = [v for v in shown if v > 0] or [1.0]
        ax.barh(parts, [v if v > 0 else float("nan") for v in shown], color=[colours[p] for p in parts], zorder=3)
        ax.set_xscale("log")
        ax.set_xlim(min(positive) / 5, max(positive) * 20)
        for y, v in enumerate(shown):
            ax.text(v if v > 0 else min(positive) / 5, y, f" {_figure(v)} {unit}" if v > 0 else " not estimated",
                    va="center", fontsize=9)
        ax.invert_yaxis()
        ax.set_title(f"{name}: total {_figure(values['total'] * scale)} {unit}", fontsize=10)
        ax.set_xlabel(f"{name} per inference ({unit}, log scale)", fontsize=9)
        ax.grid(axis="x", alpha=0.3, zorder=0)
    fig.suptitle(title or f"{profile.model or Path(profile.build).name}: {profile.devices['loihi']} + "
                 f"{profile.devices['jetson']} over {profile.devices['link']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _figure(value: float) -> str:
    """Three significant digits without exponents: 0.0911, 41.7, 1,370."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
