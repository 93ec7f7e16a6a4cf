"""The manifest: schema-valid, honest sha256s, and a build that refuses to run when tampered with."""

import json
import subprocess
import sys

import jsonschema
import numpy as np
import pytest
import torch
from helpers import ROOT, spikes

import hybridc
from hybridc.digest import sha256
from hybridc.manifest import schema


@pytest.fixture(scope="module")
def build(example, tmp_path_factory):
    model, x = example.build("S2A4", interval=4, size=32, timesteps=16, batch=2, seed=7)
    out = tmp_path_factory.mktemp("m") / "build"
    compiled = hybridc.compile(model, x, output_dir=out)
    return model, x, compiled, out


def test_manifest_validates_and_hashes_match(build):
    _, _, compiled, out = build
    data = json.loads((out / "manifest.json").read_text())
    jsonschema.validate(data, schema())
    assert data["format"] == "hybridc-manifest/2" and data["target"] == "loihi+jetson" and data["timesteps"] == 16
    assert [s["name"] for s in data["stages"]] == ["snn", "ann"]
    assert data["source"] is None  # compiled from Python: no model file to rebuild from (docs/manifest.md)
    # the chain's edges: input -> snn, snn -> ann through the I=4 accumulator, ann -> output
    edges = [(e["producer"]["stage"], e["consumer"]["stage"], e["conversion"]["kind"]) for e in data["edges"]]
    assert edges == [(None, "snn", "none"), ("snn", "ann", "accumulator"), ("ann", None, "none")]
    cut = data["edges"][1]
    # I=4: counts of ceil(log2 5) = 3 bits over 4 windows beat 16 one-bit spikes: the sender accumulates
    assert cut["conversion"]["interval"] == 4 and cut["conversion"]["runs_on"] == "producer"
    assert cut["shape"] == [8, 8, 8, 4] and cut["layout"] == "CHWK" and cut["bits_per_value"] == 3
    assert cut["bytes_per_inference"] == 8 * 8 * 8 * 4 * 3 / 8
    for stage in data["stages"]:
        assert sha256(out / stage["artifact"]) == stage["sha256"]
    assert compiled.manifest.to_dict() == data
    # written by orjson, laid out as json.dumps(indent=2) (this manifest has no float below 1e-4)
    assert (out / "manifest.json").read_text() == json.dumps(data, indent=2) + "\n"


def test_docs_schema_is_the_shipped_schema():
    assert json.loads((ROOT / "docs/manifest.schema.json").read_text()) == schema()


def test_modified_artifact_is_named(build, tmp_path):
    _, _, compiled, out = build
    copy = compiled.save(tmp_path / "copy")
    with open(copy / "ann.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(hybridc.errors.ArtifactError, match=r"Stage `ann`.*ann.onnx was modified"):
        hybridc.load(copy)


def test_unknown_format_version_is_refused(build, tmp_path):
    _, _, compiled, _ = build
    copy = compiled.save(tmp_path / "copy")
    data = json.loads((copy / "manifest.json").read_text())
    data["format"] = "hybridc-manifest/9"
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(hybridc.errors.ArtifactError, match="hybridc-manifest/9"):
        hybridc.load(copy)


@pytest.mark.lava
def test_format_1_build_still_loads_and_runs(build, tmp_path):
    """A build written before the stage graph (format 1: a chain) loads with its edges derived."""
    model, x, compiled, _ = build
    copy = compiled.save(tmp_path / "v1")
    data = json.loads((copy / "manifest.json").read_text())
    data["format"] = "hybridc-manifest/1"
    del data["edges"]
    for stage in data["stages"]:
        for tensor in stage["inputs"] + stage["outputs"]:
            for key in ("node", "layer", "delay"):
                tensor.pop(key, None)
    (copy / "manifest.json").write_text(json.dumps(data))
    loaded = hybridc.load(copy)
    assert [(e.producer["stage"], e.consumer["stage"]) for e in loaded.manifest.edges] == [
        (None, "snn"), ("snn", "ann"), ("ann", None)]
    assert loaded.manifest.edges[1].conversion.interval == 4
    with torch.no_grad():
        expected = model(x[:1])
    assert (hybridc.run(loaded, x[:1]) - expected).abs().max() < 1e-4


def test_partition_graph_round_trips(build):
    _, _, compiled, out = build
    loaded = hybridc.load(out)
    assert set(loaded.graph.nodes) == set(compiled.graph.nodes)
    targets = {d["target"] for _, d in loaded.graph.nodes(data=True) if d["target"]}
    assert targets == {"loihi", "jetson"}
    assert [p.name for p in loaded.partitions] == ["snn", "ann"]
    snn_nodes = [n for n, d in loaded.graph.nodes(data=True) if d["partition"] == "snn"]
    assert len([n for n in snn_nodes if loaded.graph.nodes[n]["module_type"] == "Conv"]) == 2


@pytest.mark.lava
def test_cli_run_matches_model(build, tmp_path, cli):
    model, x, _, out = build
    np.save(tmp_path / "x.npy", x.numpy())
    result = cli("run", out, "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert result.returncode == 0, result.stderr
    with torch.no_grad():
        expected = model(x).numpy()
    y = np.load(tmp_path / "y.npy")
    assert np.abs(y - expected).max() < 1e-4 and (y.argmax(-1) == expected.argmax(-1)).all()


@pytest.mark.lava
def test_batch_axis_is_dynamic(build):
    model, _, compiled, _ = build
    x = spikes(3, 2, 32, 32, 16, seed=11)  # compiled with a batch of 2
    with torch.no_grad():
        expected = model(x)
    deployed = hybridc.run(compiled, x)
    assert deployed.shape == (3, 11) and (deployed - expected).abs().max() < 1e-4


def test_run_rejects_wrong_timesteps(build):
    _, _, compiled, _ = build
    with pytest.raises(hybridc.errors.InputError, match="T=16"):
        hybridc.run(compiled, spikes(1, 2, 32, 32, 12))


def test_help_does_not_import_torch(cli):
    code = "import sys; import hybridc.cli; assert 'torch' not in sys.modules and 'lava' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    result = cli("--help")
    assert result.returncode == 0 and "compile" in result.stdout
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("hybridc 0.")
