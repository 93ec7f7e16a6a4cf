"""Writing the netx HDF5: slayer's export into h5py's high-level API (the hand route) against
hybridc's `netx_writer` (the same export recorded, then written with h5py's low-level API),
and `LoihiTarget.preprocess` with each writer, in the same run.

Models: compile_bench's dense chains (half spiking cuba.Dense, width 64) at depths 2 and 60,
and the branching SEW residual of the tests (segments plus an extra-synapse file). Each
figure is the best of `--repeats` CPU times of this process, torch on one thread.

    python benchmarks/netx_write_bench.py [--repeats 7]
"""

import argparse
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
sys.path.insert(0, str(ROOT / "tests"))
from branch_models import SewResidual, spikes  # noqa: E402
from compile_bench import DenseChain  # noqa: E402

from hybridc.compiler.driver import lower  # noqa: E402
from hybridc.netx import writer as netx_writer  # noqa: E402


def high_level(path):
    return h5py.File(path, "w")


def best(fn, repeats: int) -> float:
    """Best CPU milliseconds of `fn(directory)` over `repeats` runs, after one warm-up."""
    times = []
    for _ in range(repeats + 1):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.process_time()
            fn(Path(tmp))
            times.append(time.process_time() - start)
    return min(times[1:]) * 1e3


def export_blocks(blocks, open_file):
    def run(directory):
        with open_file(directory / "snn.net") as h5:
            layers = h5.create_group("layer")
            for i, block in enumerate(blocks):
                block.export_hdf5(layers.create_group(str(i)))
    return run


def preprocess_with(model, x, open_file):
    gm, partitions, targets = lower(model, x)
    partition = next(p for p in partitions if p.domain == "spiking")

    def run(directory):
        saved, netx_writer.File = netx_writer.File, open_file
        try:
            targets["spiking"].preprocess(partition, gm, directory)
        finally:
            netx_writer.File = saved
    return run


def main(repeats: int = 7):
    torch.set_num_threads(1)
    print(f"{f'CPU ms, best of {repeats}, torch on 1 thread':52} h5py high-level   netx_writer   ratio")
    torch.manual_seed(0)
    cases = [(f"dense chain depth {d}", DenseChain(d).eval(), (torch.rand(1, 64, 8) < 0.3).float()) for d in (2, 60)]
    cases.append(("SEW residual (branching)", SewResidual().eval(), spikes()))
    with torch.no_grad():
        for label, model, x in cases:
            model(x)  # slayer learns its shapes in a forward pass
            if isinstance(model, DenseChain):
                blocks = list(model.snn)
                old, new = (best(export_blocks(blocks, f), repeats) for f in (high_level, netx_writer.File))
                print(f"  {label + ': slayer export_hdf5':50} {old:>10.1f} {new:>13.1f} {new / old:>7.2f}")
            old, new = (best(preprocess_with(model, x, f), repeats) for f in (high_level, netx_writer.File))
            print(f"  {label + ': LoihiTarget.preprocess':50} {old:>10.1f} {new:>13.1f} {new / old:>7.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    main(parser.parse_args().repeats)
