"""An 8-bit dense half, as a Jetson's int8 path (TensorRT) runs it: the float ONNX
model quantised to QDQ int8 with onnxruntime's static quantisation, calibrated on the
tensors that really cross the cut (spiking half run on --calibration samples).

The accumulator's output is a small integer count (0..I), so it is quantised exactly:
its nodes stay in float and its output gets scale 1, zero point 0 (uint8), overriding
calibration. The manifest records every quantised tensor's scale and zero point.
"""

import hashlib
from pathlib import Path

import numpy as np
import torch

from ..errors import LoweringError
from .jetson import ACCUMULATOR_PREFIX, SPIKES, JetsonTarget


def calibration_inputs(gm, partition, options) -> list:
    """Cut tensors for calibration: the spiking half run on calibration samples."""
    from ..data import open_dataset
    from ..frontend.capture import run_capturing

    placeholder = next(n for n in gm.graph.nodes if n.op == "placeholder")
    shape = placeholder.meta["shape"]
    samples = int(options.get("calibration_samples", 32))
    if samples < 1:
        from ..errors import InputError

        raise InputError(f"--calibration-samples must be at least 1, got {samples}.")
    spec = options.get("calibration", "synthetic")
    if len(shape) == 5 and shape[1] == 2 and shape[2] == shape[3]:
        dataset = open_dataset(spec, train=True, size=shape[2], timesteps=shape[4], samples=samples)
        x = torch.stack([dataset[i][0] for i in range(min(samples, len(dataset)))])
    else:  # not event frames: random spikes, density 0.2
        g = torch.Generator().manual_seed(0)
        x = (torch.rand(samples, *shape[1:], generator=g) < 0.2).float()
    cut = partition.inputs[0]
    values = x if cut.op == "placeholder" else run_capturing(gm, x, {cut.name})[1][cut.name]
    return [values[i:i + 1].numpy().astype(np.float32) for i in range(values.shape[0])]


class _Reader:
    def __init__(self, inputs, name=SPIKES):
        self.inputs = iter(inputs)
        self.name = name

    def get_next(self):
        item = next(self.inputs, None)
        return None if item is None else {self.name: item}


class JetsonInt8Target(JetsonTarget):
    name = "jetson-int8"
    supported_ops = JetsonTarget.supported_ops + ["quantised to int8 (QDQ) by onnxruntime.quantization"]
    wire_counts = False  # calibration feeds the spike tensor

    def preprocess(self, partition, gm, workdir: Path):
        import onnx
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        stage = super().preprocess(partition, gm, workdir)
        if len(stage.inputs) > 1:
            raise LoweringError(
                f"jetson-int8 calibrates a dense stage with one input, but stage `{partition.name}` reads "
                f"{len(stage.inputs)} ({', '.join(t.name for t in stage.inputs)}). Compile it with the float "
                "`jetson` target (--target loihi+jetson)."
            )
        float_path = Path(workdir) / stage.artifact
        model = onnx.load(str(float_path))
        accumulator_nodes = [n.name for n in model.graph.node if n.name.startswith(ACCUMULATOR_PREFIX)]
        counts = [n.output[0] for n in model.graph.node
                  if n.name.startswith(ACCUMULATOR_PREFIX) and n.output[0] in
                  {i for node in model.graph.node if not node.name.startswith(ACCUMULATOR_PREFIX) for i in node.input}]
        overrides = {name: [{"scale": np.array(1.0, dtype=np.float32), "zero_point": np.array(0, dtype=np.uint8)}]
                     for name in counts}
        path = Path(workdir) / f"{partition.name}_int8.onnx"
        calibration = calibration_inputs(gm, partition, self.options)
        try:
            quantize_static(
                str(float_path), str(path), _Reader(calibration, stage.inputs[0].name),
                quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=accumulator_nodes,
                extra_options={"TensorQuantOverrides": overrides, "ActivationSymmetric": False},
            )
        except Exception as exc:  # noqa: BLE001 - the quantiser raises many kinds
            raise LoweringError(f"onnxruntime could not quantise stage `{partition.name}`: "
                                f"{type(exc).__name__}: {exc}") from None
        float_path.unlink()
        quantised = onnx.load(str(path))
        onnx.checker.check_model(quantised, full_check=True)
        init = {i.name: onnx.numpy_helper.to_array(i) for i in quantised.graph.initializer}
        scales = {}
        for node in quantised.graph.node:
            if node.op_type == "QuantizeLinear":
                scale, zero = init.get(node.input[1]), init.get(node.input[2]) if len(node.input) > 2 else None
                if scale is not None and scale.size == 1:
                    scales[node.input[0]] = [float(scale), int(zero) if zero is not None else 0]
        stage.target = self.name
        stage.artifact = path.name
        stage.sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        stage.quantization = {"format": "QDQ", "activations": "uint8", "weights": "int8 (per tensor)",
                              "calibration": f"{self.options.get('calibration', 'synthetic')}, "
                                             f"{self.options.get('calibration_samples', 32)} samples, min-max",
                              "exact_counts": counts, "scales": scales}
        return stage
