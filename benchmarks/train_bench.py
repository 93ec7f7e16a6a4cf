"""Training benchmark (not a test): S2A4, I=4, on the synthetic gesture set at 32x32, on the
CPU. Goal: >= 90% test accuracy within 10 minutes on 2 cores. Prints accuracy and time.

    .venv/bin/python benchmarks/train_bench.py [--budget 600]
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples/dvs_gesture"))

import model as sxay  # noqa: E402
import torch  # noqa: E402

from hybridc.data import SyntheticGestures  # noqa: E402
from hybridc.train import train  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=600.0, help="seconds")
    parser.add_argument("--goal", type=float, default=0.90)
    parser.add_argument("--train-samples", type=int, default=2200)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    net = sxay.build_model("S2A4", 4, 32, 16, seed=0)
    train_set = SyntheticGestures(args.train_samples, 32, 16, seed=0)
    test_set = SyntheticGestures(550, 32, 16, seed=10_000)
    start = time.perf_counter()

    def stop(history):
        last = history.epochs[-1]
        print(f"epoch {last.epoch}: test accuracy {last.test_accuracy:.1%} after "
              f"{time.perf_counter() - start:.0f} s", flush=True)
        return last.test_accuracy >= args.goal or time.perf_counter() - start >= args.budget

    history = train(net, train_set, test_set, epochs=1000, lr=1e-3, batch_size=32, progress=False, stop=stop)
    elapsed = time.perf_counter() - start
    epoch, accuracy = len(history.epochs), history.epochs[-1].test_accuracy
    verdict = "met" if accuracy >= args.goal and elapsed <= args.budget else "NOT met"
    print(f"S2A4 I=4 synthetic 32x32: {accuracy:.1%} test accuracy in {elapsed:.0f} s "
          f"({epoch} epochs of {len(train_set)} samples); goal >= {args.goal:.0%} within "
          f"{args.budget:.0f} s: {verdict}")


if __name__ == "__main__":
    main()
