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


class DenseChain(torch.nn.Module):
    """`depth` layers of width 64: the first half spiking (slayer cuba.Dense), an
    accumulator, the second half Linear + ReLU. Shows how each route grows with layers."""

    def __init__(self, depth: int, width: int = 64, timesteps: int = 8, interval: int = 4):
        super().__init__()
        from lava.lib.dl import slayer

        from hybridc.nn import Accumulator

        neuron = {"threshold": 1.0, "current_decay": 0.3, "voltage_decay": 0.25, "tau_grad": 0.01,
                  "scale_grad": 1.0}
        spiking = depth // 2
        self.snn = torch.nn.Sequential(*[slayer.block.cuba.Dense(neuron, width, width, weight_scale=2)
                                         for _ in range(spiking)])
        self.accumulator = Accumulator(interval, fold=True)
        layers, features = [], width * (timesteps // interval)
        for _ in range(depth - spiking):
            layers += [torch.nn.Linear(features, width), torch.nn.ReLU()]
            features = width
        self.ann = torch.nn.Sequential(*layers)

    def forward(self, x):
        return self.ann(self.accumulator(self.snn(x)))


def once(fn, model, x):
    """(wall seconds, CPU seconds of this process) of one compile. CPU time is the fairer
    figure on a loaded machine: it does not count time spent waiting for a core."""
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        fn(model, x, Path(tmp))
        return time.perf_counter() - wall, time.process_time() - cpu


def depth_table(depths=(2, 8, 32, 60), repeats: int = 7):
    """Both routes on dense chains of each depth, interleaved in the same run, best of `repeats`."""
    print(f"dense chains (half spiking cuba.Dense, half Linear+ReLU, width 64, T=8), best of {repeats}")
    print(f"  {'depth':>5} {'hand ms':>9} {'hybridc ms':>11} {'ratio':>6}   {'hand CPU':>9} {'hybridc CPU':>12} {'ratio':>6}")
    ratios = {}
    for depth in depths:
        torch.manual_seed(0)
        model = DenseChain(depth).eval()
        x = (torch.rand(1, 64, 8) < 0.3).float()
        once(hand_route, model, x), once(hybridc_route, model, x)  # warm-up
        hand = ours = (float("inf"), float("inf"))
        for _ in range(repeats):  # interleaved, so both routes see the same machine load
            hand = tuple(map(min, hand, once(hand_route, model, x)))
            ours = tuple(map(min, ours, once(hybridc_route, model, x)))
        ratios[depth] = (ours[0] / hand[0], ours[1] / hand[1])
        print(f"  {depth:>5} {hand[0] * 1e3:>9.1f} {ours[0] * 1e3:>11.1f} {ratios[depth][0]:>6.2f}   "
              f"{hand[1] * 1e3:>9.1f} {ours[1] * 1e3:>12.1f} {ratios[depth][1]:>6.2f}")
    worst = max(max(r) for r in ratios.values())
    print(f"  goal <= 1.2 at every depth: {'met' if worst <= 1.2 else f'not met (worst ratio {worst:.2f})'}")
    return ratios


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
    depth_table()


if __name__ == "__main__":
    main()
