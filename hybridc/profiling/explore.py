"""`hybridc explore`: compile and profile every candidate split, then rank them.

Candidates come from the model file: a `candidates()` function yielding
(name, model, example_input), or else its `build(split=..., interval=..., **set)` entry
over --splits x --intervals. Each is compiled (kept under OUT/candidates/NAME),
profiled, and, with --checkpoints, scored for accuracy on --data. The table is sorted
by estimated energy; Pareto-optimal candidates (no other is at least as good on
latency, energy and accuracy and better on one) are marked.

Estimates are rounded to SIGNIFICANT_DIGITS before they are ranked, marked or shown: the
device figures behind them (docs/profile.md) are good to a few percent at best, so two
candidates 0.01% apart are equal, not one better than the other.
"""

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from ..errors import HybridcError, ModelFileError, reporting

SIGNIFICANT_DIGITS = 3  # what an estimate from per-operation figures can claim


def round_estimate(value: Optional[float]) -> Optional[float]:
    """`value` to SIGNIFICANT_DIGITS significant digits (None stays None)."""
    if value is None or value == 0:
        return value
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def format_estimate(value: float) -> str:
    """A rounded estimate as a user reads it: 2.20, 0.424, 1,360 (never 1.36e+03)."""
    import math

    decimals = SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(abs(value))) if value else 0
    return f"{value:,.{max(decimals, 0)}f}"


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
    from ..frontend.loader import load_model_file, load_weights, model_module

    with model_module(path) as module:
        module_candidates = getattr(module, "candidates", None)
        if not callable(module_candidates) and not callable(getattr(module, "build", None)):
            raise ModelFileError(
                f"{path} defines neither `candidates()` nor `build(split=..., interval=...)`, so explore has "
                "nothing to compile. Add one of them (see docs/explore.md); to compile the file's single "
                "`model`, use `hybridc compile` instead.")
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
def explore(path, splits, intervals, out, entry_args=None, data=None, samples=8, checkpoints=None,
            device_profile=None, jetson=None, link=None, progress=None, system=None) -> list:
    """system: where each candidate's Loihi stages must fit (a candidate that does not fit
    is refused with the MappingError's reason, like one that does not compile)."""
    from ..compiler.driver import compile as compile_model
    from .report import profile_build

    out = Path(out)

    def weights_for(name):
        if not checkpoints:
            return None
        for candidate in (Path(checkpoints) / name / "model.pt", Path(checkpoints) / f"{name}.pt"):
            if candidate.is_file():
                return candidate
        return None

    existed = out.exists()
    rows, first_refusal = [], None
    for name, model, example_input, weights, recipe in candidates_from_file(path, splits, intervals,
                                                                            entry_args or {}, weights_for):
        row = Candidate(name)
        rows.append(row)
        try:
            if isinstance(model, Exception):
                raise model
            with reporting(f"candidate `{name}`"):  # a foreign error refuses this candidate only
                compiled = compile_model(model, example_input, "loihi+jetson", out / "candidates" / name,
                                         force=True, system=system)
                profile = profile_build(compiled.directory, data, samples, device_profile, jetson, link,
                                        measure=False)
        except HybridcError as exc:
            row.refused = f"{type(exc).__name__}: {exc}"
            first_refusal = first_refusal or (name, exc)
            continue
        fill_costs(row, profile)
        if weights is not None:
            row.accuracy = deployed_accuracy(compiled, data, samples)
        if progress:
            progress(name)
    if all(r.refused for r in rows):
        if not existed:
            import shutil

            shutil.rmtree(out, ignore_errors=True)
        if not rows:
            raise ModelFileError(f"{path} produced no candidates (check --splits, --intervals or candidates()).")
        name, exc = first_refusal
        raise type(exc)(f"None of the {len(rows)} candidates of {path} could be compiled; the first, {name}, "
                        f"was refused: {exc}")
    pareto_front(rows)
    rows.sort(key=lambda r: (r.refused is not None, r.energy_uj or 0.0, r.latency_ms or 0.0, r.name))
    write_outputs(rows, out)
    return rows


def fill_costs(row: Candidate, profile) -> None:
    """The profile's figures a candidate is ranked by."""
    row.latency_ms = round_estimate(profile.latency_s["total"] * 1e3)
    row.energy_uj = round_estimate(profile.energy_j["total"] * 1e6)
    row.cut_bytes = profile.cut.get("bytes_sent", 0.0)
    row.neurons = profile.loihi.get("neurons", 0)
    row.cores = profile.loihi.get("cores", 0)
    row.parameters = profile.jetson.get("parameters", 0)


def deployed_accuracy(compiled, data, samples) -> float:
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
    """Energy against latency; candidates at the same (rounded) point share one label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.refused is None]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for pareto, colour, label in ((True, "#d62828", "Pareto-optimal"), (False, "#457b9d", "dominated")):
        group = [r for r in ok if r.pareto == pareto]
        if group:
            ax.scatter([r.latency_ms for r in group], [r.energy_uj for r in group], c=colour, s=40, zorder=3,
                       label=label)
    front = sorted((r for r in ok if r.pareto), key=lambda r: r.latency_ms)
    if len(front) > 1:
        ax.step([r.latency_ms for r in front], [r.energy_uj for r in front], where="post", color="#d62828",
                lw=1.2, label="Pareto front")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_xlim(*axis_span([r.latency_ms for r in ok]))
    ax.set_ylim(*axis_span([r.energy_uj for r in ok]))
    ax.set(xlabel="estimated latency per inference (ms)", ylabel="estimated energy per inference (uJ)",
           title="hybridc explore: candidate splits")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    points = {}
    for r in ok:
        points.setdefault((r.latency_ms, r.energy_uj), []).append(r.name)
    place_labels(fig, ax, [(x, y, ", ".join(names)) for (x, y), names in points.items()])
    fig.savefig(path, dpi=110)
    plt.close(fig)


def axis_span(values: list, least: float = 0.1) -> tuple:
    """Axis limits around `values` spanning at least `least` of their magnitude, so that
    differences below the estimates' precision do not fill the plot."""
    if not values:
        return (0.0, 1.0)
    low, high = min(values), max(values)
    middle, width = (low + high) / 2, high - low
    width = max(width * 1.3, least * max(abs(low), abs(high)), 1e-12)
    return (middle - width / 2, middle + width / 2)


def place_labels(fig, ax, labels: list) -> None:
    """Annotate points, trying offsets around each until its text overlaps no label placed
    before it and no other point (a small greedy placer; none needed a library)."""
    renderer = fig.canvas.get_renderer()
    offsets = [(5, 4), (5, -11), (-5, 4), (-5, -11), (5, 12), (5, -19), (-5, 12), (-5, -19)]
    marks = [ax.transData.transform((x, y)) for x, y, _ in labels]
    placed = []
    for x, y, text in sorted(labels, key=lambda item: (-item[1], item[0])):
        for dx, dy in offsets:
            annotation = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=8,
                                     ha="left" if dx > 0 else "right")
            box = annotation.get_window_extent(renderer).expanded(1.05, 1.1)
            clear = not any(box.overlaps(other) for other in placed) and not any(
                box.contains(px, py) for px, py in marks)
            if clear or (dx, dy) == offsets[-1]:
                placed.append(box)
                break
            annotation.remove()
