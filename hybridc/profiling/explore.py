"""`hybridc explore`: compile and profile every candidate split, then rank them.

Candidates come from the model file: a `candidates()` function yielding
(name, model, example_input), or else its `build(split=..., interval=..., **set)` entry
over --splits x --intervals. Each is compiled (kept under OUT/candidates/NAME),
profiled, and, with --checkpoints, scored for accuracy on --data. The table is sorted
by estimated energy; Pareto-optimal candidates (no other is at least as good on
latency, energy and accuracy and better on one) are marked.
"""

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from ..errors import HybridcError, reporting


@dataclass
class Candidate:
    name: str
    latency_ms: Optional[float] = None
    energy_uj: Optional[float] = None
    cut_bytes: Optional[float] = None  # sent per inference
    neurons: Optional[int] = None
    cores: Optional[int] = None
    parameters: Optional[int] = None
    accuracy: Optional[float] = None
    pareto: bool = False
    refused: Optional[str] = None  # why it could not be compiled


def pareto_front(rows: list) -> None:
    """Marks rows no other row dominates (lower latency and energy, higher accuracy)."""
    ok = [r for r in rows if r.refused is None]

    def key(r):
        return (r.latency_ms, r.energy_uj, -(r.accuracy if r.accuracy is not None else 0.0))

    for r in ok:
        mine = key(r)
        r.pareto = not any(all(a <= b for a, b in zip(key(o), mine)) and key(o) != mine for o in ok if o is not r)


def candidates_from_file(path, splits, intervals, entry_args, weights_for):
    """Yields (name, model, example_input, weights path or None, recipe) per candidate."""
    from ..errors import ModelFileError
    from ..frontend.loader import load_model_file, load_weights, model_module

    with model_module(path) as module:
        module_candidates = getattr(module, "candidates", None)
        if callable(module_candidates):
            try:
                produced = list(module_candidates(**entry_args))
            except Exception as exc:  # noqa: BLE001 - user code
                raise ModelFileError(f"candidates() in {path} raised {type(exc).__name__}: {exc}.") from None
            for item in produced:
                if not (isinstance(item, tuple) and len(item) == 3):
                    raise ModelFileError(f"candidates() in {path} must yield (name, model, example_input).")
                name, model, example_input = item
                weights = weights_for(name)
                if weights is not None:
                    try:
                        load_weights(model, weights)
                    except HybridcError as exc:
                        model = exc
                yield name, model, example_input, weights, None
            return
    for split in splits:
        for interval in intervals:
            name = f"{split}-I{interval}"
            args = {**entry_args, "split": split, "interval": interval}
            weights = weights_for(name)
            try:
                model, example_input, source, digest = load_model_file(path, "build", weights, args)
            except HybridcError as exc:
                yield name, exc, None, None, None
                continue
            yield name, model, example_input, weights, {"entry": "build", "args": args, "source": source,
                                                        "sha256": digest}


@reporting("explore", passing=())
def explore(path, splits, intervals, out, entry_args=None, data="synthetic", samples=8, checkpoints=None,
            device_profile=None, jetson=None, link=None, progress=None) -> list:
    from ..build.driver import compile as compile_model
    from .report import profile_build

    out = Path(out)

    def weights_for(name):
        if not checkpoints:
            return None
        for candidate in (Path(checkpoints) / name / "model.pt", Path(checkpoints) / f"{name}.pt"):
            if candidate.is_file():
                return candidate
        return None

    rows = []
    for name, model, example_input, weights, recipe in candidates_from_file(path, splits, intervals,
                                                                            entry_args or {}, weights_for):
        row = Candidate(name)
        rows.append(row)
        if isinstance(model, Exception):
            row.refused = f"{type(model).__name__}: {model}"
            continue
        try:
            with reporting(f"candidate `{name}`"):  # a foreign error refuses this candidate only
                compiled = compile_model(model, example_input, "loihi+jetson", out / "candidates" / name,
                                         force=True)
                profile = profile_build(compiled.directory, data, samples, device_profile, jetson, link,
                                        measure=False)
        except HybridcError as exc:
            row.refused = f"{type(exc).__name__}: {str(exc)[:200]}"
            continue
        fill_costs(row, profile)
        if weights is not None:
            row.accuracy = _accuracy(compiled, data, samples)
        if progress:
            progress(name)
    pareto_front(rows)
    rows.sort(key=lambda r: (r.refused is not None, r.energy_uj if r.energy_uj is not None else 0.0))
    write_outputs(rows, out)
    return rows


def fill_costs(row: Candidate, profile) -> None:
    """The profile's figures a candidate is ranked by."""
    row.latency_ms = profile.latency_s["total"] * 1e3
    row.energy_uj = profile.energy_j["total"] * 1e6
    row.cut_bytes = profile.cut.get("bytes_sent", 0.0)
    row.neurons = profile.loihi.get("neurons", 0)
    row.cores = profile.loihi.get("cores", 0)
    row.parameters = profile.jetson.get("parameters", 0)


def _accuracy(compiled, data, samples) -> float:
    """Deployed accuracy with the emulation backend (exact, see hybridc verify)."""
    from ..runtime.dataset_verify import verify_dataset

    return verify_dataset(compiled.directory, data, samples, "emulate",
                          reference=(compiled.module, compiled.fx_partitions)).accuracy_deployed


def write_outputs(rows: list, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fields = list(asdict(rows[0]).keys()) if rows else []
    with open(out / "explore.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row))
    (out / "explore.json").write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    scatter(rows, out / "explore.png")


def scatter(rows: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.refused is None]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([r.latency_ms for r in ok], [r.energy_uj for r in ok],
               c=["#d62828" if r.pareto else "#457b9d" for r in ok], s=40, zorder=3)
    for r in ok:
        ax.annotate(r.name, (r.latency_ms, r.energy_uj), textcoords="offset points", xytext=(4, 4), fontsize=8)
    front = sorted((r for r in ok if r.pareto), key=lambda r: r.latency_ms)
    if front:
        ax.step([r.latency_ms for r in front], [r.energy_uj for r in front], where="post", color="#d62828",
                lw=1.2, label="Pareto front")
        ax.legend()
    ax.set(xlabel="estimated latency per inference (ms)", ylabel="estimated energy per inference (uJ)",
           title="hybridc explore: candidate splits")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
