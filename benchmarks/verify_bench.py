"""Verification speed (not a test): the batched emulation backend (slayer's fixed-point
forward + onnxruntime) against Lava's bit-accurate simulator, per sample, in the same run.
Goal: emulation >= 100x faster. Both must agree exactly (spike_match 1.0).

    .venv/bin/python benchmarks/verify_bench.py [--size 32] [--lava-samples 4]
"""

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybridc.build.driver import compile as compile_model  # noqa: E402
from hybridc.frontend.loader import load_model_file  # noqa: E402
from hybridc.runtime.dataset_verify import ReferenceFiles, verify_dataset  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--split", default="S2A4")
    parser.add_argument("--lava-samples", type=int, default=4)
    parser.add_argument("--emulate-samples", type=int, default=512)
    args = parser.parse_args()
    entry_args = {"split": args.split, "size": args.size}
    source = ROOT / "examples/dvs_gesture/model.py"
    model, x, path, digest = load_model_file(source, "build", None, entry_args)
    with tempfile.TemporaryDirectory() as tmp:
        build = Path(tmp) / "build"
        compile_model(model, x, "loihi+jetson", build, source_path=path, source_sha256=digest,
                      recipe={"entry": "build", "args": entry_args})
        trusted = ReferenceFiles(trust_source=True)  # compiled just above from our own example
        lava = verify_dataset(build, "synthetic", args.lava_samples, "lava", files=trusted)
        emulate = verify_dataset(build, "synthetic", args.emulate_samples, "emulate", batch_size=64, files=trusted)
    print(f"{args.split} I=4 {args.size}x{args.size} T=16, synthetic test samples")
    print(f"  lava:    {lava.seconds_per_sample * 1000:9.2f} ms/sample over {lava.samples} samples, "
          f"spike_match {lava.spike_match:.4f}, argmax_agreement {lava.argmax_agreement:.4f}")
    print(f"  emulate: {emulate.seconds_per_sample * 1000:9.2f} ms/sample over {emulate.samples} samples, "
          f"argmax_agreement {emulate.argmax_agreement:.4f}")
    print(f"  speed-up emulate vs lava: {lava.seconds_per_sample / emulate.seconds_per_sample:.0f}x (goal >= 100x)")


if __name__ == "__main__":
    main()
