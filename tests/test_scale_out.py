"""Scale-out on a real local Ray (2 CPUs, one session for the module): `verify` split
across Ray tasks running Lava, and `explore` training candidates as Ray Tune trials."""

import json
from dataclasses import asdict
from pathlib import Path

import pytest
from helpers import ROOT

MODEL = ROOT / "examples/dvs_gesture/model.py"


@pytest.fixture(scope="module")
def ray_session():
    from hybridc.runtime.distributed import connect

    ray = connect(workers=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def build(tmp_path_factory, cli):
    directory = tmp_path_factory.mktemp("scale") / "b"
    result = cli("compile", MODEL, "--entry", "build", "--set", "size=16", "--set", "split=S1A5", "-o", directory)
    assert result.returncode == 0, result.stderr
    return directory


@pytest.mark.lava
def test_verify_on_two_ray_workers_reports_what_the_serial_run_reports(ray_session, build):
    from hybridc.runtime.dataset_verify import ReferenceFiles, verify_dataset

    trusted = ReferenceFiles(trust_source=True)  # compiled above from the example
    serial = asdict(verify_dataset(build, "synthetic", samples=4, backend="lava", batch_size=16, files=trusted))
    spread = asdict(verify_dataset(build, "synthetic", samples=4, backend="lava", batch_size=16, workers=2,
                                   files=trusted))
    assert serial["workers"] == 1 and spread["workers"] == 2
    assert serial["spike_match"] == 1.0  # Lava on the HDF5 equals PyTorch at the cut, in both runs
    for key in ("seconds_per_sample", "workers"):
        serial.pop(key), spread.pop(key)
    # float32 sums in PyTorch and onnxruntime depend on batch size and thread count (a Ray
    # worker runs 2 samples on one thread): the last bits of the output error may differ.
    errors = serial.pop("max_abs_err"), spread.pop("max_abs_err")
    assert max(errors) < 1e-6
    assert spread == serial
    assert ray_session.cluster_resources()["CPU"] == 2


def _mtimes(folder: Path) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file()}


def test_explore_trains_candidates_as_tune_trials_and_resumes(ray_session, tmp_path):
    from hybridc.profiling.train_explore import explore_trained
    from hybridc.runtime.dataset_verify import ReferenceFiles, verify_dataset

    out = tmp_path / "ex"
    args = dict(entry_args={"size": 16}, samples=4, train_epochs=1, train_samples=8, batch_size=8, workers=2)
    rows = explore_trained(MODEL, ["S1A5", "S2A4"], [4], out, **args)
    assert sorted(r.name for r in rows) == ["S1A5-I4", "S2A4-I4"]
    assert all(r.refused is None for r in rows) and any(r.pareto for r in rows)
    assert [r.energy_uj for r in rows] == sorted(r.energy_uj for r in rows)
    for r in rows:
        assert r.latency_ms > 0 and r.cut_bytes > 0 and r.neurons > 0
        # the build holds the trained weights: `hybridc verify` rebuilds it from file + checkpoint
        again = verify_dataset(out / "candidates" / r.name, samples=4, backend="emulate",
                               files=ReferenceFiles(trust_source=True))
        assert again.accuracy_deployed == r.accuracy and again.argmax_agreement == 1.0
    written = json.loads((out / "explore.json").read_text())
    assert [w["name"] for w in written] == [r.name for r in rows]
    assert (out / "explore.csv").read_text().startswith("name,latency_ms,energy_uj")
    assert (out / "explore.png").stat().st_size > 10_000 and (out / "explore_curves.png").stat().st_size > 10_000
    # every trial reported its epoch to Tune, then its figures
    reports = [json.loads(line) for path in (out / "ray").glob("*/*/result.json") for line in path.open()]
    epochs = [r for r in reports if "loss" in r]
    assert len(epochs) == 2 and all(r["epoch"] == 1 for r in epochs)
    finals = {r["candidate"]: r for r in reports if "candidate" in r}
    assert {name: f["energy_uj"] for name, f in finals.items()} == {r.name: r.energy_uj for r in rows}

    # Rerun: nothing is retrained, recompiled or rerun on Ray.
    before = {r.name: _mtimes(out / "training" / r.name) for r in rows}
    experiments = sorted((out / "ray").iterdir())
    assert [asdict(r) for r in explore_trained(MODEL, ["S1A5", "S2A4"], [4], out, **args)] == [asdict(r) for r in rows]
    assert {r.name: _mtimes(out / "training" / r.name) for r in rows} == before
    assert sorted((out / "ray").iterdir()) == experiments
    # Interrupted after training, before its result: the checkpoint is reused, not retrained.
    (out / "training" / "S2A4-I4" / "result.json").unlink()
    resumed = explore_trained(MODEL, ["S1A5", "S2A4"], [4], out, **args)
    assert [asdict(r) for r in resumed] == [asdict(r) for r in rows]
    after = _mtimes(out / "training" / "S2A4-I4")
    assert after["train_state.pt"] == before["S2A4-I4"]["train_state.pt"]
    assert after["model.pt"] == before["S2A4-I4"]["model.pt"]


@pytest.mark.slow
def test_explore_optuna_samples_the_space(ray_session, tmp_path):
    from hybridc.profiling.train_explore import explore_trained

    rows = explore_trained(MODEL, ["S1A5", "S2A4"], [4, 8], tmp_path / "ex", {"size": 16}, samples=4,
                           train_epochs=1, train_samples=8, batch_size=8, workers=2, search="optuna", trials=2)
    assert 1 <= len(rows) <= 2 and all(r.accuracy is not None for r in rows)


def test_scale_out_mistakes_are_clean_errors(tmp_path):
    from hybridc.errors import InputError
    from hybridc.profiling.train_explore import explore_trained
    from hybridc.runtime.dataset_verify import verify_dataset

    with pytest.raises(InputError, match="--workers must be at least 1"):
        verify_dataset(tmp_path, samples=4, workers=0)
    with pytest.raises(InputError, match="add --workers"):
        explore_trained(MODEL, ["S1A5"], [4], tmp_path / "ex", search="optuna", trials=2)
    with pytest.raises(InputError, match="needs --trials"):
        explore_trained(MODEL, ["S1A5"], [4], tmp_path / "ex", search="optuna", workers=2)
    with pytest.raises(InputError, match="--train-epochs must be at least 1"):
        explore_trained(MODEL, ["S1A5"], [4], tmp_path / "ex", train_epochs=0)
    assert not (tmp_path / "ex").exists()
