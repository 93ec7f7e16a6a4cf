"""Verification speed and memory (not a test). Both backends run the artifact in the build:
Lava's bit-accurate simulator (one sample at a time) and hybridc's batched emulator of it
(runtime/emulator/), per sample on the Loihi stage, in the same run, on the same build.
Goal: emulator >= 1000x faster in wall time on one thread, spikes equal entry for entry. Then the peak memory of the
emulate backend streaming a whole test set (550 samples) against 55, each in a fresh
process: bounded memory means the two are close.

    .venv/bin/python benchmarks/verify_bench.py [--size 128] [--lava-samples 2] [--emulate-samples 64]
        [--threads 1] [--device cpu|cuda|auto]  (cuda: try --emulate-samples 1024)

`--families sdnn,rf,rf_iz` instead times the other neuron models on their example builds
(examples/sdnn, examples/rf): the same per-sample comparison, one line each.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybridc.build_dir.compiled import load as load_build  # noqa: E402
from hybridc.compiler.driver import compile as compile_model  # noqa: E402
from hybridc.frontend.loader import load_model_file  # noqa: E402


def compile_build(directory: Path, split: str, size: int) -> Path:
    entry_args = {"split": split, "size": size}
    source = ROOT / "examples/dvs_gesture/model.py"
    model, x, path, digest = load_model_file(source, "build", None, entry_args)
    build = directory / "build"
    compile_model(model, x, "loihi+jetson", build, source_path=path, source_sha256=digest,
                  recipe={"entry": "build", "args": entry_args})
    return build


EMULATE_RUNS = 5


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (Lava runs its processes as children):
    unlike wall time, it does not grow when other jobs share the cores."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def stage_speed(build: Path, lava_samples: int, emulate_samples: int, device: str = "cpu"):
    """Wall and CPU seconds per sample of the Loihi stage in Lava and in the emulator (on
    `device`), and their agreement."""
    import torch

    from hybridc.build_dir.compiled import load
    from hybridc.data import open_dataset
    from hybridc.runtime.device import using
    from hybridc.runtime.stages import run_stage

    compiled = load(build)
    snn = compiled.manifest.stages[0]
    _, _, size, timesteps = snn.inputs[0].pytorch_shape()
    dataset = open_dataset("synthetic", train=False, size=size, timesteps=timesteps, samples=emulate_samples)
    x = torch.stack([dataset[i][0] for i in range(emulate_samples)])
    runs = []
    with using(device):
        run_stage(snn, build, x, backend="emulate")  # warm-up: imports, compiled loops, conv plans, CUDA context
        for _ in range(EMULATE_RUNS):  # a run is a tenth of a second: the median of several, not one
            began, cpu = time.perf_counter(), cpu_seconds()
            emulated = run_stage(snn, build, x, backend="emulate")  # outputs come back to the CPU: synchronised
            runs.append(((time.perf_counter() - began) / emulate_samples, (cpu_seconds() - cpu) / emulate_samples))
    emulate_s, emulate_cpu = (statistics.median(r[k] for r in runs) for k in (0, 1))
    run_stage(snn, build, x[:1], backend="lava")  # warm-up: Lava's imports and compiler
    began, cpu = time.perf_counter(), cpu_seconds()
    lava = run_stage(snn, build, x[:lava_samples], backend="lava")
    lava_s = (time.perf_counter() - began) / lava_samples
    lava_cpu = (cpu_seconds() - cpu) / lava_samples
    equal = float((lava == emulated[:lava_samples]).float().mean())
    return lava_s, emulate_s, lava_cpu, emulate_cpu, equal, int(lava.numel()), float(lava.mean())


def family_speed(family: str, directory: Path, lava_samples: int, emulate_samples: int):
    """stage_speed's comparison on an example build of another neuron family, fed the
    example's own inputs (sdnn: drifting frames; rf, rf_iz: random spikes)."""
    import torch

    from hybridc.runtime.stages import run_stage

    example, args = ("sdnn", {}) if family == "sdnn" else ("rf", {"family": family})
    model, x, path, digest = load_model_file(ROOT / f"examples/{example}/model.py", "build", None,
                                             {**args, "batch": emulate_samples})
    build = directory / family
    compile_model(model, x, "loihi+jetson", build, source_path=path, source_sha256=digest)
    snn = load_build(build).manifest.stages[0]
    run_stage(snn, build, x[:1], backend="emulate")
    began, cpu = time.perf_counter(), cpu_seconds()
    emulated = run_stage(snn, build, x, backend="emulate")
    emulate_s, emulate_cpu = [(now - then) / emulate_samples for now, then in
                              ((time.perf_counter(), began), (cpu_seconds(), cpu))]
    run_stage(snn, build, x[:1], backend="lava")
    began, cpu = time.perf_counter(), cpu_seconds()
    lava = run_stage(snn, build, x[:lava_samples], backend="lava")
    lava_s, lava_cpu = [(now - then) / lava_samples for now, then in
                        ((time.perf_counter(), began), (cpu_seconds(), cpu))]
    equal = bool(torch.equal(lava, emulated[:lava_samples]))
    print(f"  {family:6s} {tuple(x.shape[1:])}: lava {lava_cpu * 1000:8.1f} ms/sample CPU ({lava_s * 1000:.0f} wall), "
          f"emulate {emulate_cpu * 1000:6.2f} ms/sample CPU ({emulate_s * 1000:.2f} wall): "
          f"{lava_cpu / emulate_cpu:.0f}x CPU, {lava_s / emulate_s:.0f}x wall; outputs equal: {equal}")


def peak_memory(build: Path, samples: int, threads: int) -> dict:
    """The emulate backend streaming `samples` samples (batches of 16, as `verify` feeds it)
    through the Loihi stage in a fresh process: its peak RSS, imports included. Each batch's
    output is reduced and dropped, as verify does (keeping them all would measure the list).
    The peak is the kernel's VmHWM of the process's own memory: getrusage's ru_maxrss would
    also count the copy of this parent it was forked from (Linux keeps the larger across exec)."""
    code = (
        "import json, sys, time, warnings; warnings.filterwarnings('ignore'); "
        f"sys.path.insert(0, {str(ROOT)!r}); import torch; "
        f"torch.set_num_threads({threads}) if {threads} else None; "
        "from hybridc.build_dir.compiled import load; from hybridc.runtime.stages import run_stage; "
        f"build = {str(build)!r}; snn = load(build).manifest.stages[0]; c, h, w, t = snn.inputs[0].pytorch_shape(); "
        "g = torch.Generator().manual_seed(0); began = time.perf_counter(); "
        f"spikes = sum(float(run_stage(snn, build, (torch.rand(min(16, {samples} - s), c, h, w, t, generator=g) "
        f"< 0.05).float(), backend='emulate').sum()) for s in range(0, {samples}, 16)); "
        "hwm = [line for line in open('/proc/self/status') if line.startswith('VmHWM:')][0]; "
        "print(json.dumps({'peak_mib': int(hwm.split()[1]) / 1024, "
        f"'samples': {samples}, 's_per_sample': (time.perf_counter() - began) / {samples}}}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--split", default="S2A4")
    parser.add_argument("--lava-samples", type=int, default=2)
    parser.add_argument("--emulate-samples", type=int, default=64)
    parser.add_argument("--memory-samples", type=int, default=550)
    parser.add_argument("--device", default="cpu", help="where the emulator runs: cpu, cuda or auto")
    parser.add_argument("--families", default="", help="comma list of sdnn, rf, rf_iz: time those instead")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads for the emulator (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.families:
        print(f"other neuron models, example builds, {args.lava_samples} Lava / {args.emulate_samples} emulated samples")
        with tempfile.TemporaryDirectory() as tmp:
            for family in args.families.split(","):
                family_speed(family, Path(tmp), args.lava_samples, args.emulate_samples)
        return
    with tempfile.TemporaryDirectory() as tmp:
        build = compile_build(Path(tmp), args.split, args.size)
        # memory first, in fresh processes, before this one runs Lava
        memory = [peak_memory(build, count, args.threads)
                  for count in ((args.memory_samples // 10, args.memory_samples) if args.memory_samples else ())]
        lava_s, emulate_s, lava_cpu, emulate_cpu, equal, entries, rate = stage_speed(
            build, args.lava_samples, args.emulate_samples, args.device)
        print(f"{args.split} I=4 {args.size}x{args.size} T=16, synthetic test samples, Loihi stage (snn.net)")
        print(f"  lava:     {lava_s * 1000:9.2f} ms/sample wall, {lava_cpu * 1000:9.2f} ms/sample CPU "
              f"over {args.lava_samples} samples")
        print(f"  emulate ({args.device}): {emulate_s * 1000:9.3f} ms/sample wall, {emulate_cpu * 1000:9.3f} ms/sample "
              f"CPU over {args.emulate_samples} samples (median of {EMULATE_RUNS} runs): {1 / emulate_s:,.0f} samples/s")
        print(f"  spikes equal on the Lava samples: {equal:.4f} of {entries} entries (spike rate {rate:.3f})")
        print(f"  speed-up emulate vs lava: {lava_s / emulate_s:.0f}x wall, {lava_cpu / emulate_cpu:.0f}x CPU "
              "(goal >= 1000x wall on one thread)")
        for row in memory:
            print(f"  emulate backend streaming {row['samples']} samples in batches of 16: peak RSS "
                  f"{row['peak_mib']:.0f} MiB, {row['s_per_sample'] * 1000:.1f} ms/sample wall")


if __name__ == "__main__":
    main()
