"""verify and profile on a user's own build and data: a spiking Dense
model on (N, F, T), samples from an .npz file, from a `hybridc.data` entry point, or
generated at a stated spike rate when no data is given."""

import json
import textwrap

import numpy as np
import pytest
import torch
from helpers import model_header

from hybridc.runtime.dataset_verify import ReferenceFiles

TRUSTED = ReferenceFiles(trust_source=True)  # the builds here are compiled by the test itself

MODEL = model_header(threshold=0.5) + """torch.manual_seed(0)
model = torch.nn.Sequential(slayer.block.cuba.Dense(N, 12, 16, weight_scale=4), slayer.block.cuba.Dense(N, 16, 8),
                            Accumulator(4), torch.nn.Flatten(), torch.nn.Linear(16, 3))
example_input = torch.zeros(1, 12, 8)
"""

DATASET_PACKAGE = """
import torch

def open(arg, *, shape, train, samples, seed):
    g = torch.Generator().manual_seed(int(arg or 0))
    x = (torch.rand(int(samples or 4), *shape, generator=g) < 0.4).float()
    return [(x[i], i % 3) for i in range(len(x))]
"""


@pytest.fixture(scope="module")
def dense_build(tmp_path_factory, cli):
    tmp = tmp_path_factory.mktemp("dense")
    (tmp / "model.py").write_text(MODEL)
    result = cli("compile", "model.py", "-o", "b", cwd=tmp, timeout=600)
    assert result.returncode == 0, result.stderr
    return tmp


def reference_outputs(tmp, x):
    """What the model file's PyTorch model computes on x."""
    namespace = {}
    exec(MODEL, namespace)  # noqa: S102 - our own test model
    with torch.no_grad():
        return namespace["model"].eval()(torch.as_tensor(x))


@pytest.mark.lava
def test_verify_a_dense_build_on_npz_samples_with_labels(dense_build, cli):
    rng = np.random.default_rng(1)
    x = (rng.random((5, 12, 8)) < 0.4).astype(np.float32)
    outputs = reference_outputs(dense_build, x)
    y = outputs.argmax(-1).numpy().copy()
    y[0] = (y[0] + 1) % 3  # one wrong label: the reference scores 4/5
    np.savez(dense_build / "mine.npz", x=x, y=y)
    result = cli("verify", "b", "--data", "npz:mine.npz", "--samples", "5", "--trust-source", "--json", "r.json",
                 cwd=dense_build, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads((dense_build / "r.json").read_text())
    assert report["samples"] == 5 and report["spike_match"] == 1.0 and report["argmax_agreement"] == 1.0
    assert report["accuracy_reference"] == pytest.approx(0.8) and report["accuracy_deployed"] == pytest.approx(0.8)
    assert "mine.npz" in report["data"]


def test_verify_without_labels_and_wrong_shapes(dense_build):
    from hybridc.errors import InputError
    from hybridc.runtime.dataset_verify import verify_dataset

    x = np.zeros((3, 12, 8), np.float32)
    x[:, ::2, ::3] = 1
    np.savez(dense_build / "unlabelled.npz", x=x)
    report = verify_dataset(dense_build / "b", f"npz:{dense_build / 'unlabelled.npz'}", backend="emulate", files=TRUSTED)
    assert report.samples == 3 and report.argmax_agreement == 1.0 and report.accuracy_deployed is None
    np.savez(dense_build / "frames.npz", x=np.zeros((2, 2, 8, 8, 8), np.float32))
    with pytest.raises(InputError, match=r"shape \(2, 2, 8, 8, 8\).*\(N, 12, 8\)"):
        verify_dataset(dense_build / "b", f"npz:{dense_build / 'frames.npz'}", files=TRUSTED)
    with pytest.raises(InputError, match=r"gives event frames .* \(12, 8\).*npz:PATH") as refused:
        verify_dataset(dense_build / "b", "synthetic", files=TRUSTED)
    assert "verify" not in str(refused.value)  # profile raises the same message: it names no verb


def test_profile_without_data_generates_spikes_and_says_so(dense_build, cli):
    from hybridc.data.sources import RandomSpikes
    from hybridc.profiling.report import profile_build

    result = cli("profile", "b", "--samples", "4", "--trust-source", "--json", "p.json", cwd=dense_build, timeout=600)
    assert result.returncode == 0, result.stderr
    profile = json.loads((dense_build / "p.json").read_text())
    assert "random spikes at rate 0.1" in profile["data"] and profile["samples"] == 4
    assert "random spikes at rate 0.1" in result.stdout and "no --data given" in result.stdout
    # the counted spikes are those of the generated inputs: a denser rate gives more
    denser = profile_build(dense_build / "b", "random:0.5", 4, measure=False, files=TRUSTED)
    assert denser.loihi["layers"][0]["spikes_in"] > 3 * profile["loihi"]["layers"][0]["spikes_in"] > 0
    x = torch.stack([RandomSpikes(4, (12, 8), 0.5)[i][0] for i in range(4)])
    assert denser.loihi["layers"][0]["spikes_in"] == pytest.approx(float(x.sum()) / 4)


def test_a_python_data_set_registered_as_an_entry_point(dense_build, tmp_path, monkeypatch):
    """A package that declares a `hybridc.data` entry point, found by importlib.metadata."""
    from hybridc.errors import InputError
    from hybridc.runtime.dataset_verify import verify_dataset

    site = tmp_path / "site"
    (site / "mydata").mkdir(parents=True)
    (site / "mydata" / "__init__.py").write_text(textwrap.dedent(DATASET_PACKAGE))
    info = site / "mydata-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mydata\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[hybridc.data]\nmine = mydata:open\n")
    monkeypatch.syspath_prepend(str(site))
    report = verify_dataset(dense_build / "b", "mine:7", samples=6, backend="emulate", files=TRUSTED)
    g = torch.Generator().manual_seed(7)
    x = (torch.rand(6, 12, 8, generator=g) < 0.4).float()
    labels = torch.tensor([i % 3 for i in range(6)])
    expected = float((reference_outputs(dense_build, x).argmax(-1) == labels).float().mean())
    assert report.samples == 6 and report.accuracy_reference == pytest.approx(expected)
    assert "mydata:open" in report.data
    with pytest.raises(InputError, match="mine.*hybridc.data"):
        verify_dataset(dense_build / "b", "theirs", files=TRUSTED)
