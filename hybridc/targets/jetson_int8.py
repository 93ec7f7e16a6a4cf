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
from .jetson import ACCUMULATOR_PREFIX, JetsonTarget


def calibration_inputs(gm, stage, options) -> list:
    """Per calibration sample, {ONNX input name: array} for each input of `stage`: the tensors
    that cross into it when the model runs on calibration samples (synthetic gestures for
    event frames, random spikes at density 0.2 otherwise). A model of several inputs reads
    `--calibration` as a data set with one array per input (npz:PATH, random:RATE, an entry
    point); by default its example input, row by row, with a warning when that holds fewer
    rows than --calibration-samples."""
    from ..data import open_dataset
    from ..frontend.capture import run_capturing

    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    samples = int(options.get("calibration_samples", 32))
    if samples < 1:
        from ..errors import InputError

        raise InputError(f"--calibration-samples must be at least 1, got {samples}.")
    if len(placeholders) > 1:
        x = _several_inputs(gm, placeholders, stage, options, samples)
    else:
        shape = placeholders[0].meta["shape"]
        if len(shape) == 5 and shape[1] == 2 and shape[2] == shape[3]:
            dataset = open_dataset(options.get("calibration", "synthetic"), train=True, size=shape[2],
                                   timesteps=shape[4], samples=samples)
            x = torch.stack([dataset[i][0] for i in range(min(samples, len(dataset)))])
        else:  # not event frames: random spikes, density 0.2
            g = torch.Generator().manual_seed(0)
            x = (torch.rand(samples, *shape[1:], generator=g) < 0.2).float()
    _, values = run_capturing(gm, x, {spec.node for spec in stage.inputs})
    count = values[stage.inputs[0].node].shape[0]
    return [{spec.name: values[spec.node][i:i + 1].detach().numpy().astype(np.float32) for spec in stage.inputs}
            for i in range(count)]


def _several_inputs(gm, placeholders, stage, options, samples) -> tuple:
    """Calibration samples for a model of several inputs, one batch per input."""
    import warnings

    from ..data.sources import open_samples
    from ..frontend.graph import model_inputs

    spec = options.get("calibration", "synthetic")
    if spec != "synthetic":  # the user's data, one array per input, named as the manifest names them
        names = model_inputs(gm)
        dataset = open_samples(spec, {names[p.name]: tuple(p.meta["shape"][1:]) for p in placeholders if p.name in names},
                               train=True, samples=samples)
        return dataset.batch(0, min(samples, len(dataset)))[0]
    x = tuple(t[:samples] for t in gm.meta["example_input"])
    if x[0].shape[0] < samples:
        warnings.warn(f"jetson-int8 calibrated stage `{stage.name}` on the example input's {x[0].shape[0]} sample(s): "
                      "a model of several inputs has no default calibration data. Its scales fit those samples "
                      "only; pass --calibration npz:PATH (one array per input, named input, input_1, ...) with "
                      "--calibration-samples N, or give example_input a batch of N representative samples.",
                      stacklevel=2)
    return x


def _source(gm, options) -> str:
    """What calibrated the stage, for the manifest."""
    several = sum(n.op == "placeholder" for n in gm.graph.nodes) > 1
    spec = options.get("calibration", "synthetic")
    return "the example input" if several and spec == "synthetic" else spec


class _Reader:
    def __init__(self, inputs):
        self.inputs = iter(inputs)

    def get_next(self):
        return next(self.inputs, None)


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
        float_path = Path(workdir) / stage.artifact
        model = onnx.load(str(float_path))
        accumulator_nodes = [n.name for n in model.graph.node if n.name.startswith(ACCUMULATOR_PREFIX)]
        counts = [n.output[0] for n in model.graph.node
                  if n.name.startswith(ACCUMULATOR_PREFIX) and n.output[0] in
                  {i for node in model.graph.node if not node.name.startswith(ACCUMULATOR_PREFIX) for i in node.input}]
        overrides = {name: [{"scale": np.array(1.0, dtype=np.float32), "zero_point": np.array(0, dtype=np.uint8)}]
                     for name in counts}
        path = Path(workdir) / f"{partition.name}_int8.onnx"
        calibration = calibration_inputs(gm, stage, self.options)
        try:
            quantize_static(
                str(float_path), str(path), _Reader(calibration),
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
                              "calibration": f"{_source(gm, self.options)}, {len(calibration)} samples, min-max",
                              "exact_counts": counts, "scales": scales}
        return stage
