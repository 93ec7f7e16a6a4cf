"""The second reference of an imported NIR graph: its *original* float semantics.

A `hybridc.nn.NIR` module computes what Lava computes (slayer's fixed point), so parity
with Lava stays exact. How far that quantized import is from the graph as its author
trained it is a separate figure: the model runs once in PyTorch with a forward hook on every
`hybridc.nn.NIR` submodule, which captures its input and output; the graph the module keeps
(`NIR.graph`, as loaded, before any quantization) is simulated in float on that input
(runtime/nir_float.py: every node once a step in topological order, Norse's `from_nir`
formulas, bit for bit equal to Norse on chains), its output delayed by the module's number
of slayer blocks (each delays by one step, Loihi's hop; the float graph does not), and the
two spike tensors are compared: Dice, fraction of equal entries, spikes on each side. The
importer refuses joins of paths of different length, so every path to the output crosses
the same number of blocks and one delay, the module's depth, aligns the whole output.

Then the model runs again with that module's output replaced by the delayed float spikes
(a forward hook), the rest of the model (Accumulator, head) unchanged: the largest absolute
difference of the model's output from the quantized model's, and how many samples keep
their argmax. Without a head (the module's output is the model's) or with an output that is
not a tensor, that part is "n/a" with the reason.

The figures inform; they do not decide `--verify` (exactness in Lava does). Below
`DICE_WARN` or `ARGMAX_WARN` they are printed as a warning (docs/targets.md, "NIR in", has
the measured figures: Dice 0.90 to 0.97 on the test chains and the example).
"""

import torch

from ..nn import NIR
from .nir_float import simulate_graph
from .nir_stage import delayed
from .overlap import dice, dice_counts
from .run import output_list

DICE_WARN = 0.8
ARGMAX_WARN = 0.8


def float_original(module: NIR, x: torch.Tensor) -> torch.Tensor:
    """The module's kept graph simulated in float on `x` (N, ..., T), delayed by the module's
    block depth so that it lines up with the module's output."""
    return delayed(simulate_graph(module.graph, x, module.dt), module.depth)


def _forward(model: torch.nn.Module, x):
    """model(x), or model(*x) for a model of several inputs (x a tuple or list)."""
    return model(*x) if isinstance(x, (tuple, list)) else model(x)


def capture(model: torch.nn.Module, x) -> tuple:
    """({module path ("model" for the root): (NIR module, its input, its output)}, the
    model's output) from one forward of `model` on `x`; ({}, None) without NIR modules."""
    found = {name or "model": m for name, m in model.named_modules() if isinstance(m, NIR)}
    if not found:  # no extra forward for models without NIR modules
        return {}, None
    seen, handles = {}, []
    for name, m in found.items():
        def hook(_, args, output, name=name, m=m):
            seen[name] = (m, args[0].detach(), output)

        handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            output = _forward(model, x)
    finally:
        for handle in handles:
            handle.remove()
    return seen, output


def _on_original(model, x, module, ours, original, output) -> dict:
    """The counts of the model's output with `module`'s spikes replaced by `original`:
    {"output_err" (max |difference|), "argmax_same", "argmax_total"} or {"output_na": why}."""
    outputs = output_list(output)
    if not all(isinstance(o, torch.Tensor) for o in outputs):
        return {"output_na": f"the model's output is a {type(output).__name__}, not tensors"}
    if any(o is ours for o in outputs):
        return {"output_na": "no head: the module's output is the model's"}
    handle = module.register_forward_hook(lambda *_: original)
    try:
        with torch.no_grad():
            replaced = output_list(_forward(model, x))
    finally:
        handle.remove()
    # every output: the largest error, and the argmax of each that has a class axis
    found = {"output_err": max((float((r.float() - o.float()).abs().max()) if o.numel() else 0.0)
                               for r, o in zip(replaced, outputs))}
    classed = [(r, o) for r, o in zip(replaced, outputs) if o.dim() >= 2]
    if not classed:
        return {**found, "argmax_na": "the model's output has no class axis"}
    same = [r.argmax(-1) == o.argmax(-1) for r, o in classed]
    return {**found, "argmax_same": sum(int(s.sum()) for s in same), "argmax_total": sum(s.numel() for s in same)}


def counts(model: torch.nn.Module, x) -> dict:
    """Per `hybridc.nn.NIR` submodule of `model` run on `x`: the counts behind its figures,
    which add up over batches ({"both": spikes in both, "total": |A| + |B|, "equal": equal
    entries, "entries", "spikes", "original_spikes", "depth", then "output_err" (a maximum),
    "argmax_same", "argmax_total", or "output_na"/"argmax_na": reason}), or {"na": reason}."""
    found = {}
    seen, output = capture(model, x)
    for name, (module, given, ours) in seen.items():
        graph = getattr(module, "graph", None)
        if graph is None:
            found[name] = {"na": "the module keeps no NIR graph"}
            continue
        try:
            original = float_original(module, given)
        except Exception as exc:  # noqa: BLE001 - a graph the simulation cannot run is a figure missing, not a failure
            found[name] = {"na": f"the float simulation cannot run the graph ({type(exc).__name__}: {exc})"}
            continue
        if original.shape != ours.shape:
            found[name] = {"na": f"the float simulation's output has shape {tuple(original.shape)}, the module's "
                                 f"{tuple(ours.shape)}"}
            continue
        ours = ours.detach()
        both, total = dice_counts(ours, original)
        found[name] = {"both": both, "total": total, "equal": int((ours == original).sum()), "entries": ours.numel(),
                       "spikes": int(ours.sum()), "original_spikes": int(original.sum()), "depth": module.depth,
                       **_on_original(model, x, module, seen[name][2], original.to(ours.dtype), output)}
    return found


def add(a: dict, b: dict) -> dict:
    """The counts of two disjoint batches together: sums, the output error's maximum; a
    figure missing from either batch ("output_na", "argmax_na") is missing from both."""
    out = dict(a)
    for name, c in b.items():
        before = out.get(name)
        if before is None or "na" in c:
            out[name] = c
        elif "na" not in before:
            merged = {}
            for k in before.keys() | c.keys():
                if k.endswith("_na"):
                    merged[k] = before.get(k) or c[k]
                elif k in before and k in c:
                    merged[k] = c[k] if k == "depth" else max(before[k], c[k]) if k == "output_err" else before[k] + c[k]
            out[name] = merged
    return out


def figures(found: dict) -> dict:
    """Per NIR module, from `counts`: {"dice", "equal" (a fraction), "spikes",
    "original_spikes", "depth", "output_err", "argmax" (a fraction), "output_na"} (the last
    three None where they do not apply, `output_na` saying why), or {"na": reason}."""
    out = {}
    for name, c in found.items():
        if "na" in c:
            out[name] = dict(c)
            continue
        total = c.get("argmax_total")
        out[name] = {"dice": dice(c["both"], c["total"]),
                     "equal": c["equal"] / c["entries"], "spikes": c["spikes"],
                     "original_spikes": c["original_spikes"], "depth": c["depth"],
                     "output_err": c.get("output_err"), "argmax": c["argmax_same"] / total if total else None,
                     "output_na": c.get("output_na") or c.get("argmax_na")}
    return out


def agreement(model: torch.nn.Module, x) -> dict:
    """Per `hybridc.nn.NIR` submodule of `model` run on `x`: `figures` against its float
    original, or {"na": reason}. Empty when the model holds no NIR module."""
    return figures(counts(model, x))


def low(f: dict) -> bool:
    """Whether a module's figures are below the bounds that warn."""
    return "na" not in f and (f["dice"] < DICE_WARN or (f.get("argmax") is not None and f["argmax"] < ARGMAX_WARN))


def output_text(f: dict) -> str:
    """The model-output part of a module's figures, as `compile --verify` and `verify` show it."""
    if f.get("output_err") is None:
        return f"n/a, {f.get('output_na')}"
    shown = f"max |err| {f['output_err']:.3g}"
    return shown + (f", argmax agreement {f['argmax']:.0%}" if f.get("argmax") is not None
                    else f", argmax n/a, {f['output_na']}")


def lines(figures: dict) -> list:
    """(text, warn) per NIR module, as `compile --verify` prints them."""
    out = []
    for name, f in (figures or {}).items():
        if "na" in f:
            out.append((f"NIR `{name}` vs its float original: n/a, {f['na']}", False))
            continue
        warn = low(f)
        out.append((f"NIR `{name}` vs its float original: Dice {f['dice']:.2f}, {f['equal']:.0%} entries "
                    f"equal ({f['spikes']} spikes vs {f['original_spikes']}); the model on the original's "
                    f"spikes: output {output_text(f)}"
                    + (f"; below {DICE_WARN:g}: check the graph's dt and parameters" if warn else ""), warn))
    return out


__all__ = ["ARGMAX_WARN", "DICE_WARN", "add", "agreement", "capture", "counts", "figures", "float_original",
           "lines", "low", "output_text"]
