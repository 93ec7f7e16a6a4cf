"""`hybridc profile` of a branching spiking stage: every segment's layer and every
extra synapse counted from the build's files and the artifact emulator, checked against
counts made independently from PyTorch's spikes and the model's weights."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from branch_models import FlatCat, SewResidual, example_input
from helpers import ROOT

import hybridc
from hybridc.profiling import profile_build


def _taps(block, spikes_in):
    """(spike, target neuron) pairs of a conv block for spikes (N, C, H, W, T): every tap whose
    weight is nonzero, found by convolving the spikes with the weight's nonzero pattern."""
    s = spikes_in.permute(0, 4, 1, 2, 3).reshape(-1, *spikes_in.shape[1:4])
    pattern = (block.synapse.weight[..., 0] != 0).float()  # (Cout, Cin, kH, kW)
    return float(F.conv2d(s, pattern, stride=block.synapse.stride[:2], padding=block.synapse.padding[:2]).sum())


@pytest.fixture(scope="module")
def residual(tmp_path_factory):
    torch.manual_seed(0)
    model = SewResidual().eval()
    directory = tmp_path_factory.mktemp("sew")
    compiled = hybridc.compile(model, example_input(), output_dir=directory / "b")
    x = example_input(batch=3, seed=5, density=0.3)
    np.savez(directory / "x.npz", x=x.numpy())
    return model, compiled, x, directory


def test_profile_counts_every_segment_layer_and_extra_synapse(residual):
    model, compiled, x, directory = residual
    stage = compiled.manifest.stage("snn")
    assert len(stage.links["synapses"]) == 1  # c2(c1) + c1: c1's spikes into c3 on an extra synapse
    p = profile_build(directory / "b", data=f"npz:{directory / 'x.npz'}", samples=3, measure=False)
    rows = p.loihi["layers"]
    assert [r["type"] for r in rows] == ["conv", "conv", "conv synapse", "conv"]
    # PyTorch's spikes equal Lava's at every layer; run them for T + 3 hops as the chip does
    drained = torch.cat([x, torch.zeros(*x.shape[:-1], 3)], dim=-1)
    with torch.no_grad():
        a = model.c1(drained)
        b = model.c2(a)
        c = model.c3(b + a)
    for blk in (model.c1, model.c2, model.c3):
        assert bool((blk.synapse.weight != 0).all())  # here every tap has a weight: structure = nonzero
    ops = [_taps(model.c1, drained), _taps(model.c2, a), _taps(model.c3, a), _taps(model.c3, b)]
    assert [r["synaptic_ops"] for r in rows] == pytest.approx([o / 3 for o in ops], rel=1e-12)
    assert p.loihi["synaptic_ops"] == pytest.approx(sum(ops) / 3, rel=1e-12)
    assert ops[2] > 0  # dropping the extra synapse would change the total
    assert [r["spikes_in"] for r in rows] == pytest.approx([float(t.sum()) / 3 for t in (drained, a, a, b)])
    assert [r["spikes_out"] for r in rows] == pytest.approx([float(t.sum()) / 3 for t in (a, b, torch.zeros(1), c)])
    # synapses: taps inside the input, c3's counted twice (its own synapse and the copy from c1)
    ones = [float(F.conv2d(torch.ones(1, *shape), torch.ones(blk.synapse.weight.shape[:4]),
                           stride=blk.synapse.stride[:2], padding=blk.synapse.padding[:2]).sum())
            for blk, shape in ((model.c1, (2, 16, 16)), (model.c2, (4, 8, 8)), (model.c3, (4, 8, 8)))]
    assert [r["synapses"] for r in rows] == [ones[0], ones[1], ones[2], ones[2]]
    assert p.loihi["synapses"] == sum(ones) + ones[2] == stage.synapses
    assert p.loihi["neurons"] == 4 * 8 * 8 * 2 + 6 * 4 * 4 and rows[2]["neurons"] == rows[2]["cores"] == 0
    assert p.loihi["timesteps_run"] == 8 + 3  # the longest path has three layers
    assert rows[2]["source"] == "segment 0 layer 0" and rows[2]["target"] == "segment 0 layer 2"
    # the link: c3's 6x4x4 spikes over T=8 cross as one window of counts of I=8 at 4 bits each
    (edge,) = p.edges
    assert edge["bytes_sent"] == 6 * 4 * 4 * 4 / 8 == p.cut["bytes_sent"] and p.cut["wire"] == edge["wire"] == "counts"


def test_dense_extra_synapses_and_the_stage_input_as_a_source(tmp_path):
    """FlatCat: c1 reads c0(x) + x (a conv extra synapse from the stage input), d2 reads
    cat(flat(a), d1(flat(a))) (a dense extra synapse takes one slice of d2's weights)."""
    torch.manual_seed(0)
    model = FlatCat().eval()
    compiled = hybridc.compile(model, example_input(), output_dir=tmp_path / "b")
    x = example_input(batch=2, seed=7, density=0.3)
    np.savez(tmp_path / "x.npz", x=x.numpy())
    p = profile_build(tmp_path / "b", data=f"npz:{tmp_path / 'x.npz'}", samples=2, measure=False)
    rows = p.loihi["layers"]
    assert [r["type"] for r in rows] == ["conv", "conv synapse", "conv", "dense", "dense synapse", "dense"]
    assert rows[1]["source"] == "stage input"
    drained = torch.cat([x, torch.zeros(*x.shape[:-1], 4)], dim=-1)  # c0 -> c1 -> d1 -> d2: 4 hops
    with torch.no_grad():
        c0 = model.c0(drained)
        a = model.c1(c0 + drained)
        d = model.d1(model.flat(a))
    ops = {"c0": _taps(model.c0, drained), "c1": _taps(model.c1, c0), "x into c1": _taps(model.c1, drained),
           "d1": float(a.sum()) * 12, "d2": (float(a.sum()) + float(d.sum())) * 10}
    assert all(v > 0 for v in ops.values())
    assert p.loihi["synaptic_ops"] == pytest.approx(sum(ops.values()) / 2, rel=1e-12)
    assert rows[0]["synaptic_ops"] * 2 == ops["c0"] and rows[3]["synaptic_ops"] * 2 == ops["d1"]
    assert {rows[1]["synaptic_ops"] * 2, rows[2]["synaptic_ops"] * 2} == {ops["c1"], ops["x into c1"]}
    assert (rows[4]["synaptic_ops"] + rows[5]["synaptic_ops"]) * 2 == ops["d2"]
    assert rows[4]["synapses"] + rows[5]["synapses"] == (4 * 8 * 8 + 12) * 10
    assert p.loihi["synapses"] == compiled.manifest.stage("snn").synapses


def test_explore_ranks_branching_candidates(tmp_path):
    """explore profiles each candidate with the same code: a residual candidate is ranked, not refused."""
    from hybridc.profiling.explore import explore

    (tmp_path / "cands.py").write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT / 'tests')!r})\nimport torch\n"
        "from branch_models import SewResidual, example_input\n\n\ndef candidates():\n"
        "    for skip in (True, False):\n        torch.manual_seed(0)\n"
        "        yield ('sew' if skip else 'chain'), SewResidual(skip=skip).eval(), example_input()\n")
    rows = explore(tmp_path / "cands.py", [], [], tmp_path / "ex", samples=2)
    assert sorted(r.name for r in rows) == ["chain", "sew"] and not any(r.refused for r in rows)
    sew = hybridc.load(tmp_path / "ex/candidates/sew").manifest.stage("snn")
    assert sew.links is not None and all(r.energy_uj > 0 for r in rows)
