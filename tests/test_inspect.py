"""Inspection of partition graphs: JSON with every node once, cut bytes by hand, DOT,
Graphviz rendering, and the HTML page checked in a real headless Chromium."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
from helpers import NEURON, ROOT, spikes
from lava.lib.dl import slayer

import hybridc

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


class PoolSum(torch.nn.Module):
    """Conv -> Pool -> Conv with a whole-window `.sum(-1)` at the cut (recognised)."""

    def __init__(self):
        super().__init__()
        self.conv1 = slayer.block.cuba.Conv(NEURON, 2, 6, 5, stride=2, padding=2, weight_scale=3)
        self.pool = slayer.block.cuba.Pool(NEURON, 2, weight_scale=2)
        self.conv2 = slayer.block.cuba.Conv(NEURON, 6, 8, 3, padding=1, weight_scale=3)
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 5))

    def forward(self, x):
        return self.head(self.conv2(self.pool(self.conv1(x))).sum(-1))


@pytest.fixture(scope="module")
def sxay(example):
    model, x = example.build("S2A4", interval=4, size=32, timesteps=16)
    return hybridc.compile(model, x)


@pytest.fixture(scope="module")
def poolsum():
    torch.manual_seed(0)
    return hybridc.compile(PoolSum(), spikes(1, 2, 24, 24, 12))


@pytest.mark.parametrize("name", ["sxay", "poolsum"])
def test_json_lists_every_node_once_with_its_target(name, request):
    compiled = request.getfixturevalue(name)
    data = json.loads(hybridc.inspect(compiled).to_json())
    names = [n["name"] for n in data["nodes"]]
    assert len(names) == len(set(names)) == len(compiled.graph) == len(compiled.module.graph.nodes)
    spiking = {n.name for n in compiled.module.graph.nodes if n.meta.get("hybridc_domain") == "spiking"}
    for n in data["nodes"]:
        expected = "loihi" if n["name"] in spiking else (None if n["op"] in ("placeholder", "output") else "jetson")
        assert n["target"] == expected, n
    assert {n["target"] for n in data["nodes"]} == {"loihi", "jetson", None}
    assert sorted(data) == ["cuts", "edges", "format", "nodes", "stage_edges", "stages", "target", "timesteps"]


def test_sxay_cut_bytes_by_hand(sxay):
    (cut,) = hybridc.inspect(sxay).cuts
    # S2A4 at 32x32: the cut is 8 channels x 8 x 8 x T=16 spikes
    assert cut.shape == [8, 8, 8, 16] and cut.interval == 4 and cut.windows == 4
    assert cut.bytes.spikes == 8192 and cut.bytes.raw_bytes == 8192 / 8
    assert cut.bytes.counts == 8 * 8 * 8 * 4 and cut.bytes.count_dtype == "uint8"
    assert cut.bytes.accumulated_bytes == 2048  # counts of 0..4 as uint8: more bytes than raw bits


def test_pool_and_recognised_sum_cut_bytes_by_hand(poolsum):
    inspection = hybridc.inspect(poolsum)
    (cut,) = inspection.cuts
    # conv2 output 8 x 6 x 6 x T=12; `.sum(-1)` is an accumulator with I=T=12 and one window
    assert cut.bytes.spikes == 8 * 6 * 6 * 12 and cut.bytes.raw_bytes == 432
    assert (cut.interval, cut.windows, cut.bytes.counts) == (12, 1, 288)
    assert cut.bytes.accumulated_bytes == 288
    accumulators = [n for n in inspection.nodes() if n["accumulator"]]
    assert len(accumulators) == 1 and "sum" in accumulators[0]["recognised_from"]
    assert [s.name for s in inspection.stages] == ["snn", "ann"]


def test_partition_graph_carries_the_cut(sxay):
    graph = sxay.partition_graph
    assert list(graph.edges) == [("snn", "ann")]
    edge = graph.edges["snn", "ann"]
    assert edge["interval"] == 4 and edge["bytes"]["raw_bytes"] == 1024
    assert graph.nodes["snn"]["target"] == "loihi" and graph.nodes["ann"]["parameters"] > 0


def test_dot_clusters_colours_and_accumulator_shape(poolsum):
    dot = hybridc.inspect(poolsum).to_dot()
    assert "subgraph cluster_snn" in dot and "subgraph cluster_ann" in dot
    assert dot.count("invtrapezium") == 1 and "penwidth=3" in dot
    assert '"#f4a261"' in dot and '"#76b900"' in dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed")
def test_svg_rendered_by_graphviz(sxay, tmp_path, cli):
    sxay.save(tmp_path / "build")
    result = cli("inspect", tmp_path / "build", "-f", "svg", "-o", tmp_path / "g.svg")
    assert result.returncode == 0, result.stderr
    svg = (tmp_path / "g.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "snn_2" in svg and "snn @ loihi" in svg
    # a long chain is folded into columns: the picture is not a strip (it was 472 x 2424 pt)
    width, height = (float(v) for v in re.search(r'width="([\d.]+)pt" height="([\d.]+)pt"', svg).groups())
    assert 0.5 < width / height < 2.5


def test_missing_graphviz_is_said_plainly(sxay, tmp_path, cli):
    sxay.save(tmp_path / "build")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable))  # no `dot` on this PATH
    result = cli("inspect", tmp_path / "build", "-f", "png", "-o", tmp_path / "g.png", env=env)
    assert result.returncode == 13
    assert "apt-get install graphviz" in " ".join(result.stderr.split()) and "Traceback" not in result.stderr
    assert not (tmp_path / "g.png").exists()


def test_inspect_model_file_writes_nothing(tmp_path, cli):
    result = cli("inspect", ROOT / "examples/dvs_gesture/model.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "cut snn -> ann" in result.stdout and "131,072 spikes as bits" in result.stdout
    assert list(tmp_path.iterdir()) == []


def _browser():
    if BROWSER is None:
        if os.environ.get("HYBRIDC_REQUIRE_BROWSER"):
            pytest.fail("chromium is required (HYBRIDC_REQUIRE_BROWSER is set) but not installed")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return BROWSER


def test_html_page_in_headless_chromium(poolsum, tmp_path):
    browser = _browser()
    page = tmp_path / "graph.html"
    hybridc.inspect(poolsum).to_html(page)
    assert "http://" not in page.read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")  # self-contained
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([browser, *CHROMIUM_FLAGS, *profile, "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    for node in poolsum.graph.nodes:
        assert f'id="node-{node}"' in dom, node
    assert 'data-target="loihi"' in dom and 'data-target="jetson"' in dom and 'class="cut"' in dom
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *CHROMIUM_FLAGS, *profile, "--window-size=1200,900", f"--screenshot={shot}",
                    page.as_uri()], capture_output=True, timeout=120)
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20)
    assert image.size == (1200, 900) and len(colours) > 50  # text, boxes, two target colours: not blank
    pixels = {c for _, c in colours}
    assert (244, 162, 97) in pixels and (118, 185, 0) in pixels  # loihi orange and jetson green drawn


def test_repr_html_for_notebooks(sxay):
    html = hybridc.inspect(sxay)._repr_html_()
    assert html.startswith('<div class="hybridc-inspect">') and "<svg" in html and "<html" not in html
