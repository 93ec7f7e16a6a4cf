"""The second reference of an imported NIR graph: its *original* float semantics.

A `hybridc.nn.NIR` module computes what Lava computes (slayer's fixed point), so parity
with Lava stays exact. How far that quantized import is from the graph as its author
trained it is a separate figure: the model runs once in PyTorch with a forward hook on every
`hybridc.nn.NIR` submodule, which captures its input and output; the graph the module keeps
(`NIR.graph`, as loaded, before any quantization) is simulated in float by Norse's
`from_nir` on that input, sample by sample, its output delayed by the module's number of
slayer blocks (each delays by one step, Loihi's hop; the float graph does not), and the two
spike tensors are compared: Dice, fraction of equal entries, spikes on each side.

A graph that branches (a node feeding several nodes, or several edges into one) gets no
figure, "n/a" with the reason: nirtorch's executor, under `from_nir`, runs the nodes depth
first, so a join reads the other branch's value of the previous step, and the figure would
measure Norse's scheduling, not the import (tests/test_nir_import.py checks branches against
a reference of its own).

The figure informs; it does not decide `--verify` (exactness in Lava does). Below
`DICE_WARN` it is printed as a warning: the measured chains reach 0.90 (convs) to 0.94
(Linear/LIF) on random input (docs/targets.md, "NIR in").
"""

import contextlib
import io
import warnings

import torch

from ..nn import NIR
from .nir_stage import delayed, simulate
from .overlap import dice, dice_counts

DICE_WARN = 0.8


def branches(graph) -> list:
    """The nodes of a NIR graph where it splits or joins."""
    edges = [tuple(e) for e in graph.edges]
    return sorted(n for n in graph.nodes if sum(a == n for a, _ in edges) > 1 or sum(b == n for _, b in edges) > 1)


def float_original(module: NIR, x: torch.Tensor) -> torch.Tensor:
    """The module's kept graph simulated in float by Norse on `x` (N, ..., T), delayed by the
    module's block depth so that it lines up with the module's output."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        from norse.torch import from_nir

        norse = from_nir(module.graph, ignore_warnings=True, dt=module.dt).eval()
    out = torch.stack([simulate(norse, sample) for sample in x.float()])
    return delayed(out, module.depth)


def capture(model: torch.nn.Module, x: torch.Tensor) -> dict:
    """{module path ("model" for the root): (NIR module, its input, its output)} from one
    forward of `model` on `x`."""
    found = {name or "model": m for name, m in model.named_modules() if isinstance(m, NIR)}
    if not found:  # no extra forward for models without NIR modules
        return {}
    seen, handles = {}, []
    for name, m in found.items():
        def hook(_, args, output, name=name, m=m):
            seen[name] = (m, args[0].detach(), output.detach())

        handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def counts(model: torch.nn.Module, x: torch.Tensor) -> dict:
    """Per `hybridc.nn.NIR` submodule of `model` run on `x`: the counts behind its figures,
    which add up over batches ({"both": spikes in both, "total": |A| + |B|, "equal": equal
    entries, "entries", "spikes", "original_spikes", "depth"}), or {"na": reason}."""
    found = {}
    for name, (module, given, ours) in capture(model, x).items():
        graph = getattr(module, "graph", None)
        if graph is None:
            found[name] = {"na": "the module keeps no NIR graph"}
            continue
        split = branches(graph)
        if split:
            found[name] = {"na": f"the graph branches at {', '.join(f'`{n}`' for n in split)}; Norse's from_nir "
                                 "runs nodes depth first, so a join would read the other branch's previous step"}
            continue
        try:
            original = float_original(module, given)
        except Exception as exc:  # noqa: BLE001 - a graph Norse cannot read is a figure missing, not a failure
            found[name] = {"na": f"Norse cannot simulate the graph ({type(exc).__name__}: {exc})"}
            continue
        if original.shape != ours.shape:
            found[name] = {"na": f"Norse's output has shape {tuple(original.shape)}, the module's "
                                 f"{tuple(ours.shape)}"}
            continue
        both, total = dice_counts(ours, original)
        found[name] = {"both": both, "total": total, "equal": int((ours == original).sum()), "entries": ours.numel(),
                       "spikes": int(ours.sum()), "original_spikes": int(original.sum()), "depth": module.depth}
    return found


def add(a: dict, b: dict) -> dict:
    """The counts of two disjoint batches together."""
    out = dict(a)
    for name, c in b.items():
        before = out.get(name)
        if before is None or "na" in c:
            out[name] = c
        elif "na" not in before:
            out[name] = {k: (v if k == "depth" else before[k] + v) for k, v in c.items()}
    return out


def figures(found: dict) -> dict:
    """{"dice", "equal" (a fraction), "spikes", "original_spikes", "depth"} or {"na": reason}
    per NIR module, from `counts`."""
    out = {}
    for name, c in found.items():
        if "na" in c:
            out[name] = dict(c)
        else:
            out[name] = {"dice": dice(c["both"], c["total"]),
                         "equal": c["equal"] / c["entries"], "spikes": c["spikes"],
                         "original_spikes": c["original_spikes"], "depth": c["depth"]}
    return out


def agreement(model: torch.nn.Module, x: torch.Tensor) -> dict:
    """Per `hybridc.nn.NIR` submodule of `model` run on `x`: {"dice", "equal", "spikes",
    "original_spikes", "depth"} against its float original, or {"na": reason}. Empty when the
    model holds no NIR module."""
    return figures(counts(model, x))


def lines(figures: dict) -> list:
    """(text, warn) per NIR module, as `compile --verify` prints them."""
    out = []
    for name, f in (figures or {}).items():
        if "na" in f:
            out.append((f"NIR `{name}` vs its float original (Norse): n/a, {f['na']}", False))
            continue
        low = f["dice"] < DICE_WARN
        out.append((f"NIR `{name}` vs its float original (Norse): Dice {f['dice']:.2f}, {f['equal']:.0%} entries "
                    f"equal ({f['spikes']} spikes vs {f['original_spikes']})"
                    + (f"; below {DICE_WARN:g}: check the graph's dt and parameters" if low else ""), low))
    return out


__all__ = ["DICE_WARN", "add", "agreement", "branches", "capture", "counts", "figures", "float_original", "lines"]
