"""A build directory is untrusted input: every file it names stays inside it,
its recorded model file is never imported unasked, and damaged artifacts are ArtifactErrors.

Each attack is the receiver's view of a build whose manifest.json was edited with the sha256
fields rewritten to match, as the issue describes it."""

import json
import shutil

import numpy as np
import pytest
import torch
from build_audit import audit
from helpers import SMALL_MODEL_FILE as GOOD

import hybridc
from hybridc.digest import sha256
from hybridc.errors import ArtifactError
from hybridc.runtime.dataset_verify import ReferenceFiles, rebuild_reference


@pytest.fixture(scope="module")
def project(tmp_path_factory, cli):
    """model.py + weights compiled by the CLI, so the manifest records source and weights."""
    directory = tmp_path_factory.mktemp("project")
    (directory / "model.py").write_text(GOOD)
    torch.manual_seed(3)
    state = {k: torch.randn_like(v) for k, v in _module(directory / "model.py").model.state_dict().items()}
    torch.save(state, directory / "w.pt")
    result = cli("compile", "model.py", "--weights", "w.pt", "-o", "build", cwd=directory, in_process=True)
    assert result.returncode == 0, result.stderr
    return directory


def _module(path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"untrusted_test_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def received(project, tmp_path):
    """A copy of the build as a receiver gets it, with an input file for `run`."""
    copy = tmp_path / "received" / "build"
    shutil.copytree(project / "build", copy)
    np.save(tmp_path / "x.npy", np.zeros((1, 10, 4), np.float32))
    return copy


def edit_manifest(build, change):
    path = build / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def one_paragraph(result):
    return " ".join(result.stderr.split())


def assert_artifact_error(result, *fragments):
    message = one_paragraph(result)
    assert result.returncode == 9, message
    assert "internal error" not in message and "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"


@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_artifact_path_outside_the_build_is_refused_before_it_is_read(received, tmp_path, how, cli):
    target = "/etc/hostname"
    name = "../" * len(received.resolve().parts) + target.lstrip("/") if how == "relative" else target

    def point_outside(data):
        data["stages"][1]["artifact"] = name
        data["stages"][1]["sha256"] = sha256(target)

    edit_manifest(received, point_outside)
    assert_artifact_error(cli("run", received, "-i", "x.npy", cwd=tmp_path, in_process=True), "stages/1/artifact")
    assert_artifact_error(cli("inspect", received, cwd=tmp_path, in_process=True), "stages/1/artifact")
    with audit() as seen, pytest.raises(ArtifactError, match="stages/1/artifact"):
        hybridc.load(received)
    assert not seen.read_outside(received, [target])


@pytest.mark.lava  # the trusted verify at the end
def test_build_cannot_run_the_model_file_it_carries(received, project, tmp_path, cli):
    marker = tmp_path / "code-ran"
    planted = received / "model.py"
    planted.write_text(GOOD + f"open({str(marker)!r}, 'w').write('the build ran its code')\n")

    def carry_own_source(data):
        data["source"]["path"] = str(planted)
        data["source"]["sha256"] = sha256(planted)

    edit_manifest(received, carry_own_source)
    result = cli("verify", received, "--samples", "1", cwd=tmp_path, in_process=True)
    assert_artifact_error(result, str(planted), "--model FILE", "--trust-source")
    assert not marker.exists(), "`hybridc verify` imported the build's model file"
    # profile needs no model at all: its activity comes from emulating snn.net
    result = cli("profile", received, "--samples", "1", cwd=tmp_path, in_process=True)
    assert result.returncode == 0, one_paragraph(result)
    assert not marker.exists(), "`hybridc profile` imported the build's model file"
    # Trusting the build is the user's explicit choice, and then (only then) the file runs.
    cli("verify", received, "--samples", "1", "--trust-source", cwd=tmp_path, in_process=True)
    assert marker.exists()


def test_symlink_out_of_the_build_is_refused(received, tmp_path, cli):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.move(received / "ann.onnx", outside / "ann.onnx")  # same bytes, same sha256: only the place differs
    (received / "ann.onnx").symlink_to(outside / "ann.onnx")
    assert_artifact_error(cli("run", received, "-i", "x.npy", cwd=tmp_path, in_process=True),
                          "stages/1/artifact", "outside the build directory")
    with audit() as seen, pytest.raises(ArtifactError, match="outside the build directory"):
        hybridc.load(received)
    assert not seen.read_outside(received, [outside])
    # the manifest and graph.json themselves are confined too
    for name in ("manifest.json", "graph.json"):
        copy = tmp_path / f"with-{name}" / "build"
        shutil.copytree(received, copy, symlinks=True)
        (copy / "ann.onnx").unlink()
        shutil.copy(outside / "ann.onnx", copy / "ann.onnx")
        shutil.move(copy / name, outside / name)
        (copy / name).symlink_to(outside / name)
        with pytest.raises(ArtifactError, match=f"`{name}`.*outside the build directory"):
            hybridc.load(copy)


def test_symlink_inside_the_build_is_followed(received):
    (received / "files").mkdir()
    shutil.move(received / "snn.net", received / "files" / "snn.net")
    (received / "snn.net").symlink_to("files/snn.net")
    assert hybridc.load(received).manifest.stages[0].artifact == "snn.net"


def resign(build, stage):
    edit_manifest(build, lambda d: d["stages"][stage].update(sha256=sha256(build / d["stages"][stage]["artifact"])))


@pytest.mark.parametrize("name,stage,what", [("ann.onnx", 1, "ONNX"), ("snn.net", 0, "netx HDF5")])
@pytest.mark.lava  # netx reads snn.net (ann.onnx: after Lava ran the snn stage)
def test_corrupt_artifact_with_a_matching_sha256_is_an_artifact_error(received, tmp_path, name, stage, what, cli):
    data = (received / name).read_bytes()
    (received / name).write_bytes(data[: len(data) // 2])
    assert_artifact_error(cli("run", received, "-i", "x.npy", cwd=tmp_path, in_process=True),
                          "modified after compiling")
    resign(received, stage)
    assert_artifact_error(cli("run", received, "-i", "x.npy", cwd=tmp_path, in_process=True),
                          f"{name} could not be read as", what)


def test_corrupt_graph_json_is_an_artifact_error(received, tmp_path, cli):
    graph = json.loads((received / "graph.json").read_text())
    graph["nodes"][1]["parameters"] = "many"
    (received / "graph.json").write_text(json.dumps(graph))
    assert_artifact_error(cli("inspect", received, cwd=tmp_path, in_process=True), "graph.json", "nodes/1/parameters")
    (received / "graph.json").write_text("{" * 100_000)  # deeper than Python's JSON recursion limit
    with pytest.raises(ArtifactError, match="graph.json could not be read as JSON"):
        hybridc.load(received)


BOUNDS = {
    # name: (change to the manifest, field the error must name)
    "zero size": (lambda d: d["stages"][0]["inputs"][0].update(shape=[0, 4]), "stages/0/inputs/0/shape/0"),
    "huge size": (lambda d: d["stages"][0]["inputs"][0].update(shape=[1 << 30, 4]), "stages/0/inputs/0/shape/0"),
    "huge tensor": (lambda d: d["stages"][1]["inputs"][0].update(shape=[65536, 65536]), "stages/1/inputs/0/shape"),
    "float size": (lambda d: d["stages"][0]["inputs"][0].update(shape=[10.0, 4]), "stages/0/inputs/0/shape/0"),
    "too many axes": (lambda d: d["stages"][0]["inputs"][0].update(shape=[1] * 9, layout="ABCDEFGHI"),
                      "stages/0/inputs/0/shape"),
    "layout disagrees": (lambda d: d["stages"][0]["inputs"][0].update(layout="WHCT"), "stages/0/inputs/0/layout"),
    "unknown target": (lambda d: d["stages"][0].update(target="gpu"), "stages/0/target"),
    "unknown dtype": (lambda d: d["stages"][1]["outputs"][0].update(dtype="object"), "stages/1/outputs/0/dtype"),
    "long name": (lambda d: d["stages"][0].update(name="s" * 10_000), "stages/0/name"),
    "dot-dot": (lambda d: d["stages"][0].update(artifact=".."), "stages/0/artifact"),
    "subdirectory": (lambda d: d["stages"][0].update(artifact="x/../snn.net"), "stages/0/artifact"),
    "trailing newline": (lambda d: d["stages"][0].update(artifact="snn.net\n"), "stages/0/artifact"),
    "manifest as artifact": (lambda d: d["stages"][0].update(artifact="manifest.json"), "stages/0/artifact"),
    "same artifact twice": (lambda d: d["stages"][1].update(artifact="snn.net"), "stages/1/artifact"),
    "same stage twice": (lambda d: d["stages"][1].update(name="snn"), "stages/1/name"),
    "negative timesteps": (lambda d: d.update(timesteps=-4), "timesteps"),
    "long source path": (lambda d: d["source"].update(path="/a" * 5000), "source/path"),
    "entry not a name": (lambda d: d["source"].update(entry="os.system('x')"), "source/entry"),
    "unknown field": (lambda d: d.update(run="rm -rf /"), "(top level)"),
    "stages not a list": (lambda d: d.update(stages={"snn": 1}), "stages"),
}


@pytest.mark.parametrize("case", sorted(BOUNDS))
def test_manifest_out_of_bounds_is_refused_naming_the_field(received, case):
    change, field = BOUNDS[case]
    edit_manifest(received, change)
    with audit() as seen, pytest.raises(ArtifactError) as error:
        hybridc.load(received)
    assert f"`{field}`" in str(error.value)
    assert not seen.parsed and not any(p.endswith((".net", ".onnx")) for p in seen.opened)  # no artifact read


def test_moved_model_and_weights_are_named_and_checked(project, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(project, moved)
    (moved / "model.py").rename(moved / "renamed.py")
    manifest = hybridc.load(moved / "build").manifest
    with pytest.raises(ArtifactError, match="--trust-source"):
        rebuild_reference(manifest)
    (project / "w.pt").rename(project / "w.pt.away")
    try:
        with pytest.raises(ArtifactError, match="w.pt, is gone.*--weights FILE"):
            rebuild_reference(manifest, ReferenceFiles(trust_source=True))
    finally:
        (project / "w.pt.away").rename(project / "w.pt")
    with pytest.raises(ArtifactError, match="is not the model file"):
        rebuild_reference(manifest, ReferenceFiles(model=moved / "build" / "graph.json"))
    torch.save({k: v + 1 for k, v in torch.load(moved / "w.pt").items()}, tmp_path / "other.pt")
    with pytest.raises(ArtifactError, match="is not the weights"):
        rebuild_reference(manifest, ReferenceFiles(model=moved / "renamed.py", weights=tmp_path / "other.pt"))
    gm, _ = rebuild_reference(manifest, ReferenceFiles(model=moved / "renamed.py", weights=moved / "w.pt"))
    module = _module(moved / "renamed.py")
    module.model.load_state_dict(torch.load(moved / "w.pt"))
    x = module.example_input
    with torch.no_grad():
        assert torch.equal(gm(x), module.model(x))  # the named weights, not the file's own random init
        assert not torch.equal(gm(x), _module(moved / "renamed.py").model(x))
