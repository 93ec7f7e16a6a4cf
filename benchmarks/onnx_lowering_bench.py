"""CPU time of the Jetson target's `preprocess` (the dense half to ONNX) on compile_bench's
DenseChain: the direct onnx-graphsurgeon lowering against the torch.onnx.export fallback,
in the same run, best of several, torch on one thread.

    python benchmarks/onnx_lowering_bench.py [--depths 2 8 32 60] [--repeats 7]
"""

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from compile_bench import DenseChain  # noqa: E402

from hybridc.compiler.driver import lower  # noqa: E402
from hybridc.targets import jetson  # noqa: E402


def best_cpu(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        began = time.process_time()
        fn()
        best = min(best, time.process_time() - began)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 8, 32, 60])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    direct = jetson.lower_directly
    print(f"  {'depth':>5} {'torch.onnx ms':>14} {'direct ms':>10} {'ratio':>6}")
    for depth in args.depths:
        torch.manual_seed(0)
        model, x = DenseChain(depth), (torch.rand(1, 64, 8) < 0.3).float()
        gm, partitions, targets = lower(model, x, "loihi+jetson", "error", None)
        (dense,) = [p for p in partitions if p.domain == "dense"]
        target = targets["dense"]
        with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
            times = {}
            for label, route in (("fallback", lambda *a: None), ("direct", direct)):
                jetson.lower_directly = route
                times[label] = best_cpu(lambda: target.preprocess(dense, gm, Path(tmp)), args.repeats)
            jetson.lower_directly = direct
        print(f"  {depth:>5} {times['fallback'] * 1e3:>14.1f} {times['direct'] * 1e3:>10.1f} "
              f"{times['direct'] / times['fallback']:>6.2f}")


if __name__ == "__main__":
    main()
