"""NVIDIA Jetson (any ONNX runtime): the dense partition becomes one ONNX model.

The model's input is the spike tensor exactly as it crosses the cut (PyTorch
layout). The part after the accumulator is exported with torch.onnx; the
accumulator itself is then written in front of it as plain ONNX nodes with
onnx-graphsurgeon (Reshape -> ReduceSum -> Transpose -> Reshape), so the runtime
on the Jetson sees one self-contained graph and no Python.
"""

import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.fx.passes.operator_support import create_op_support

from ..errors import LoweringError
from ..manifest import AccumulatorSpec, Stage, TensorSpec, WireSpec
from ..nn import Accumulator

ARTIFACT = "ann.onnx"
OPSET = 17
SPIKES = "spikes"
COUNTS = "counts"
ACCUMULATOR_PREFIX = "hybridc_accumulator/"


def pytorch_layout(shape, time_last: bool) -> str:
    """Axis letters (without batch) for a PyTorch-layout shape."""
    spatial = {1: "F", 2: "FL", 3: "CHW", 4: "CDHW"}
    if time_last:
        return {1: "T", 2: "FT", 3: "CLT", 4: "CHWT"}.get(len(shape), "X" * len(shape))
    return spatial.get(len(shape), "X" * len(shape)) if shape else "S"


def wire_spec(spec: AccumulatorSpec, shape, allow_counts: bool = True) -> WireSpec:
    """The smaller of raw spikes (1 bit each) and the accumulator's counts (ceil(log2(I+1))
    bits each) for a cut of spike tensor `shape` (batch first, time last); ties go to spikes."""
    bits = spec.interval.bit_length()  # ceil(log2(I + 1))
    spikes_shape = list(shape[1:])
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


class JetsonTarget:
    name = "jetson"
    domain = "dense"
    supported_ops = ["any torch operation torch.onnx exports at opset 17",
                     "hybridc.nn.Accumulator (written as ONNX nodes)"]
    supports = create_op_support(lambda submodules, node: True)
    # May the sender accumulate, so that counts cross the link and the ONNX input is counts?
    wire_counts = True

    def __init__(self, options=None):
        self.options = options or {}

    def why_unsupported(self, submodules, node) -> str:
        return ""

    def preprocess(self, partition, gm, workdir: Path) -> Stage:
        import onnx
        import onnx_graphsurgeon as gs
        from torch.fx.passes.utils.fuser_utils import fuse_as_graphmodule

        sub, orig_inputs, orig_outputs = fuse_as_graphmodule(gm, partition.nodes, "DenseStage")
        placeholders = [n for n in sub.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise LoweringError(
                f"The dense stage reads {len(placeholders)} tensors ({[n.name for n in orig_inputs]}); "
                "hybridc supports exactly one tensor crossing the cut."
            )
        cut = placeholders[0]
        cut_shape = orig_inputs[0].meta["shape"]
        from_spikes = orig_inputs[0].meta.get("hybridc_domain") == "spiking"
        accumulators = []  # (new placeholder name, AccumulatorSpec)
        if from_spikes:
            cursor = cut
            for node in list(cut.users):
                module = sub.get_submodule(node.target)
                assert isinstance(module, Accumulator)
                spec = AccumulatorSpec(module.interval, module.windows(cut_shape[-1]), module.fold)
                with sub.graph.inserting_after(cursor):  # in order, ahead of all compute
                    counts = sub.graph.placeholder(f"{node.name}_counts")
                cursor = counts
                counts.meta.update(node.meta)
                node.replace_all_uses_with(counts)
                sub.graph.erase_node(node)
                accumulators.append((counts.name, spec, counts.meta["shape"]))
            sub.graph.erase_node(cut)
            sub.graph.lint()
            sub.recompile()
        out_nodes = list(orig_outputs)
        if len(out_nodes) != 1:
            raise LoweringError(
                f"The dense stage returns {len(out_nodes)} tensors ({', '.join(n.name for n in out_nodes)}); "
                "hybridc deploys models with one output tensor. Return only the final output "
                "(e.g. the logits) from forward()."
            )
        output_names = ["output"] if len(out_nodes) == 1 else [f"output_{i}" for i in range(len(out_nodes))]
        input_names = [a[0] for a in accumulators] if from_spikes else [SPIKES]
        examples = tuple(torch.zeros(a[2]) for a in accumulators) if from_spikes else (torch.zeros(cut_shape),)
        path = Path(workdir) / ARTIFACT
        exported = io.BytesIO()  # stays in memory until the graph surgery is done
        sub.eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(
                    sub, examples, exported, opset_version=OPSET, input_names=input_names,
                    output_names=output_names,
                    dynamic_axes={n: {0: "batch"} for n in input_names + output_names},
                )
            except Exception as exc:  # noqa: BLE001 - exporter errors are many and varied
                raise LoweringError(
                    f"torch.onnx could not export the dense stage (nodes "
                    f"{', '.join(n.name for n in partition.nodes[:6])}...): {type(exc).__name__}: "
                    f"{exc}. Replace the operation it names with one ONNX opset {OPSET} supports."
                ) from None

        graph = gs.import_onnx(onnx.load_from_string(exported.getvalue()))
        wire = None
        if from_spikes:
            specs = {(a[1].interval, a[1].windows) for a in accumulators}
            # several accumulators of different intervals on one cut need the spikes themselves
            wire = wire_spec(accumulators[0][1], cut_shape, self.wire_counts and len(specs) == 1)
            counts_arrive = wire.format == COUNTS
            arriving = gs.Variable(COUNTS if counts_arrive else SPIKES, dtype=np.float32, shape=["batch", *wire.shape])
            by_name = {v.name: v for v in graph.inputs}
            for name, spec, _ in accumulators:
                if name not in by_name:  # exporter dropped an unused input
                    continue
                graph.nodes.extend(_accumulator_nodes(gs, arriving, by_name[name], spec, cut_shape, counts_arrive))
            graph.inputs = [arriving]
        graph.cleanup().toposort()
        model = gs.export_onnx(graph)
        model.opset_import[0].version = OPSET
        data = model.SerializeToString()  # serialised once: checked, hashed and written from memory
        try:
            onnx.checker.check_model(data, full_check=True)
        except Exception as exc:  # noqa: BLE001
            raise LoweringError(f"The ONNX model for stage `{partition.name}` fails onnx.checker: {exc}") from None
        path.write_bytes(data)

        arrives = _input_spec(wire, cut_shape)
        outputs = [TensorSpec(name, list(node.meta["shape"][1:]), node.meta.get("dtype", "float32"),
                              pytorch_layout(node.meta["shape"][1:], time_last=False))
                   for name, node in zip(output_names, out_nodes)]
        return Stage(
            name=partition.name, target=self.name, artifact=ARTIFACT, sha256=hashlib.sha256(data).hexdigest(),
            inputs=[arrives],
            outputs=outputs,
            accumulator=accumulators[0][1] if accumulators else None,
            opset=OPSET,
            wire={arrives.name: wire} if wire else None,
        )


def _input_spec(wire, cut_shape) -> TensorSpec:
    if wire is not None and wire.format == COUNTS:  # time replaced by windows: layout ...K
        return TensorSpec(COUNTS, wire.shape, "float32", pytorch_layout(cut_shape[1:], True)[:-1] + "K")
    return TensorSpec(SPIKES, list(cut_shape[1:]), "float32", pytorch_layout(cut_shape[1:], True))
