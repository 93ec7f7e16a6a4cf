"""Train a hybrid end to end through the accumulator: slayer's surrogate gradients in
the spiking half, ordinary backprop in the dense half (the paper's recipe: Adam,
cross-entropy). Checkpoints every epoch, resumes, and plots its curves.

Two files per checkpoint directory:
  model.pt        the model's state_dict only: `hybridc compile model.py --weights model.pt`
  train_state.pt  optimizer, epoch and history, for --resume
"""

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch


@dataclass
class Epoch:
    epoch: int
    loss: float
    train_accuracy: float
    test_accuracy: float
    seconds: float


@dataclass
class History:
    epochs: list = field(default_factory=list)

    @property
    def best_test_accuracy(self) -> float:
        return max((e.test_accuracy for e in self.epochs), default=0.0)


@torch.no_grad()
def evaluate(model, loader, device=None) -> float:
    model.eval()
    correct = total = 0
    for x, y in loader:
        x, y = (x.to(device), y.to(device)) if device else (x, y)
        correct += int((model(x).argmax(-1) == y).sum())
        total += len(y)
    return correct / max(total, 1)


def plot(history: History, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [e.epoch for e in history.epochs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, [e.loss for e in history.epochs], marker="o")
    left.set(xlabel="epoch", ylabel="training loss", title="loss")
    right.plot(epochs, [e.train_accuracy for e in history.epochs], marker="o", label="train")
    right.plot(epochs, [e.test_accuracy for e in history.epochs], marker="o", label="test")
    right.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1), title="accuracy")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train(model, train_set, test_set, epochs: int = 10, lr: float = 1e-3, batch_size: int = 32,
          checkpoint_dir=None, resume: bool = False, seed: int = 0, progress: bool = True,
          console=None, stop=None, device=None) -> History:
    """Train `model` on (x, label) datasets; returns the per-epoch history.
    `stop(history) -> bool`, if given, is asked after each epoch whether to finish early.
    `device` ("cpu", "cuda" or "auto"; DeviceError where cuda is asked for and absent)
    trains there; the model ends back on the CPU."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from .runtime.device import resolve

    device = resolve(device) if device else None
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=generator)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=max(batch_size, 64))
    if device:
        model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history, start = History(), 0
    directory = Path(checkpoint_dir) if checkpoint_dir else None
    if directory and resume and (directory / "train_state.pt").is_file():
        state = torch.load(directory / "train_state.pt", weights_only=True, map_location="cpu")
        model.load_state_dict(state["model"])  # saved together with the epoch, never out of step
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        generator.set_state(state["loader_rng"])
        augmentation = getattr(getattr(train_set, "transform", None), "generator", None)
        if augmentation is not None and "augment_rng" in state:
            augmentation.set_state(state["augment_rng"])
        history = History([Epoch(**e) for e in json.loads(state["history"])])
        start = state["epoch"]
    columns = [TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.3f} acc {task.fields[acc]:.1%}"), TimeRemainingColumn()]
    with Progress(*columns, console=console, disable=not progress) as bar:
        for epoch in range(start + 1, epochs + 1):
            task = bar.add_task("train", total=len(loader), epoch=f"{epoch}/{epochs}", loss=0.0, acc=0.0)
            model.train()
            began, loss_sum, correct, seen = time.perf_counter(), 0.0, 0, 0
            for x, y in loader:
                x, y = (x.to(device), y.to(device)) if device else (x, y)
                out = model(x)
                loss = torch.nn.functional.cross_entropy(out, y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                loss_sum += float(loss) * len(y)
                correct += int((out.argmax(-1) == y).sum())
                seen += len(y)
                bar.update(task, advance=1, loss=loss_sum / seen, acc=correct / seen)
            test_accuracy = evaluate(model, test_loader, device)
            history.epochs.append(Epoch(epoch, loss_sum / seen, correct / seen, test_accuracy,
                                        time.perf_counter() - began))
            bar.update(task, description="done", acc=test_accuracy)
            bar.console.print(f"epoch {epoch}: loss {loss_sum / seen:.3f}, train {correct / seen:.1%}, "
                              f"test {test_accuracy:.1%}")
            if directory:
                directory.mkdir(parents=True, exist_ok=True)
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                         "rng": torch.get_rng_state(), "loader_rng": generator.get_state(),
                         "history": json.dumps([asdict(e) for e in history.epochs])}
                augmentation = getattr(getattr(train_set, "transform", None), "generator", None)
                if augmentation is not None:
                    state["augment_rng"] = augmentation.get_state()
                _save_atomically(state, directory / "train_state.pt")  # resume reads only this file
                _save_atomically(model.state_dict(), directory / "model.pt")
                plot(history, directory / "curves.png")
            if stop is not None and stop(history):
                break
    model.eval()
    if device:
        model.to("cpu")
    return history


def _save_atomically(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
