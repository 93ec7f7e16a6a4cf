"""Mutation fuzzing of build directories: a build may come from anyone, so
random edits to every manifest field, truncated, bit-flipped, random or swapped artifacts,
and symlinks out of the build must each end in success or a `hybridc.errors` class with a
clear message, with no internal error, no file read outside the build directory and no code
run, across every verb that opens a build (load, inspect, run, verify, profile).

Half the cases rewrite the manifest's sha256 fields to match the mutated files, as an
attacker would, so the parsers (JSON, netx HDF5, onnxruntime) see the damage.

Fast profile in `make test` (HYBRIDC_FUZZ_BUILD_EXAMPLES, default 8, derandomized);
`make fuzz` runs the long profile and writes the counts to fuzz_builds_report.json.
"""

import collections
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
from build_audit import audit
from helpers import model_header
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hybridc
from hybridc.digest import sha256
from hybridc.errors import ArtifactError, HybridcError
from hybridc.manifest import TensorSpec, payload_bytes

EXAMPLES = int(os.environ.get("HYBRIDC_FUZZ_BUILD_EXAMPLES", "8"))
REPORT = os.environ.get("HYBRIDC_FUZZ_BUILD_REPORT")
COUNTS = collections.Counter()

# A small conv hybrid on event frames, so that verify and profile reach their data stage too.
MODEL = model_header() + """
torch.manual_seed(0)
model = torch.nn.Sequential(slayer.block.cuba.Conv(N, 2, 4, 3, stride=2, padding=1, weight_scale=3),
                            Accumulator(2), torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4 * 2, 3))
example_input = (torch.rand(1, 2, 8, 8, 4) < 0.4).float()
"""
FILES = ("manifest.json", "graph.json", "snn.net", "ann.onnx")
# Values a hostile manifest would try, beside random JSON.
NASTY = ["../outside/secret.onnx", "../outside/secret.net", "/etc/hostname", "../../../../../../etc/hostname",
         "", ".", "..", "snn.net", "ann.onnx", "graph.json", "manifest.json", "outside", "a" * 5000, "ünï/cöde",
         None, True, 0, -1, 2 ** 31, 2 ** 63, 10 ** 30, 1e308, float("nan"), 2.0, [], {}, [0], [1] * 9,
         [65536, 65536, 64], "WHCT", "CHWT", "FT", "loihi", "jetson", "nir", "cpu", "jetson-int8", "build",
         "os.system", "float32", "object"]
JSON = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 40, 2 ** 40) | st.floats() | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=6)
VALUES = st.one_of(st.sampled_from(NASTY), JSON)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, cli):
    """The build every case starts from, compiled by the CLI from a model file and weights."""
    project = tmp_path_factory.mktemp("fuzzsource")
    (project / "model.py").write_text(MODEL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = cli("compile", "model.py", "-o", project / "build", cwd=project, in_process=True)
    assert result.returncode == 0, result.stdout + result.stderr
    compiled = hybridc.load(project / "build")
    return {"project": project, "build": project / "build", "x": _input(compiled),
            "paths": _json_paths(json.loads((project / "build/manifest.json").read_text()))}


def _input(compiled):
    torch.manual_seed(1)
    return (torch.rand(2, *compiled.manifest.stages[0].inputs[0].pytorch_shape()) < 0.4).float()


def _json_paths(data, prefix=()):
    paths = [prefix]
    children = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else []
    for key, value in children:
        paths += _json_paths(value, prefix + (key,))
    return paths


def mutations(paths):
    path = st.sampled_from(paths)
    file = st.sampled_from(FILES)
    return st.one_of(
        st.tuples(st.just("set"), path, VALUES),
        st.tuples(st.just("delete"), path),
        st.tuples(st.just("add key"), path, st.text(min_size=1, max_size=8), VALUES),
        st.tuples(st.just("truncate"), file, st.floats(0, 1)),
        st.tuples(st.just("flip bits"), file, st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)), min_size=1,
                                                       max_size=8)),
        st.tuples(st.just("random bytes"), file, st.binary(max_size=256)),
        st.tuples(st.just("swap"), file, file),
        st.tuples(st.just("symlink"), file, st.sampled_from(["outside secret", "outside text", "/etc/hostname",
                                                             "other file", "itself", "missing", "..",
                                                             "outside dir"])),
        st.tuples(st.just("plant source"), st.booleans()),
    )


def _write(path: Path, data: bytes):
    """Replace `path` by a regular file (never write through a symlink into the outside)."""
    if path.is_symlink() or path.exists():
        path.unlink()
    path.write_bytes(data)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes() if path.is_file() and not path.is_symlink() else b""
    except OSError:
        return b""


def _edit_json(build: Path, change):
    try:
        data = json.loads(_read(build / "manifest.json"))
    except (ValueError, RecursionError):
        return
    if isinstance(data, dict):
        change(data)
    _write(build / "manifest.json", json.dumps(data).encode())


def _node(data, path):
    """The value at `path` in `data`, or None when an earlier edit removed it."""
    for key in path:
        if isinstance(data, dict) and isinstance(key, str) and key in data:
            data = data[key]
        elif isinstance(data, list) and isinstance(key, int) and key < len(data):
            data = data[key]
        else:
            return None
    return data


def _locate(data, path):
    """(container, key) for `path` in `data`, or None when an earlier edit removed it."""
    if not path:
        return None
    container = _node(data, path[:-1])
    present = (isinstance(container, dict) and path[-1] in container
               or isinstance(container, list) and isinstance(path[-1], int) and path[-1] < len(container))
    return (container, path[-1]) if present else None


def apply(op, build: Path, outside: Path):
    kind, *args = op
    if kind in ("set", "delete", "add key"):
        def change(data):
            if kind == "add key":
                target = _node(data, args[0])
                if isinstance(target, dict):
                    target[args[1]] = args[2]
                return
            where = _locate(data, args[0])
            if where is None:
                return
            container, key = where
            if kind == "set":
                container[key] = args[1]
            elif isinstance(container, dict):
                del container[key]
            else:
                container.pop(key)
        _edit_json(build, change)
    elif kind == "truncate":
        data = _read(build / args[0])
        _write(build / args[0], data[: int(len(data) * args[1])])
    elif kind == "flip bits":
        data = bytearray(_read(build / args[0]))
        for where, bit in args[1]:
            if data:
                data[min(int(where * len(data)), len(data) - 1)] ^= 1 << bit
        _write(build / args[0], bytes(data))
    elif kind == "random bytes":
        _write(build / args[0], args[1])
    elif kind == "swap":
        a, b = _read(build / args[0]), _read(build / args[1])
        _write(build / args[0], b)
        _write(build / args[1], a)
    elif kind == "symlink":
        name, target = args
        secret = outside / ("secret.onnx" if name.endswith(".onnx") else "secret.net" if name.endswith(".net")
                            else f"secret-{name}")
        link = {"outside secret": secret, "outside text": outside / "secret.txt", "/etc/hostname": "/etc/hostname",
                "other file": next(f for f in FILES if f != name), "itself": name, "missing": "nowhere",
                "..": "..", "outside dir": outside}[target]
        if (build / name).is_symlink() or (build / name).exists():
            (build / name).unlink()
        (build / name).symlink_to(link)
    elif kind == "plant source":
        def plant(data):
            if isinstance(data.get("source"), dict):
                data["source"].update(path=str(outside / "model.py"), sha256=sha256(outside / "model.py"))
                if args[0]:
                    data["source"].update(weights=str(outside / "secret.txt"),
                                          weights_sha256=sha256(outside / "secret.txt"))
        _edit_json(build, plant)


def resign(build: Path):
    """What an attacker does after editing files: make every recorded sha256 match again."""
    def change(data):
        for stage in data.get("stages") or [] if isinstance(data.get("stages"), list) else []:
            if isinstance(stage, dict) and isinstance(stage.get("artifact"), str):
                try:
                    target = build / stage["artifact"]
                    if target.is_file():
                        stage["sha256"] = sha256(target)
                except (OSError, RuntimeError, ValueError):
                    pass
    _edit_json(build, change)


def make_outside(root: Path, pristine) -> Path:
    """Files beside the build a hostile manifest may point at; reading or running any fails the case."""
    outside = root / "outside"
    outside.mkdir()
    shutil.copy(pristine["build"] / "ann.onnx", outside / "secret.onnx")
    shutil.copy(pristine["build"] / "snn.net", outside / "secret.net")
    for name in FILES:
        shutil.copy(pristine["build"] / name, outside / f"secret-{name}")
    (outside / "secret.txt").write_text("not for hybridc\n")
    (outside / "model.py").write_text(MODEL + f"open({str(root / 'code-ran')!r}, 'w').write('ran')\n")
    return outside


REASONS = {"is not valid at": "schema", "modified after compiling": "sha256", "outside the build": "confined",
           "is missing": "missing", "not a regular file": "not a file", "cannot be resolved": "symlink loop",
           "could not be read as": "parser", "records its reference model": "untrusted source",
           "compiled from Python": "no source", "has format": "format", "more than the": "size"}


def _clear(error: HybridcError) -> str:
    """The error's class and what it was about; fails on an unclear message."""
    message = " ".join(str(error).split())
    assert 20 < len(message) < 2000 and "Traceback" not in message, f"unclear message: {message!r}"
    reason = next((why for fragment, why in REASONS.items() if fragment in message), None)
    return f"{type(error).__name__} ({reason})" if reason else type(error).__name__


def exercise(build: Path, x, reference) -> str:
    """Every verb that opens a build, in the order a user would try them; returns the outcome."""
    from hybridc.profiling.report import profile_build
    from hybridc.runtime.dataset_verify import verify_dataset

    try:
        compiled = hybridc.load(build)
    except HybridcError as error:
        return f"refused at load: {_clear(error)}"
    outcome = []
    steps = {"inspect": lambda: hybridc.inspect(compiled).to_json(),
             "run": lambda: hybridc.run(compiled, x),
             "verify": lambda: verify_dataset(build, samples=1, backend="emulate"),
             "profile": lambda: profile_build(build, samples=1, measure=False, reference=reference)}
    for verb, step in steps.items():
        try:
            step()
            outcome.append(f"{verb} ok")
        except HybridcError as error:
            outcome.append(f"{verb}: {_clear(error)}")
            if verb == "verify":  # never trusted here: the recorded model file must not be imported
                assert outcome[-1].endswith(("(untrusted source)", "(no source)")), error
    return "loaded; " + ", ".join(outcome)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 50, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
@pytest.mark.lava  # `run` on each mutated build
def test_mutated_builds_end_in_a_hybridc_error(pristine, reference, data):
    ops = data.draw(st.lists(mutations(pristine["paths"]), min_size=1, max_size=3), label="mutations")
    attacker = data.draw(st.booleans(), label="sha256 rewritten to match")
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = Path(tmp)
        build = root / "build"
        shutil.copytree(pristine["build"], build)
        outside = make_outside(root, pristine)
        for op in ops:
            apply(op, build, outside)
        if attacker:
            resign(build)
        with audit() as seen:
            outcome = exercise(build, pristine["x"], reference)
        assert not seen.read_outside(build, [outside, pristine["project"] / "model.py", "/etc"]), seen.opened
        assert not seen.code_run_from([outside, pristine["project"], build])
        assert not (root / "code-ran").exists(), "a build's model file was imported"
    COUNTS[outcome] += 1
    if REPORT:
        Path(REPORT).write_text(json.dumps({"examples": sum(COUNTS.values()), "internal errors": 0,
                                            "reads outside": 0, "code run": 0,
                                            **dict(sorted(COUNTS.items()))}, indent=2) + "\n")


@pytest.fixture(scope="module")
def reference(pristine):
    """The pristine build's traced model, for profile (verify gets no reference: it must refuse)."""
    from hybridc.runtime.dataset_verify import ReferenceFiles, rebuild_reference

    manifest = hybridc.load(pristine["build"]).manifest
    return rebuild_reference(manifest, ReferenceFiles(model=pristine["project"] / "model.py"))[0]


@pytest.mark.lava
def test_pristine_build_passes_every_verb(pristine, reference):
    """The harness itself: with no mutation, every verb but verify (untrusted source) succeeds."""
    with audit() as seen:
        outcome = exercise(pristine["build"], pristine["x"], reference)
    assert outcome == "loaded; inspect ok, run ok, verify: ArtifactError (untrusted source), profile ok", outcome
    assert any(p.endswith("snn.net") for p in seen.parsed) and any(p.endswith("ann.onnx") for p in seen.parsed)


def test_verify_and_profile_take_a_named_model_file(pristine, tmp_path, cli):
    """A model file named with --model (here a moved copy) is checked by
    sha256 and used; the build's own record is not imported without it."""
    moved = tmp_path / "moved_model.py"
    shutil.copy(pristine["project"] / "model.py", moved)
    build = pristine["build"]
    result = cli("verify", build, "--model", moved, "--backend", "emulate", "--samples", "3",
                 "--json", tmp_path / "r.json", cwd=tmp_path, in_process=True)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["samples"] == 3 and report["argmax_agreement"] == 1.0 and report["max_abs_err"] < 1e-4
    result = cli("profile", build, "--model", moved, "--samples", "2", "--json", tmp_path / "p.json",
                 cwd=tmp_path, in_process=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((tmp_path / "p.json").read_text())["loihi"]["synaptic_ops"] > 0
    moved.write_text(MODEL + "# edited\n")
    result = cli("verify", build, "--model", moved, "--samples", "1", cwd=tmp_path, in_process=True)
    assert result.returncode == 9 and "is not the model file" in " ".join(result.stderr.split())


def _loop_back(data):
    """The dense stage feeds the spiking one back: shapes and bytes consistent, a cycle."""
    spikes_in = data["stages"][0]["inputs"][0]
    shape = list(TensorSpec(**spikes_in).pytorch_shape())
    data["stages"][1]["outputs"].append({"name": "loop", "shape": shape, "dtype": "float32", "layout": "CHWT"})
    data["stages"][0]["inputs"].append({**spikes_in, "name": "loop_in"})
    data["edges"].append({"producer": {"stage": "ann", "tensor": "loop"},
                          "consumer": {"stage": "snn", "input": "loop_in"}, "conversion": {"kind": "none"},
                          "shape": shape, "layout": "CHWT", "dtype": "float32", "bits_per_value": 1,
                          "bytes_per_inference": payload_bytes(shape, 1)})


def _second_feed(data):
    """The spiking stage's input fed by the dense stage's output too (same shape, no cycle check first)."""
    edge = dict(data["edges"][0])
    edge["producer"] = {"stage": None, "tensor": "input_1"}
    data["edges"].append(edge)


def _output_renamed(name):
    def edit(data):
        next(e for e in data["edges"] if e["consumer"]["stage"] is None)["consumer"]["input"] = name
    return edit


# Edits a schema cannot see: each edge must join what the stages declare.
EDGE_EDITS = {
    "missing producer stage": (lambda d: d["edges"][1]["producer"].update(stage="nowhere"),
                               "edges/1/producer/stage", "not in `stages`"),
    "missing output tensor": (lambda d: d["edges"][1]["producer"].update(tensor="nothing"),
                              "edges/1/producer/tensor", "has no output 'nothing'"),
    "missing consumer stage": (lambda d: d["edges"][0]["consumer"].update(stage="elsewhere"),
                               "edges/0/consumer/stage", "not in `stages`"),
    "missing input tensor": (lambda d: d["edges"][1]["consumer"].update(input="nothing"),
                             "edges/1/consumer/input", "has no input 'nothing'"),
    "shape off by one": (lambda d: d["edges"][0]["shape"].__setitem__(0, d["edges"][0]["shape"][0] + 1),
                         "edges/0/shape", "differs from"),
    "bytes doubled": (lambda d: d["edges"][2].update(bytes_per_inference=2 * d["edges"][2]["bytes_per_inference"]),
                      "edges/2/bytes_per_inference", "bits per value is"),
    "stages out of order": (lambda d: d["stages"].reverse(), "edges/1", "listed before it"),
    "cycle": (_loop_back, "edges/3", "form a cycle"),
    "input not fed": (lambda d: d["edges"].pop(0), "stages/0/inputs/0", "no edge feeds"),
    "two model outputs": (lambda d: d["edges"].append({**d["edges"][2], "layout": "X"}),
                          "edges/3/consumer/input", "model output `output` is fed by an earlier edge too"),
    "an edge twice": (lambda d: d["edges"].append(d["edges"][2]), "edges/3", "repeats edge 2"),
    "one accumulator twice": (lambda d: d["edges"].append({**d["edges"][1], "layout": "X" * len(d["edges"][1]["shape"])}),
                              "edges/3", "only as accumulators of it, each its own"),
    "an output skipped": (_output_renamed("output_2"), "edges", "1 output(s) are named output"),
    "a stage input fed twice": (_second_feed, "edges/3/consumer", "by an earlier edge; each stage input reads"),
}


@pytest.mark.parametrize("edit", list(EDGE_EDITS))
def test_edges_inconsistent_with_stages_are_refused(pristine, tmp_path, edit):
    change, where, what = EDGE_EDITS[edit]
    build = tmp_path / "build"
    shutil.copytree(pristine["build"], build)
    data = json.loads((build / "manifest.json").read_text())
    change(data)
    (build / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError) as refused:
        hybridc.load(build)
    assert f"`{where}" in str(refused.value) and what in str(refused.value), str(refused.value)
