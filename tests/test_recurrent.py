"""slayer's Recurrent block (cuba) on Loihi: netx's own `dense_rec` layer, one stock file.

Timing: slayer computes s[t] = f(W x[t] + R s[t-1]) (`custom_recurrent`: the feedback of a
step is the layer's spikes of the step before). netx's RecurrentDense connects the LIF's
`s_out` to a Dense whose `a_out` goes back into the same LIF's `a_in`; Lava's Dense sends at
step t what it received at t-1, so the neuron at step t receives R s[t-1]: the same step,
with no added delay. Shown here in Lava fixed point (a Recurrent layer alone and in a
Dense -> Recurrent -> Dense stack, with a dense head after an Accumulator): spikes equal
PyTorch's 100%, the emulator equals Lava entry for entry, the deployed output within 1e-4.
"""

import json

import h5py
import pytest
import torch
from helpers import RESONATOR, ROOT, assert_deploys_exactly, neuron
from lava.lib.dl import slayer

import hybridc
from hybridc.errors import UnsupportedLayerError
from hybridc.frontend.tracer import start_from_rest
from hybridc.nn import Accumulator, Encoder
from hybridc.profiling.report import profile_build

T = 20


class Head(torch.nn.Module):
    def __init__(self, features, classes=4):
        super().__init__()
        self.acc = Accumulator(T // 2)
        self.fc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(features * 2, classes))

    def forward(self, spikes):
        return self.fc(self.acc(spikes))


ADAPTIVE = {"threshold_step": 0.1, "threshold_decay": 0.1, "refractory_decay": 0.1}
FAMILY_NEURONS = {"rf": dict(RESONATOR), "rf_iz": dict(RESONATOR), "adrf": {**RESONATOR, **ADAPTIVE},
                  "alif": {**neuron(), **ADAPTIVE}}


class RecurrentAlone(torch.nn.Module):
    def __init__(self, family="cuba", **options):
        super().__init__()
        params = FAMILY_NEURONS[family] if family in FAMILY_NEURONS else neuron()
        self.rec = getattr(slayer.block, family).Recurrent(params, 12, 16, weight_scale=3, **options)
        self.head = Head(16)

    def forward(self, x):
        return self.head(self.rec(x))


class RecurrentStack(torch.nn.Module):
    """Dense -> Recurrent -> Dense; the Dense after the Recurrent shares its neuron_params dict
    (slayer's Recurrent writes persistent_state=True into it, so that block keeps state too)."""

    def __init__(self):
        super().__init__()
        params = neuron()
        self.fc1 = slayer.block.cuba.Dense(params, 12, 16, weight_scale=3)
        self.rec = slayer.block.cuba.Recurrent(params, 16, 16, weight_scale=3)
        self.fc2 = slayer.block.cuba.Dense(params, 16, 8, weight_scale=3)
        self.head = Head(8)

    def forward(self, x):
        return self.head(self.fc2(self.rec(self.fc1(x))))


def example_input(n=3, seed=0):
    return (torch.rand(n, 12, T, generator=torch.Generator().manual_seed(seed)) < 0.3).float()


@pytest.mark.lava
@pytest.mark.parametrize("model_class", [RecurrentAlone, RecurrentStack], ids=lambda c: c.__name__)
def test_recurrent_is_exact_in_lava(model_class, tmp_path):
    torch.manual_seed(0)
    _, loaded = assert_deploys_exactly(model_class(), example_input(), tmp_path)
    stage = loaded.manifest.stage("snn")
    assert stage.segments is None and stage.links is None  # one stock netx file
    assert all(out.delay == 0 for out in stage.outputs)  # the feedback needs no added delay
    with h5py.File(loaded.directory / stage.artifact) as h5:
        kinds = [h5["layer"][str(i)]["type"][0].decode() for i in range(len(h5["layer"]))]
    expected = {RecurrentAlone: (["dense_rec"], 12 * 16 + 16 * 16),
                RecurrentStack: (["dense", "dense_rec", "dense"], 12 * 16 + 16 * 16 + 16 * 16 + 16 * 8)}
    assert (kinds, stage.synapses) == expected[model_class]


class RecurrentUnshifted(RecurrentStack):
    """The Recurrent block built with delay_shift=False: its output leads Lava's by a step (the
    stage records the delay); the feedback inside the block is timed as before."""

    def __init__(self):
        super().__init__()
        self.rec = slayer.block.cuba.Recurrent(neuron(), 16, 16, weight_scale=3, delay_shift=False)


@pytest.mark.lava
def test_recurrent_without_delay_shift_is_exact_in_lava(tmp_path):
    torch.manual_seed(0)
    _, loaded = assert_deploys_exactly(RecurrentUnshifted(), example_input(), tmp_path)
    assert loaded.manifest.stage("snn").outputs[-1].delay == 1


class GradedRecurrent(torch.nn.Module):
    """A dense front end sends 3-bit graded spikes (Encoder) straight into the recurrent layer:
    netx gives both of its Dense processes the input's message bits; the feedback carries the
    LIF's unary spikes, which a graded Dense reads as payload 1."""

    def __init__(self):
        super().__init__()
        self.front = torch.nn.Linear(12, 12)
        self.encode = Encoder(bits=3, hold=1)
        self.rec = slayer.block.cuba.Recurrent(neuron(), 12, 16, weight_scale=1)
        self.head = Head(16)

    def forward(self, x):
        graded = self.encode(torch.relu(self.front(x.transpose(1, 2))).transpose(1, 2) * 3)
        return self.head(self.rec(graded))


@pytest.mark.lava
def test_recurrent_with_graded_input_is_exact_in_lava(tmp_path):
    torch.manual_seed(0)
    _, loaded = assert_deploys_exactly(GradedRecurrent(), example_input(), tmp_path)
    assert loaded.manifest.stage("snn").input_bits == 3


@pytest.mark.lava
def test_stock_netx_builds_the_feedback(tmp_path):
    """netx itself (no hybridc runner) reads the file into its RecurrentDense block."""
    from hybridc.netx.processes import import_lava_runtime

    import_lava_runtime()
    from lava.lib.dl import netx

    torch.manual_seed(0)
    compiled = hybridc.compile(RecurrentStack(), example_input(), output_dir=tmp_path / "b")
    net = netx.hdf5.Network(net_config=str(compiled.directory / "snn.net"))
    assert [type(layer).__name__ for layer in net.layers] == ["Dense", "RecurrentDense", "Dense"]


def test_the_feedback_changes_the_spikes():
    """Without its feedback weights the layer spikes differently, so the exact match above
    cannot come from the feed-forward part alone."""
    torch.manual_seed(0)
    model = RecurrentAlone()
    x = example_input()
    start_from_rest(model)  # what compile does: each call starts from rest
    with torch.no_grad():
        with_feedback = model.rec(x)
        model.rec.recurrent_synapse.weight.zero_()
        without = model.rec(x)
    assert with_feedback.sum() > 0 and not torch.equal(with_feedback, without)


def test_each_call_starts_from_rest(tmp_path):
    """slayer's Recurrent keeps its neurons' state between calls (persistent_state, also
    written into the shared neuron_params dict); Loihi starts every sample from rest, and so
    does the compiled model: calling it twice gives the same output, and one sample alone
    gives what it gives in a batch."""
    torch.manual_seed(0)
    model, x = RecurrentStack(), example_input()
    assert model.fc2.neuron.persistent_state  # the shared dict: the Dense after it keeps state too
    with torch.no_grad():
        model(x)
        drifted = model.fc2(model.rec(model.fc1(x)))
    hybridc.compile(model, x, target="loihi+jetson", output_dir=tmp_path / "b")
    with torch.no_grad():
        first, second = model(x), model(x)
        fresh = model.fc2(model.rec(model.fc1(x)))
        alone = model.fc2(model.rec(model.fc1(x[1:2])))
    assert torch.equal(first, second) and torch.equal(fresh[1:2], alone)
    assert not torch.equal(drifted, fresh)  # without the hooks the second call would have continued


@pytest.mark.parametrize("family, words", [
    ("alif", "Recurrent only with CUBA neurons.*alif"),
    # slayer's own forward fails for the resonator families' Recurrent (lava-dl 0.6)
    ("rf", "slayer.block.rf.Recurrent does not run in lava-dl itself"),
    ("rf_iz", "slayer.block.rf_iz.Recurrent does not run"), ("adrf", "slayer.block.adrf.Recurrent does not run")])
def test_other_families_recurrent_is_refused(family, words):
    torch.manual_seed(0)
    with pytest.raises(UnsupportedLayerError, match=rf"`rec`.*{words}.*cuba.Recurrent"):
        hybridc.compile(RecurrentAlone(family), example_input(), target="loihi+jetson")


@pytest.mark.parametrize("options, words", [({"weight_norm": True}, "weight_norm=False"),
                                            ({"delay": True}, "delay=True")])
def test_recurrent_options_netx_cannot_hold_are_refused(options, words):
    torch.manual_seed(0)
    with pytest.raises(UnsupportedLayerError, match=rf"`rec`.*{words}"):
        hybridc.compile(RecurrentAlone(**options), example_input(), target="loihi+jetson")


class RecurrentSkip(torch.nn.Module):
    """A branching stage: fc2 reads rec(a) + a (a skip around the recurrent layer)."""

    def __init__(self):
        super().__init__()
        params = neuron()
        self.fc1 = slayer.block.cuba.Dense(params, 12, 16, weight_scale=3)
        self.rec = slayer.block.cuba.Recurrent(params, 16, 16, weight_scale=3)
        self.fc2 = slayer.block.cuba.Dense(params, 16, 8, weight_scale=2)
        self.head = Head(8)

    def forward(self, x):
        a = self.fc1(x)
        return self.head(self.fc2(self.rec(a) + a))


class RecurrentOfSum(torch.nn.Module):
    """A branching stage: the recurrent layer reads fc2(a) + a, so a copy of its input synapse
    is an extra synapse into its neurons, beside its own feedback."""

    def __init__(self):
        super().__init__()
        params = neuron()
        self.fc1 = slayer.block.cuba.Dense(params, 12, 16, weight_scale=3)
        self.fc2 = slayer.block.cuba.Dense(params, 16, 16, weight_scale=3)
        self.rec = slayer.block.cuba.Recurrent(params, 16, 10, weight_scale=2)
        self.head = Head(10)

    def forward(self, x):
        a = self.fc1(x)
        return self.head(self.rec(self.fc2(a) + a))


@pytest.mark.lava
@pytest.mark.parametrize("model_class", [RecurrentSkip, RecurrentOfSum], ids=lambda c: c.__name__)
def test_recurrent_in_a_branching_stage_is_exact_in_lava(model_class, tmp_path):
    torch.manual_seed(0)
    _, loaded = assert_deploys_exactly(model_class(), example_input(), tmp_path)
    stage = loaded.manifest.stage("snn")
    assert len(stage.segments) == 1 and len(stage.links["synapses"]) == 1
    with h5py.File(loaded.directory / stage.links["artifact"]) as h5:  # the feedback stays in the segment
        assert [h5["synapse"][k]["type"][0] for k in h5["synapse"]] == [b"dense"]


def test_nir_target_refuses_recurrent_by_name():
    torch.manual_seed(0)
    with pytest.raises(UnsupportedLayerError, match=r"`rec`.*NIR target writes feed-forward graphs.*loihi"):
        hybridc.compile(RecurrentStack(), example_input(), target="nir+jetson")


def test_profile_counts_feedback_synapses_and_their_ops(tmp_path):
    """Feedback synapses are out x out; each spike of the layer drives one per neuron."""
    torch.manual_seed(0)
    compiled = hybridc.compile(RecurrentStack(), example_input(), output_dir=tmp_path / "b")
    p = profile_build(compiled.directory, data="random:0.3", samples=2, measure=False)
    rows = p.loihi["layers"]
    assert [r["type"] for r in rows] == ["dense", "dense (recurrent)", "dense"]
    assert [r["synapses"] for r in rows] == [12 * 16, 16 * 16 + 16 * 16, 16 * 8]
    assert p.loihi["synapses"] == compiled.manifest.stage("snn").synapses
    rec = rows[1]
    assert rec["spikes_out"] > 0
    assert rec["synaptic_ops"] == pytest.approx(rec["spikes_in"] * 16 + rec["spikes_out"] * 16)


def test_profile_counts_feedback_in_a_branching_stage(tmp_path):
    torch.manual_seed(0)
    compiled = hybridc.compile(RecurrentOfSum(), example_input(), output_dir=tmp_path / "b")
    p = profile_build(compiled.directory, data="random:0.3", samples=2, measure=False)
    rows = p.loihi["layers"]
    assert [r["type"] for r in rows] == ["dense", "dense", "dense synapse", "dense (recurrent)"]
    assert p.loihi["synapses"] == compiled.manifest.stage("snn").synapses == 12 * 16 + 16 * 16 + 2 * 16 * 10 + 10 * 10
    rec = rows[3]
    assert rec["spikes_out"] > 0
    assert rec["synaptic_ops"] == pytest.approx(rec["spikes_in"] * 10 + rec["spikes_out"] * 10)


@pytest.mark.lava
def test_cli_compiles_verifies_profiles_and_inspects_the_example(cli, tmp_path):
    """examples/recurrent from the CLI: Dense 40 -> Recurrent 32 -> Dense 16, an Accumulator and
    a dense head; `--verify` runs the build in Lava against PyTorch."""
    model = str(ROOT / "examples/recurrent/model.py")
    result = cli("compile", model, "--target", "loihi+jetson", "-o", "build", "--verify", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = cli("profile", "build", "--samples", "2", "--trust-source", "--json", "p.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    loihi = json.loads((tmp_path / "p.json").read_text())["loihi"]
    assert [r["type"] for r in loihi["layers"]] == ["dense", "dense (recurrent)", "dense"]
    assert [r["synapses"] for r in loihi["layers"]] == [40 * 32, 2 * 32 * 32, 32 * 16]
    result = cli("inspect", "build", "-f", "dot", "-o", "g.dot", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"snn_1" -> "snn_1" [style=dashed, label="feedback"]' in (tmp_path / "g.dot").read_text()
