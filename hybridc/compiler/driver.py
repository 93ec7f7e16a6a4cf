"""The compile driver: trace, run the passes, hand each partition to its target.

Passes only tag and partition; this is the one place that cuts the graph and
calls each backend's `preprocess` (ExecuTorch's partitioner/backend split).
"""

import tempfile
import warnings
from pathlib import Path

import torch

from ..build_dir.atomic import atomic_directory
from ..build_dir.compiled import CompiledModel, PartitionSummary
from ..errors import TimestepError, reporting
from ..frontend.graph import to_networkx
from ..frontend.tracer import as_inputs, check_inputs, record_shapes, trace
from ..manifest import Manifest, Source
from ..mapping.fit import map_stages
from ..mapping.systems import resolve as resolve_system
from ..passes import (
    check_numerics,
    insert_cut_accumulators,
    partition,
    recognise_accumulators,
    tag_targets,
)
from ..targets.registry import parse_target_string
from ..version import __version__
from .stage_graph import stage_edges
from .timings import Timings


def lower(model: torch.nn.Module, example_input: torch.Tensor, target: str = "loihi+jetson",
          on_overflow: str = "error", target_options: dict = None, timings: Timings = None):
    """Trace and partition without writing artifacts: (GraphModule, partitions, targets)."""
    timings = timings or Timings()
    targets = parse_target_string(target, target_options)
    check_inputs(model, example_input)  # before anything touches them
    example_input = as_inputs(example_input)
    for x in example_input:
        if x.dim() < 2:
            raise TimestepError(
                f"example_input has shape {tuple(x.shape)}; hybridc expects spikes with a "
                "batch axis first and time last: (N, C, H, W, T) or (N, F, T)."
            )
    with timings.phase("trace (torch.fx)"):  # trace() puts the model in eval mode
        gm = trace(model)
    gm.meta["model"] = model  # the user's module: its hybridc.nn.NIR modules keep their float graphs
    gm.meta["example_input"] = example_input  # the only data a model of several inputs gives int8 calibration
    with timings.phase("shapes (one forward)"):
        record_shapes(gm, example_input)
    with timings.phase("passes"):
        recognise_accumulators(gm)  # keeps the shapes recorded on the graph
        tag_targets(gm, targets)
    with timings.phase("numeric checks"):
        notes = check_numerics(gm, targets, on_overflow, example_input)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    with timings.phase("passes"):
        insert_cut_accumulators(gm)
        partitions = partition(gm)
    return gm, partitions, targets


def compile(model: torch.nn.Module, example_input: torch.Tensor, target: str = "loihi+jetson",
            output_dir=None, *, force: bool = False, on_overflow: str = "error", source_path=None,
            source_sha256=None, recipe=None, target_options: dict = None, system=None) -> CompiledModel:
    """Compile a hybrid model for `target` ("loihi+jetson"); save to output_dir if given.
    target_options: per-target settings, e.g. {"calibration": "synthetic", "calibration_samples": 32}.
    system: where the loihi stages must fit (a shipped name such as "loihi2", the default, or a
    system file); a build that does not fit is refused (MappingError) and nothing is written."""
    timings = Timings()
    system = resolve_system(system)  # a bad name or file fails before the model is traced
    gm, partitions, targets = lower(model, example_input, target, on_overflow, target_options, timings)
    if output_dir is None:
        workdir = tempfile.TemporaryDirectory(prefix="hybridc-build-")
        compiled = _build(gm, partitions, targets, Path(workdir.name), target, example_input,
                          source_path, source_sha256, recipe, timings, system, keepalive=workdir)
    else:
        # Build straight into the staging directory that becomes output_dir: no copies.
        with atomic_directory(output_dir, force) as staging:
            compiled = _build(gm, partitions, targets, staging, target, example_input, source_path, source_sha256,
                              recipe, timings, system)
            with timings.phase("write manifest.json, graph.json"):
                compiled.write_metadata(staging)
        compiled.directory = Path(output_dir).resolve()
    compiled.timings = timings
    compiled.model = model
    return compiled


def _build(gm, partitions, targets, directory: Path, target, example_input, source_path, source_sha256,
           recipe, timings: Timings, system, keepalive=None) -> CompiledModel:
    """Hand each partition to its target's preprocess; map the loihi stages onto `system`
    (refused inside the staging directory, which then vanishes); collect the stages, the edges
    between them and the mapping into a manifest."""
    stages = []
    with torch.no_grad():
        for p in partitions:
            with reporting(f"lowering partition `{p.name}` for {p.target}"), timings.phase(f"lower to {p.target}"):
                stages.append(targets[p.domain].preprocess(p, gm, directory))
            stages[-1].nir_nodes = nir_nodes(gm, p) or None
    with reporting(f"mapping onto {system.name}"), timings.phase("map onto cores and chips"):
        mapping = map_stages(stages, directory, system)
    with timings.phase("manifest"):
        manifest = Manifest(
            target=target, timesteps=timesteps(gm, example_input),
            source=Source(str(source_path) if source_path else None, source_sha256, **(recipe or {})),
            stages=stages, hybridc_version=__version__, edges=stage_edges(gm, partitions, stages),
            mapping=mapping,
        )
        graph = to_networkx(gm)
    return CompiledModel(
        manifest, directory, graph,
        [PartitionSummary(p.name, p.target, [n.name for n in p.nodes]) for p in partitions],
        keepalive=keepalive, module=gm, fx_partitions=partitions,
    )


def timesteps(gm, example_input) -> int:
    """The time steps of the model: the last axis of the first input a spiking node reads
    (a frame beside the events has no time axis), else of the first input."""
    inputs = as_inputs(example_input)
    for node, x in zip([n for n in gm.graph.nodes if n.op == "placeholder"], inputs):
        if any(user.meta.get("hybridc_domain") == "spiking" for user in node.users):
            return int(x.shape[-1])
    return int(inputs[0].shape[-1])


def nir_nodes(gm, partition) -> dict:
    """fx node -> the NIR nodes its block came from, for the partition's calls of blocks of
    hybridc.nn.NIR modules: recorded in the manifest so that inspecting a build names them
    (a build directory holds no model to ask)."""
    from ..nn import NIR

    model = gm.meta.get("model")
    found = {}
    for node in partition.nodes:
        if node.op != "call_module" or model is None:
            continue
        owner, blocks, key = f".{node.target}".rpartition(".blocks.")
        try:
            module = model.get_submodule(owner[1:]) if blocks else None
        except AttributeError:  # a path the traced module has and the user's does not
            continue
        # a Flatten block is no netx layer (netx flattens on the connection): only layers are named
        if isinstance(module, NIR) and key in module.sources and type(module.blocks[key]).__name__ != "Flatten":
            found[node.name] = list(module.sources[key])
    return found
