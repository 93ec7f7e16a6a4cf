"""How often Lava's 24-bit Conv input sum separates a sigma-delta build from PyTorch, and
whether the compile-time check catches each case: random sigma-delta chains with a grouped
5x5 conv (the fuzzer's old mismatch) at 4x the fuzzer's weight scale.

    python benchmarks/sigma_delta_bound.py [--models 150] [--seed 3]

Each model is built twice: with on_overflow='clip' (the check only warns) to count the
builds whose artifact differs from PyTorch at the cut (run by the emulator, equal to Lava),
and with on_overflow='error' to count the ones the check refuses. Figures in docs/targets.md.
"""

import argparse
import random
import sys
import tempfile
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from fuzz_models import Spec, build  # noqa: E402

import hybridc  # noqa: E402
from hybridc.errors import NumericsError  # noqa: E402
from hybridc.runtime.stages import run_stage  # noqa: E402
from hybridc.runtime.verify import reference_stages  # noqa: E402


def draw(rng: random.Random) -> Spec:
    """One to three convs (one of them a grouped 5x5), sometimes a dense layer after them."""
    channels, side = rng.choice([2, 3]), rng.randint(8, 20)
    layers, c, s, grouped_at = [], channels, side, rng.randint(0, 1)
    for j in range(rng.randint(1, 3)):
        if j == grouped_at and s >= 5:
            m, stride, pad = rng.randint(1, 6), rng.choice([1, 2]), rng.randint(0, 2)
            layers.append(("conv", c * m, 5, stride, pad, c))
            c, s = c * m, (s + 2 * pad - 5) // stride + 1
        elif s >= 3:
            k, out, stride = rng.choice([1, 3]), rng.randint(2, 8), rng.choice([1, 2])
            pad = rng.randint(0, k // 2)
            layers.append(("conv", out, k, stride, pad, 1))
            c, s = out, (s + 2 * pad - k) // stride + 1
    if rng.random() < 0.25:
        layers += [("flatten",), ("dense", rng.randint(2, 24))]
    timesteps = rng.choice([4, 6, 8, 9, 12])
    return Spec(timesteps=timesteps, interval=timesteps, fold=True, input_shape=(channels, side, side),
                neuron={"threshold": rng.choice([0.02, 0.1, 0.125, 0.3, 0.5])}, spiking=layers,
                dense=[("flatten",), ("linear", 2)], weight_scale=rng.choice([2.0, 3.0, 4.0, 6.0]) * 4,
                seed=rng.randint(0, 2 ** 16), density=rng.choice([0.3, 0.5, 0.7]), family="sigma_delta")


def outcome(spec: Spec, on_overflow: str) -> str:
    model, x = build(spec)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            compiled = hybridc.compile(model, x, target="loihi+cpu", output_dir=Path(tmp) / "build",
                                       on_overflow=on_overflow)
        except NumericsError as exc:
            return "refused: 24-bit conv input" if "24 bits" in str(exc) else "refused: other range"
        snn = compiled.manifest.stages[0]
        cut = reference_stages(compiled.module, compiled.fx_partitions, x)[snn.name]
        equal = bool((run_stage(snn, compiled.directory, x, backend="emulate") == cut).all())
        return "compiled, equal" if equal else "compiled, differs"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=150)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    counts = {}
    for _ in range(args.models):
        spec = draw(rng)
        key = (outcome(spec, "clip"), outcome(spec, "error"))
        counts[key] = counts.get(key, 0) + 1
    print(f"{'on_overflow=clip (warns)':<26} {'on_overflow=error (refuses)':<30} models")
    for (clip, error), n in sorted(counts.items()):
        print(f"{clip:<26} {error:<30} {n}")


if __name__ == "__main__":
    main()
