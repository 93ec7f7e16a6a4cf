"""Train an SxAy hybrid (or a baseline) on event data, on a CPU, without downloads.

    python examples/dvs_gesture/train.py --split S2A4 --interval 4 --epochs 10 --out runs/s2a4
    hybridc compile examples/dvs_gesture/model.py --weights runs/s2a4/model.pt -o build/s2a4

Checkpoints (runs/.../model.pt, train_state.pt) are written every epoch; --resume
continues from them. The learning curves go to runs/.../curves.png.
"""

import sys
from pathlib import Path
from typing import Optional

import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import hybridc  # noqa: E402,F401 - before slayer is imported: keeps lava-dl's import notices off the screen


def main(
    split: str = typer.Option("S2A4", help="S1A5 .. S6A0, or ANN for the ANN baseline."),
    interval: int = typer.Option(4, help="Accumulator interval I."),
    data: str = typer.Option("synthetic", help="synthetic or dvsgesture:PATH"),
    size: int = typer.Option(32, help="Frame size (128 is the paper's)."),
    timesteps: int = typer.Option(16),
    train_samples: int = typer.Option(1100, help="Synthetic training samples."),
    test_samples: int = typer.Option(330, help="Synthetic test samples."),
    epochs: int = typer.Option(10),
    lr: float = typer.Option(1e-3, help="Adam learning rate (the paper used 1e-4 over 200 epochs)."),
    batch_size: int = typer.Option(32),
    augment: bool = typer.Option(False, help="Paper-style temporal and spatial jitter."),
    out: Path = typer.Option(Path("runs/s2a4"), help="Checkpoint directory."),
    resume: bool = typer.Option(False, help="Continue from the checkpoint in --out."),
    seed: int = typer.Option(0),
    weights_init: Optional[Path] = typer.Option(None, help="Start from these weights."),
    device: str = typer.Option("cpu", help="cpu, cuda or auto (cuda when torch sees a GPU)."),
):
    import warnings

    warnings.filterwarnings("ignore")
    import model as sxay
    import torch

    from hybridc.data import SyntheticGestures, open_dataset
    from hybridc.data.augment import Jitter
    from hybridc.train import train

    torch.set_num_threads(max(torch.get_num_threads(), 1))
    net = sxay.build_model(split, interval, size, timesteps, seed=seed)
    if weights_init:
        net.load_state_dict(torch.load(weights_init, weights_only=True))
    transform = Jitter(seed) if augment else None
    if data == "synthetic":
        train_set = SyntheticGestures(train_samples, size, timesteps, seed=seed, transform=transform)
        test_set = SyntheticGestures(test_samples, size, timesteps, seed=seed + 10_000)
    else:
        train_set = open_dataset(data, train=True, size=size, timesteps=timesteps)
        train_set.transform = transform
        test_set = open_dataset(data, train=False, size=size, timesteps=timesteps)
    history = train(net, train_set, test_set, epochs=epochs, lr=lr, batch_size=batch_size,
                    checkpoint_dir=out, resume=resume, seed=seed, device=device)
    print(f"best test accuracy {history.best_test_accuracy:.1%}; weights in {out / 'model.pt'}")


if __name__ == "__main__":
    typer.run(main)
