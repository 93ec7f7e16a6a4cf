"""NVIDIA Jetson (any ONNX runtime): the dense partition becomes one ONNX model.

The model's input is the spike tensor exactly as it crosses the cut (PyTorch
layout). The part after the accumulator is written node by node by onnx_lowering
when every node is in its tables, else exported with torch.onnx; the
accumulator itself is then written in front of it as plain ONNX nodes with
onnx-graphsurgeon (Reshape -> ReduceSum -> Transpose -> Reshape), so the runtime
on the Jetson sees one self-contained graph and no Python.
"""

import hashlib
import io
import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.fx.passes.operator_support import create_op_support

from ..errors import LoweringError
from ..frontend.graph import model_inputs, model_outputs
from ..manifest import AccumulatorSpec, Stage, TensorSpec, WireSpec
from ..nn import Accumulator, Encoder
from .base import Target
from .loihi_neurons import graded_output

OPSET = 17
IR_VERSION = 8  # what torch.onnx writes at opset 17 (onnx's own default is newer than onnxruntime reads)
SPIKES = "spikes"
COUNTS = "counts"
VALUES = "values"
ACCUMULATOR_PREFIX = "hybridc_accumulator/"


def pytorch_layout(shape, time_last: bool) -> str:
    """Axis letters (without batch) for a PyTorch-layout shape."""
    spatial = {1: "F", 2: "FL", 3: "CHW", 4: "CDHW"}
    if time_last:
        return {1: "T", 2: "FT", 3: "CLT", 4: "CHWT"}.get(len(shape), "X" * len(shape))
    return spatial.get(len(shape), "X" * len(shape)) if shape else "S"


def wire_spec(spec: AccumulatorSpec, shape, allow_counts: bool = True, graded: dict = None) -> WireSpec:
    """The smaller of raw spikes (1 bit each) and the accumulator's counts (ceil(log2(I+1))
    bits each) for a cut of spike tensor `shape` (batch first, time last); ties go to spikes.
    Graded spikes (a sigma-delta tap; `graded`: loihi_neurons.graded_output) cross as "values": signed
    integers of graded["message_bits"] bits as they are, or summed over each window by the
    sender at message_bits + ceil(log2 I) bits, whichever is smaller."""
    spikes_shape = list(shape[1:])
    if graded:
        bits, steps = graded["message_bits"], spikes_shape[-1]
        summed = bits + (spec.interval - 1).bit_length()
        if allow_counts and spec.windows * summed < steps * bits:
            return WireSpec(VALUES, summed, spec.interval, spec.windows, spikes_shape, graded["scale"])
        return WireSpec(VALUES, bits, 1, steps, spikes_shape, graded["scale"])
    bits = spec.interval.bit_length()  # ceil(log2(I + 1))
    counts_smaller = spec.windows * bits < spikes_shape[-1]
    if allow_counts and counts_smaller:
        return WireSpec("counts", bits, spec.interval, spec.windows, spikes_shape)
    return WireSpec("spikes", 1, spec.interval, spec.windows, spikes_shape)


def _accumulator_nodes(gs, arriving, out_var, spec: AccumulatorSpec, shape, counts_arrive: bool = False):
    """ONNX nodes computing Accumulator(spec) into out_var from `arriving`: the spikes
    (N, *lead, T), or with counts_arrive the window counts (N, *lead, K) summed by the sender."""
    lead = list(shape[1:-1])
    k, i = spec.windows, spec.interval
    if (i == 1 or counts_arrive) and not spec.fold:
        return [gs.Node("Identity", name=f"{ACCUMULATOR_PREFIX}{out_var.name}_identity", inputs=[arriving],
                        outputs=[out_var])]

    def const(name, values):
        return gs.Constant(f"{out_var.name}_{name}", np.array(values, dtype=np.int64))

    nodes = []
    if counts_arrive:
        counts = arriving
    else:
        windows = gs.Variable(f"{out_var.name}_windows", dtype=np.float32)
        counts = gs.Variable(f"{out_var.name}_counts", dtype=np.float32)
        nodes += [
            gs.Node("Reshape", name=f"{ACCUMULATOR_PREFIX}{out_var.name}_reshape",
                    inputs=[arriving, const("window_shape", [0, *lead, k, i])], outputs=[windows]),
            gs.Node("ReduceSum", name=f"{ACCUMULATOR_PREFIX}{out_var.name}_sum",
                    inputs=[windows, const("axes", [-1])], outputs=[counts if spec.fold else out_var],
                    attrs={"keepdims": 0}),
        ]
    if spec.fold:
        ndim = len(shape)  # counts: (N, C, *S, K)
        moved = gs.Variable(f"{out_var.name}_moved", dtype=np.float32)
        nodes += [
            gs.Node("Transpose", name=f"{ACCUMULATOR_PREFIX}{out_var.name}_transpose", inputs=[counts], outputs=[moved],
                    attrs={"perm": [0, 1, ndim - 1] + list(range(2, ndim - 1))}),
            gs.Node("Reshape", name=f"{ACCUMULATOR_PREFIX}{out_var.name}_fold",
                    inputs=[moved, const("fold_shape", [0, lead[0] * k, *lead[1:]])],
                    outputs=[out_var]),
        ]
    return nodes


class JetsonTarget(Target):
    name = "jetson"
    domain = "dense"
    supported_ops = ["any torch operation torch.onnx exports at opset 17",
                     "hybridc.nn.Accumulator (written as ONNX nodes)"]
    supports = create_op_support(lambda submodules, node: True)
    # May the sender accumulate, so that counts cross the link and the ONNX input is counts?
    wire_counts = True

    def preprocess(self, partition, gm, workdir: Path) -> Stage:
        import onnx
        import onnx_graphsurgeon as gs

        hybrid = any(n.meta.get("hybridc_domain") == "spiking" for n in gm.graph.nodes)
        lowered = lower_directly(gs, partition, gm, hybrid)
        if lowered is None:  # an operation outside onnx_lowering's tables: torch.onnx exports it all
            lowered = _export_with_torch(gs, onnx, partition, gm, hybrid)
        graph, by_name, orig_inputs, names = lowered.graph, lowered.by_name, lowered.sources, lowered.names
        accumulators, out_nodes, output_names = lowered.accumulators, lowered.out_nodes, lowered.output_names
        front = []  # the accumulator nodes, ahead of everything that reads them
        path = Path(workdir) / f"{partition.name}.onnx"
        inputs, specs, wires = [], [], {}
        for source, name in zip(orig_inputs, names):
            shape = source.meta["shape"]
            if source.meta.get("hybridc_domain") == "spiking":
                mine = [a for a in accumulators if a[1] == name]
                # several accumulators of different intervals on one tap need the spikes themselves
                distinct = {(a[2].interval, a[2].windows) for a in mine}
                wire = wire_spec(mine[0][2], shape, self.wire_counts and len(distinct) == 1,
                                 graded_output(_module(gm, source)))
                counts_arrive = wire.summed
                spec = _input_spec(wire, shape, name, source.name)
                variable = gs.Variable(spec.name, dtype=np.float32, shape=["batch", *wire.shape])
                for counts, _, acc, _ in mine:
                    if counts in by_name:  # the exporter drops unused inputs
                        front.extend(_accumulator_nodes(gs, variable, by_name[counts], acc, shape, counts_arrive))
                wires[spec.name] = wire
            else:
                spec = TensorSpec(name, list(shape[1:]), "float32",
                                  pytorch_layout(shape[1:], not hybrid or _reaches_encoder(gm, source, partition.name)),
                                  node=source.name)
                variable = by_name.get(name) or gs.Variable(name, dtype=np.float32, shape=["batch", *shape[1:]])
            inputs.append(variable)
            specs.append(spec)
        graph.inputs = inputs
        if lowered.in_order:
            graph.nodes[:0] = front
            graph.cleanup()
        else:
            graph.nodes.extend(front)
            graph.cleanup().toposort()
        model = gs.export_onnx(graph)
        model.opset_import[0].version = OPSET
        model.ir_version = IR_VERSION
        data = model.SerializeToString()  # serialised once: checked, hashed and written from memory
        try:
            onnx.checker.check_model(data, full_check=True)
        except Exception as exc:  # noqa: BLE001
            raise LoweringError(f"The ONNX model for stage `{partition.name}` fails onnx.checker: {exc}") from None
        path.write_bytes(data)

        outputs = [TensorSpec(name, list(node.meta["shape"][1:]), node.meta.get("dtype", "float32"),
                              pytorch_layout(node.meta["shape"][1:], time_last=isinstance(
                                  _module(gm, node), Encoder)), node=node.name)
                   for name, node in zip(output_names, out_nodes)]
        return Stage(
            name=partition.name, target=self.name, artifact=path.name, sha256=hashlib.sha256(data).hexdigest(),
            inputs=specs,
            outputs=outputs,
            accumulator=accumulators[0][2] if accumulators else None,
            opset=OPSET,
            wire=wires or None,
        )


@dataclass
class Lowered:
    """A dense partition as a gs graph, before the accumulators and the stage inputs are added."""
    graph: object
    by_name: dict  # ONNX input name -> gs tensor: dense inputs, and the counts each accumulator writes
    sources: list  # fx nodes outside the partition that feed it, in fuse_as_graphmodule's order
    names: list  # their ONNX input names
    accumulators: list  # (counts name, raw spikes input name, AccumulatorSpec, spikes shape)
    out_nodes: list
    output_names: list
    in_order: bool  # nodes already in topological order (no toposort needed after the accumulators)


def _boundary(partition):
    """(inputs, outputs) of the partition's nodes in the order fuse_as_graphmodule gives them:
    outside nodes by first use, then the nodes used outside, in graph order."""
    members = set(partition.nodes)
    inputs = {}
    for node in partition.nodes:
        for arg in node.all_input_nodes:
            if arg not in members:
                inputs.setdefault(arg)
    return list(inputs), [n for n in partition.nodes if any(u not in members for u in n.users)]


def _output_names(out_nodes, outputs: dict) -> list:
    """ONNX output names: the model output's name (`output`, `output_1`...: `outputs`,
    frontend.graph.model_outputs) for what forward() returns, else the node's name."""
    return [outputs.get(n.name, "output") if any(u.op == "output" for u in n.users) else n.name for n in out_nodes]


def lower_directly(gs, partition, gm, hybrid: bool):
    """The partition written node by node by onnx_lowering (no GraphModule, no torch.onnx);
    None if a node is outside its tables."""
    from .onnx_lowering import Unsupported, lower_nodes

    orig_inputs, out_nodes = _boundary(partition)
    names = input_names(orig_inputs, hybrid, model_inputs(gm))
    output_names = _output_names(out_nodes, model_outputs(gm))
    taken = set(names) | set(output_names)
    fx_names = {n.name for n in partition.nodes}
    tensors, by_name, accumulators, skip = {}, {}, [], set()
    for source, name in zip(orig_inputs, names):
        if source.op == "get_attr":
            return None  # torch.onnx would make it an input
        shape = source.meta["shape"]
        if source.meta.get("hybridc_domain") != "spiking":
            tensors[source] = by_name[name] = gs.Variable(name, dtype=np.float32, shape=["batch", *shape[1:]])
            continue
        for node in partition.nodes:  # the readers of the spikes, in graph order, all accumulators
            if source not in node.all_input_nodes:
                continue
            module, counts = _module(gm, node), f"{node.name}_counts"
            if not isinstance(module, Accumulator) or node in out_nodes or counts in taken | fx_names:
                return None
            taken.add(counts)
            spec = AccumulatorSpec(module.interval, module.windows(shape[-1]), module.fold)
            tensors[node] = by_name[counts] = gs.Variable(counts, dtype=np.float32)
            accumulators.append((counts, name, spec, shape))
            skip.add(node)
    try:
        nodes = lower_nodes(gs, gm, [n for n in partition.nodes if n not in skip], tensors,
                            dict(zip(out_nodes, output_names)), taken)
    except Unsupported as exc:
        logging.getLogger(__name__).info("stage `%s` goes through torch.onnx: %s", partition.name, exc)
        return None
    except Exception as exc:  # noqa: BLE001 - a gap in onnx_lowering must not stop a compile torch.onnx can do
        logging.getLogger(__name__).warning("stage `%s` goes through torch.onnx: the direct lowering failed "
                                            "(%s: %s)", partition.name, type(exc).__name__, exc)
        return None
    outputs = []
    for node, name in zip(out_nodes, output_names):
        produced = [t for n in nodes for t in n.outputs if t.name == name]
        if not produced:
            return None  # an output that no node writes (a partition input passed through)
        outputs.append(produced[0])
    graph = gs.Graph(nodes=nodes, outputs=outputs, opset=OPSET, producer_name="hybridc")
    return Lowered(graph, by_name, orig_inputs, names, accumulators, out_nodes, output_names, in_order=True)


def _export_with_torch(gs, onnx, partition, gm, hybrid: bool):
    """The partition as a GraphModule exported by torch.onnx, read back as a gs graph; any
    operation torch.onnx exports at opset 17 works here."""
    from torch.fx.passes.utils.fuser_utils import fuse_as_graphmodule

    sub, orig_inputs, orig_outputs = fuse_as_graphmodule(gm, partition.nodes, "DenseStage")
    placeholders = [n for n in sub.graph.nodes if n.op == "placeholder"]
    names = input_names(orig_inputs, hybrid, model_inputs(gm))
    exported_as = {}  # placeholder name in `sub` -> (ONNX input name, example tensor)
    accumulators = []  # (counts placeholder, raw spikes input name, AccumulatorSpec, spikes shape)
    for placeholder, source, name in zip(placeholders, orig_inputs, names):
        shape = source.meta["shape"]
        if source.meta.get("hybridc_domain") != "spiking":
            exported_as[placeholder.name] = (name, torch.zeros(shape))
            continue
        # spikes cross raw: each accumulator reading them is written as ONNX nodes in front
        cursor = placeholder
        for node in list(placeholder.users):
            module = sub.get_submodule(node.target)
            assert isinstance(module, Accumulator)
            spec = AccumulatorSpec(module.interval, module.windows(shape[-1]), module.fold)
            with sub.graph.inserting_after(cursor):  # in order, ahead of all compute
                counts = sub.graph.placeholder(f"{node.name}_counts")
            cursor = counts
            counts.meta.update(node.meta)
            node.replace_all_uses_with(counts)
            sub.graph.erase_node(node)
            accumulators.append((counts.name, name, spec, shape))
            exported_as[counts.name] = (counts.name, torch.zeros(counts.meta["shape"]))
        sub.graph.erase_node(placeholder)
    sub.graph.lint()
    sub.recompile()
    order = [exported_as[n.name] for n in sub.graph.nodes if n.op == "placeholder"]
    onnx_inputs = [name for name, _ in order]
    examples = tuple(example for _, example in order)
    out_nodes = list(orig_outputs)
    output_names = _output_names(out_nodes, model_outputs(gm))
    exported = io.BytesIO()  # stays in memory until the graph surgery is done
    sub.eval()
    with warnings.catch_warnings(), attention_exportable():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                sub, examples, exported, opset_version=OPSET, input_names=onnx_inputs,
                output_names=output_names,
                dynamic_axes={n: {0: "batch"} for n in onnx_inputs + output_names},
            )
        except Exception as exc:  # noqa: BLE001 - exporter errors are many and varied
            raise LoweringError(
                f"torch.onnx could not export the dense stage (nodes "
                f"{', '.join(n.name for n in partition.nodes[:6])}...): {type(exc).__name__}: "
                f"{exc}. Replace the operation it names with one ONNX opset {OPSET} supports."
            ) from None
    graph = gs.import_onnx(onnx.load_from_string(exported.getvalue()))
    by_name = {v.name: v for v in graph.inputs}
    return Lowered(graph, by_name, orig_inputs, names, accumulators, out_nodes, output_names, in_order=False)


@contextmanager
def attention_exportable():
    """PyTorch's eval-mode fast path of nn.MultiheadAttention, nn.TransformerEncoderLayer and
    nn.TransformerEncoder calls fused kernels (aten::_native_multi_head_attention,
    aten::_transformer_encoder_layer_fwd) that torch.onnx cannot export; switched off, the
    same modules run their ordinary maths (linear projections, scaled dot-product attention,
    softmax, layer norm), which torch.onnx writes at opset 17. Restored afterwards."""
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


def _input_spec(wire, cut_shape, name, node) -> TensorSpec:
    """The stage input for a spike tap: the spikes, or (wire format "counts", or summed
    "values") the window sums the sender accumulated, named `counts` / `<tap>_counts`, layout ...K."""
    if wire.summed:  # time replaced by windows
        counts_name = COUNTS if name == SPIKES else f"{name}_{COUNTS}"
        return TensorSpec(counts_name, wire.shape, "float32", pytorch_layout(cut_shape[1:], True)[:-1] + "K", node=node)
    return TensorSpec(name, list(cut_shape[1:]), "float32", pytorch_layout(cut_shape[1:], True), node=node)


def _reaches_encoder(gm, source, partition: str) -> bool:
    """Whether `source` flows into an Encoder inside this stage: then it holds steps (time
    last, an ANN ahead of the SNN); otherwise a dense input such as an intensity frame."""
    seen, todo = set(), list(source.users)
    while todo:
        node = todo.pop()
        if node in seen or node.meta.get("hybridc_partition") != partition:
            continue
        seen.add(node)
        if isinstance(_module(gm, node), Encoder):
            return True
        todo.extend(node.users)
    return False


def _module(gm, node):
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def input_names(sources, hybrid: bool, inputs: dict = None) -> list:
    """ONNX input names: `spikes` for the one spike tensor crossing in (as in two-stage
    builds) or a dense-only model's input, the model input's name (`input`, `input_1`...:
    `inputs`, frontend.graph.model_inputs) in a hybrid, else the producing node's name."""
    spiking = [s for s in sources if s.meta.get("hybridc_domain") == "spiking"]
    names = []
    for source in sources:
        if source.op == "placeholder":
            names.append((inputs or {}).get(source.name, "input") if hybrid else SPIKES)
        elif len(spiking) == 1 and source is spiking[0]:
            names.append(SPIKES)
        else:
            names.append(source.name)
    return names
