"""`hybridc verify`: run a dataset through a build as deployed and through the PyTorch
model it was compiled from, and report how far apart they are.

The reference model is rebuilt from what the manifest records (source file, entry,
arguments, weights, each checked by sha256). Two backends run the artifact in the build:
  lava     the Loihi stage's netx HDF5 in Lava's bit-accurate simulator (seconds per sample);
  emulate  the same file in hybridc's batched emulator of Lava (runtime/emulator/, bit-exact);
then the dense stage in onnxruntime. Both compare their spikes at the cut with PyTorch's.
"""

import json
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional

from ..build_dir.compiled import CompiledModel, load
from ..errors import ArtifactError, InputError
from ..targets.registry import domain_of
from . import nir_reference
from .overlap import dice, dice_counts
from .run import input_names, input_shape_of, model_input_values, output_edges, output_list, stage_feeds
from .stages import run_stage
from .verify import reference_tensors, spikes_pass, tolerance


@dataclass
class Report:
    backend: str
    samples: int
    spike_match: Optional[float]  # fraction of equal entries at the cut (None: no spiking stage)
    argmax_agreement: float
    max_abs_err: float
    accuracy_reference: Optional[float]  # None: the data has no labels
    accuracy_deployed: Optional[float]
    seconds_per_sample: float
    accuracy_change: Optional[float] = 0.0  # deployed - reference: nonzero only for quantised stages
    quantized: bool = False  # a stage is int8: argmax may legitimately differ
    workers: int = 1  # Ray tasks' CPUs the samples were split across (1: this process)
    data: str = ""  # where the samples came from
    spike_matches: dict = None  # "stage/tensor" -> fraction of equal entries, per spiking output
    spike_dice: dict = None  # "stage/tensor" -> Dice overlap of the spikes with PyTorch's
    spike_dice_min: Optional[float] = None  # required of a float-simulated (nir) stage; None: all exact
    passed: bool = True  # what `hybridc verify` exits 0 on (see runtime.verify.spikes_pass)
    # per hybridc.nn.NIR module: agreement with its float original (runtime.nir_reference): spike
    # Dice, equal entries, the model's output error and argmax agreement on the original's spikes,
    # counted over every batch; reported, never part of `passed`; {} when the model holds none
    nir_reference: dict = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ReferenceFiles:
    """Where `verify` and `profile` get a build's PyTorch model. A build directory may come from
    anyone, so the model file it records is imported only when the user names a file (`model`,
    checked against the recorded sha256) or trusts the build (`trust_source`, like
    `trust_remote_code`). `weights` names a moved checkpoint, checked the same way."""

    model: Optional[Path] = None
    weights: Optional[Path] = None
    trust_source: bool = False


def _untrusted(source) -> ArtifactError:
    recipe = "".join([f", entry `{source.entry}`" if source.entry else "",
                      f", arguments {source.args}" if source.args else "",
                      f", weights {source.weights}" if source.weights else ""])
    return ArtifactError(
        f"This build records its reference model as {source.path}{recipe}. hybridc does not import a Python "
        "file because a build directory names it (a build may come from anyone, and importing runs its code). "
        "Pass --model FILE to import a file you name (checked against the sha256 the build records), or "
        "--trust-source to import the recorded file if you trust whoever wrote this build.")


def _checked(path: Path, recorded: str, what: str, named: bool) -> Path:
    """`path` if its sha256 is the recorded one; ArtifactError saying which file and why not."""
    from ..digest import sha256

    if not path.is_file():
        raise ArtifactError(f"The {what} {'you named' if named else 'this build was compiled from'}, {path}, "
                            f"{'does not exist' if named else 'is gone'}; name where it is now with "
                            f"--{'model' if what == 'model file' else 'weights'} FILE.")
    if sha256(path) != recorded:
        if named:
            raise ArtifactError(f"{path} is not the {what} this build was compiled from (its sha256 differs "
                                f"from the recorded {str(recorded)[:12]}...); name that file, or recompile.")
        raise ArtifactError(f"{path} changed since this build was compiled (sha256 differs); recompile, or "
                            f"name the original {what} with --{'model' if what == 'model file' else 'weights'}.")
    return path


def rebuild_reference(manifest, files: Optional[ReferenceFiles] = None):
    """The PyTorch model a build was compiled from, traced and partitioned the same way.
    Imports a model file only as `files` allows (see ReferenceFiles)."""
    from ..compiler.driver import lower
    from ..frontend.loader import load_model_file

    files = files or ReferenceFiles()
    source = manifest.source
    if source is None or not source.path:
        raise ArtifactError("This build was compiled from Python, not from a model file, so verify cannot "
                            "rebuild its reference model; use hybridc.verify(compiled, x) in Python.")
    if files.model is None and not files.trust_source:
        raise _untrusted(source)
    model = files.model if files.model is not None else Path(source.path)
    path = _checked(Path(model), source.sha256, "model file", named=files.model is not None)
    weights = None
    if files.weights is not None and not source.weights:
        raise InputError(f"This build was compiled without --weights, so --weights {files.weights} has no "
                         "recorded checkpoint to stand for; leave it out.")
    if source.weights:
        named = files.weights is not None
        weights = _checked(Path(files.weights if named else source.weights), source.weights_sha256,
                           "weights", named)
    model, example_input, _, _ = load_model_file(path, source.entry, weights, source.args)
    gm, partitions, _ = lower(model, example_input, manifest.target)
    return gm, partitions


def input_shape(manifest):
    """The shape of one sample the build takes, in the layout the model's forward takes;
    {input name: shape} for a build with several inputs."""
    names = input_names(manifest)
    if len(names) == 1:
        return tuple(manifest.stages[0].inputs[0].pytorch_shape())
    shapes = {name: input_shape_of(manifest, name) for name in names}
    unknown = [name for name, shape in shapes.items() if not shape]
    if unknown:
        raise InputError(f"Model input {', '.join(f'`{n}`' for n in unknown)} enters an Accumulator straight away, "
                         "so the build does not record the shape a data set should give it. Check this build on "
                         "inputs you give: hybridc.verify(compiled, x=(a, b, ...)).")
    return shapes


@dataclass
class _Tally:
    """Counts over some samples; tallies of disjoint slices add up to the whole run's."""
    equal: int = 0
    entries: int = 0
    agree: int = 0
    right_ref: int = 0
    right_dep: int = 0
    worst: float = 0.0
    elapsed: float = 0.0
    # "stage/tensor" -> [equal entries, entries, spikes in both, spikes in either (counted twice)]
    per_output: dict = field(default_factory=dict)
    nir: dict = field(default_factory=dict)  # per NIR module: runtime.nir_reference.counts, added up

    def __add__(self, other):
        outputs = {k: list(v) for k, v in self.per_output.items()}
        for key, counts in other.per_output.items():
            outputs[key] = [a + b for a, b in zip(outputs.get(key, [0] * len(counts)), counts)]
        return _Tally(self.equal + other.equal, self.entries + other.entries, self.agree + other.agree,
                      self.right_ref + other.right_ref, self.right_dep + other.right_dep,
                      max(self.worst, other.worst), self.elapsed + other.elapsed, outputs,
                      nir_reference.add(self.nir, other.nir))


def verify_dataset(build_dir, data=None, samples: int = 8, backend: str = "lava",
                   batch_size: int = 16, progress=None, seed: int = 0, reference=None,
                   workers: Optional[int] = None, address: Optional[str] = None,
                   files: Optional[ReferenceFiles] = None) -> Report:
    """build_dir: a build directory or a CompiledModel. data: a --data spec
    (hybridc.data.sources), a Python sequence of (x, label), or None for the default;
    reference: (traced model, partitions) when the build cannot be rebuilt from its source;
    files: which model file to import to rebuild it (none unless named or trusted).
    workers/address: split the samples across Ray tasks (see runtime/distributed.py); the
    report is the serial run's, sample for sample, plus the number of workers."""
    from .distributed import wants_ray
    from .stages import check_backend

    check_backend(backend)
    if samples < 1 or batch_size < 1:
        raise InputError(f"--samples and --batch-size must be at least 1 (got {samples} and {batch_size}).")
    distributed = wants_ray(workers, address)
    if distributed and reference is not None:
        raise InputError("Verifying on Ray rebuilds the reference model from the build's source file on "
                         "each worker; call verify_dataset without `reference` (or without workers).")
    compiled = build_dir if isinstance(build_dir, CompiledModel) else load(build_dir)
    manifest = compiled.manifest
    # first: a changed source file is the likelier mistake than the data
    gm, partitions = reference if reference is not None else rebuild_reference(manifest, files)
    dataset = _open(manifest, data, samples, seed)
    count = min(samples, len(dataset))
    if count == 0:
        raise InputError(f"The data ({dataset.description}) has no samples to verify.")
    used = 1
    if distributed:
        from .distributed import cluster_cpus, connect, run_tasks

        used = min(count, workers or cluster_cpus(connect(workers, address)))
        size = min(batch_size, -(-count // used))  # small tasks: an even spread and a live progress bar
        files = _absolute(files or ReferenceFiles())  # workers may start elsewhere
        jobs = [(str(compiled.directory.resolve()), data, samples, seed, start, min(start + size, count), backend,
                 batch_size, files) for start in range(0, count, size)]
        parts = run_tasks(_verify_slice, jobs, workers, address,
                          done=(lambda part: progress(part[1])) if progress else None)
        tally = sum((part[0] for part in parts), _Tally())
    else:
        tally = _verify_range(compiled, gm, partitions, dataset, 0, count, backend, batch_size, progress)
    quantized = any(stage.quantization for stage in manifest.stages)
    spike_match = tally.equal / tally.entries if tally.entries else None
    if not dataset.labelled:
        accuracy = (None, None, None)
    else:
        accuracy = (tally.right_ref / count, tally.right_dep / count, (tally.right_dep - tally.right_ref) / count)
    matches = {k: counts[0] / counts[1] for k, counts in tally.per_output.items()}
    dices = {k: dice(*counts[2:]) for k, counts in tally.per_output.items()}
    approximate = tolerance(manifest)
    # int8 stages and float-simulated spikes may legitimately move an argmax; exact builds may not
    passed = spikes_pass(manifest, matches, dices) and (tally.agree == count or quantized or approximate is not None)
    return Report(backend, count, spike_match, tally.agree / count, tally.worst, accuracy[0], accuracy[1],
                  tally.elapsed / count, accuracy[2], quantized, used, dataset.description,
                  None if spike_match is None else matches, None if spike_match is None else dices, approximate,
                  passed, nir_reference.figures(tally.nir))


def _open(manifest, data, samples, seed):
    from ..data.sources import open_samples

    return open_samples(data, input_shape(manifest), train=False, samples=samples, seed=seed)


def _absolute(files: ReferenceFiles) -> ReferenceFiles:
    return ReferenceFiles(*(Path(p).resolve() if p is not None else None for p in (files.model, files.weights)),
                          files.trust_source)


def _verify_slice(build_dir, data, samples, seed, start, stop, backend, batch_size, files):
    """One Ray task: samples start..stop of the same dataset the serial run reads.
    Returns (tally, number of samples)."""
    compiled = load(build_dir)
    recipe = json.dumps(asdict(compiled.manifest.source), sort_keys=True)  # file, entry, args, weights
    gm, partitions = _cached_reference(str(build_dir), recipe, files)
    dataset = _open(compiled.manifest, data, samples, seed)
    return _verify_range(compiled, gm, partitions, dataset, start, stop, backend, batch_size, None), stop - start


@lru_cache(maxsize=4)
def _cached_reference(build_dir, recipe, files):
    """A worker process runs many slices of one build: rebuild its reference once."""
    return rebuild_reference(load(build_dir).manifest, files)


def _verify_range(compiled, gm, partitions, dataset, start, stop, backend, batch_size, progress) -> _Tally:
    import torch

    manifest = compiled.manifest
    stages = manifest.stages
    tally = _Tally()
    for first in range(start, stop, batch_size):
        x, labels = dataset.batch(first, min(first + batch_size, stop))
        values = model_input_values(manifest, x)  # {(None, input name): tensor}
        expected, reference = reference_tensors(gm, manifest, x)
        source = getattr(gm, "meta", {}).get("model")  # the user's module, where lower() put it
        if source is not None:
            tally.nir = nir_reference.add(tally.nir, nir_reference.counts(source, x))
        began = time.perf_counter()
        for stage in stages:  # the stage graph in its topological order
            spiking = domain_of(stage.target) == "spiking"
            result = run_stage(stage, compiled.directory, stage_feeds(manifest, stage, values), backend=backend)
            outputs = result if isinstance(result, tuple) else (result,)
            for spec, value in zip(stage.outputs, outputs):
                values[(stage.name, spec.name)] = value
                if spiking:
                    cut = reference[(stage.name, spec.name)]
                    same = int((value == cut).sum())
                    tally.equal += same
                    tally.entries += cut.numel()
                    key = f"{stage.name}/{spec.name}"
                    tally.per_output[key] = [a + b for a, b in zip(tally.per_output.get(key, [0, 0, 0, 0]),
                                                                   (same, cut.numel(), *dice_counts(value, cut)))]
        tally.elapsed += time.perf_counter() - began
        finals = [values[(e.producer["stage"], e.producer["tensor"])] for e in output_edges(manifest)]
        expected = output_list(expected)
        count = len(labels) if labels is not None else finals[0].shape[0]
        agree = torch.ones(count, dtype=torch.bool)
        for tensor, wanted in zip(finals, expected):  # every output; a sample agrees when all of them do
            tally.worst = max(tally.worst, float((tensor - wanted).abs().max()))
            # one argmax per sample for logits, one per pixel for a map
            agree &= (tensor.argmax(-1) == wanted.argmax(-1)).reshape(count, -1).all(1)
        tally.agree += int(agree.sum())
        if labels is not None and expected[0].dim() == 2:  # class logits (the first output): accuracy
            tally.right_ref += int((expected[0].argmax(-1) == labels).sum())
            tally.right_dep += int((finals[0].argmax(-1) == labels).sum())
        if progress:
            progress(count)
    return tally
