"""`hybridc inspect` shows what crosses each link as the manifest records it (its wire
formats: raw spikes, packed counts, graded "values"), in every format, and at --level nodes
where a branching spiking stage put each layer."""

import json

import pytest
import torch
from branch_models import SewResidual, example_input
from helpers import load_example

import hybridc


@pytest.fixture(scope="module")
def sdnn(tmp_path_factory):
    model, x = load_example("sdnn").build()
    directory = tmp_path_factory.mktemp("sdnn") / "b"
    hybridc.compile(model, x, output_dir=directory)
    return directory


def test_graded_tap_shows_the_values_wire_in_every_format(sdnn):
    inspection = hybridc.inspect(hybridc.load(sdnn))
    (cut,) = inspection.cuts
    # 24 sigma-delta values x T=8, summed by the sender over I=4: 24 x 2 window sums of 16 + 2 bits
    assert (cut.wire, cut.bits, cut.scale, cut.wire_shape) == ("values", 18, 4096, [24, 2])
    assert cut.wire_bytes == 24 * 2 * 18 // 8 == 108
    assert cut.bytes.raw_bytes == 24 * 8 * 16 / 8  # each step's 16-bit values, the form not chosen
    label = "values 18-bit x4096, 108 B per inference"
    size = inspection.table().columns[-1]._cells[-1]  # the cut row's size cell
    assert size.startswith("wire: values (graded, summed over I=4), integer = value x 4096, 24x2 at 18 bits = "
                           "108 B per inference")
    assert "spikes as bits" not in size and "uint8 counts" not in size  # not shown as unary spikes
    data = json.loads(inspection.to_json())
    assert (data["cuts"][0]["wire"], data["cuts"][0]["bits"], data["cuts"][0]["wire_bytes"]) == ("values", 18, 108)
    assert label in inspection.to_dot() and label in inspection.to_html()
    assert "wire: values (graded, summed over I=4), integer = value x 4096, 24x2 at 18 bits = 108 B" in \
        inspection.to_html()


def test_branching_stage_nodes_name_their_segment_and_extra_synapse(tmp_path):
    torch.manual_seed(0)
    hybridc.compile(SewResidual(), example_input(), output_dir=tmp_path / "b")
    inspection = hybridc.inspect(hybridc.load(tmp_path / "b"))  # what `inspect --level nodes -f json` prints
    data = json.loads(inspection.to_json())
    lowered = {n["name"]: n["lowered_to"] for n in data["nodes"]}
    assert lowered["c1"] == "segment 0 layer 0 (snn.net)" and lowered["c2"] == "segment 0 layer 1 (snn.net)"
    assert lowered["c3"] == "segment 0 layer 2 (snn.net) + extra synapse 0 from c1 (snn.synapses.h5)"
    assert lowered["add"] is None and lowered["head_fc_1"] is None
    # the cut: c3's 6x4x4 spikes over T=8, one window of I=8 counts at 4 bits
    (cut,) = data["cuts"]
    assert (cut["wire"], cut["bits"], cut["wire_bytes"]) == ("counts", 4, 6 * 4 * 4 * 4 // 8)
    table = inspection.table("nodes")
    assert table.columns[-1].header == "lowered to" and lowered["c3"] in table.columns[-1]._cells
    assert f"lowered to: {lowered['c3']}" in inspection.to_html() and lowered["c3"] in inspection.to_dot()
