"""Will it fit: the mapping of spiking layers onto cores and chips, against mappings computed
by hand under small system files, and the refusals (a build too big, a layer no core holds, a
malformed system file). No Lava run: compiles without --verify."""

import json

import pytest
import torch
from helpers import NEURON, SMALL_MODEL_FILE, cli

import hybridc
from hybridc.errors import ArtifactError, MappingError, SystemFileError
from hybridc.mapping.systems import resolve, shipped_systems
from hybridc.nn import Accumulator


def figure(value):
    return {"value": value, "kind": "estimate", "source": "a test's hand-made chip"}


def system_file(tmp_path, chips=2, name="tiny", **figures) -> str:
    """A system of `chips` chips whose chip defines only `figures` (no base chip)."""
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"format": "hybridc-system/1", "name": name, "chips": chips,
                                "chip": {"name": f"{name}-chip",
                                         "figures": {k: figure(v) for k, v in figures.items()}}}))
    return str(path)


def two_dense():
    """Spiking Dense 10 -> 6 -> 5, counted over windows of 2 steps, a Linear head."""
    from lava.lib.dl import slayer

    torch.manual_seed(0)
    model = torch.nn.Sequential(slayer.block.cuba.Dense(NEURON, 10, 6, weight_scale=3),
                                slayer.block.cuba.Dense(NEURON, 6, 5, weight_scale=3),
                                Accumulator(2), torch.nn.Linear(10, 2))
    return model.eval(), (torch.rand(1, 10, 4) < 0.5).float()


def one_conv():
    """Spiking Conv 2 -> 4 channels, 3x3, padding 1, on 6x6: 4 x 36 = 144 neurons."""
    from lava.lib.dl import slayer

    torch.manual_seed(0)
    model = torch.nn.Sequential(slayer.block.cuba.Conv(NEURON, 2, 4, 3, padding=1, weight_scale=3),
                                Accumulator(2), torch.nn.Flatten(1, 3), torch.nn.Linear(4 * 36 * 2, 2))
    return model.eval(), (torch.rand(1, 2, 6, 6, 4) < 0.5).float()


def layers(compiled) -> list:
    return compiled.manifest.mapping["layers"]


def test_the_default_system_is_one_loihi2_chip_and_the_mapping_is_in_the_manifest(tmp_path):
    model, x = two_dense()
    compiled = hybridc.compile(model, x, output_dir=tmp_path / "b")
    mapping = json.loads((tmp_path / "b/manifest.json").read_text())["mapping"]
    assert mapping == hybridc.load(tmp_path / "b").manifest.mapping == compiled.manifest.mapping
    assert (mapping["system"]["name"], mapping["system"]["chips"], mapping["system"]["cores"]) == ("loihi2", 1, 128)
    assert mapping["system"]["figures"]["neurons_per_core"] == {
        "value": 8192, "kind": "derived", "source": resolve("loihi2").chip.figures["neurons_per_core"].source}
    assert [(la["layer"], la["groups"], la["cores"], la["chips"]) for la in mapping["layers"]] == [
        (0, 1, [[0, 0]], [0]), (1, 1, [[1, 1]], [0])]
    assert mapping["utilisation"]["cores_used"] == 2 and mapping["utilisation"]["neurons"] == 11


def test_limits_split_layers_onto_several_cores_and_the_network_across_two_chips(tmp_path):
    # by hand: layer 0 (fan-in 10) takes 80 weight bits a neuron, so 240 bits hold 3 neurons:
    # 6 neurons in 2 groups of 3; each neuron reaches both cores of layer 1: 3 x 2 output axons.
    # Layer 1 (fan-in 6, 48 bits a neuron) is bound by 4 neurons a core: groups of 4 and 1.
    # 2 cores a chip. In layer order (layer 0 on chip 0, layer 1 on chip 1) each group of layer 1
    # reads all 6 neurons of layer 0 from the other chip (12 axons); in stripes (each chip a group
    # of each layer: cores 0 and 1 on chip 0, cores 2 and 3 on chip 1) it reads 3 (6): stripes.
    system = system_file(tmp_path, chips=2, cores_per_chip=2, neurons_per_core=4, synapse_bits_per_core=240,
                         weight_bits=8, input_axons_per_core=16, output_axons_per_core=6)
    model, x = two_dense()
    compiled = hybridc.compile(model, x, system=system)
    first, second = layers(compiled)
    assert (first["groups"], first["neurons_per_group"], first["cores"], first["chips"], first["bound_by"]) == (
        2, 3, [[0, 0], [2, 2]], [0, 1], "synapse_bits_per_core")
    assert first["per_core"] == {"neurons": 3, "synapses": 30, "synapse_bits": 240, "input_axons": 10,
                                 "output_axons": 6}
    assert (second["groups"], second["neurons_per_group"], second["cores"], second["chips"], second["bound_by"]) == (
        2, 4, [[1, 1], [3, 3]], [0, 1], "neurons_per_core")
    assert second["per_core"] == {"neurons": 4, "synapses": 24, "synapse_bits": 192, "input_axons": 6,
                                  "output_axons": 4}
    # each group of layer 1 reads the 3 neurons of layer 0 on the other chip
    assert (first["axons_from_other_chips"], second["axons_from_other_chips"]) == (0, 2 * 3)
    use = compiled.manifest.mapping["utilisation"]
    assert (use["cores_used"], use["chips_used"], use["cores_fraction"]) == (4, 2, 1.0)
    assert use["axons_crossing_chips"] == 6
    assert use["per_chip"] == [{"chip": 0, "cores": 2}, {"chip": 1, "cores": 2}]
    assert use["neurons_fraction_of_used_cores"] == 11 / 16


def conv_system(tmp_path, sharing: bool) -> str:
    path = tmp_path / f"conv-{sharing}.json"
    path.write_text(json.dumps({"format": "hybridc-system/1", "name": "conv", "chips": 1, "chip": {
        "name": "small", "base": "loihi2", "figures": {
            "neurons_per_core": figure(64), "synapse_bits_per_core": figure(144),
            "conv_weight_sharing": figure(sharing), "cores_per_chip": figure(256)}}}))
    return str(path)


def test_a_conv_layer_with_weight_sharing_is_split_on_whole_channels(tmp_path):
    # by hand: one 2x3x3 kernel at 8 bits is 144 bits, so a core holds one output channel's
    # kernel: groups of one whole 6x6 channel (36 neurons), 4 groups. A channel's synapses: the
    # taps inside the padded 6-row input per output row are 2,3,3,3,3,2 (16), so 2 x 16 x 16.
    # It reads both input channels whole: 2 x 6 x 6 input axons.
    model, x = one_conv()
    (conv,) = layers(hybridc.compile(model, x, system=conv_system(tmp_path, sharing=True)))
    assert (conv["neurons"], conv["groups"], conv["neurons_per_group"], conv["cores"]) == (144, 4, 36, [[0, 3]])
    assert conv["per_core"]["synapse_bits"] == 144 and conv["per_core"]["synapses"] == 2 * 16 * 16
    assert conv["per_core"]["input_axons"] == 72 and conv["synapses"] == 4 * 512


def test_a_conv_layer_without_weight_sharing_stores_a_weight_per_connection(tmp_path):
    # by hand: an inner neuron has 2 x 3 x 3 = 18 connections, 144 bits: one neuron a core.
    model, x = one_conv()
    (conv,) = layers(hybridc.compile(model, x, system=conv_system(tmp_path, sharing=False)))
    assert (conv["groups"], conv["neurons_per_group"], conv["cores"], conv["bound_by"]) == (
        144, 1, [[0, 143]], "synapse_bits_per_core")
    # one output neuron at the corner (rows and columns 0..1 of the input, both channels)
    assert conv["per_core"] == {"neurons": 1, "synapses": 18, "synapse_bits": 144, "input_axons": 18,
                                "output_axons": 1}


def two_convs():
    """Spiking Conv 1 -> 2 -> 2 channels, 3x3, padding 1, on 4x4: two layers of 2 x 16 neurons."""
    from lava.lib.dl import slayer

    torch.manual_seed(0)
    model = torch.nn.Sequential(slayer.block.cuba.Conv(NEURON, 1, 2, 3, padding=1, weight_scale=3),
                                slayer.block.cuba.Conv(NEURON, 2, 2, 3, padding=1, weight_scale=3),
                                Accumulator(2), torch.nn.Flatten(1, 3), torch.nn.Linear(2 * 16 * 2, 2))
    return model.eval(), (torch.rand(1, 1, 4, 4, 4) < 0.5).float()


def test_axons_crossing_chips_are_counted_from_each_groups_input_box(tmp_path):
    # by hand: 8 neurons a core, so each layer is 4 groups of two output rows of one channel
    # (tiles of one row of both channels read as many axons: the tie stays by channel).
    # 5 cores a chip. In layer order: layer 0 on cores 0-3 and layer 1 on cores 4-7, so layer
    # 1's group 0 is on chip 0 with all of layer 0 and its groups 1-3 are on chip 1. A group of
    # two output rows reads three input rows (padding 1) of both channels: 2 x 3 x 4 = 24
    # neurons. Chip 0 ending after 3 groups instead costs as much (20 + 16 + 20 + 16), after 4
    # more (4 x 24): the fuller first chip stands, 72 axons crossing. In stripes (chip 0 holds
    # channel 0 of both layers, chip 1 channel 1) each group of layer 1 reads the 3 x 4 inputs of
    # the other channel across: 48. The mapping takes the stripes.
    from hybridc.mapping.fit import crossing, layout, place, read_units

    system = system_file(tmp_path, chips=2, cores_per_chip=5, neurons_per_core=8)
    model, x = two_convs()
    compiled = hybridc.compile(model, x, system=system, output_dir=tmp_path / "b")
    first, second = layers(compiled)
    assert (first["groups"], first["order"], first["cores"], first["chips"]) == (4, "CHW", [[0, 1], [5, 6]], [0, 1])
    assert (second["groups"], second["cores"], second["chips"]) == (4, [[2, 3], [7, 8]], [0, 1])
    assert second["per_core"]["input_axons"] == 24
    assert (first["axons_from_other_chips"], second["axons_from_other_chips"]) == (0, 4 * 12)
    units = read_units(compiled.manifest.stages, compiled.directory)  # the in-order placement alone
    layout(units, resolve(system).chip)
    place(units, 5, 2)
    assert [u.core_of.tolist() for u in units] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [crossing(u) for u in units] == [0, 3 * 24]


def test_chips_end_where_the_fewest_axons_cross():
    # by hand: Dense 10 -> 8 -> 2 -> 4 at 2 neurons a core: 4 + 1 + 2 groups, 4 cores a chip,
    # 2 chips. Filling chip 0 with layer 0 puts all 8 inputs of layer 1 on the other chip (8
    # axons cross); ending chip 0 after 3 groups keeps 2 of them with layer 1 (6 cross).
    # Ending it earlier leaves more than 4 groups for chip 1.
    from lava.lib.dl import slayer

    torch.manual_seed(0)
    model = torch.nn.Sequential(*(slayer.block.cuba.Dense(NEURON, a, b, weight_scale=3)
                                  for a, b in ((10, 8), (8, 2), (2, 4))), Accumulator(2), torch.nn.Linear(8, 2))
    x = (torch.rand(1, 10, 4) < 0.5).float()
    mapping = hybridc.compile(model.eval(), x, system=resolve_inline(chips=2, cores_per_chip=4, neurons_per_core=2))
    assert [(la["cores"], la["chips"], la["axons_from_other_chips"]) for la in mapping.manifest.mapping["layers"]] == [
        ([[0, 2], [4, 4]], [0, 1], 0), ([[5, 5]], [1], 6), ([[6, 7]], [1], 0)]
    use = mapping.manifest.mapping["utilisation"]
    assert use["axons_crossing_chips"] == 6 and use["per_chip"] == [{"chip": 0, "cores": 3}, {"chip": 1, "cores": 4}]


def resolve_inline(chips, **figures):
    """A System built in memory, as a file with these figures would give."""
    from hybridc.mapping.systems import Chip, Figure, System

    chip = Chip("inline", "inline", {k: Figure(v, "estimate", "a test's hand-made chip") for k, v in figures.items()})
    return System("inline", "inline", chips, chip, "file")


def test_two_layers_share_a_core_where_the_chip_allows_it(tmp_path):
    # by hand: 6 + 5 neurons fit a core of 12, and 60 + 30 synapses one of 100, so both layers
    # share core 0 when layers may share cores; without it each takes a core.
    model, x = two_dense()
    figures = {"chips": 1, "cores_per_chip": 4, "neurons_per_core": 12, "synapses_per_core": 100}
    shared = hybridc.compile(model, x, output_dir=tmp_path / "b", system=resolve_inline(**figures,
                                                                                       layers_share_cores=True))
    mapping = hybridc.load(tmp_path / "b").manifest.mapping
    assert [(la["cores"], la["per_core"]["neurons"]) for la in mapping["layers"]] == [([[0, 0]], 6), ([[0, 0]], 5)]
    assert mapping["utilisation"]["cores_used"] == 1 and mapping["utilisation"]["per_chip"] == [{"chip": 0, "cores": 1}]
    assert hybridc.inspect(shared).cores()["chips"][0]["cores"] == 1
    alone = hybridc.compile(model, x, system=resolve_inline(**figures))
    assert [la["cores"] for la in alone.manifest.mapping["layers"]] == [[[0, 0]], [[1, 1]]]
    # 6 + 5 neurons but 60 + 30 synapses over a core of 80: no sharing
    apart = hybridc.compile(model, x, system=resolve_inline(**{**figures, "synapses_per_core": 80},
                                                            layers_share_cores=True))
    assert apart.manifest.mapping["utilisation"]["cores_used"] == 2


def test_a_build_too_big_for_the_system_is_refused_before_anything_is_written(tmp_path):
    system = system_file(tmp_path, chips=1, cores_per_chip=3, neurons_per_core=4)
    model, x = two_dense()
    with pytest.raises(MappingError) as refused:
        hybridc.compile(model, x, output_dir=tmp_path / "out", system=system)
    text = str(refused.value)
    assert refused.value.exit_code == 17
    assert "needs 4 cores, against the 3 of the system (cores_per_chip 3 x 1 chip(s))" in text
    assert "stage `snn` layer 1 (dense 5)" in text and "cores 2 to 3" in text
    assert "2 chips of tiny-chip would hold it" in text
    assert "smallest shipped system that holds it: loihi2" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.json"]  # no build, no staging left


def test_a_layer_no_core_holds_is_refused_naming_the_constraint(tmp_path):
    system = system_file(tmp_path, chips=8, cores_per_chip=128, neurons_per_core=1024, input_axons_per_core=8)
    model, x = two_dense()
    with pytest.raises(MappingError) as refused:
        hybridc.compile(model, x, system=system)
    text = str(refused.value)
    assert "stage `snn` layer 0 (dense 6)" in text
    assert "needs 10 input axons, over the 8 a core allows (input_axons_per_core of tiny-chip, estimate" in text
    assert "no number of tiny-chip chips holds it" in text and "loihi2" in text


@pytest.mark.parametrize("change, where", [
    (lambda d: d.update(chips=0), "`chips` must be an integer"),
    (lambda d: d.update(chips=True), "`chips` must be an integer"),
    (lambda d: d.update(format="x"), "`format` must be"),
    (lambda d: d.update(colour="red"), "`colour` is not a field"),
    (lambda d: d["chip"]["figures"].update(neurons_per_core={"value": 4}),
     "`chip/figures/neurons_per_core` must be an object with exactly `value`, `kind` and `source`"),
    (lambda d: d["chip"]["figures"]["neurons_per_core"].update(value="many"),
     "`chip/figures/neurons_per_core/value` must be an integer"),
    (lambda d: d["chip"]["figures"]["neurons_per_core"].update(kind="guess"),
     "`chip/figures/neurons_per_core/kind` must be one of"),
    (lambda d: d["chip"]["figures"].update(cores=figure(1)), "`chip/figures/cores` is not a figure"),
    (lambda d: d["chip"]["figures"].pop("cores_per_chip"), "`chip/figures/cores_per_chip` is missing"),
    (lambda d: d["chip"].update(base="loihi9"), "`chip/base` names no shipped chip"),
    (lambda d: d.update(chip="loihi9"), "`chip` names no shipped chip"),
])
def test_a_malformed_system_file_is_refused_naming_the_field(tmp_path, change, where):
    data = json.loads(open(system_file(tmp_path, cores_per_chip=2, neurons_per_core=4)).read())
    change(data)
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(SystemFileError, match="bad.json") as refused:
        resolve(tmp_path / "bad.json")
    assert where in str(refused.value) and refused.value.exit_code == 18


def test_not_json_and_unknown_names_are_refused(tmp_path):
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SystemFileError, match="is not JSON"):
        resolve(tmp_path / "bad.json")
    with pytest.raises(SystemFileError, match="Unknown system 'kapoho'.*kapoho-point"):
        resolve("kapoho")


def test_shipped_systems_and_every_figure_has_a_kind_and_a_source():
    systems = shipped_systems()
    assert {name: (s.chips, s.cores) for name, s in systems.items()} == {
        "loihi1": (1, 128), "loihi2": (1, 128), "kapoho-point": (8, 1024), "hala-point": (1152, 147456)}
    assert systems["loihi1"].chip.get("input_axons_per_core") == 4096
    assert systems["loihi1"].chip.get("synapse_bits_per_core") == 1 << 20
    assert systems["loihi2"].chip.get("input_axons_per_core") is None  # not public: not checked
    for system in systems.values():
        for name, f in system.chip.figures.items():
            assert f.kind in ("documented", "derived", "estimate", "unverified") and len(f.source) > 20, name


@pytest.mark.parametrize("edit, where", [
    (lambda m: m["layers"][0].update(bound_by="luck"), "mapping/layers/0/bound_by"),
    (lambda m: m["layers"][1].update(cores=[[0, 0]]), "mapping/layers/1/cores"),
    (lambda m: m["layers"][1].update(cores=[[1, 2]]), "mapping/layers/1/cores"),
    (lambda m: m["layers"][1].update(cores=[[1, 1], [2, 2]]), "mapping/layers/1/cores"),
    (lambda m: m["layers"][1].update(chips=[1]), "mapping/layers/1/chips"),
    (lambda m: m["layers"][0].update(stage="ann"), "mapping/layers/0/stage"),
    (lambda m: m["layers"][0].update(groups=2, cores=[[0, 1]]), "mapping/layers/0/groups"),
    (lambda m: m["layers"][0].update(groups=2, cores=[[0, 1]], neurons_per_group=3), "mapping/layers/1/cores"),
    (lambda m: m["system"].update(cores=256), "mapping/system/cores"),
    (lambda m: m["utilisation"].update(cores_used=1), "mapping/utilisation"),
    (lambda m: m["system"]["figures"].update(chip_crossing_spike_energy_pj=figure(-1e30)),
     "mapping/system/figures/chip_crossing_spike_energy_pj/value"),
    (lambda m: m["system"]["figures"].update(chip_crossing_spike_time_ns=figure(True)),
     "mapping/system/figures/chip_crossing_spike_time_ns/value"),
    (lambda m: m["system"]["figures"].update(chip_crossing_spike_time_ns=figure(1e300)),
     "mapping/system/figures/chip_crossing_spike_time_ns/value"),
])
def test_an_edited_mapping_is_refused_at_load(tmp_path, edit, where):
    model, x = two_dense()
    hybridc.compile(model, x, output_dir=tmp_path / "b")
    data = json.loads((tmp_path / "b/manifest.json").read_text())
    edit(data["mapping"])
    (tmp_path / "b/manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=f"at `{where}`"):
        hybridc.load(tmp_path / "b")


def test_the_cli_takes_a_system_and_refuses_a_bad_file_before_loading_the_model(tmp_path):
    (tmp_path / "model.py").write_text(SMALL_MODEL_FILE)
    system = system_file(tmp_path, chips=1, cores_per_chip=2, neurons_per_core=4)
    done = cli("compile", "model.py", "-o", "out", "--system", system, cwd=tmp_path, in_process=True)
    assert done.returncode == 0, done.stderr
    assert "fits tiny: 2 of 2 cores (100.0%) on 1 of 1 chip(s) of tiny-chip, 6 neurons" in " ".join(done.stdout.split())
    (tmp_path / "bad.json").write_text("[]")
    done = cli("compile", "missing.py", "-o", "out2", "--system", "bad.json", cwd=tmp_path, in_process=True)
    assert done.returncode == 18 and "`(top level)` must be an object" in " ".join((done.stdout + done.stderr).split())


@pytest.mark.parametrize("order,source_order", [("CHW", "CHW"), ("HWC", "CHW"), ("CHW", "HWC"), ("HWC", "HWC")])
def test_input_boxes_hold_every_input_a_group_reads_and_count_below_an_index(order, source_order):
    """Brute force on random conv geometries, groups in either order (a channel's rows, or
    spatial tiles) reading a source numbered in either: each group's box holds every input its
    outputs read (so input axons and crossings are upper bounds), its synapses are the
    connections its neurons have, and `_below` counts the box exactly in the source's
    numbering, and sums weights over it exactly."""
    import random

    import numpy as np

    from hybridc.mapping.fit import Unit, _below, _boxes, _integral, _size, group_figures, in_order
    from hybridc.mapping.layers import LoihiLayer

    rng = random.Random(1)
    checked = 0
    while checked < 60:
        c_in = rng.choice([1, 2, 4])
        groups = rng.choice([1, c_in])
        c_out, height, width = groups * rng.choice([1, 2, 3]), rng.randint(3, 7), rng.randint(3, 7)
        k, s, p, d = rng.choice([1, 2, 3]), rng.choice([1, 2]), rng.choice([0, 1]), rng.choice([1, 2])
        h_out, w_out = (height + 2 * p - d * (k - 1) - 1) // s + 1, (width + 2 * p - d * (k - 1) - 1) // s + 1
        if h_out < 1 or w_out < 1:
            continue
        checked += 1
        total = c_out * h_out * w_out
        layer = LoihiLayer(0, "conv", (c_out, h_out, w_out), total, 0, 0, (k, k), (s, s), (p, p), groups, (d, d),
                           in_shape=(c_in, height, width))
        size = rng.randint(1, total)
        starts = np.arange(0, total, size)
        ends = np.minimum(starts + size, total)
        boxes, sizes = _boxes(layer, starts, ends, order), _size(_boxes(layer, starts, ends, order))
        synapses = group_figures(Unit("s", {"layer": 0}, layer, order=order), size, {})["synapses"]
        for g, (a, b) in enumerate(zip(starts, ends)):
            read, connections = set(), 0
            for o in range(a, b):
                if order == "CHW":
                    c, rest = divmod(o, h_out * w_out)
                    r, col = divmod(rest, w_out)
                else:
                    position, c = divmod(o, c_out)
                    r, col = divmod(position, w_out)
                first = c // (c_out // groups) * (c_in // groups)
                for ch in range(first, first + c_in // groups):
                    for i in range(k):
                        for j in range(k):
                            y, x = r * s - p + i * d, col * s - p + j * d
                            if 0 <= y < height and 0 <= x < width:
                                read.add((ch, y, x))
                                connections += 1
            assert synapses[g] == connections
            box = [(int(lo[g]), int(hi[g])) for lo, hi in boxes]
            inside = [(ch, y, x) for ch in range(box[0][0], box[0][1] + 1) for y in range(box[1][0], box[1][1] + 1)
                      for x in range(box[2][0], box[2][1] + 1)]
            assert read <= set(inside) and sizes[g] == len(inside)
            one = in_order(tuple((np.array([lo]), np.array([hi])) for lo, hi in box), source_order)
            shape = in_order((c_in, height, width), source_order)
            flat = sorted(ch * height * width + y * width + x if source_order == "CHW" else (y * width + x) * c_in + ch
                          for ch, y, x in inside)
            weights = np.arange(c_in * height * width, dtype=np.float64) % 7 + 0.5  # spikes, in the source's numbering
            table = _integral(weights.reshape(shape))
            for x in range(c_in * height * width + 1):
                assert _below(one, np.int64(x), shape)[0] == sum(v < x for v in flat)
                assert _below(one, np.int64(x), shape, table)[0] == sum(weights[v] for v in flat if v < x)


def test_profile_takes_cores_and_chips_from_the_mapping(tmp_path):
    from hybridc.profiling.report import profile_build

    model, x = two_dense()
    hybridc.compile(model, x, output_dir=tmp_path / "b")
    recorded = profile_build(tmp_path / "b", samples=1, measure=False)
    assert [r["cores"] for r in recorded.loihi["layers"]] == [1, 1] and recorded.devices["system"] == "loihi2"
    assert any("mapping onto loihi2 (recorded at compile" in note for note in recorded.notes)
    # by hand, as above: 4 neurons a core, 2 cores a chip: 2 + 2 groups in stripes (a group of
    # each layer on each chip)
    system = system_file(tmp_path, chips=2, cores_per_chip=2, neurons_per_core=4)
    remapped = profile_build(tmp_path / "b", samples=1, measure=False, system=system)
    assert [r["cores"] for r in remapped.loihi["layers"]] == [2, 2]
    assert (remapped.loihi["chips"], remapped.loihi["axons_crossing_chips"]) == (2, 6)
    # each group of layer 1 reads every neuron of layer 0, half of them on the other chip: each
    # spike of layer 0 crosses once (in layer order, to both groups of layer 1: twice)
    first, second = remapped.loihi["layers"]
    assert first["spikes_from_other_chips"] == 0 and first["spikes_out"] > 0
    assert second["spikes_from_other_chips"] == pytest.approx(first["spikes_out"])
    assert remapped.loihi["spikes_crossing_chips"] == pytest.approx(first["spikes_out"])
    assert any("not costed" in note for note in remapped.notes)
    assert recorded.loihi["spikes_crossing_chips"] == 0
    assert any("mapping onto tiny (--system" in note for note in remapped.notes)
    with pytest.raises(MappingError, match="needs 4 cores"):
        profile_build(tmp_path / "b", samples=1, measure=False,
                      system=system_file(tmp_path, chips=1, name="one", cores_per_chip=2, neurons_per_core=4))


def test_a_system_that_prices_a_spike_between_chips_has_them_costed_apart(tmp_path):
    # the mapping above, on a system whose file says what a spike between chips costs: profile
    # adds crossing spikes x 50 pJ to the energy and x 2 ns to the time, and says from what
    from hybridc.profiling.report import profile_build

    model, x = two_dense()
    hybridc.compile(model, x, output_dir=tmp_path / "b")
    plain = profile_build(tmp_path / "b", samples=1, measure=False,
                          system=system_file(tmp_path, chips=2, cores_per_chip=2, neurons_per_core=4))
    priced = profile_build(tmp_path / "b", samples=1, measure=False, system=system_file(
        tmp_path, chips=2, name="priced", cores_per_chip=2, neurons_per_core=4,
        chip_crossing_spike_energy_pj=50.0, chip_crossing_spike_time_ns=2))
    crossed = priced.loihi["spikes_crossing_chips"]
    assert crossed > 0 and crossed == plain.loihi["spikes_crossing_chips"]
    assert priced.loihi["energy_crossing_chips_j"] == pytest.approx(crossed * 50e-12)
    assert priced.loihi["time_crossing_chips_s"] == pytest.approx(crossed * 2e-9)
    assert priced.energy_j["loihi"] == pytest.approx(plain.energy_j["loihi"] + crossed * 50e-12)
    assert priced.latency_s["loihi"] == pytest.approx(plain.latency_s["loihi"] + crossed * 2e-9)
    assert any("costed apart" in note and "a test's hand-made chip" in note for note in priced.notes)
    with pytest.raises(SystemFileError, match="chip_crossing_spike_energy_pj/value` must be a number from 0"):
        resolve(system_file(tmp_path, name="bad", cores_per_chip=2, neurons_per_core=4,
                            chip_crossing_spike_energy_pj=-1))


def test_inspect_shows_the_chips_and_cores(tmp_path):
    from hybridc.errors import InputError

    system = system_file(tmp_path, chips=2, cores_per_chip=2, neurons_per_core=4)
    model, x = two_dense()
    compiled = hybridc.compile(model, x, output_dir=tmp_path / "b", system=system)
    view = hybridc.inspect(compiled).cores()
    assert [(c["chip"], c["cores"], c["neurons"], [(la["layer"], la["cores"], la["neurons"]) for la in c["layers"]])
            for c in view["chips"]] == [(0, 2, 8, [(0, [0, 0], 4), (1, [1, 1], 4)]),
                                        (1, 2, 3, [(0, [2, 2], 2), (1, [3, 3], 1)])]
    table = " ".join(str(hybridc.inspect(compiled).table("cores")).split())
    assert "tiny: 4 of 4 cores (100.0%) on 2 of 2 chip(s) of tiny-chip; 6 input axons cross chips" in table
    assert "snn layer 1" in table
    done = cli("inspect", "b", "--level", "cores", "-f", "json", cwd=tmp_path, in_process=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["cores"] == view
    done = cli("inspect", "b", "--level", "cores", "--system", "loihi2", "-f", "html", "-o", "b.html", cwd=tmp_path,
               in_process=True)
    assert done.returncode == 0, done.stderr
    assert "loihi2: 2 of 128 cores (1.6%) on 1 of 1 chip(s) of loihi2" in (tmp_path / "b.html").read_text()
    assert "cores" not in json.loads(hybridc.inspect(compiled).to_json())  # only at --level cores
    compiled.manifest.mapping = None
    with pytest.raises(InputError, match="records no mapping"):
        hybridc.inspect(compiled).cores()


def test_a_recurrent_layer_is_charged_its_feedback_synapses_and_axons(tmp_path):
    """cuba.Recurrent 10 -> 8: each neuron reads 10 inputs and the layer's own 8 spikes, so
    one core holds 8 x (10 + 8) = 144 synapses and 18 input axons."""
    from lava.lib.dl import slayer

    class Rec(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.r = slayer.block.cuba.Recurrent(dict(NEURON), 10, 8)
            self.acc = Accumulator(4)
            self.head = torch.nn.Linear(8 * 4, 2)

        def forward(self, x):
            return self.head(self.acc(self.r(x)))

    compiled = hybridc.compile(Rec().eval(), (torch.rand(1, 10, 16) < 0.3).float(), output_dir=tmp_path / "b")
    (layer,) = json.loads((compiled.directory / "manifest.json").read_text())["mapping"]["layers"]
    assert (layer["synapses"], layer["per_core"]["synapses"], layer["per_core"]["input_axons"]) == (144, 144, 18)


@pytest.mark.parametrize("order,source_order", [("CHW", "CHW"), ("HWC", "HWC"), ("HWC", "CHW")])
def test_crossing_spikes_sum_the_boxes_over_source_neurons_on_other_chips(order, source_order):
    """crossing_from against brute force: for each group, the weights (spikes) of the source
    neurons in its box whose group sits on another chip, in either numbering."""
    import random

    import numpy as np

    from hybridc.mapping.fit import _boxes, crossing_from
    from hybridc.mapping.layers import LoihiLayer

    rng = random.Random(7)
    for _ in range(25):
        c_in, c_out, height, width = rng.choice([1, 2, 3]), rng.choice([1, 2, 4]), rng.randint(3, 6), rng.randint(3, 6)
        total, sources = c_out * height * width, c_in * height * width
        layer = LoihiLayer(0, "conv", (c_out, height, width), total, 0, 0, (3, 3), (1, 1), (1, 1), 1, (1, 1),
                           in_shape=(c_in, height, width))
        size, source_size = rng.randint(1, total), rng.randint(1, sources)
        groups, source_groups = -(-total // size), -(-sources // source_size)
        chip_of = np.sort(np.array([rng.randint(0, 2) for _ in range(groups)]))
        source_chip_of = np.sort(np.array([rng.randint(0, 2) for _ in range(source_groups)]))
        weights = np.array([rng.randint(0, 3) for _ in range(sources)], dtype=np.float64).reshape(c_in, height, width)
        starts = np.arange(0, total, size)
        boxes = _boxes(layer, starts, np.minimum(starts + size, total), order)
        expected = 0.0
        for g in range(groups):
            (c0, c1), (r0, r1), (k0, k1) = [(int(lo[g]), int(hi[g])) for lo, hi in boxes]
            for ch in range(c0, c1 + 1):
                for y in range(r0, r1 + 1):
                    for x in range(k0, k1 + 1):
                        index = ch * height * width + y * width + x if source_order == "CHW" else \
                            (y * width + x) * c_in + ch
                        if source_chip_of[index // source_size] != chip_of[g]:
                            expected += weights[ch, y, x]
        got = crossing_from(layer, size, chip_of, source_size, source_chip_of, weights=weights.ravel(),
                            order=order, source_order=source_order)
        assert got == pytest.approx(expected)


def test_a_conv_layer_is_split_into_spatial_tiles_where_they_read_fewer_inputs(tmp_path):
    # by hand, 36 neurons a core: by channel, each group is one whole 6x6 channel reading both
    # input channels whole (2 x 6 x 6 = 72 axons). As tiles (every channel of 9 positions,
    # 1.5 rows) group 1 holds row 1 from column 3 and row 2, reading input rows 0..3: 2 x 4 x 6
    # = 48 axons, the worst of the four. Same cores, fewer axons: tiles. Its synapses: 36 neurons
    # x 2 x 3 x 3, less 6 for each of the 3 x 4 neurons on a side column (576), the most.
    model, x = one_conv()
    (conv,) = layers(hybridc.compile(model, x, system=system_file(tmp_path, chips=1, cores_per_chip=8,
                                                                    neurons_per_core=36)))
    assert (conv["order"], conv["groups"], conv["neurons_per_group"]) == ("HWC", 4, 36)
    assert conv["per_core"]["input_axons"] == 48 and conv["per_core"]["synapses"] == 576


def wide_convs():
    """Spiking Conv 1 -> 4 -> 4 channels, 3x3, padding 1, on 6x6: two layers of 4 x 36 neurons."""
    from lava.lib.dl import slayer

    torch.manual_seed(0)
    model = torch.nn.Sequential(slayer.block.cuba.Conv(NEURON, 1, 4, 3, padding=1, weight_scale=3),
                                slayer.block.cuba.Conv(NEURON, 4, 4, 3, padding=1, weight_scale=3),
                                Accumulator(2), torch.nn.Flatten(1, 3), torch.nn.Linear(4 * 36 * 2, 2)).eval()
    return model, (torch.rand(1, 1, 6, 6, 4) < 0.5).float()


def test_tiles_of_the_next_conv_take_a_spike_to_fewer_cores(tmp_path):
    # by hand: Conv 1 -> 4 -> 4 on 6x6 at 24 neurons a core (one row of 4 channels as a tile,
    # 4 rows of one channel otherwise). Both layers tile (18 and 72 input axons against 36 and
    # 120). A spike of layer 0 lands in 3 rows of layer 1, every channel: 3 x 6 x 4 = 72
    # neurons, at most ceil(72 / 24) + 1 = 4 tiles (by channel it would be 4 channels x 2
    # bands, capped at the 6 groups): 24 x 4 output axons a core.
    model, x = wide_convs()
    first, second = layers(hybridc.compile(model, x, system=system_file(tmp_path, chips=1, cores_per_chip=16,
                                                                         neurons_per_core=24)))
    assert (first["order"], first["groups"], first["per_core"]["input_axons"]) == ("HWC", 6, 18)
    assert (second["order"], second["groups"], second["per_core"]["input_axons"]) == ("HWC", 6, 72)
    assert first["per_core"]["output_axons"] == 24 * 4


def test_tiles_in_stripes_read_the_layer_before_from_their_own_chip(tmp_path):
    # by hand: the Conv 1 -> 4 -> 4 chain above (6 tiles of one row each) on 2 chips of 6 cores.
    # In layer order layer 1's tiles are all on chip 1 and read every row of layer 0 across:
    # 2 x 48 (edge rows, 2 input rows) + 4 x 72 = 384 axons. In stripes, chip 0 holds rows 0-2
    # of both layers and chip 1 rows 3-5: only tile 2 reads row 3 and tile 3 row 2 across,
    # 6 x 4 neurons each: 48. The stripes are kept.
    model, x = wide_convs()
    compiled = hybridc.compile(model, x, system=system_file(tmp_path, chips=2, cores_per_chip=6, neurons_per_core=24))
    first, second = layers(compiled)
    assert (first["order"], first["cores"], second["order"], second["cores"]) == (
        "HWC", [[0, 2], [6, 8]], "HWC", [[3, 5], [9, 11]])
    assert (first["axons_from_other_chips"], second["axons_from_other_chips"]) == (0, 48)
    from hybridc.mapping.fit import crossing, layout, place, read_units

    units = read_units(compiled.manifest.stages, compiled.directory)
    layout(units, resolve(system_file(tmp_path, chips=2, name="again", cores_per_chip=6, neurons_per_core=24)).chip)
    place(units, 6, 2)
    assert sum(crossing(u) for u in units) == 2 * 48 + 4 * 72


def test_spikes_from_a_tiled_conv_into_a_dense_layer_are_counted_across_chips(tmp_path):
    # Conv 2 -> 4 on 6x6 in 4 tiles of 36 neurons, then a Dense 144 -> 6 on one core, on 2 chips
    # of 4 cores: the dense layer reads every conv neuron, some on the other chip; the conv's
    # spike counts are renumbered in tile order to be summed (this crashed before)
    from lava.lib.dl import slayer

    from hybridc.profiling.report import profile_build

    torch.manual_seed(0)
    model = torch.nn.Sequential(slayer.block.cuba.Conv(NEURON, 2, 4, 3, padding=1, weight_scale=3),
                                slayer.block.cuba.Flatten(), slayer.block.cuba.Dense(NEURON, 144, 6, weight_scale=3),
                                Accumulator(2), torch.nn.Linear(12, 2)).eval()
    x = (torch.rand(1, 2, 6, 6, 4) < 0.5).float()
    system = system_file(tmp_path, chips=2, cores_per_chip=4, neurons_per_core=36)
    hybridc.compile(model, x, output_dir=tmp_path / "b", system=system)
    mapped = hybridc.load(tmp_path / "b").manifest.mapping["layers"]
    assert [(m["kind"], m["order"], m["groups"]) for m in mapped] == [("conv", "HWC", 4), ("dense", "CHW", 1)]
    profile = profile_build(tmp_path / "b", samples=2, measure=False, data="random:0.5")
    conv, dense = [r for r in profile.loihi["layers"] if r["neurons"]]
    dense_chip = mapped[1]["chips"][0]
    conv_chips = [first // 4 for first, last in mapped[0]["cores"] for _ in range(last - first + 1)]
    assert conv["spikes_out"] > 0 and len(set(conv_chips) | {dense_chip}) == 2
    assert 0 < dense["spikes_from_other_chips"] < conv["spikes_out"]


def test_nan_and_infinity_in_a_manifest_are_refused(tmp_path):
    """Python's json reads NaN and Infinity; a build never holds them, so load refuses them
    (a NaN cost figure would otherwise pass every range check and poison profile's totals)."""
    model, x = two_dense()
    hybridc.compile(model, x, output_dir=tmp_path / "b")
    data = json.loads((tmp_path / "b/manifest.json").read_text())
    data["mapping"]["system"]["figures"]["chip_crossing_spike_energy_pj"] = figure(0.5)
    text = json.dumps(data).replace('"value": 0.5', '"value": NaN')
    (tmp_path / "b/manifest.json").write_text(text)
    with pytest.raises(ArtifactError, match="`NaN` is not a JSON number"):
        hybridc.load(tmp_path / "b")
