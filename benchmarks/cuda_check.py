"""The emulator on a CUDA GPU against the CPU emulator, entry for entry, where Lava cannot go.

The GPU machines lent to this project run another Python and torch and cannot install the
Lava stack (lava-nc needs Python 3.10), so the check runs in two halves:

    python benchmarks/cuda_check.py prepare cuda_check       # here: builds, inputs, CPU outputs
    python benchmarks/cuda_check.py check cuda_check --device cuda   # there: the same on CUDA

`prepare` compiles the builds tests/test_device.py covers (the demo's S2A4 at 128x128, a
branching stage, the sdnn and rf examples), runs the emulate backend on the CPU and writes
each build's input and outputs beside it (inputs.npz: the spikes bit-packed). `check` needs
only torch, numpy and h5py (prepare copies networkx beside the builds): it reads each
build's manifest (a build prepare wrote, so without the schema check `hybridc.load` makes),
runs its loihi stage with the emulate
backend on --device, compares every output with the CPU's entry for entry, checks TF32 is
restored afterwards, and times the S2A4 stage at batches of 16 to 1,024 (samples a second).
Exit status 1 when any entry differs. With `check --device cpu` it runs here too.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPEED_BUILD, BATCHES = "s2a4", (16, 64, 256, 1024)


def _builds(samples: int):
    """(name, model, input) for each construction the check covers."""
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from branch_models import SewResidual
    from branch_models import example_input as branch_input

    from hybridc.frontend.loader import load_model_file

    torch.manual_seed(0)
    demo, x, _, _ = load_model_file(ROOT / "examples/dvs_gesture/model.py", "build", None,
                                    {"split": "S2A4", "size": 128, "batch": 1})
    frames = (torch.rand(samples, *x.shape[1:], generator=torch.Generator().manual_seed(1)) < 0.08).float()
    rows = [(SPEED_BUILD, demo.eval(), frames), ("branching", SewResidual().eval(), branch_input(batch=samples))]
    for example, args in (("sdnn", {}), ("rf", {"family": "rf"})):
        model, x, _, _ = load_model_file(ROOT / f"examples/{example}/model.py", "build", None,
                                         {**args, "batch": samples})
        rows.append((example, model, x))
    return rows


def _loihi_stage(build: Path):
    """The build's loihi stage, read as `Manifest.from_dict` reads it less the schema check
    (jsonschema's compiled dependency may be missing there; prepare wrote this build)."""
    from hybridc.manifest import Stage, TensorSpec

    (data,) = [s for s in json.loads((build / "manifest.json").read_text())["stages"] if s["target"] == "loihi"]
    return Stage(**{**data, "inputs": [TensorSpec(**t) for t in data["inputs"]],
                    "outputs": [TensorSpec(**t) for t in data["outputs"]]})


def _outputs(result) -> list:
    return [t.cpu().numpy() for t in (result if isinstance(result, tuple) else (result,))]


def _save_input(path: Path, x: np.ndarray):
    """Spikes (0/1) bit-packed, anything else as it is."""
    if np.isin(x, (0, 1)).all():
        np.savez_compressed(path, packed=np.packbits(x.astype(np.uint8).reshape(-1)), shape=np.array(x.shape))
    else:
        np.savez_compressed(path, values=x)


def _load_input(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as saved:
        if "values" in saved.files:
            return saved["values"]
        shape = tuple(saved["shape"])
        return np.unpackbits(saved["packed"])[:int(np.prod(shape))].reshape(shape).astype(np.float32)


def prepare(directory: Path, samples: int):
    import shutil

    import networkx

    import hybridc
    from hybridc.runtime.stages import run_stage

    directory.mkdir(parents=True, exist_ok=True)
    vendor = directory / "vendor" / "networkx"  # pure Python, for a machine without it (the graph runner's sort)
    shutil.rmtree(vendor, ignore_errors=True)
    shutil.copytree(Path(networkx.__file__).parent, vendor, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    for name, model, x in _builds(samples):
        build = directory / name
        hybridc.compile(model, x, target="loihi+jetson", output_dir=build, force=True)
        stage = _loihi_stage(build)
        outputs = _outputs(run_stage(stage, build, x, backend="emulate"))
        _save_input(build / "inputs.npz", x.numpy())
        np.savez_compressed(build / "cpu_outputs.npz", *outputs)
        print(f"{name}: input {tuple(x.shape)}, {len(outputs)} output(s), "
              f"{sum(int(np.count_nonzero(o)) for o in outputs):,} non-zero entries")


def check(directory: Path, device: str, batches=BATCHES) -> int:
    sys.path.append(str(directory / "vendor"))  # after site-packages: an installed networkx wins
    import torch

    from hybridc.runtime.device import using
    from hybridc.runtime.stages import run_stage

    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else ""))
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    failed = 0
    for build in sorted(p for p in directory.iterdir() if (p / "cpu_outputs.npz").is_file()):
        stage = _loihi_stage(build)
        x = torch.from_numpy(_load_input(build / "inputs.npz"))
        with np.load(build / "cpu_outputs.npz") as saved:
            expected = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        with using(device):
            got = _outputs(run_stage(stage, build, x, backend="emulate"))
        equal = sum(int((a == b).sum()) for a, b in zip(got, expected) if a.shape == b.shape)
        total = sum(b.size for b in expected)
        same = equal == total and [a.shape for a in got] == [b.shape for b in expected]
        failed += not same
        print(f"  {build.name:10s} {device} == cpu: {equal:,} of {total:,} entries "
              f"({sum(int(np.count_nonzero(b)) for b in expected):,} non-zero) {'equal' if same else 'DIFFER'}")
    restored = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == tf32
    print(f"  TF32 flags restored after the runs: {restored}")
    speed_build = directory / SPEED_BUILD
    stage = _loihi_stage(speed_build)
    x = torch.from_numpy(_load_input(speed_build / "inputs.npz"))
    with using(device):
        for batch in batches:
            batch_x = x.repeat((batch + len(x) - 1) // len(x), *([1] * (x.dim() - 1)))[:batch].to(device)
            run_stage(stage, speed_build, batch_x, backend="emulate")  # warm-up: kernels, plans, allocator
            runs = []
            for _ in range(5):
                began = time.perf_counter()
                run_stage(stage, speed_build, batch_x, backend="emulate")  # outputs return to the CPU: synchronised
                runs.append(time.perf_counter() - began)
            seconds = sorted(runs)[2] / batch
            print(f"  {SPEED_BUILD} batch {batch:5d}: {seconds * 1000:.4f} ms/sample, {1 / seconds:,.0f} samples/s "
                  "(median of 5)")
    return 1 if failed or not restored else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("prepare", "check"))
    parser.add_argument("directory", type=Path)
    parser.add_argument("--samples", type=int, default=32, help="prepare: samples a build")
    parser.add_argument("--device", default="cuda", help="check: cuda, or cpu to try the check here")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)), help="check: batch sizes to time")
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.directory, args.samples)
        return 0
    return check(args.directory, args.device, [int(b) for b in args.batches.split(",") if b])


if __name__ == "__main__":
    sys.exit(main())
