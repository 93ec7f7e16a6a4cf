"""How close a NIR build's spikes, simulated by Norse from the written graph (float), are to
PyTorch's (slayer fixed point, which Lava reproduces bit-exactly), on the example models.

    python benchmarks/nir_agreement.py [--samples 8]

Prints, per model, the fraction of equal entries at the cut and the Dice overlap of the
spikes (2|A and B| / (|A| + |B|)), the figures in docs/targets.md.
"""

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from compile_bench import load_example  # noqa: E402

import hybridc  # noqa: E402
from hybridc.runtime.verify import reference_stages, spike_agreement  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=8)
    args = parser.parse_args()
    example = load_example()
    print(f"{'model':<26} {'spike rate':>10} {'equal':>8} {'dice':>8}")
    for split, size in (("S2A4", 32), ("S3A3", 32), ("S2A4", 64), ("S3A3", 64)):
        model, x = example.build(split, size=size, batch=args.samples)
        with tempfile.TemporaryDirectory() as tmp:
            compiled = hybridc.compile(model, x, target="nir+cpu", output_dir=Path(tmp) / "b")
            reference = reference_stages(compiled.module, compiled.fx_partitions, x)
            stage = compiled.manifest.stages[0]
            _, stages = hybridc.run(compiled, x, return_stages=True)
            cut = reference[stage.name]
            figures = spike_agreement(stages[stage.name], cut)
        label = f"{split} {size}x{size} T={x.shape[-1]}"
        print(f"{label:<26} {float(cut.mean()):>10.4f} {figures['equal']:>8.4f} {figures['dice']:>8.4f}")


if __name__ == "__main__":
    main()
