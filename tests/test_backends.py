"""`--backend lava|emulate` for run and verify: both run the artifact in the build, and the
emulator catches what Lava catches (a wrong weight in snn.net)."""

import json
import shutil

import h5py
import numpy as np
import pytest
import torch
from helpers import ROOT, spikes

import hybridc
from hybridc.digest import sha256


@pytest.fixture(scope="module")
def s2a4_build(tmp_path_factory, cli):
    """S2A4 at 32x32 compiled from the example file (so `verify` can rebuild the reference)."""
    out = tmp_path_factory.mktemp("s2a4") / "b"
    result = cli("compile", ROOT / "examples/dvs_gesture/model.py", "--entry", "build", "--set", "size=32", "-o", out)
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.lava
def test_run_backends_give_the_same_output(s2a4_build, tmp_path, cli):
    from hybridc.errors import InputError

    x = spikes(2, 2, 32, 32, 16, density=0.3, seed=4)
    np.save(tmp_path / "x.npy", x.numpy())
    result = cli("run", s2a4_build, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy",
                 "--backend", "emulate")
    assert result.returncode == 0, result.stderr
    emulated = np.load(tmp_path / "y.npy")
    lava = hybridc.run(s2a4_build, x, backend="lava").numpy()
    assert lava.shape == (2, 11) and np.array_equal(lava, emulated)
    with pytest.raises(InputError, match="Unknown backend `loihi`"):
        hybridc.run(s2a4_build, x, backend="loihi")


def _verify(cli, build, json_path, samples=16):
    return cli("verify", build, "--samples", samples, "--backend", "emulate", "--trust-source", "--json", json_path)


def test_verify_emulate_catches_one_changed_weight_in_snn_net(s2a4_build, tmp_path, cli):
    good = _verify(cli, s2a4_build, tmp_path / "good.json")
    assert good.returncode == 0, good.stdout + good.stderr
    report = json.loads((tmp_path / "good.json").read_text())
    assert report["backend"] == "emulate" and report["spike_match"] == 1.0 and report["samples"] == 16

    tampered = tmp_path / "tampered"
    shutil.copytree(s2a4_build, tampered)
    with h5py.File(tampered / "snn.net", "r+") as h5:
        weight = h5["layer/0/weight"]
        values = weight[()]
        values.flat[0] = -values.flat[0] if values.flat[0] else 200  # one synapse of the first conv
        weight[...] = values
    manifest = json.loads((tampered / "manifest.json").read_text())
    for stage in manifest["stages"]:
        if stage["artifact"] == "snn.net":
            stage["sha256"] = sha256(tampered / "snn.net")  # the build loads: only running it can tell
    (tampered / "manifest.json").write_text(json.dumps(manifest, indent=2))
    hybridc.load(tampered)
    bad = _verify(cli, tampered, tmp_path / "bad.json")
    assert bad.returncode == 12, bad.stdout + bad.stderr
    report = json.loads((tmp_path / "bad.json").read_text())
    assert report["backend"] == "emulate" and report["spike_match"] < 1.0


def test_api_verify_of_an_in_memory_compile_on_a_dataset(example):
    model, x = example.build("S1A5", interval=4, size=32, timesteps=16, batch=2)
    compiled = hybridc.compile(model, x)
    report = hybridc.verify(compiled, data="synthetic", samples=6, backend="emulate")
    assert report.backend == "emulate" and report.samples == 6
    assert report.spike_match == 1.0 and report.argmax_agreement == 1.0
    parity = hybridc.verify(compiled, x, backend="emulate")
    assert parity.backend == "emulate" and parity.spike_match == 1.0
    assert torch.equal(hybridc.run(compiled, x, backend="emulate"), hybridc.run(compiled, x, backend="emulate"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64])
def test_emulate_refuses_values_that_are_not_spikes_as_lava_does(s2a4_build, dtype):
    """The emulator counts non-unary entries while it lays the input out (float32/64 on the
    CPU) or beforehand (other dtypes): either way Lava's runner's InputError, naming the stage
    and the values; one stray value in the last entry of the last sample is enough."""
    from hybridc.errors import InputError

    x = spikes(3, 2, 32, 32, 16, density=0.3, seed=4).to(dtype)
    expected = hybridc.run(s2a4_build, x, backend="emulate")
    assert torch.equal(expected, hybridc.run(s2a4_build, x.float(), backend="emulate"))
    if dtype.is_floating_point:  # a tensor still tied to autograd is read as its values
        assert torch.equal(expected, hybridc.run(s2a4_build, x.clone().requires_grad_(), backend="emulate"))
    x[2, 1, 31, 31, 15] = 2
    for backend in ("emulate", "lava"):
        with pytest.raises(InputError, match=r"Stage `snn` \(loihi\) receives unary spikes.*\[0.*1.*2"):
            hybridc.run(s2a4_build, x, backend=backend)
