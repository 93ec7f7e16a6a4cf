"""Errors are product: every mistake a user can make gets one paragraph naming the
node/module/file and what to do, its own exit code, no traceback, and no output."""

import json
import resource
import shutil
import signal
import subprocess
import textwrap
import time

import numpy as np
import pytest
import torch
from helpers import NEURON, ROOT, SMALL_MODEL_FILE, model_header, neuron, small_model

import hybridc

HEADER = model_header()
GOOD = SMALL_MODEL_FILE

CASES = {
    # name: (model file body or None for missing, extra args, exit code, fragments of the message)
    "missing file": (None, [], 2, ["does not exist"]),
    "syntax error": (HEADER + "model = torch.nn.Linear(2,\n", [], 2, ["syntax error at line"]),
    "raises on import": (HEADER + "x = 1\nraise RuntimeError('no GPU here')\n", [], 2,
                         ["RuntimeError: no GPU here", "line 7"]),
    "no example_input": (HEADER + "model = torch.nn.Linear(2, 2)\n", [], 2, ["no `example_input`", "--entry"]),
    "model not a module": (HEADER + "model = 3\nexample_input = torch.zeros(1, 2, 4)\n", [], 2,
                           ["`model`", "is a int, not a torch.nn.Module"]),
    "missing entry": (GOOD, ["--entry", "make"], 2, ["no function `make`"]),
    "example_input wrong shape": (GOOD.replace("torch.rand(1, 10, 4)", "torch.rand(1, 7, 4)"), [], 3,
                                  ["module `0`", "Dense", "example_input"]),
    "example_input wrong dtype": (GOOD.replace("< 0.5).float()", "< 0.5).long()"), [], 3,
                                  ["dtype int64", ".float()"]),
    "data-dependent if": (HEADER + textwrap.dedent("""
        class M(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.snn = slayer.block.cuba.Dense(N, 10, 6)
            def forward(self, x):
                s = self.snn(x)
                if s.sum() > 3:
                    return s.sum(-1)
                return s.mean(-1)
        model = M()
        example_input = torch.zeros(1, 10, 4)
        """), [], 3, ["model.py:", "if s.sum() > 3", "hybridc.annotate"]),
    "two cuts": (HEADER + textwrap.dedent("""
        model = torch.nn.Sequential(slayer.block.cuba.Dense(N, 10, 6), Accumulator(1, fold=False),
                                    torch.nn.ReLU(), slayer.block.cuba.Dense(N, 6, 4), Accumulator(2))
        example_input = torch.zeros(1, 10, 4)
        """), [], 5, ["feeds spiking node"]),
    "spike AND (SEW's AND)": (HEADER + textwrap.dedent("""
        class M(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.a = slayer.block.cuba.Dense(N, 10, 6)
                self.b = slayer.block.cuba.Dense(N, 6, 6)
                self.c = slayer.block.cuba.Dense(N, 6, 6)
                self.acc = Accumulator(2)
            def forward(self, x):
                s = self.a(x)
                return self.acc(self.c(self.b(s) * s))
        model = M()
        example_input = torch.zeros(1, 10, 4)
        """), [], 5, ["`mul`", "feeds spiking node `c`", "cannot compute exactly"]),
    "threshold out of range": (GOOD.replace(repr(NEURON), repr(neuron(threshold=5000.0))), [], 14,
                               ["`0`", "threshold 5000", "131071"]),
    "weight overflow": (GOOD + "model[0].synapse.weight.data[0, 0] = 9.0\n", [], 14,
                        ["`0`", "weight 9", "[-256, 254]", "--on-overflow clip"]),
    "nan weight": (GOOD + "model[2].weight.data[0, 0] = float('nan')\n", [], 14, ["`2.weight`", "nan"]),
}


def assert_clean_failure(result, code, fragments, tmp_path, output="out"):
    message = " ".join(result.stderr.split())
    assert result.returncode == code, result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / output).exists()
    assert not [p for p in tmp_path.iterdir() if ".hybridc-" in p.name]


@pytest.mark.parametrize("case", sorted(CASES))
def test_compile_error(case, tmp_path, cli):
    body, args, code, fragments = CASES[case]
    if body is not None:
        (tmp_path / "model.py").write_text(body)
    result = cli("compile", "model.py", "-o", "out", *args, cwd=tmp_path)
    assert_clean_failure(result, code, fragments, tmp_path)


@pytest.mark.lava
def test_weight_overflow_clipped_on_request_still_deploys_exactly(tmp_path, cli):
    (tmp_path / "model.py").write_text(CASES["weight overflow"][0])
    result = cli("compile", "model.py", "-o", "out", "--on-overflow", "clip", "--verify", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "clipped" in result.stdout and "100.00%" in result.stdout


@pytest.fixture()
def model_dir(tmp_path):
    (tmp_path / "model.py").write_text(GOOD)
    return tmp_path


def _state_dict_file(path, **changes):
    import importlib.util

    spec = importlib.util.spec_from_file_location("errors_test_model", path / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    state = module.model.state_dict()
    state.update(changes)
    return state


def test_weights_missing_file(model_dir, cli):
    result = cli("compile", "model.py", "-o", "out", "--weights", "nope.pt", cwd=model_dir)
    assert_clean_failure(result, 2, ["nope.pt does not exist"], model_dir)


def test_weights_needing_pickled_code_are_refused(model_dir, cli):
    torch.save(torch.nn.Linear(2, 2), model_dir / "whole_model.pt")  # pickles the class, not a state_dict
    result = cli("compile", "model.py", "-o", "out", "--weights", "whole_model.pt", cwd=model_dir)
    assert_clean_failure(result, 2, ["needs pickled Python code", "state_dict"], model_dir)


def test_weights_with_wrong_keys_and_shapes(model_dir, cli):
    state = _state_dict_file(model_dir)
    state["2.weight"] = torch.zeros(3, 12)
    state["extra.bias"] = torch.zeros(1)
    torch.save(state, model_dir / "ckpt.pt")
    result = cli("compile", "model.py", "-o", "out", "--weights", "ckpt.pt", cwd=model_dir)
    assert_clean_failure(result, 2, ["unexpected keys ['extra.bias']", "2.weight: checkpoint (3, 12) vs model (2, 12)"],
                         model_dir)


def test_unwritable_output_location(model_dir, cli):
    (model_dir / "afile").write_text("")
    result = cli("compile", "model.py", "-o", "afile/out", cwd=model_dir)
    assert result.returncode == 8 and "Traceback" not in result.stderr
    assert "Cannot create the output directory" in " ".join(result.stderr.split())


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_disk_full_keeps_the_previous_build(model_dir, cli):
    assert cli("compile", "model.py", "-o", "out", cwd=model_dir).returncode == 0
    before = json.loads((model_dir / "out/manifest.json").read_text())
    (model_dir / "model.py").write_text(GOOD.replace("Linear(12, 2)", "Linear(12, 400)"))  # a bigger ONNX file
    result = cli("compile", "model.py", "-o", "out", "--force", cwd=model_dir, preexec_fn=_limit_file_size)
    assert result.returncode == 8, result.stderr
    assert "File too large" in result.stderr and "Nothing was changed" in " ".join(result.stderr.split())
    assert json.loads((model_dir / "out/manifest.json").read_text()) == before
    hybridc.load(model_dir / "out")  # still intact: every sha256 matches
    assert not [p for p in model_dir.iterdir() if ".hybridc-" in p.name]


def test_sigkill_midway_leaves_previous_build_or_nothing(tmp_path, cli):
    """Kill compiles at fractions of a measured full compile's duration (so the test does not
    depend on how fast this machine is): a fresh output is absent or complete; a --force
    rebuild leaves the previous build or the new one, each complete and hash-checked."""
    out = tmp_path / "out"
    command = ("compile", ROOT / "examples/dvs_gesture/model.py", "-o", out, "--force")

    def killed_after(seconds):
        process = subprocess.Popen(cli.command(*command), cwd=tmp_path, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        time.sleep(seconds)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def assert_hidden_leftovers_only():
        leftovers = [p.name for p in tmp_path.iterdir() if p.name != "out"]
        assert all(name.startswith(".out.hybridc-") for name in leftovers), leftovers

    began = time.perf_counter()
    assert cli(*command, cwd=tmp_path).returncode == 0
    duration = time.perf_counter() - began
    shutil.rmtree(out)
    killed_after(duration * 0.6)  # fresh output, killed midway
    if out.exists():
        hybridc.load(out)
    assert_hidden_leftovers_only()
    assert cli(*command, cwd=tmp_path).returncode == 0
    for fraction in (0.3, 0.6, 0.8, 0.9, 0.95, 1.0):
        killed_after(duration * fraction)
        assert out.exists(), f"killed at {fraction:.0%} of a compile: the previous build is gone"
        hybridc.load(out)  # complete: manifest valid, every artifact's sha256 matches
        assert_hidden_leftovers_only()
    assert cli(*command, cwd=tmp_path).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # abandoned staging cleaned up


@pytest.fixture(scope="module")
def build(tmp_path_factory, cli):
    directory = tmp_path_factory.mktemp("b")
    (directory / "model.py").write_text(GOOD)
    assert cli("compile", "model.py", "-o", "build", cwd=directory).returncode == 0
    return directory


def test_run_with_missing_artifact(build, tmp_path, cli):
    copy = tmp_path / "copy"
    shutil.copytree(build / "build", copy)
    (copy / "snn.net").unlink()
    np.save(tmp_path / "x.npy", np.zeros((1, 10, 4), np.float32))
    result = cli("run", copy, "-i", "x.npy", cwd=tmp_path)
    assert result.returncode == 9 and "snn.net is missing" in " ".join(result.stderr.split())


@pytest.mark.parametrize("array,fragment", [
    (np.zeros((1, 4, 10), np.float32), "T=4 timesteps"),          # layout swapped: time not last
    (np.zeros((1, 12, 4), np.float32), "expects spikes of PyTorch shape (N, 10, T)"),
    (np.full((1, 10, 4), 0.5, np.float32), "unary spikes"),
    (np.zeros((1, 10, 4), np.complex64), "dtype"),
])
def test_run_with_bad_input(build, tmp_path, array, fragment, cli):
    np.save(tmp_path / "x.npy", array)
    result = cli("run", build / "build", "-i", "x.npy", cwd=tmp_path)
    assert result.returncode == 10, result.stderr
    assert fragment in " ".join(result.stderr.split()) and "Traceback" not in result.stderr


def test_debug_flag_shows_the_traceback(tmp_path, cli):
    (tmp_path / "model.py").write_text(HEADER + "model = 3\nexample_input = torch.zeros(1, 2, 4)\n")
    result = cli("--debug", "compile", "model.py", "-o", "out", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_verify_refuses_when_the_model_file_changed(build, tmp_path, cli):
    copy = tmp_path / "proj"
    shutil.copytree(build, copy)
    result = cli("compile", "model.py", "-o", "b2", cwd=copy)
    assert result.returncode == 0, result.stderr
    (copy / "model.py").write_text(GOOD + "# edited after compiling\n")
    result = cli("verify", "b2", "--samples", "1", "--trust-source", cwd=copy)
    assert result.returncode == 9 and "changed since this build was compiled" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("values, refused", [
    ((float("inf"), -float("inf")), True),  # their sum is NaN
    ((float("-inf"),), True),
    ((3e38, 3e38), False),  # finite; only their float32 sum overflows
])
def test_non_finite_check_is_exact(values, refused):
    """The finite check sums each tensor (fast); a sum that overflows must not refuse a finite model."""
    model, x = small_model()
    model[2].weight.data.view(-1)[:len(values)] = torch.tensor(values)
    if refused:
        with pytest.raises(hybridc.errors.NumericsError, match=r"`2\.weight`.*inf"):
            hybridc.compile(model, x)
    else:
        assert hybridc.compile(model, x).manifest.stages[-1].target == "jetson"
