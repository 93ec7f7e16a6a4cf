"""Parity between a compiled build and the PyTorch model it came from.

Three checks, on every stage of the stage graph: the Lava (or emulated Lava) spikes at each
spiking output (tap) equal PyTorch's (every entry, every step), each ONNX stage fed PyTorch's
tensors at its inputs equals the PyTorch dense subgraph, and the whole deployment run
end to end equals model(x).
"""

from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.fx

from ..errors import reporting
from ..frontend.capture import run_capturing
from ..targets.registry import domain_of, output_rel_err_max, spike_dice_min
from .nir_reference import agreement as nir_agreement
from .overlap import dice, dice_counts
from .run import model_input_values, model_output_values, output_list, run, stage_feeds
from .stages import run_stage


@dataclass
class Parity:
    samples: int
    spike_match: Optional[float]  # fraction of equal entries over every spiking output (loihi vs PyTorch)
    cut_entries: Optional[int]
    onnx_max_abs_err: Optional[float]  # dense stages fed PyTorch's tensors
    run_max_abs_err: float  # whole deployment vs model(x)
    argmax_agreement: float
    backend: str = "lava"  # what ran the spiking stage: Lava, or hybridc's emulator of it
    spike_matches: dict = None  # "stage/tensor" -> fraction of equal entries, per spiking output
    spike_dice: dict = None  # "stage/tensor" -> Dice overlap of the spikes with PyTorch's
    spike_dice_min: Optional[float] = None  # required of a float-simulated (nir) stage; None: all exact
    output_rel_err_max: Optional[float] = None  # allowed of a quantised (int8) dense stage; None: 1e-4
    passed: bool = True  # what `hybridc compile --verify` exits 0 on (see `spikes_pass`)
    # per hybridc.nn.NIR module: agreement with its float original (runtime.nir_reference): spike
    # Dice, equal entries, the model's output error and argmax agreement on the original's spikes;
    # reported, never part of `passed`; {} when the model holds none, None without the model
    nir_reference: dict = None

    def as_dict(self) -> dict:
        return asdict(self)


def reference_stages(gm: torch.fx.GraphModule, partitions, x: torch.Tensor) -> dict:
    """PyTorch's value at each partition's output, computed by the traced model."""
    wanted = {p.outputs[0].name: p.name for p in partitions}
    output, values = run_capturing(gm, x, wanted)
    return {**{wanted[name]: value for name, value in values.items()}, "output": output}


def tolerance(manifest) -> Optional[float]:
    """The Dice overlap required of the build's float-simulated spiking stages (the strictest
    of their targets'), or None when every spiking stage must match PyTorch exactly."""
    needed = [spike_dice_min(s.target) for s in manifest.stages if domain_of(s.target) == "spiking"]
    needed = [n for n in needed if n is not None]
    return max(needed) if needed else None


def spikes_pass(manifest, matches: dict, dices: dict) -> bool:
    """Every spiking output ("stage/tensor") equals PyTorch's, entry for entry; a stage whose
    target simulates its artifact in float (nir: float NIR against slayer's fixed point)
    instead needs a Dice overlap of at least the target's measured `spike_dice_min`."""
    for stage in manifest.stages:
        if domain_of(stage.target) != "spiking":
            continue
        needed = spike_dice_min(stage.target)
        for spec in stage.outputs:
            key = f"{stage.name}/{spec.name}"
            if (matches[key] < 1.0) if needed is None else (dices[key] < needed):
                return False
    return True


def spike_agreement(spikes: torch.Tensor, reference: torch.Tensor) -> dict:
    """How close two spike tensors are: `equal`, the fraction of equal entries (high even for
    two silent tensors), and `dice`, 2|A and B| / (|A| + |B|) over the spikes themselves,
    which a sparse tensor cannot pass by staying silent."""
    return {"equal": float((spikes == reference).float().mean()), "dice": dice(*dice_counts(spikes, reference))}

def reference_tensors(gm: torch.fx.GraphModule, manifest, x: torch.Tensor):
    """(model output, {(stage, tensor name): PyTorch's value}) for every stage output."""
    finals = manifest.edges_into(None)
    wanted = {spec.node: (stage.name, spec.name) for stage in manifest.stages for spec in stage.outputs
              if spec.node is not None}
    output, values = run_capturing(gm, x, set(wanted))
    tensors = {key: values[node] for node, key in wanted.items()}
    if len(finals) == 1:  # format-1 builds name no nodes
        tensors.setdefault((finals[0].producer["stage"], finals[0].producer["tensor"]), output)
    return output, tensors


@torch.no_grad()
def verify(compiled, x: torch.Tensor, progress=None, backend: str = "lava") -> Parity:
    from ..errors import ArtifactError

    gm = compiled.module
    if gm is None:
        raise ArtifactError("verify needs the PyTorch model as reference: call it on the result of "
                            "hybridc.compile(...), not on a build loaded from disk.")
    manifest = compiled.manifest
    inputs = model_input_values(manifest, x)  # checked, and one tuple for the traced model
    x = tuple(inputs.values()) if len(inputs) > 1 else next(iter(inputs.values()))
    with reporting("running the PyTorch model for reference"):
        final_ref, reference = reference_tensors(gm, manifest, x)
    values = run(compiled, x, return_stages="values", progress=progress, backend=backend)
    deployed = output_list(model_output_values(manifest, values))
    matches, dices, equal, entries, onnx_err, dense_pass = {}, {}, 0, 0, None, True
    known = {**reference, **inputs}
    for stage in manifest.stages:
        if domain_of(stage.target) == "spiking":  # the spikes of the deployed run, at every tap
            for spec in stage.outputs:
                ref, got = reference[(stage.name, spec.name)], values[(stage.name, spec.name)]
                matches[f"{stage.name}/{spec.name}"] = float((got == ref).float().mean())
                dices[f"{stage.name}/{spec.name}"] = dice(*dice_counts(got, ref))
                equal += int((got == ref).sum())
                entries += ref.numel()
            continue
        # a dense stage fed PyTorch's tensors: a difference is pinned on this stage
        result = run_stage(stage, compiled.directory, stage_feeds(manifest, stage, known))
        for spec, got in zip(stage.outputs, result if isinstance(result, tuple) else (result,)):
            ref = reference[(stage.name, spec.name)]
            err = float((got - ref).abs().max())
            onnx_err = err if onnx_err is None else max(onnx_err, err)
            dense_pass = dense_pass and _within(err, ref, output_rel_err_max(stage.target))
    pairs = list(zip(deployed, output_list(final_ref)))  # every output of the model, the first alone in most
    run_err = max(float((got - ref).abs().max()) for got, ref in pairs)
    agree = min((float((got.argmax(-1) == ref.argmax(-1)).float().mean()) for got, ref in pairs if ref.dim() > 1),
                default=1.0)
    approximate = tolerance(manifest)
    quantised = [output_rel_err_max(s.target) for s in manifest.stages if domain_of(s.target) == "dense"]
    quantised = max((q for q in quantised if q is not None), default=None)
    if approximate is None and quantised is None:  # bit-exact spikes: the whole deployment equals model(x)
        passed = equal == entries and agree == 1.0 and run_err < 1e-4
    elif approximate is None:  # exact spikes, int8 dense stages: close to model(x), argmax may move
        passed = equal == entries and dense_pass and _within(run_err, final_ref, quantised)
    else:  # float-simulated spikes differ a little, and so may the output; dense stages stay within bounds
        passed = spikes_pass(manifest, matches, dices) and dense_pass
    original = None
    if getattr(compiled, "model", None) is not None:
        with reporting("simulating the NIR modules' float originals"):
            original = nir_agreement(compiled.model, x)
    return Parity(int(next(iter(inputs.values())).shape[0]), equal / entries if entries else None, entries or None, onnx_err, run_err,
                  agree, backend=backend, spike_matches=matches, spike_dice=dices, spike_dice_min=approximate,
                  output_rel_err_max=quantised, passed=passed, nir_reference=original)


def _within(err: float, reference: torch.Tensor, relative) -> bool:
    """An exact dense stage is within 1e-4; a quantised one within `relative` x max|reference|."""
    if relative is None:
        return err < 1e-4
    return err <= relative * float(reference.abs().max())


__all__ = ["Parity", "verify", "reference_stages", "reference_tensors", "spike_agreement", "spikes_pass"]
