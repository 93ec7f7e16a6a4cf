"""The Python API raises only hybridc.errors classes. Whatever a target or a third-party
library raises reaches the user as a LoweringError (ArtifactError for a build that cannot
be read) naming the step and the layer, with the original message, as the CLI prints it.

The failures are real ones: artifacts that onnxruntime or nir cannot read (with the
manifest's sha256 updated, so the build passes hybridc's own checks), an input the
PyTorch model cannot take; only the compile case injects a fault, into slayer's HDF5 export."""

import json

import pytest
import torch
from helpers import NEURON, small_model
from lava.lib.dl import slayer

import hybridc
from hybridc.digest import sha256
from hybridc.errors import ArtifactError, HybridcError, LoweringError
from hybridc.nn import Accumulator


def replace_artifact(build, name: str, data: bytes) -> None:
    """Overwrite an artifact and record its new sha256, as if the build had been written so."""
    (build / name).write_bytes(data)
    manifest = json.loads((build / "manifest.json").read_text())
    for stage in manifest["stages"]:
        if stage["artifact"] == name:
            stage["sha256"] = sha256(build / name)
    (build / "manifest.json").write_text(json.dumps(manifest))


def test_compile_reports_a_library_failure_with_stage_and_layer(tmp_path, monkeypatch):
    model, x = small_model()

    def refuse(self, handle):  # what h5py says when slayer's export hands it data it cannot store
        raise TypeError("Object dtype dtype('O') has no native HDF5 equivalent")

    monkeypatch.setattr(slayer.block.cuba.Dense, "export_hdf5", refuse)
    with pytest.raises(LoweringError) as caught:
        hybridc.compile(model, x, output_dir=tmp_path / "b")
    message = str(caught.value)
    assert "compile > lowering partition `snn` for loihi > layer `_0` (Dense)" in message
    assert "raised TypeError: Object dtype dtype('O') has no native HDF5 equivalent" in message
    assert isinstance(caught.value.__cause__, TypeError)
    assert not (tmp_path / "b").exists()  # no partial output


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    model, x = small_model()
    directory = tmp_path_factory.mktemp("api") / "b"
    compiled = hybridc.compile(model, x, target="loihi+cpu", output_dir=directory)
    return directory, x, compiled


@pytest.mark.lava
def test_run_reports_an_unreadable_onnx_model(build, tmp_path):
    import shutil

    source, x, compiled = build
    copy = tmp_path / "b"
    shutil.copytree(source, copy)
    replace_artifact(copy, "ann.onnx", b"not an onnx model")
    with pytest.raises(HybridcError, match=r"ann\.onnx.*Protobuf parsing failed"):
        hybridc.run(copy, x)
    assert hybridc.inspect(copy).table()  # inspect reads only the manifest and graph: still fine


def test_verify_reports_an_input_the_model_cannot_take(build):
    _, _, compiled = build
    with pytest.raises(LoweringError, match="verify > running the PyTorch model for reference failed"):
        hybridc.verify(compiled, torch.zeros(1, 7, 4))


def test_load_reports_a_corrupt_graph_file(build, tmp_path):
    import shutil

    source, _, _ = build
    copy = tmp_path / "b"
    shutil.copytree(source, copy)
    (copy / "graph.json").write_text("[1, 2, 3]")
    with pytest.raises(ArtifactError, match="graph.json"):
        hybridc.load(copy)
    with pytest.raises(ArtifactError):
        hybridc.inspect(copy)


def test_run_reports_an_unreadable_nir_graph(tmp_path):
    model, x = small_model()
    hybridc.compile(model, x, target="nir+cpu", output_dir=tmp_path / "b")
    replace_artifact(tmp_path / "b", "snn.nir", b"\x89HDF garbage")
    with pytest.raises(ArtifactError, match="snn.nir is not a NIR graph"):
        hybridc.run(tmp_path / "b", x)


def test_profile_reports_an_unreadable_onnx_model(tmp_path):
    from hybridc.profiling import profile_build

    torch.manual_seed(0)
    model = torch.nn.Sequential(slayer.block.cuba.Conv(NEURON, 2, 4, 3, stride=2, padding=1, weight_scale=3),
                                Accumulator(2), torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4 * 2, 3)).eval()
    x = (torch.rand(1, 2, 8, 8, 4, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    compiled = hybridc.compile(model, x, target="loihi+cpu", output_dir=tmp_path / "b")
    replace_artifact(tmp_path / "b", "ann.onnx", b"not an onnx model")
    with pytest.raises(HybridcError, match=r"ann\.onnx|DecodeError"):
        profile_build(tmp_path / "b", samples=1, measure=False, reference=compiled.module)
