"""Compile time of hybridc against the hand route a user takes today, in the same run.

Hand route: run the model once (slayer needs a forward to know its shapes), export the
spiking blocks with slayer's `export_hdf5`, export the ANN half with `torch.onnx.export`.
hybridc does that plus tracing, partitioning, graph surgery, checks and hashing.
Goal: hybridc / hand <= 1.2. Prints medians over several repeats.
"""

import importlib.util
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import h5py
import torch

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import hybridc  # noqa: E402


def load_example():
    spec = importlib.util.spec_from_file_location("example", ROOT / "examples/dvs_gesture/model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hand_route(model, x, out: Path):
    with torch.no_grad():
        spikes = model.snn(x)
        counts = model.accumulator(spikes)
    blocks = [b for b in model.snn if hasattr(b, "export_hdf5")]
    with h5py.File(out / "snn.net", "w") as h5:
        layers = h5.create_group("layer")
        for i, block in enumerate(blocks):
            block.export_hdf5(layers.create_group(str(i)))
    torch.onnx.export(model.ann, counts, str(out / "ann.onnx"), opset_version=17,
                      input_names=["counts"], output_names=["output"],
                      dynamic_axes={"counts": {0: "batch"}, "output": {0: "batch"}})


def hybridc_route(model, x, out: Path):
    hybridc.compile(model, x, output_dir=out / "build")


def measure(fn, model, x, repeats):
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            fn(model, x, Path(tmp))
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(repeats: int = 11):
    example = load_example()
    model, x = example.build("S2A4", interval=4, size=128, timesteps=16)
    measure(hybridc_route, model, x, 1)  # warm-up: first-call import and allocator costs
    measure(hand_route, model, x, 1)
    hand = measure(hand_route, model, x, repeats)
    ours = measure(hybridc_route, model, x, repeats)
    print(f"S2A4 128x128 T=16, median of {repeats}")
    print(f"  hand route (export_hdf5 + torch.onnx.export): {hand * 1000:8.1f} ms")
    print(f"  hybridc compile:                              {ours * 1000:8.1f} ms")
    print(f"  ratio hybridc / hand: {ours / hand:.2f}  (goal <= 1.2)")


if __name__ == "__main__":
    main()
