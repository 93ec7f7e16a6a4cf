"""Event data, end-to-end training through the accumulator, and `hybridc verify` of a
trained checkpoint over a dataset (real Lava)."""

import json
import sys

import numpy as np
import pytest
import torch
from helpers import ROOT

from hybridc.data import DVSGesture, SyntheticGestures, jitter
from hybridc.data.dvsgesture import bin_events
from hybridc.errors import InputError


def test_synthetic_set_is_deterministic_balanced_and_unary():
    a, b = SyntheticGestures(22, size=32, timesteps=16, seed=3), SyntheticGestures(22, size=32, timesteps=16, seed=3)
    x, label = a[13]
    assert x.shape == (2, 32, 32, 16) and label == 2
    assert torch.equal(x, b[13][0]) and not torch.equal(x, SyntheticGestures(22, seed=4)[13][0])
    assert set(torch.unique(x).tolist()) <= {0.0, 1.0} and 0.01 < x.mean() < 0.5
    assert sorted(a[i][1] for i in range(22)) == sorted(list(range(11)) * 2)
    assert SyntheticGestures(11, size=128)[0][0].shape == (2, 128, 128, 16)


def test_jitter_shifts_without_wrapping():
    x = torch.zeros(2, 128, 128, 16)
    x[0, 64, 64, 8] = 1
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        y = jitter(x, g)
        (c, h, w, t), = torch.nonzero(y).tolist() or [(None,) * 4]
        if c is None:  # shifted out of the frame: allowed, never wrapped around
            continue
        assert c == 0 and abs(h - 64) <= 20 and abs(w - 64) <= 20 and abs(t - 8) <= 4


def _write_dvsgesture_tree(root):
    """A tiny tree in the on-disk layout tonic.datasets.DVSGesture unpacks."""
    train = root / "DVSGesture/ibmGestureTrain"
    test = root / "DVSGesture/ibmGestureTest"
    samples = {
        train / "user01_fluorescent/0.npy": [[10, 20, 1, 100], [10, 20, 0, 105], [127, 0, 1, 259], [5, 5, 1, 260]],
        train / "user01_fluorescent/7.npy": [[0, 0, 0, 3]],
        train / "user02_led/10.npy": [[64, 32, 1, 50], [64, 32, 1, 52]],
        test / "user24_natural/4.npy": [[1, 2, 0, 7], [3, 4, 1, 17]],
    }
    for path, events in samples.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.array(events, dtype=np.int64))


def test_dvsgesture_reader_on_the_on_disk_layout(tmp_path):
    _write_dvsgesture_tree(tmp_path)
    train = DVSGesture(tmp_path, train=True)
    assert len(train) == 3 and train.labels == [0, 7, 10] and train.users == [1, 1, 2]
    x, label = train[0]
    assert label == 0 and x.shape == (2, 128, 128, 16)
    # events at t=100 and 105 ms fall in frame 0 (ON and OFF at x=10, y=20); t=259 ms is frame 15
    # (the first event is the origin); t=260 ms is frame 16, beyond T=16, so dropped.
    assert x[0, 20, 10, 0] == 1 and x[1, 20, 10, 0] == 1 and x[0, 0, 127, 15] == 1
    assert x.sum() == 3
    small = DVSGesture(tmp_path, train=True, size=32)[2][0]  # 128 -> 32: pixel (64, 32) -> (16, 8)
    assert small.shape == (2, 32, 32, 16) and small[0, 8, 16, 0] == 1 and small.sum() == 1
    test = DVSGesture(tmp_path / "DVSGesture", train=False)  # also accepts the DVSGesture folder itself
    assert len(test) == 1 and test[0][1] == 4 and test[0][0][0, 4, 3, 1] == 1
    with pytest.raises(InputError, match="ibmGestureTrain"):
        DVSGesture(tmp_path / "nowhere")


def test_bin_events_polarity_and_time():
    x = bin_events(np.array([[0, 0, 1, 0], [1, 0, 0, 10], [2, 0, 1, 19]]), size=128, timesteps=4)
    assert x[0, 0, 0, 0] == 1 and x[1, 0, 1, 1] == 1 and x[0, 0, 2, 1] == 1 and x.sum() == 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """S2A4 (I=4, 32x32) trained briefly on a tiny synthetic set, checkpoint on disk."""
    import warnings

    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(ROOT / "examples/dvs_gesture"))
    import model as sxay

    from hybridc.train import train

    out = tmp_path_factory.mktemp("run")
    net = sxay.build_model("S2A4", 4, 32, 16)
    history = train(net, SyntheticGestures(132, 32, 16, seed=0), SyntheticGestures(44, 32, 16, seed=99),
                    epochs=3, lr=3e-3, batch_size=22, checkpoint_dir=out, progress=False)
    return out, history, net


def test_training_reduces_the_loss_and_checkpoints(trained):
    out, history, _ = trained
    losses = [e.loss for e in history.epochs]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert (out / "model.pt").is_file() and (out / "train_state.pt").is_file() and (out / "curves.png").is_file()


def test_training_resumes_from_its_checkpoint(trained, tmp_path):
    import shutil

    out, history, net = trained
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    from hybridc.train import train

    resumed = train(net, SyntheticGestures(132, 32, 16, seed=0), SyntheticGestures(44, 32, 16, seed=99),
                    epochs=4, lr=3e-3, batch_size=22, checkpoint_dir=copy, resume=True, progress=False)
    assert [e.epoch for e in resumed.epochs] == [1, 2, 3, 4]
    assert resumed.epochs[2].loss == history.epochs[2].loss


@pytest.mark.lava
def test_trained_checkpoint_compiles_and_verifies_in_lava(trained, tmp_path, cli):
    out, _, _ = trained
    model_file = ROOT / "examples/dvs_gesture/model.py"
    compile_ = cli("compile", model_file, "--entry", "build", "--set", "size=32", "--weights", out / "model.pt",
                   "-o", tmp_path / "b")
    assert compile_.returncode == 0, compile_.stderr
    result = cli("verify", tmp_path / "b", "--data", "synthetic", "--trust-source", "--samples", "8",
                 "--json", tmp_path / "r.json", timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["samples"] == 8 and report["backend"] == "lava"
    assert report["spike_match"] == 1.0 and report["argmax_agreement"] == 1.0
    assert report["max_abs_err"] < 1e-4 and report["accuracy_deployed"] == report["accuracy_reference"]
    emulated = cli("verify", tmp_path / "b", "--samples", "44", "--trust-source", "--backend", "emulate",
                   "--json", tmp_path / "e.json", timeout=600)
    assert emulated.returncode == 0, emulated.stderr
    emulate_report = json.loads((tmp_path / "e.json").read_text())
    assert emulate_report["backend"] == "emulate" and emulate_report["spike_match"] == 1.0
    assert emulate_report["argmax_agreement"] == 1.0
