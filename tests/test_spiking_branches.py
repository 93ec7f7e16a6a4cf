"""Branching spiking stages on Loihi (issue 16), in real Lava fixed point: a SEW-ADD residual,
a skip over two layers (unequal hop counts, no delay needed), a two-branch concatenation,
fan-out into a later ADD, and flattened branches concatenated into a dense layer. Spikes
equal PyTorch's 100% at every output, the emulator equals Lava, model(x) within 1e-4."""

import pytest
import torch
from branch_models import FanOutAdd, FlatCat, SewResidual, SkipTwo, TwoBranchCat, spikes
from conftest import assert_deploys_exactly

import hybridc

CASES = {  # model -> (segments, extra synapses)
    SewResidual: (1, 1), SkipTwo: (1, 1), TwoBranchCat: (2, 1), FanOutAdd: (2, 1), FlatCat: (1, 2)}


@pytest.mark.parametrize("model_class", list(CASES), ids=lambda c: c.__name__)
def test_branching_stage_is_exact_in_lava(model_class, tmp_path):
    torch.manual_seed(0)
    _, loaded = assert_deploys_exactly(model_class(), spikes(), tmp_path)
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
    x = spikes()
    with torch.no_grad():
        a = with_skip.c1(x)
        assert not torch.equal(with_skip.c3(with_skip.c2(a) + a), with_skip.c3(with_skip.c2(a)))


def test_a_chain_keeps_one_stock_file(tmp_path):
    torch.manual_seed(0)
    compiled = hybridc.compile(SewResidual(skip=False), spikes(), output_dir=tmp_path / "b")
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
        hybridc.compile(_Combine(how), spikes())


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
        hybridc.compile(SumOut(), spikes())


@pytest.mark.parametrize("dense", [False, True], ids=["conv", "dense"])
def test_a_path_that_arrives_early_waits_only_where_needed(dense, tmp_path):
    """delay_shift=False on the long path: in Lava the skip's spikes arrive a step early, so
    its extra synapse (a DelayDense; for a conv consumer the conv's own dense matrix) waits
    one step, and nothing else does; spikes still equal PyTorch's at the output's lag."""
    import h5py

    from branch_models import LaggingResidual

    torch.manual_seed(0)
    _, loaded = assert_deploys_exactly(LaggingResidual(dense=dense), spikes(), tmp_path)
    stage = loaded.manifest.stage("snn")
    (link,) = stage.links["synapses"]
    with h5py.File(loaded.directory / stage.links["artifact"]) as h5:
        synapse = h5["synapse"][link["synapse"]]
        assert synapse["type"][()][0] == b"dense" and int(synapse["delay"][()]) == 1
    with h5py.File(loaded.directory / stage.artifact) as h5:  # the chain itself stays without delays
        assert not any("delay" in h5["layer"][k] for k in h5["layer"])
    assert stage.outputs[0].delay == (1 if dense else 2)
