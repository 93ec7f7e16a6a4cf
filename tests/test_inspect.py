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


# --- layers imported from NIR graphs (hybridc.nn.NIR) --------------------------------------

def nir_chain():
    """input -> fc1 -> lif1 -> fc2 -> lif2 -> output, imported as two slayer Dense blocks."""
    import nir
    import numpy as np

    rng = np.random.default_rng(0)
    lif = lambda n: nir.LIF(tau=np.full(n, 1e-2), r=np.ones(n), v_leak=np.zeros(n),  # noqa: E731
                            v_threshold=np.ones(n))
    nodes = {"input": nir.Input(input_type={"input": np.array([12])}),
             "fc1": nir.Linear(weight=rng.normal(size=(8, 12)) * 4 + 0.6), "lif1": lif(8),
             "fc2": nir.Linear(weight=rng.normal(size=(4, 8)) * 4 + 0.6), "lif2": lif(4),
             "output": nir.Output(output_type={"output": np.array([4])})}
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def nir_branches():
    """nir_chain's lif1 split into fa -> a and fb -> b, joined again by ga and gb into `out`
    (one block over a and b concatenated): a branching Loihi stage."""
    import nir
    import numpy as np

    graph, rng = nir_chain(), np.random.default_rng(1)
    lif = graph.nodes["lif2"]
    graph.nodes.update({"fa": nir.Linear(weight=rng.normal(size=(4, 8)) * 4 + 0.6), "a": lif,
                        "fb": nir.Linear(weight=rng.normal(size=(4, 8)) * 4 + 0.6), "b": lif,
                        "ga": nir.Linear(weight=rng.normal(size=(4, 4)) * 4 + 0.6),
                        "gb": nir.Linear(weight=rng.normal(size=(4, 4)) * 4 + 0.6), "out": lif})
    for name in ("fc2", "lif2"):
        del graph.nodes[name]
    graph.edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fa"), ("fa", "a"), ("lif1", "fb"), ("fb", "b"),
                   ("a", "ga"), ("b", "gb"), ("ga", "out"), ("gb", "out"), ("out", "output")]
    return graph


def test_inspect_of_a_build_names_the_nir_nodes_of_its_layers(tmp_path, cli):
    """Recorded at compile time in the manifest (the build holds no model to ask), so inspect
    of the build directory shows them: table, --level nodes, JSON, DOT and the HTML page."""
    from hybridc.nn import NIR, Accumulator

    torch.manual_seed(0)
    model = torch.nn.Sequential(NIR(nir_chain(), dt=1e-3), Accumulator(4), torch.nn.Linear(4 * 3, 3)).eval()
    hybridc.compile(model, spikes(1, 12, 12, density=0.4), output_dir=tmp_path / "build")
    manifest = json.loads((tmp_path / "build/manifest.json").read_text())
    assert manifest["stages"][0]["nir_nodes"] == {"_0_blocks_fc1": ["fc1", "lif1"], "_0_blocks_fc2": ["fc2", "lif2"]}
    assert "nir_nodes" not in manifest["stages"][1]  # the dense stage has none

    def shown(*args):
        result = cli("inspect", tmp_path / "build", *args, in_process=True)
        assert result.returncode == 0, result.stdout + result.stderr
        return " ".join(result.stdout.split())

    assert "snn layers from NIR: _0_blocks_fc1 from fc1, lif1; _0_blocks_fc2 from fc2, lif2" in shown()
    assert "from NIR" in shown("--level", "nodes") and "fc2, lif2" in shown("--level", "nodes")
    nodes = {n["name"]: n for n in json.loads(shown("-f", "json"))["nodes"]}
    assert nodes["_0_blocks_fc1"]["nir"] == ["fc1", "lif1"] and "nir" not in nodes["_2"]  # the head
    assert 'from NIR fc1, lif1"' in shown("-f", "dot")
    page = hybridc.inspect(hybridc.load(tmp_path / "build")).to_html()
    assert "from NIR: fc2, lif2" in page
    # a branching graph: the join is one layer, named after its two synapse nodes and its neuron
    model[0] = NIR(nir_branches(), dt=1e-3)
    compiled = hybridc.compile(model, spikes(1, 12, 12, density=0.4))
    assert compiled.manifest.stages[0].segments
    nodes = {n["name"]: n.get("nir") for n in hybridc.inspect(compiled).nodes()}
    assert nodes["_0_blocks_ga"] == ["ga", "gb", "out"] and nodes["_0_blocks_fb"] == ["fb", "b"]


def test_inspect_without_nir_modules_is_unchanged(poolsum, tmp_path):
    """No NIR module: no `nir_nodes` in the manifest, no column, caption or key anywhere."""
    inspection = hybridc.inspect(poolsum)
    assert all("nir_nodes" not in stage for stage in json.loads(poolsum.manifest.to_json())["stages"])
    assert all("nir" not in n for n in json.loads(inspection.to_json())["nodes"])
    assert "NIR" not in str(inspection.table()) + str(inspection.table("nodes")) + inspection.to_dot()


def test_recorded_nir_names_are_checked_and_shown_as_text(tmp_path):
    """A build is untrusted: nir_nodes is bounded by the schema, a branching stage's keys must
    be its layers, and a name with rich markup is printed as it is, not interpreted."""
    from hybridc.errors import ArtifactError
    from hybridc.nn import NIR, Accumulator

    torch.manual_seed(0)
    model = torch.nn.Sequential(NIR(nir_chain(), dt=1e-3), Accumulator(4), torch.nn.Linear(4 * 3, 3)).eval()
    hybridc.compile(model, spikes(1, 12, 12, density=0.4), output_dir=tmp_path / "build")
    path = tmp_path / "build/manifest.json"
    good = json.loads(path.read_text())

    def loaded(change):
        data = json.loads(json.dumps(good))
        change(data["stages"][0])
        path.write_text(json.dumps(data))
        return hybridc.load(tmp_path / "build")

    for change in (lambda s: s.update(nir_nodes={"_0_blocks_fc1": []}),
                   lambda s: s.update(nir_nodes={"_0_blocks_fc1": ["a\x1b[31m"]}),
                   lambda s: s.update(nir_nodes={"not a name": ["fc1"]}),
                   lambda s: s.update(nir_nodes={"_0_blocks_fc1": [7]}),
                   lambda s: s.update(nir_nodes={"_0_blocks_fc1": ["x" * 300]})):
        with pytest.raises(ArtifactError, match="manifest.json is not valid at `stages/0/nir_nodes"):
            loaded(change)
    table = str(hybridc.inspect(loaded(lambda s: s.update(nir_nodes={"_0_blocks_fc1": ["[bold]fc1[/bold]"]}))).table())
    assert "from [bold]fc1[/bold]" in table
    # a branching stage lists its layers' fx nodes: nir_nodes may name only those
    model[0] = NIR(nir_branches(), dt=1e-3)
    hybridc.compile(model, spikes(1, 12, 12, density=0.4), output_dir=tmp_path / "build", force=True)
    good = json.loads(path.read_text())
    with pytest.raises(ArtifactError, match=r"stages/0/nir_nodes`: '_2' is none of the stage's layers"):
        loaded(lambda s: s["nir_nodes"].update({"_2": ["fc1"]}))


def test_inspect_of_the_nir_example_names_norses_nodes(cli):
    """examples/nir_import's model file (Norse's to_nir graph: nodes `0` .. `3`), traced and
    partitioned by inspect without a build: its two layers and the NIR nodes they came from."""
    result = cli("inspect", ROOT / "examples/nir_import/model.py", "-f", "json", in_process=True)
    assert result.returncode == 0, result.stdout + result.stderr
    nodes = {n["name"]: n.get("nir") for n in json.loads(result.stdout)["nodes"]}
    assert nodes["_0_blocks_0"] == ["0", "1"] and nodes["_0_blocks_2"] == ["2", "3"]
    result = cli("inspect", ROOT / "examples/nir_import/model.py", in_process=True)
    assert "snn layers from NIR: _0_blocks_0 from 0, 1; _0_blocks_2 from 2, 3" in " ".join(result.stdout.split())
