"""Branching spiking stages on Loihi, in real Lava fixed point: a SEW-ADD residual,
a skip over two layers (unequal hop counts, no delay needed), a two-branch concatenation,
fan-out into a later ADD, flattened branches concatenated into a dense layer, and merges
feeding merges (a sum of a sum, a concatenation of a concatenation). Spikes
equal PyTorch's 100% at every output, the emulator equals Lava, model(x) within 1e-4."""

import pytest
import torch
from branch_models import (
    ChainedAdd,
    ChainedCat,
    FanOutAdd,
    FlatCat,
    GradedBranch,
    LaggingResidual,
    SewResidual,
    SkipTwo,
    TwoBranchCat,
    example_input,
)
from helpers import ROOT, assert_deploys_exactly

import hybridc

CASES = {  # model -> (segments, extra synapses)
    SewResidual: (1, 1), SkipTwo: (1, 1), TwoBranchCat: (2, 1), FanOutAdd: (2, 1), FlatCat: (1, 2),
    ChainedAdd: (1, 2), ChainedCat: (1, 2)}


@pytest.mark.parametrize("model_class", list(CASES), ids=lambda c: c.__name__)
@pytest.mark.lava
def test_branching_stage_is_exact_in_lava(model_class, tmp_path):
    torch.manual_seed(0)
    _, loaded = assert_deploys_exactly(model_class(), example_input(), tmp_path)
    stage = loaded.manifest.stage("snn")
    segments, links = CASES[model_class]
    assert len(stage.segments) == segments and len(stage.links["synapses"]) == links
    assert stage.segments[0]["artifact"] == stage.artifact == "snn.net"
    assert all(out.delay == 0 for out in stage.outputs)  # delay_shift aligns every path: no delay added


def test_the_skip_changes_the_spikes_lava_reproduces():
    """The residual's extra synapse matters: without it c3 spikes differently (so the exact
    match above could not come from the chain alone)."""
    torch.manual_seed(0)
    with_skip = SewResidual()
    without = SewResidual(skip=False)
    without.load_state_dict(with_skip.state_dict())
    x = example_input()
    with torch.no_grad():
        a = with_skip.c1(x)
        assert not torch.equal(with_skip.c3(with_skip.c2(a) + a), with_skip.c3(with_skip.c2(a)))


def test_a_chain_keeps_one_stock_file(tmp_path):
    torch.manual_seed(0)
    compiled = hybridc.compile(SewResidual(skip=False), example_input(), output_dir=tmp_path / "b")
    stage = compiled.manifest.stage("snn")
    assert stage.segments is None and stage.links is None
    assert "segments" not in stage.to_dict() and sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "ann.onnx", "graph.json", "manifest.json", "snn.net"]


class _Combine(torch.nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how = how
        self.model = SewResidual()

    def forward(self, x):
        m = self.model
        a = m.c1(x)
        b = m.c2(a)
        merged = {"and": lambda: a * b, "iand": lambda: (1 - a) * b, "sub": lambda: b - a}[self.how]()
        return m.head(m.c3(merged))


@pytest.mark.parametrize("how", ["and", "iand", "sub"])
def test_non_linear_spike_combinations_are_refused(how):
    with pytest.raises(hybridc.errors.PartitionError, match=r"Node `(mul|sub)`.*feeds spiking node `model_c3`.*"
                                                            r"cannot compute exactly"):
        hybridc.compile(_Combine(how), example_input())


def test_a_sum_leaving_the_spiking_stage_is_refused():
    class SumOut(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = SewResidual()

        def forward(self, x):
            m = self.model
            a = m.c1(x)
            s = m.c2(a) + a
            return m.head(m.c3(s)) + s.sum((1, 2, 3, 4)).unsqueeze(-1)

    with pytest.raises(hybridc.errors.LoweringError, match=r"`add`.*sum of spike tensors.*leaves the spiking stage"):
        hybridc.compile(SumOut(), example_input())


@pytest.mark.parametrize("dense", [False, True], ids=["conv", "dense"])
@pytest.mark.lava
def test_a_path_that_arrives_early_waits_only_where_needed(dense, tmp_path):
    """delay_shift=False on the long path: in Lava the skip's spikes arrive a step early, so
    its extra synapse (a DelayDense; for a conv consumer the conv's own dense matrix) waits
    one step, and nothing else does; spikes still equal PyTorch's at the output's lag."""
    import h5py

    torch.manual_seed(0)
    _, loaded = assert_deploys_exactly(LaggingResidual(dense=dense), example_input(), tmp_path)
    stage = loaded.manifest.stage("snn")
    (link,) = stage.links["synapses"]
    with h5py.File(loaded.directory / stage.links["artifact"]) as h5:
        synapse = h5["synapse"][link["synapse"]]
        assert synapse["type"][()][0] == b"dense" and int(synapse["delay"][()]) == 1
    with h5py.File(loaded.directory / stage.artifact) as h5:  # the chain itself stays without delays
        assert not any("delay" in h5["layer"][k] for k in h5["layer"])
    assert stage.outputs[0].delay == (1 if dense else 2)


def test_the_build_is_checked_and_run_from_its_files(tmp_path):
    """The extra synapses' file is sha256-checked at load, its weights are what runs (a changed
    weight changes the emulated spikes), and a manifest whose wiring names a missing layer is
    refused before any file is read."""
    import json

    import h5py

    from hybridc.digest import sha256

    torch.manual_seed(0)
    build = tmp_path / "b"
    hybridc.compile(SewResidual(), example_input(), output_dir=build)
    x = example_input(batch=2, seed=1)
    before = hybridc.run(build, x, backend="emulate")
    with h5py.File(build / "snn.synapses.h5", "r+") as h5:
        weight = h5["synapse/0/weight"]
        weight[...] = -weight[()]  # the skip now inhibits
    with pytest.raises(hybridc.errors.ArtifactError, match="snn.synapses.h5 was modified"):
        hybridc.load(build)
    manifest = json.loads((build / "manifest.json").read_text())
    manifest["stages"][0]["links"]["sha256"] = sha256(build / "snn.synapses.h5")
    (build / "manifest.json").write_text(json.dumps(manifest))
    assert not torch.equal(hybridc.run(build, x, backend="emulate"), before)
    manifest["stages"][0]["links"]["synapses"][0]["target"]["layer"] = 7
    (build / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(hybridc.errors.ArtifactError, match=r"links/synapses/0/target.*names no layer"):
        hybridc.load(build)


@pytest.mark.slow  # three CLI processes, each importing torch and Lava
def test_sew_resnet_example_compiles_and_verifies_from_the_cli(tmp_path, cli):
    """examples/sew_resnet from the CLI: compile, `inspect --level nodes` shows the ADDs
    reading two tensors, `verify` (emulate backend, the artifact's files) matches PyTorch."""
    import json
    import os

    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def succeeds(*args):
        result = cli(*args, env=env, cwd=tmp_path, timeout=600)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return result.stdout

    succeeds("compile", ROOT / "examples/sew_resnet/model.py", "-o", "sew")
    assert (tmp_path / "sew/snn.synapses.h5").exists()
    nodes = succeeds("inspect", "sew", "--level", "nodes", "--format", "json")
    reads = {n["name"]: n["reads"] for n in json.loads(nodes)["nodes"]}
    assert reads["add"] == ["stem", "block1_conv2"] and reads["add_1"] == ["add", "block2_conv2"]
    succeeds("verify", "sew", "--trust-source", "--backend", "emulate", "--json", "report.json")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["spike_match"] == 1.0 and report["argmax_agreement"] == 1.0 and report["max_abs_err"] < 1e-4


@pytest.mark.slow  # one more Lava run; the default run covers unary inputs
@pytest.mark.lava
def test_graded_stage_input_feeds_an_extra_synapse(tmp_path):
    torch.manual_seed(0)
    frames = torch.rand(1, 2, 16, 16, 8)
    _, loaded = assert_deploys_exactly(GradedBranch(), frames, tmp_path)
    stage = loaded.manifest.stage("snn")
    assert stage.input_bits == 3 and [link["message_bits"] for link in stage.links["synapses"]] == [3]
