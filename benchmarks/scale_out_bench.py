"""Scale-out speed (not a test): the same work serially and on a local Ray with 2 workers,
in the same run. On 2 free cores the ideal ratio is 2x.

  verify:  Lava verification of 8 samples (`verify_dataset(..., workers=2)` vs serial); Ray
           is started and its workers warmed (Lava imported) before the clock starts, as in a
           long verification where that cost is paid once.
  explore: train (1 epoch), compile, verify and profile 2 candidates, serially vs as 2 Ray
           Tune trials (each trial is a fresh process: its imports are in the time).

    .venv/bin/python benchmarks/scale_out_bench.py [--size 32] [--samples 8] [--workers 2]
"""

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybridc.compiler.driver import compile as compile_model  # noqa: E402
from hybridc.frontend.loader import load_model_file  # noqa: E402
from hybridc.profiling.train_explore import explore_trained  # noqa: E402
from hybridc.runtime.dataset_verify import ReferenceFiles, verify_dataset  # noqa: E402
from hybridc.runtime.distributed import connect  # noqa: E402


def timed(fn):
    began = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - began


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--train-samples", type=int, default=64)
    parser.add_argument("--only", choices=("verify", "explore"), help="Run one half only.")
    args = parser.parse_args()
    model_file = ROOT / "examples/dvs_gesture/model.py"
    entry_args = {"split": "S2A4", "size": args.size}
    model, x, path, digest = load_model_file(model_file, "build", None, entry_args)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build = tmp / "build"
        compile_model(model, x, "loihi+jetson", build, source_path=path, source_sha256=digest,
                      recipe={"entry": "build", "args": entry_args})
        _, startup = timed(lambda: connect(workers=args.workers))
        if args.only != "explore":
            bench_verify(args, build, startup)
        if args.only != "verify":
            bench_explore(args, model_file, tmp)


def bench_verify(args, build, startup):
    trusted = ReferenceFiles(trust_source=True)  # compiled by this script from our own example
    _, warmup = timed(lambda: verify_dataset(build, "synthetic", args.workers, "lava", workers=args.workers,
                                             files=trusted))
    serial, serial_s = timed(lambda: verify_dataset(build, "synthetic", args.samples, "lava", files=trusted))
    spread, spread_s = timed(lambda: verify_dataset(build, "synthetic", args.samples, "lava",
                                                    workers=args.workers, files=trusted))
    same = {k: v for k, v in serial.as_dict().items() if k not in ("seconds_per_sample", "workers")} == \
           {k: v for k, v in spread.as_dict().items() if k not in ("seconds_per_sample", "workers")}
    print(f"verify: S2A4 I=4 {args.size}x{args.size} T=16, {args.samples} synthetic samples, Lava backend")
    print(f"  Ray start {startup:.1f} s, worker warm-up {warmup:.1f} s (once per session, not in the ratio)")
    print(f"  serial {serial_s:7.1f} s   {args.workers} workers {spread_s:7.1f} s   "
          f"ratio {serial_s / spread_s:.2f}x (ideal {args.workers}x)   same report: {same}")


def bench_explore(args, model_file, tmp):
    common = dict(entry_args={"size": args.size}, samples=args.samples, train_epochs=1,
                  train_samples=args.train_samples, batch_size=16)
    _, explore_serial = timed(lambda: explore_trained(model_file, ["S1A5", "S2A4"], [4], tmp / "serial",
                                                      **common))
    _, explore_ray = timed(lambda: explore_trained(model_file, ["S1A5", "S2A4"], [4], tmp / "ray",
                                                   workers=args.workers, **common))
    print(f"explore: 2 candidates (S1A5-I4, S2A4-I4) at {args.size}x{args.size}, 1 epoch on "
          f"{args.train_samples} samples, then compile, verify ({args.samples} samples), profile")
    print(f"  serial {explore_serial:7.1f} s   {args.workers} Tune trials {explore_ray:7.1f} s   "
          f"ratio {explore_serial / explore_ray:.2f}x (ideal {args.workers}x)")


if __name__ == "__main__":
    main()
