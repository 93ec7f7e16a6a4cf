"""Counts for the Jetson stage, read from the ONNX model: parameters and MACs per layer
(shapes from ONNX shape inference at batch 1), and onnxruntime latency measured here."""

import statistics
import time
from dataclasses import dataclass
from math import prod

import numpy as np


@dataclass
class OnnxLayer:
    name: str
    op: str
    output_shape: tuple
    macs: int
    parameters: int


def _shapes(model) -> dict:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in value.type.tensor_type.shape.dim]
        shapes[value.name] = tuple(dims)
    for init in inferred.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def read_layers(path) -> list:
    """One row per Conv / Gemm / MatMul (the layers with MACs and weights)."""
    import onnx

    model = onnx.load(str(path))
    shapes = _shapes(model)
    sizes = {init.name: prod(init.dims) for init in model.graph.initializer}
    layers = []
    for node in model.graph.node:
        out = shapes.get(node.output[0], ())
        params = sum(sizes.get(name, 0) for name in node.input[1:])
        if node.op_type == "Conv":
            weight = shapes[node.input[1]]  # (C_out, C_in/groups, kh, kw)
            macs = prod(out) * prod(weight[1:])
        elif node.op_type in ("Gemm", "MatMul"):
            a, b = shapes.get(node.input[0], ()), shapes.get(node.input[1], ())
            transposed = node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
            k = b[1] if transposed else b[0] if len(b) == 2 else a[-1]
            macs = prod(out) * k
        else:
            continue
        layers.append(OnnxLayer(node.name or node.output[0], node.op_type, out, int(macs), int(params)))
    return layers


def parameters(path) -> int:
    """Weights and biases, float or quantised; not shapes, axes, scales or zero points."""
    import onnx

    model = onnx.load(str(path))
    bookkeeping = {name for node in model.graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear")
                   for name in node.input[1:]}
    numeric = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.INT8, onnx.TensorProto.UINT8,
               onnx.TensorProto.INT32)
    return int(sum(prod(init.dims) for init in model.graph.initializer
                   if init.data_type in numeric and init.name not in bookkeeping))


def measure_latency(path, input_shape, repeats: int = 30) -> float:
    """Median seconds of one batch-1 onnxruntime run on this machine's CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = (np.random.default_rng(0).random((1, *input_shape)) < 0.2).astype(np.float32)
    for _ in range(3):
        session.run(None, {name: x})
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        session.run(None, {name: x})
        times.append(time.perf_counter() - began)
    return statistics.median(times)
