"""Train a spiking front in Norse and a dense head in PyTorch, then export the front as NIR.

    python examples/nir_import/train.py            # writes front.nir and head.pt beside this file
    python examples/nir_import/train.py --device auto   # on a CUDA GPU when torch sees one
    hybridc compile examples/nir_import/model.py -o build/nir --verify

The front is Norse's own modules (Linear without bias -> LIFBoxCell -> Linear -> LIFBoxCell,
Norse's default LIF: tau_mem 10 ms, threshold 1, integrated with dt = 1 ms), stepped over
time in an ordinary PyTorch loop with Norse's surrogate gradient; spike counts per window
(hybridc.nn.Accumulator) feed the head. Data: hybridc's synthetic gestures, 2 x 8 x 8
events, 16 steps, flattened to 128 inputs. 20 epochs in a few seconds on two CPU cores.

Export: Norse's `to_nir(front, sample, dt=1.0)` (at dt=1.0 it writes tau in seconds; see
docs/targets.md "NIR in"). `nir.write` cannot write that graph as it is (0-d torch
parameters), so `hybridc.nir_import.normalised` writes the repairs the importer makes
into the graph first; the file is read back with `nir.read` to check it.
"""

import sys
import time
from pathlib import Path

import torch
import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import hybridc  # noqa: E402,F401 - before slayer is imported: keeps lava-dl's import notices off the screen

HERE = Path(__file__).resolve().parent
SIZE, TIMESTEPS, INTERVAL, HIDDEN, OUTPUTS, CLASSES = 8, 16, 8, 64, 16, 11
FEATURES = 2 * SIZE * SIZE


def front_net():
    from norse.torch import LIFBoxCell, SequentialState

    return SequentialState(torch.nn.Linear(FEATURES, HIDDEN, bias=False), LIFBoxCell(),
                           torch.nn.Linear(HIDDEN, OUTPUTS, bias=False), LIFBoxCell())


def head_net():
    return torch.nn.Linear(OUTPUTS * (TIMESTEPS // INTERVAL), CLASSES)


def run_front(front, x):
    """Norse's front stepped over time: (batch, features, T) spikes in, (batch, outputs, T) out."""
    state, out = None, []
    for t in range(x.shape[-1]):
        z, state = front(x[..., t], state)
        out.append(z)
    return torch.stack(out, dim=-1)


def batches(dataset):
    x, y = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(x).flatten(1, 3), torch.tensor(y)


def write_front(front, path: Path):
    """front.nir through Norse's exporter; the graph normalised so that nir.write can write it."""
    import nir
    from norse.torch import to_nir

    from hybridc.nir_import import normalised

    graph = normalised(to_nir(front, torch.zeros(1, FEATURES), dt=1.0), dt=1e-3)
    nir.write(str(path), graph)
    nir.read(str(path))  # reads back
    return graph


def main(epochs: int = 20, seed: int = 0, device: str = "cpu"):
    """device: cpu, cuda or auto (hybridc.errors.DeviceError where cuda is asked for and absent)."""
    from hybridc.data import SyntheticGestures
    from hybridc.nn import Accumulator
    from hybridc.runtime.device import resolve

    device = resolve(device)
    torch.manual_seed(seed)
    start = time.time()
    train_x, train_y = (t.to(device) for t in batches(SyntheticGestures(440, SIZE, TIMESTEPS, seed=seed)))
    test_x, test_y = (t.to(device) for t in batches(SyntheticGestures(110, SIZE, TIMESTEPS, seed=seed + 10_000)))
    front, acc, head = front_net().to(device), Accumulator(INTERVAL), head_net().to(device)
    with torch.no_grad():  # inputs are sparse (about 10% of entries): start with weights that make both layers spike
        front[0].weight.mul_(8).add_(0.3)
        front[2].weight.mul_(8).add_(0.5)
    params = list(front.parameters()) + list(head.parameters())
    optimiser = torch.optim.Adam(params, lr=3e-3)
    for epoch in range(epochs):
        order = torch.randperm(len(train_y), device=device)
        for i in range(0, len(order), 32):
            index = order[i:i + 32]
            loss = torch.nn.functional.cross_entropy(head(acc(run_front(front, train_x[index]))), train_y[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            spikes = run_front(front, test_x)
            accuracy = (head(acc(spikes)).argmax(1) == test_y).float().mean().item()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, test accuracy {accuracy:.1%}, "
              f"output spike rate {spikes.mean().item():.3f}")
    front, head = front.cpu(), head.cpu()
    write_front(front, HERE / "front.nir")
    torch.save(head.state_dict(), HERE / "head.pt")
    print(f"trained in {time.time() - start:.0f} s; wrote {HERE / 'front.nir'} and {HERE / 'head.pt'}")


def cli(epochs: int = typer.Option(20), seed: int = typer.Option(0),
        device: str = typer.Option("cpu", help="cpu, cuda or auto (cuda when torch sees a GPU).")):
    """Train the Norse front and the head; write front.nir and head.pt beside this file."""
    from hybridc.errors import HybridcError

    try:
        main(epochs, seed, device)
    except HybridcError as error:  # a user's mistake: its message and exit code, no traceback
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(error.exit_code)


if __name__ == "__main__":
    typer.run(cli)
