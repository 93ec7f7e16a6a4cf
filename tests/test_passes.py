"""Each graph pass on its own, on small torch.fx graphs traced by hybridc's tracer: what it
tags, inserts or refuses, naming the node. No artifact is written and nothing runs in Lava:
the compile-and-deploy tests cover the passes together."""

import operator
import warnings

import pytest
import torch
from helpers import NEURON, SIGMA_DELTA, neuron, spikes
from lava.lib.dl import slayer

import hybridc
from hybridc.errors import (
    NumericsError,
    PartitionError,
    TraceError,
    UnsupportedLayerError,
)
from hybridc.frontend.tracer import trace_with_shapes
from hybridc.nn import Accumulator, Encoder
from hybridc.passes import (
    check_numerics,
    insert_cut_accumulators,
    is_spiking_node,
    partition,
    recognise_accumulators,
    tag_targets,
)
from hybridc.passes.spike_merges import merge_kind, why_not_merge
from hybridc.targets.registry import parse_target_string

T = 8  # timesteps of every input here


@pytest.fixture(scope="module")
def targets():
    return parse_target_string("loihi+jetson")


@pytest.fixture(autouse=True)
def _same_weights():
    torch.manual_seed(0)  # every model built in a test starts from the same weights


def dense(features_in, features_out, params=NEURON):
    return slayer.block.cuba.Dense(params, features_in, features_out, weight_scale=3)


class Net(torch.nn.Module):
    """forward(x) = fn(self, x): a model written inline, its layers given as keyword modules
    (each call of a layer in fn is a node of its own: a tensor read twice is a variable)."""

    def __init__(self, fn, **layers):
        super().__init__()
        self.fn = fn
        for name, layer in layers.items():
            setattr(self, name, layer)

    def forward(self, x):
        return self.fn(self, x)


def traced(model, x=None):
    return trace_with_shapes(model.eval(), spikes(1, 6, T, density=0.5) if x is None else x)


def nodes(gm) -> dict:
    return {n.name: n for n in gm.graph.nodes}


def tags(gm) -> dict:
    """node name -> (domain, target) for every node the tagging pass wrote."""
    return {n.name: (n.meta["hybridc_domain"], n.meta["hybridc_target"]) for n in gm.graph.nodes
            if "hybridc_domain" in n.meta}


def module_of(gm, node):
    return gm.get_submodule(node.target)


# -- recognise_accumulators ---------------------------------------------------------------

def test_a_whole_window_sum_becomes_a_folded_accumulator():
    model = Net(lambda m, x: m.head(m.snn(x).sum(-1)), snn=dense(6, 4), head=torch.nn.Linear(4, 2))
    gm = traced(model)
    x = spikes(3, 6, T, density=0.5, seed=1)
    with torch.no_grad():
        before = gm(x)
    created = recognise_accumulators(gm)
    assert [n.name for n in created] == ["hybridc_accumulator_sum_1"]
    (accumulator,) = created
    assert "sum_1" not in nodes(gm) and accumulator.args == (nodes(gm)["snn"],)
    module = module_of(gm, accumulator)
    assert isinstance(module, Accumulator) and (module.interval, module.fold) == (T, True)
    assert accumulator.meta["shape"] == (1, 4) and "call_method[target=sum]" in accumulator.meta["recognised_from"]
    with torch.no_grad():
        assert torch.equal(gm(x), before)  # the same function, now with an explicit cut


def test_a_mean_over_time_is_an_accumulator_times_one_over_t():
    model = Net(lambda m, x: m.head(torch.mean(m.snn(x), -1)), snn=dense(6, 4), head=torch.nn.Linear(4, 2))
    gm = traced(model)
    x = spikes(2, 6, T, density=0.5, seed=2)
    with torch.no_grad():
        before = gm(x)
    (accumulator,) = recognise_accumulators(gm)
    (scale,) = accumulator.users
    assert scale.target is operator.mul and scale.args == (accumulator, 1 / T)
    assert list(scale.users) == [nodes(gm)["head"]]
    with torch.no_grad():
        assert torch.allclose(gm(x), before, atol=1e-6)


def test_a_windowed_reshape_sum_becomes_an_unfolded_accumulator():
    model = Net(lambda m, x: m.head(m.snn(x).reshape(1, 4, 2, 4).sum(-1).flatten(1)),
                snn=dense(6, 4), head=torch.nn.Linear(8, 2))
    gm = traced(model)
    (accumulator,) = recognise_accumulators(gm)
    module = module_of(gm, accumulator)
    assert (module.interval, module.fold) == (4, False) and accumulator.meta["shape"] == (1, 4, 2)
    assert not any(n.target in ("reshape", "sum") for n in gm.graph.nodes)  # both replaced


def _ones_conv3d(interval, ones=True):
    conv = torch.nn.Conv3d(4, 4, (1, 1, interval), stride=(1, 1, interval), groups=4, bias=False)
    torch.nn.init.constant_(conv.weight, 1.0 if ones else 0.5)
    return conv


def _conv_model(conv):
    return Net(lambda m, x: m.sum_time(m.snn(x)).flatten(1),
               snn=slayer.block.cuba.Conv(NEURON, 2, 4, 3, padding=1, weight_scale=3), sum_time=conv)


def test_a_frozen_all_ones_conv3d_over_time_becomes_an_accumulator():
    gm = traced(_conv_model(_ones_conv3d(4)), spikes(1, 2, 4, 4, T, density=0.5))
    (accumulator,) = recognise_accumulators(gm)
    assert accumulator.name == "hybridc_accumulator_sum_time"
    assert (module_of(gm, accumulator).interval, module_of(gm, accumulator).fold) == (4, False)
    assert not hasattr(gm, "sum_time")  # the replaced conv is no longer a submodule


def test_a_conv3d_with_other_weights_is_left_alone():
    gm = traced(_conv_model(_ones_conv3d(4, ones=False)), spikes(1, 2, 4, 4, T, density=0.5))
    assert recognise_accumulators(gm) == []
    assert nodes(gm)["sum_time"].op == "call_module"


def test_an_interval_that_does_not_divide_t_is_refused_naming_the_node():
    gm = traced(_conv_model(_ones_conv3d(3)), spikes(1, 2, 4, 4, T, density=0.5))
    with pytest.raises(TraceError, match=r"%sum_time .*reads spikes as an accumulator would.*T=8.*not a multiple of 3"):
        recognise_accumulators(gm)


@pytest.mark.parametrize("reduce", [
    lambda s: s.sum(1),  # over features, not time
    lambda s: s.sum(-1, keepdim=True).squeeze(-1),  # keepdim: not the accumulator's shape
    lambda s: (s * 2).sum(-1),  # of a dense tensor, not of spikes
], ids=["other axis", "keepdim", "dense input"])
def test_reductions_that_are_not_a_cut_are_left_alone(reduce):
    gm = traced(Net(lambda m, x: reduce(m.snn(x)), snn=dense(6, 4)))
    count = len(gm.graph.nodes)
    assert recognise_accumulators(gm) == []
    assert len(gm.graph.nodes) == count and not any(isinstance(m, Accumulator) for m in gm.modules())


# -- tag_targets ---------------------------------------------------------------------------

def _chain():
    return torch.nn.Sequential(dense(6, 4), Accumulator(2), torch.nn.Linear(16, 2))


def test_slayer_blocks_are_tagged_spiking_and_the_rest_dense(targets):
    gm = traced(_chain())
    names = [(n.op, n.name) for n in gm.graph.nodes]
    tag_targets(gm, targets)
    assert tags(gm) == {"_0": ("spiking", "loihi"), "_1": ("dense", "jetson"), "_2": ("dense", "jetson")}
    assert [(n.op, n.name) for n in gm.graph.nodes] == names  # tagging never changes the graph
    assert is_spiking_node(gm, nodes(gm)["_0"]) and not is_spiking_node(gm, nodes(gm)["_2"])


def test_an_annotated_slayer_block_runs_on_the_named_side(targets):
    gm = traced(torch.nn.Sequential(hybridc.annotate(dense(6, 4), "jetson"), torch.nn.Flatten(),
                                    torch.nn.Linear(32, 2)))
    tag_targets(gm, targets)
    assert tags(gm)["_0"] == ("dense", "jetson")


def test_a_module_pinned_to_loihi_is_held_to_what_loihi_runs(targets):
    gm = traced(torch.nn.Sequential(dense(6, 4), hybridc.annotate(torch.nn.ReLU(), "loihi"), Accumulator(2)))
    with pytest.raises(UnsupportedLayerError, match=r"`1` \(module `1`: ReLU\) cannot run on loihi: .*no lowering"):
        tag_targets(gm, targets)


def test_a_constant_belongs_to_the_side_that_reads_it(targets):
    model = Net(lambda m, x: m.head(m.acc(m.snn(x))) * m.gain, snn=dense(6, 4), acc=Accumulator(2),
                head=torch.nn.Linear(16, 2), gain=torch.nn.Parameter(torch.ones(2)))
    gm = traced(model)
    tag_targets(gm, targets)
    (constant,) = [n for n in gm.graph.nodes if n.op == "get_attr"]
    assert constant.target == "gain" and tags(gm)[constant.name] == ("dense", "jetson")


def test_a_dense_node_without_a_dense_target_is_refused_naming_it():
    gm = traced(_chain())
    with pytest.raises(UnsupportedLayerError, match=r"Node `_1` \(module `1`: Accumulator\) is dense but the "
                                                    r"target string names no dense target \(it has: loihi\)"):
        tag_targets(gm, parse_target_string("loihi"))


def test_a_block_the_spiking_target_cannot_run_is_refused_naming_it(targets):
    model = torch.nn.Sequential(slayer.block.cuba.Conv(NEURON, 2, 4, 3, padding=1),
                                slayer.block.cuba.ConvT(NEURON, 4, 4, 2, stride=2), Accumulator(4),
                                torch.nn.Flatten())
    gm = traced(model, spikes(1, 2, 4, 4, T))
    with pytest.raises(UnsupportedLayerError, match=r"`1` \(module `1`: ConvT\) cannot run on loihi"):
        tag_targets(gm, targets)


# -- spike_merges (the end of tag_targets) -------------------------------------------------

class Residual(torch.nn.Module):
    """c3 reads combine(c2(c1(x)), c1(x)), one c1; counted into a linear head (or, with
    into_spikes=False, combine(...) counted straight into the head)."""

    def __init__(self, combine, into_spikes=True):
        super().__init__()
        self.combine, self.into_spikes = combine, into_spikes
        self.c1, self.c2, self.c3 = dense(6, 4), dense(4, 4), dense(4, 4)
        self.acc, self.head = Accumulator(T), torch.nn.Linear(4, 2)

    def forward(self, x):
        a = self.c1(x)
        merged = self.combine(self.c2(a), a)
        return self.head(self.acc(self.c3(merged) if self.into_spikes else merged))


def test_a_sum_of_spikes_feeding_spiking_code_is_tagged_spiking(targets):
    gm = traced(Residual(operator.add))
    tag_targets(gm, targets)
    assert nodes(gm)["add"].args == (nodes(gm)["c2"], nodes(gm)["c1"])
    assert tags(gm)["add"] == ("spiking", "loihi")
    assert merge_kind(nodes(gm)["add"]) == "add" and why_not_merge(nodes(gm)["add"]) == ""


def test_a_sum_of_spikes_feeding_only_dense_code_stays_dense(targets):
    gm = traced(Residual(operator.add, into_spikes=False))
    tag_targets(gm, targets)
    assert tags(gm)["add"] == ("dense", "jetson") and "c3" not in nodes(gm)


def test_a_channel_concatenation_is_spiking_and_one_along_time_is_refused(targets):
    def model(dim):
        return Net(lambda m, x: m.head(m.acc(m.c3(torch.cat([m.c1(x), m.c2(x)], dim=dim)))), c1=dense(6, 2),
                   c2=dense(6, 2), c3=dense(4 if dim == 1 else 2, 4), acc=Accumulator(T if dim == 1 else 2 * T),
                   head=torch.nn.Linear(4, 2))

    gm = traced(model(1))
    tag_targets(gm, targets)
    assert tags(gm)["cat"] == ("spiking", "loihi") and merge_kind(nodes(gm)["cat"]) == "cat"
    gm = traced(model(-1))
    with pytest.raises(PartitionError, match=r"Node `cat` .*feeds spiking node `c3`.*concatenates along dim -1"):
        tag_targets(gm, targets)


@pytest.mark.parametrize("combine, node, reason", [
    (operator.mul, "mul", "cannot compute exactly"),  # SEW's AND
    (lambda a, b: a - b, "sub", "cannot compute exactly"),
    (lambda a, b: a + 1, "add", "mixes spikes with constants"),
    (lambda a, b: torch.add(a, b, alpha=2), "add", r"scales an addend \(alpha=...\)"),
], ids=["product", "difference", "plus a constant", "scaled sum"])
def test_other_combinations_of_spikes_feeding_spiking_code_are_refused(targets, combine, node, reason):
    gm = traced(Residual(combine))
    with pytest.raises(PartitionError, match=rf"Node `{node}` .*feeds spiking node `c3`, but .*{reason}"):
        tag_targets(gm, targets)


# -- check_numerics ------------------------------------------------------------------------

def _tagged(model, targets, x=None):
    gm = traced(model, x)
    tag_targets(gm, targets)
    return gm


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_parameter_is_refused_naming_it(targets, value):
    model = _chain()
    model[2].bias.data[1] = value
    gm = _tagged(model, targets)
    with pytest.raises(NumericsError, match=rf"`2\.bias` \(module `2`: Linear\) contains {value} \(1 non-finite"):
        check_numerics(gm, targets)


def test_finite_parameters_whose_sum_overflows_pass(targets):
    model = _chain()
    model[2].weight.data[0, :2] = 3e38  # their float32 sum is inf; each value is finite
    assert check_numerics(_tagged(model, targets), targets) == []


def test_a_threshold_outside_loihi_is_refused_naming_the_layer(targets):
    model = torch.nn.Sequential(dense(6, 4, params=neuron(threshold=5000.0)), Accumulator(2), torch.nn.Linear(16, 2))
    with pytest.raises(NumericsError, match=r"`0` \(module `0`: Dense\): threshold 5000 is .*1\.\.131071"):
        check_numerics(_tagged(model, targets), targets)


def test_a_weight_outside_8_bits_is_refused_or_clipped_on_request(targets):
    model = _chain()
    model[0].synapse.weight.data[0, 0] = 9.0  # 9 x 64 = 576 > 254
    gm = _tagged(model, targets)
    with pytest.raises(NumericsError, match=r"`0` \(module `0`: Dense\): weight 9 is 576.*--on-overflow clip"):
        check_numerics(gm, targets)
    (note,) = check_numerics(gm, targets, on_overflow="clip")
    assert note.startswith("`0` (module `0`: Dense): weight 9")
    assert note.endswith("clipped, as slayer's own forward does.")
    with pytest.raises(NumericsError, match="on_overflow must be 'error' or 'clip', got 'wrap'"):
        check_numerics(gm, targets, on_overflow="wrap")


def test_a_sigma_delta_conv_input_past_24_bits_is_measured_on_the_example_input(targets):
    sd = slayer.block.sigma_delta
    model = torch.nn.Sequential(sd.Input(SIGMA_DELTA), sd.Conv(SIGMA_DELTA, 2, 4, 3, padding=1), Accumulator(T),
                                torch.nn.Flatten())
    torch.nn.init.constant_(model[1].synapse.weight, 3.9)  # 3.9 x 64 = 250: in the weight range
    x = torch.ones(1, 2, 4, 4, T)  # each step's input sum reaches 2 x 9 x 3.9 = 70 > 32
    gm = _tagged(model, targets, x)
    assert check_numerics(gm, targets) == []  # no example input: nothing to measure
    with pytest.raises(NumericsError, match=r"`1` \(module `1`: Conv\): on the example input, a step's synaptic "
                                            r"input reaches 70\.\d+ at \d+ neuron"):
        check_numerics(gm, targets, example_input=x)
    (note,) = check_numerics(gm, targets, "clip", x)
    assert "Lava will differ on those neurons" in note


# -- insert_cut_accumulators ---------------------------------------------------------------

def test_raw_spikes_into_dense_code_get_an_identity_accumulator_and_a_warning(targets):
    gm = _tagged(torch.nn.Sequential(dense(6, 3), torch.nn.Flatten(), torch.nn.Linear(24, 2)), targets)
    with pytest.warns(UserWarning, match=r"Spikes from `_0` cross into dense code \(_1\) .*24 spikes, 3 bytes"):
        (bridge,) = insert_cut_accumulators(gm)
    assert bridge.name == "hybridc_raw_cut__0" and bridge.args == (nodes(gm)["_0"],)
    module = module_of(gm, bridge)
    assert isinstance(module, Accumulator) and (module.interval, module.fold) == (1, False)
    assert nodes(gm)["_1"].args == (bridge,)  # the dense reader now reads the bridge
    assert bridge.meta["hybridc_domain"] == "dense" and bridge.meta["hybridc_target"] == "jetson"
    assert bridge.meta["shape"] == (1, 3, T)


class ThreeReaders(torch.nn.Module):
    """The spikes of one layer read by an accumulator, a flatten and a mean; or (shape_only)
    by an accumulator and a shape query."""

    def __init__(self, shape_only=False):
        super().__init__()
        self.shape_only, self.snn, self.acc = shape_only, dense(6, 3), Accumulator(2)

    def forward(self, x):
        s = self.snn(x)
        if self.shape_only:
            return self.acc(s).reshape(s.shape[0], -1)
        return torch.cat([self.acc(s), s.flatten(1), s.mean((1, 2))[:, None]], 1)


def test_one_bridge_serves_every_raw_reader_and_an_accumulator_needs_none(targets):
    gm = _tagged(ThreeReaders(), targets)
    with pytest.warns(UserWarning, match=r"Spikes from `snn` cross into dense code \(flatten, mean\)"):
        (bridge,) = insert_cut_accumulators(gm)
    readers = {n.name for n in bridge.users}
    assert readers == {"flatten", "mean"} and nodes(gm)["acc"].args == (nodes(gm)["snn"],)


def test_a_shape_query_gets_a_bridge_but_no_warning(targets):
    gm = _tagged(ThreeReaders(shape_only=True), targets)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (bridge,) = insert_cut_accumulators(gm)
    assert [n.target for n in bridge.users] == [getattr]


def test_a_cut_through_an_accumulator_is_left_as_it_is(targets):
    gm = _tagged(_chain(), targets)
    count = len(gm.graph.nodes)
    assert insert_cut_accumulators(gm) == [] and len(gm.graph.nodes) == count


# -- partition -----------------------------------------------------------------------------

def _partitioned(model, targets, x=None):
    gm = _tagged(model, targets, x)
    insert_cut_accumulators(gm)
    return gm, partition(gm)


def test_a_chain_is_one_spiking_and_one_dense_stage(targets):
    gm, parts = _partitioned(_chain(), targets)
    assert [(p.name, p.domain, p.target) for p in parts] == [("snn", "spiking", "loihi"), ("ann", "dense", "jetson")]
    snn, ann = parts
    assert [n.name for n in snn.nodes] == ["_0"] and [n.name for n in ann.nodes] == ["_1", "_2"]
    assert [n.name for n in snn.inputs] == ["input_1"] and snn.outputs == snn.nodes
    assert ann.inputs == snn.nodes and [n.name for n in ann.outputs] == ["_2"]
    assert {n.name: n.meta.get("hybridc_partition") for n in gm.graph.nodes} == {
        "input_1": None, "_0": "snn", "_1": "ann", "_2": "ann", "output": None}


class Alternating(torch.nn.Module):
    """SNN -> ANN -> (Encoder) SNN -> ANN, with the model input also read by the last stage."""

    def __init__(self):
        super().__init__()
        self.s1, self.acc1, self.mix = dense(6, 4), Accumulator(2, fold=False), torch.nn.Linear(4, 4)
        self.encode, self.s2, self.acc2 = Encoder(bits=3, hold=2), dense(4, 4), Accumulator(T)
        self.head = torch.nn.Linear(4 + 6, 2)

    def forward(self, x):
        mixed = self.mix(self.acc1(self.s1(x)).transpose(1, 2)).transpose(1, 2)
        counts = self.acc2(self.s2(self.encode(torch.relu(mixed) * 4)))
        return self.head(torch.cat([counts, x.mean(-1)], 1))


class TwoAccumulators(torch.nn.Module):
    """One spiking layer counted by two accumulators (I=2 and I=4) into one head."""

    def __init__(self):
        super().__init__()
        self.snn, self.a, self.b, self.head = dense(6, 3), Accumulator(2), Accumulator(4), torch.nn.Linear(18, 2)

    def forward(self, x):
        s = self.snn(x)
        return self.head(torch.cat([self.a(s), self.b(s)], 1))


def test_a_tensor_a_stage_reads_twice_is_one_input(targets):
    _, (snn, ann) = _partitioned(TwoAccumulators(), targets)
    assert [n.name for n in ann.inputs] == ["snn"] and [n.name for n in ann.nodes] == ["a", "b", "cat", "head"]


def test_stages_alternate_in_execution_order_with_numbered_names(targets):
    gm, parts = _partitioned(Alternating(), targets)
    assert [(p.name, p.target) for p in parts] == [("snn1", "loihi"), ("ann1", "jetson"), ("snn2", "loihi"),
                                                   ("ann2", "jetson")]
    ann1, snn2, ann2 = parts[1:]
    assert ann1.nodes[-1].name == "encode" and snn2.inputs == [ann1.nodes[-1]]
    assert [n.name for n in parts[0].inputs] == ["x"] and "x" in [n.name for n in ann2.inputs]  # read twice


def test_dense_code_feeding_spiking_code_without_an_encoder_is_refused_naming_both(targets):
    model = torch.nn.Sequential(torch.nn.Linear(T, T), dense(6, 4), Accumulator(2))
    gm = _tagged(model, targets)
    insert_cut_accumulators(gm)
    with pytest.raises(PartitionError, match=r"Dense node `_0` \(module `0`: Linear\) feeds spiking node `_1` "
                                             r"\(module `1`: Dense\) directly.*Encoder\(bits=8, hold=1\)"):
        partition(gm)


class Cycle(torch.nn.Module):
    """One dense tensor both feeds the spiking stage (through an Encoder) and is added to its output."""

    def __init__(self):
        super().__init__()
        self.enc, self.snn, self.acc = Encoder(bits=2), dense(6, 6), Accumulator(T, fold=False)

    def forward(self, x):
        dense_values = torch.relu(x)
        return self.acc(self.snn(self.enc(dense_values))) + dense_values.sum(-1, keepdim=True)


def test_a_cycle_between_stages_is_refused(targets):
    gm = _tagged(Cycle(), targets)
    insert_cut_accumulators(gm)
    with pytest.raises(PartitionError, match=r"form a cycle \((relu -> snn|snn -> relu) -> \.\.\.\)"):
        partition(gm)


def test_spikes_reaching_dense_code_without_an_accumulator_are_an_internal_error(targets):
    gm = _tagged(torch.nn.Sequential(dense(6, 3), torch.nn.Flatten()), targets)  # insert_cut_accumulators skipped
    with pytest.raises(PartitionError, match=r"Internal check failed: spikes of `_0` reach `_1` without an "):
        partition(gm)


def test_a_spiking_node_reading_two_tensors_is_refused(targets):
    class Both(torch.nn.Module):
        def forward(self, a, b):
            return a * b

    model = Net(lambda m, x: m.acc(m.both(m.c1(x), m.c2(x))), c1=dense(6, 4), c2=dense(6, 4),
                both=hybridc.annotate(Both(), "spiking"), acc=Accumulator(2))
    gm = traced(model)
    for node in gm.graph.nodes:  # the tags a target accepting `both` would write
        if node.op == "call_module":
            spiking = node.name != "acc"
            node.meta.update(hybridc_domain="spiking" if spiking else "dense",
                             hybridc_target="loihi" if spiking else "jetson")
    with pytest.raises(PartitionError, match=r"The spiking node `both` .*reads several tensors \(\['c1', 'c2'\]\)"):
        partition(gm)


def test_a_model_without_computation_is_refused():
    gm = traced(Net(lambda m, x: x))
    with pytest.raises(PartitionError, match="no computation to compile"):
        partition(gm)
