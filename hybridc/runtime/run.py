"""Run a build as it would be deployed: each stage on its own runtime, in the manifest's
(topological) order, each input taken from the edge that feeds it."""

from pathlib import Path

import numpy as np
import torch

from ..build_dir.compiled import CompiledModel, load
from ..errors import InputError, reporting
from .stages import check_backend, run_stage


def run(compiled, x, return_stages: bool = False, progress=None, backend: str = "lava"):
    """Execute `compiled` (a CompiledModel or a build directory) on input `x`
    (PyTorch layout, batch first, time last). The loihi stage runs in Lava's
    fixed-point simulator (backend "lava") or hybridc's batched emulator of it
    ("emulate"), the jetson stage in onnxruntime. Returns the final output as a
    torch tensor, or (output, {stage name: output}) with return_stages."""
    check_backend(backend)
    if not isinstance(compiled, CompiledModel):
        compiled = load(Path(compiled))
    outputs, per_stage = run_graph(compiled.manifest, compiled.directory, model_input_values(compiled.manifest, x),
                                   progress=progress, backend=backend)
    if return_stages == "values":  # every stage output, keyed (stage, tensor name)
        return outputs
    result = model_output_values(compiled.manifest, outputs)
    return (result, per_stage) if return_stages else result


def _index(name: str) -> int:
    """0 for `input`/`output`, k for `input_k`/`output_k`: the position in forward()."""
    return int(name.rpartition("_")[2]) if "_" in name else 0


def _in_order(names) -> list:
    return sorted(set(names), key=_index)


def input_names(manifest) -> list:
    """The model's inputs as the manifest names them, in forward()'s order: input, input_1, ..."""
    return _in_order(e.producer["tensor"] for e in manifest.edges if e.producer["stage"] is None)


def input_shape_of(manifest, name: str) -> tuple:
    """One sample of model input `name` (no batch axis, PyTorch layout) as the build was compiled
    for it; () where the link carries an accumulator's counts instead (the raw shape is not kept)."""
    edge = next(e for e in manifest.edges if e.producer == {"stage": None, "tensor": name})
    return tuple(edge.shape if not (edge.conversion and edge.conversion.kind == "accumulator") else ())


def output_edges(manifest) -> list:
    """The edges to the model's outputs, in the order forward() returns them (output, output_1, ...)."""
    return sorted(manifest.edges_into(None), key=lambda e: _index(e.consumer["input"]))


def output_list(output) -> list:
    """A model's output (a tensor, a tuple or list, or a dict) as a list of tensors, in the
    order forward() returns them."""
    if isinstance(output, dict):
        return list(output.values())
    return list(output) if isinstance(output, (tuple, list)) else [output]


def model_output_values(manifest, values: dict):
    """The model's output from {(stage, tensor name): value}: one tensor, or a tuple in the
    order forward() returns them."""
    results = tuple(values[(e.producer["stage"], e.producer["tensor"])] for e in output_edges(manifest))
    return results[0] if len(results) == 1 else results


def _as_tensor(x, which: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{which} must be a torch tensor or numpy array, got {type(x).__name__}.")
    if x.dtype not in (torch.float32, torch.float64, torch.float16, torch.int64, torch.int32,
                       torch.int8, torch.uint8, torch.bool):
        raise InputError(f"{which} dtype {x.dtype} is not a number type hybridc can feed to the model.")
    if x.dim() < 1:
        raise InputError(f"{which} is a single number; pass a batch, shape (N, ...), time last where the input has steps.")
    if x.shape[0] == 0:
        raise InputError(f"{which} batch is empty (shape[0] == 0); pass at least one sample.")
    return x.float()


def model_input_values(manifest, x) -> dict:
    """{(None, input name): tensor} from what a caller passes: one tensor (or array), a tuple
    or list of them in forward()'s order, or a dict by input name. Each is checked against the
    shape the build was compiled for (InputError naming the input)."""
    names = input_names(manifest)
    if isinstance(x, dict):
        unknown = sorted(set(x) - set(names))
        if unknown or len(x) != len(names):
            raise InputError(f"The build takes the inputs {', '.join(names)}; got {', '.join(map(str, x)) or 'none'}.")
        given = [x[name] for name in names]
    else:
        given = list(x) if isinstance(x, (tuple, list)) else [x]
    if len(given) != len(names):
        raise InputError(f"The build takes {len(names)} input(s) ({', '.join(names)}), in the order of the model's "
                         f"forward(); got {len(given)}.")
    if len(names) == 1:  # the message every single-input build has given
        value = _as_tensor(given[0], "Input")
        expected_t = manifest.timesteps
        if value.dim() < 2 or value.shape[-1] != expected_t:
            raise InputError(
                f"The build was compiled for T={expected_t} timesteps (time is the last axis), but the "
                f"input has shape {tuple(value.shape)}. Pass (N, ..., {expected_t})."
            )
        return {(None, names[0]): value}
    values = {}
    for name, value in zip(names, given):
        value = _as_tensor(value, f"Input `{name}`")
        expected = input_shape_of(manifest, name)
        if expected and tuple(value.shape[1:]) != expected:
            raise InputError(f"Input `{name}` has shape {tuple(value.shape)}; the build was compiled for "
                             f"(N, {', '.join(map(str, expected))}).")
        values[(None, name)] = value
    if len({v.shape[0] for v in values.values()}) > 1:
        raise InputError(f"The inputs hold different batch sizes ({', '.join(str(v.shape[0]) for v in values.values())}).")
    return values


def stage_feeds(manifest, stage, values: dict):
    """The input of `stage` from {(producer stage, tensor name): value}: one tensor, or
    {input name: tensor} when the stage has several inputs."""
    feeds = {e.consumer["input"]: values[(e.producer["stage"], e.producer["tensor"])]
             for e in manifest.edges_into(stage.name)}
    return feeds if len(feeds) > 1 else next(iter(feeds.values()))


def run_graph(manifest, directory, x, progress=None, backend: str = "lava"):
    """Run every stage once. Returns ({(stage, tensor name): value}, {stage: output}) where a
    stage's output is its one tensor, or {tensor name: value} for a stage with several.
    x: the model input (the key (None, "input")), or {(None, input name): value} for all of them."""
    values = dict(x) if isinstance(x, dict) else {(None, "input"): x}
    per_stage = {}
    for stage in manifest.stages:
        with reporting(f"running stage `{stage.name}` ({stage.artifact}) on {stage.target}"):
            result = run_stage(stage, directory, stage_feeds(manifest, stage, values), progress=progress,
                               backend=backend)
        results = result if isinstance(result, tuple) else (result,)
        for spec, value in zip(stage.outputs, results):
            values[(stage.name, spec.name)] = value
        per_stage[stage.name] = (results[0] if len(results) == 1
                                 else {spec.name: value for spec, value in zip(stage.outputs, results)})
    return values, per_stage
