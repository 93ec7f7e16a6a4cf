"""--device: where the emulator runs (cpu, cuda, auto), and training too.

On a machine without a CUDA GPU: asking for cuda is a DeviceError (exit code 19) before any
work starts, from the CLI, the API, pipeline stages and training; auto falls back to the
CPU with the same outputs. Where torch sees a GPU, the emulator on CUDA equals the CPU
emulator entry for entry on a conv chain (the demo's shape), a branching stage, a
sigma-delta and an RF build: TF32 stays off while it runs (runtime/device.py).
"""

import numpy as np
import pytest
import torch
from branch_models import SewResidual
from branch_models import example_input as branch_input
from helpers import ROOT, load_example, small_model, spikes

import hybridc
from hybridc.errors import DeviceError
from hybridc.frontend.loader import load_model_file
from hybridc.runtime.device import current, resolve, using
from hybridc.runtime.stages import run_stage

HAS_CUDA = torch.cuda.is_available()
NO_CUDA_REASON = f"torch {torch.__version__} sees no CUDA GPU here; the CUDA comparison runs where one exists"


def test_device_names_resolve_and_nest():
    assert resolve("cpu") == "cpu" and resolve("CPU") == "cpu"
    assert resolve("auto") == ("cuda" if HAS_CUDA else "cpu")
    with pytest.raises(DeviceError, match="cpu, cuda, auto"):
        resolve("tpu")
    assert current() == "cpu"
    with using("auto") as outer:
        assert current() == outer
        with using("cpu"):
            assert current() == "cpu"
        assert current() == outer
    assert current() == "cpu"


@pytest.fixture(scope="module")
def small_build(tmp_path_factory):
    model, x = small_model()
    directory = tmp_path_factory.mktemp("device") / "build"
    hybridc.compile(model, x, target="loihi+jetson", output_dir=directory)
    return directory, spikes(4, 10, 4, density=0.5, seed=3)


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_a_clear_error(small_build, cli, tmp_path):
    directory, x = small_build
    np.save(tmp_path / "x.npy", x.numpy())
    result = cli("run", directory, "--input", tmp_path / "x.npy", "--backend", "emulate", "--device", "cuda")
    assert result.returncode == DeviceError.exit_code == 19
    assert "sees no CUDA GPU" in result.stderr and "--device cpu" in result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        hybridc.run(directory, x, backend="emulate", device="cuda")
    with pytest.raises(DeviceError, match="no CUDA GPU"):  # before any stage process starts
        list(hybridc.pipeline(directory, list(x), backend="emulate", device="cuda"))
    from hybridc.train import train

    model, _ = small_model()
    data = [(x[0], 0)]
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        train(model, data, data, epochs=1, progress=False, device="cuda")


def test_unknown_device_and_auto_on_the_cli(small_build, cli, tmp_path):
    directory, x = small_build
    np.save(tmp_path / "x.npy", x.numpy())
    bogus = cli("verify", directory, "--backend", "emulate", "--device", "tpu", in_process=True)
    assert bogus.returncode == 19 and "Unknown device `tpu`" in bogus.stderr
    outputs = {}
    for device in ("cpu", "auto"):
        result = cli("run", directory, "--input", tmp_path / "x.npy", "--backend", "emulate", "--device", device,
                     "--output", tmp_path / f"{device}.npy", in_process=True)
        assert result.returncode == 0, result.stderr
        outputs[device] = np.load(tmp_path / f"{device}.npy")
    np.testing.assert_array_equal(outputs["cpu"], outputs["auto"])
    expected = hybridc.run(directory, x, backend="emulate")
    np.testing.assert_allclose(outputs["cpu"], expected.numpy(), rtol=0, atol=0)


def _builds(tmp_path):
    """(name, build directory, input) for each construction the CUDA check covers."""
    torch.manual_seed(0)
    demo = load_example("dvs_gesture").build_model("S2A4", 4, 32, 16, seed=0).eval()
    rows = [("conv chain (S2A4 at 32x32)", demo, spikes(8, 2, 32, 32, 16, density=0.08))]
    rows.append(("branching", SewResidual().eval(), branch_input(batch=8)))
    for example, args in (("sdnn", {}), ("rf", {"family": "rf"})):
        model, x, _, _ = load_model_file(ROOT / f"examples/{example}/model.py", "build", None, {**args, "batch": 8})
        rows.append((example, model, x))
    built = []
    for name, model, x in rows:
        directory = tmp_path / name.split()[0]
        hybridc.compile(model, x, target="loihi+jetson", output_dir=directory)
        built.append((name, directory, x))
    return built


@pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA_REASON)
def test_cuda_equals_cpu_entry_for_entry(tmp_path):
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    for name, directory, x in _builds(tmp_path):
        stage = hybridc.load(directory).manifest.stages[0]
        cpu = run_stage(stage, directory, x, backend="emulate")
        with using("cuda"):
            gpu = run_stage(stage, directory, x, backend="emulate")
        pairs = zip(cpu, gpu) if isinstance(cpu, tuple) else [(cpu, gpu)]
        for a, b in pairs:
            assert torch.equal(a, b), f"{name}: CUDA differs from the CPU in {int((a != b).sum())} entries"
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == tf32  # restored after


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA GPU")
def test_norse_example_training_refuses_cuda_without_a_gpu(tmp_path):
    """examples/nir_import/train.py --device cuda: the DeviceError's paragraph and exit code 19,
    before any training (and before anything is written beside the example)."""
    import subprocess
    import sys

    from helpers import ROOT

    example = ROOT / "examples/nir_import"
    before = {p: p.stat().st_mtime_ns for p in example.iterdir()}
    result = subprocess.run([sys.executable, example / "train.py", "--device", "cuda", "--epochs", "1"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 19, result.stderr
    assert "sees no CUDA GPU" in " ".join(result.stderr.split()) and "Traceback" not in result.stderr
    assert {p: p.stat().st_mtime_ns for p in example.iterdir()} == before


def test_the_cuda_check_for_a_machine_without_lava_catches_one_changed_entry(tmp_path):
    """benchmarks/cuda_check.py, which a GPU session runs where Lava cannot go: prepare here,
    check on the CPU passes, and one entry changed in a saved CPU output fails it."""
    import subprocess
    import sys

    from helpers import ROOT

    script, out = ROOT / "benchmarks/cuda_check.py", tmp_path / "check"
    prepared = subprocess.run([sys.executable, script, "prepare", out, "--samples", "2"], capture_output=True,
                              text=True, timeout=600)
    assert prepared.returncode == 0, prepared.stderr
    assert {p.name for p in out.iterdir()} == {"s2a4", "branching", "sdnn", "rf", "vendor"}

    def check():
        return subprocess.run([sys.executable, script, "check", out, "--device", "cpu", "--batches", "2"],
                              capture_output=True, text=True, timeout=600)

    passed = check()
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert passed.stdout.count(" equal") == 4 and "TF32 flags restored after the runs: True" in passed.stdout
    with np.load(out / "rf/cpu_outputs.npz") as saved:
        outputs = [saved[name] for name in saved.files]
    outputs[0].flat[0] = 1 - outputs[0].flat[0]
    np.savez_compressed(out / "rf/cpu_outputs.npz", *outputs)
    failed = check()
    assert failed.returncode == 1 and "rf         cpu == cpu: 1,023 of 1,024 entries" in failed.stdout, failed.stdout
    assert "DIFFER" in failed.stdout
