"""`hybridc explore --train-epochs E`: train every candidate, then compile, verify and profile it.

A candidate is one (split, interval) of the model file's `build(split=, interval=, **set)`.
Each is trained with hybridc.train (checkpoints in OUT/training/NAME), compiled from the
model file with those weights (OUT/candidates/NAME, so `hybridc verify` can check it again
later), scored on the deployed artifact (the emulate backend of `hybridc verify`) and
profiled. With --workers/--address every candidate is a Ray Tune trial that reports each
epoch; without, the candidates run here one after another.

Resuming: a candidate with OUT/training/NAME/result.json is finished and never retrained;
an unfinished one resumes from its last epoch's checkpoint. So rerunning an interrupted
exploration continues where it stopped.
"""

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..errors import HybridcError, InputError, reporting
from .explore import Candidate, fill_costs, pareto_front, write_outputs


@dataclass
class Settings:
    """Everything a trial needs, by value: it travels to Ray workers."""
    path: str
    out: str
    entry_args: dict = field(default_factory=dict)
    data: str = "synthetic"
    samples: int = 8  # test samples: per-epoch test accuracy and the deployed accuracy
    train_samples: int = 256  # synthetic training-set size (DvsGesture uses its whole train split)
    epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 32
    device_profile: Optional[str] = None
    jetson: Optional[str] = None
    link: Optional[str] = None
    gpu: bool = False  # Ray gave each trial a GPU (--gpus-per-trial): train on it
    device: str = "cpu"  # --device of a local run (a Ray trial has the GPU Ray gives it, or the CPU)


def candidate_name(split: str, interval: int) -> str:
    return f"{split}-I{interval}"


def run_candidate(split: str, interval: int, settings: Settings, report: Optional[Callable] = None) -> dict:
    """Train, compile, verify and profile one candidate (or read its finished result).
    `report(metrics)` is called after each epoch. Returns {"row", "history", "config"}."""
    name = candidate_name(split, interval)
    folder = Path(settings.out) / "training" / name
    finished = folder / "result.json"
    if finished.is_file():
        return json.loads(finished.read_text())
    row, history = Candidate(name), []
    try:
        _train_compile_profile(row, history, split, interval, settings, folder, report)
    except HybridcError as exc:
        row.refused = f"{type(exc).__name__}: {str(exc)[:200]}"
    record = {"row": asdict(row), "history": history, "config": {"split": split, "interval": interval}}
    folder.mkdir(parents=True, exist_ok=True)
    partial = finished.with_suffix(".tmp")
    partial.write_text(json.dumps(record, indent=2) + "\n")
    partial.replace(finished)  # written last and atomically: its presence means done
    return record


def _train_compile_profile(row, history, split, interval, settings, folder, report):
    import torch

    from ..compiler.driver import compile as compile_model
    from ..data import open_dataset
    from ..digest import sha256
    from ..frontend.loader import load_model_file
    from ..runtime.device import using
    from ..train import train
    from .explore import deployed_accuracy
    from .report import profile_build

    args = {**settings.entry_args, "split": split, "interval": interval}
    model, example_input, source, digest = load_model_file(settings.path, "build", None, args)
    if example_input.dim() != 5:
        raise InputError(f"explore --train-epochs trains on event frames (N, 2, H, W, T); build() in "
                         f"{settings.path} gives an example input of shape {tuple(example_input.shape)}.")
    _, _, _, size, timesteps = example_input.shape
    train_set = open_dataset(settings.data, train=True, size=size, timesteps=timesteps,
                             samples=settings.train_samples)
    test_set = open_dataset(settings.data, train=False, size=size, timesteps=timesteps, samples=settings.samples)
    test_set = torch.utils.data.Subset(test_set, range(min(settings.samples, len(test_set))))

    def each_epoch(done):
        epoch = done.epochs[-1]
        if report:  # both objectives present in every report, as Ray Tune's searchers require
            report({"epoch": epoch.epoch, "loss": epoch.loss, "train_accuracy": epoch.train_accuracy,
                    "test_accuracy": epoch.test_accuracy, "accuracy": epoch.test_accuracy,
                    "energy_uj": math.nan})
        return False

    device = "cuda" if settings.gpu and torch.cuda.is_available() else settings.device  # Ray's GPU first
    result = train(model, train_set, test_set, settings.epochs, settings.lr, settings.batch_size,
                   checkpoint_dir=folder, resume=True, progress=False, stop=each_epoch, device=device)
    history.extend(asdict(e) for e in result.epochs)
    weights = folder / "model.pt"
    recipe = {"entry": "build", "args": args, "weights": str(weights), "weights_sha256": sha256(weights)}
    compiled = compile_model(model.eval(), example_input, "loihi+jetson", Path(settings.out) / "candidates" / row.name,
                             force=True, source_path=source, source_sha256=digest, recipe=recipe)
    with using(device):  # the emulator where the training ran (a Ray trial does not inherit --device)
        profile = profile_build(compiled.directory, settings.data, settings.samples, settings.device_profile,
                                settings.jetson, settings.link, measure=False)
        fill_costs(row, profile)
        row.accuracy = deployed_accuracy(compiled, settings.data, settings.samples)


@reporting("explore", passing=())
def explore_trained(path, splits, intervals, out, entry_args=None, data="synthetic", samples=8, train_epochs=1,
                    train_samples=256, lr=1e-3, batch_size=32, workers=None, address=None, search="grid",
                    trials=None, gpus_per_trial=0.0, device_profile=None, jetson=None, link=None,
                    progress=None) -> list:
    """Rows ranked as `hybridc explore` ranks them; writes explore.csv/json/png and
    explore_curves.png (every candidate's per-epoch test accuracy and loss)."""
    from ..runtime.device import current
    from ..runtime.distributed import wants_ray

    if train_epochs < 1:
        raise InputError(f"--train-epochs must be at least 1, got {train_epochs}.")
    if search not in ("grid", "optuna"):
        raise InputError(f"Unknown --search `{search}`; use grid or optuna.")
    on_ray = wants_ray(workers, address)
    if search == "optuna" and not on_ray:
        raise InputError("--search optuna runs on Ray Tune: add --workers N (or --address ADDR).")
    if search == "optuna" and (trials is None or trials < 1):
        raise InputError("--search optuna needs --trials K (at least 1): how many candidates to sample.")
    if not path or not Path(path).is_file():
        raise InputError(f"The model file {path} does not exist.")
    out = Path(out).resolve()
    settings = Settings(str(Path(path).resolve()), str(out), dict(entry_args or {}), data, samples, train_samples,
                        train_epochs, lr, batch_size, str(device_profile) if device_profile else None, jetson, link,
                        gpu=on_ray and gpus_per_trial > 0, device="cpu" if on_ray else current())
    grid = [(split, interval) for split in splits for interval in intervals]
    if not grid:
        raise InputError("--splits and --intervals name no candidate.")
    pending = [c for c in grid if not (out / "training" / candidate_name(*c) / "result.json").is_file()]
    if on_ray and (pending or search == "optuna"):
        _run_on_ray(pending, splits, intervals, settings, workers, address, search, trials, gpus_per_trial, progress)
    else:
        for split, interval in pending:
            run_candidate(split, interval, settings)
            if progress:
                progress(candidate_name(split, interval))
    records = [json.loads(p.read_text()) for p in (out / "training" / candidate_name(*c) / "result.json"
                                                   for c in grid) if p.is_file()]
    rows = [Candidate(**record["row"]) for record in records]
    pareto_front(rows)
    rows.sort(key=lambda r: (r.refused is not None, r.energy_uj if r.energy_uj is not None else 0.0))
    write_outputs(rows, out)
    plot_curves(records, out / "explore_curves.png")
    return rows


def _trial(config, settings):
    """One Ray Tune trial: one candidate, reporting every epoch, then its ranked figures."""
    from ray import tune

    split, interval = _split_interval(config)
    record = run_candidate(split, interval, settings, report=tune.report)
    row = record["row"]
    refused = row["refused"] is not None
    tune.report({"candidate": row["name"], "epoch": len(record["history"]), "refused": refused,
                 "accuracy": 0.0 if refused or row["accuracy"] is None else row["accuracy"],
                 "energy_uj": math.inf if refused else row["energy_uj"]})


def _run_on_ray(pending, splits, intervals, settings, workers, address, search, trials, gpus_per_trial, progress):
    import logging
    import os

    from ..runtime.distributed import connect

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: Tune silent, hybridc prints the ranking
    connect(workers, address)

    from ray import tune

    logging.getLogger("ray.tune").setLevel(logging.WARNING)  # the table below is the report

    class Progress(tune.Callback):
        def __init__(self, report):
            self.report = report

        def __getstate__(self):  # Tune saves its callbacks in tuner.pkl; a live progress bar stays here
            return {"report": None}

        def on_trial_complete(self, iteration, trials, trial, **info):
            if self.report:
                self.report(candidate_name(*_split_interval(trial.config)))

    trainable = tune.with_resources(tune.with_parameters(_trial, settings=settings),
                                    {"cpu": 1, "gpu": gpus_per_trial})
    if search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        space = {"split": tune.choice(list(splits)), "interval": tune.choice(list(intervals))}
        searcher = OptunaSearch(metric=["accuracy", "energy_uj"], mode=["max", "min"], seed=0)
        tune_config = tune.TuneConfig(search_alg=searcher, num_samples=trials, reuse_actors=True)
    else:
        space = {"candidate": tune.grid_search([list(c) for c in pending])}
        tune_config = tune.TuneConfig(reuse_actors=True)  # a reused trial process keeps torch/Lava imported
    run_config = tune.RunConfig(name=f"explore-{time.strftime('%Y%m%d-%H%M%S')}",
                                storage_path=str(Path(settings.out) / "ray"), verbose=0, callbacks=[Progress(progress)])
    results = tune.Tuner(trainable, param_space=space, tune_config=tune_config, run_config=run_config).fit()
    for result in results:
        if result.error is not None:
            name = candidate_name(*_split_interval(result.config))
            raise InputError(f"The Ray Tune trial for candidate {name} failed: {result.error}. Its log is under "
                             f"{result.path}; rerun to resume (finished candidates are kept).")


def _split_interval(config):
    return config["candidate"] if "candidate" in config else (config["split"], config["interval"])


def plot_curves(records: list, path: Path) -> None:
    """Every trained candidate's per-epoch test accuracy and training loss, one line each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for record in records:
        epochs = record["history"]
        if not epochs:
            continue
        x = [e["epoch"] for e in epochs]
        right.plot(x, [e["test_accuracy"] for e in epochs], marker="o", label=record["row"]["name"])
        left.plot(x, [e["loss"] for e in epochs], marker="o", label=record["row"]["name"])
    left.set(xlabel="epoch", ylabel="training loss", title="loss per candidate")
    right.set(xlabel="epoch", ylabel="test accuracy (PyTorch)", ylim=(0, 1), title="accuracy per candidate")
    if any(record["history"] for record in records):
        right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
