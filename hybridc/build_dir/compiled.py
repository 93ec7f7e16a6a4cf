"""CompiledModel: a manifest plus its artifacts, in memory or in a build directory.

Saving is atomic (see atomic.py): a failed or killed compile leaves either the
previous build or nothing, never a half-written directory.
"""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import ArtifactError
from ..frontend.graph import from_json_data, to_json_data
from ..manifest import Manifest
from .atomic import atomic_directory
from .untrusted import (
    MAX_GRAPH_BYTES,
    MAX_MANIFEST_BYTES,
    inside,
    parsing,
    read_bounded,
)

MANIFEST = "manifest.json"
GRAPH = "graph.json"


@dataclass
class PartitionSummary:
    name: str
    target: str
    nodes: list  # fx node names


class CompiledModel:
    def __init__(self, manifest: Manifest, directory: Path, graph, partitions, keepalive=None,
                 module=None, fx_partitions=None):
        self.manifest = manifest
        self.directory = Path(directory)
        self.graph = graph  # networkx DiGraph of fx nodes
        self.partitions = partitions
        self._keepalive = keepalive  # TemporaryDirectory holding unsaved artifacts
        # Only after hybridc.compile, not hybridc.load: the traced, partitioned model and its
        # fx partitions, the reference every parity check compares against.
        self.module = module
        self.fx_partitions = fx_partitions
        self.model = None  # the user's nn.Module (after hybridc.compile): its NIR modules keep their graphs
        self.timings = None  # compiler.timings.Timings of the compile that made it (None after load)

    def __repr__(self) -> str:
        stages = " -> ".join(f"{s.name}@{s.target}" for s in self.manifest.stages)
        return f"CompiledModel({stages}, T={self.manifest.timesteps}, dir={self.directory})"

    @property
    def partition_graph(self):
        """networkx DiGraph of stages, with the cut tensors (shape, interval, bytes) on its edges."""
        from ..inspection import partition_graph

        return partition_graph(self)

    def artifact(self, stage_name: str) -> Path:
        return self.directory / self.manifest.stage(stage_name).artifact

    def write_metadata(self, directory: Path) -> None:
        (directory / GRAPH).write_text(json.dumps(to_json_data(self.graph)), encoding="utf-8")
        # last: marks the build complete. UTF-8 whatever the locale (orjson does not escape non-ASCII)
        (directory / MANIFEST).write_text(self.manifest.to_json(), encoding="utf-8")

    def save(self, path, force: bool = False) -> Path:
        """Write the build to `path` atomically. An existing directory is replaced only with
        force=True, and only if it is empty or a previous hybridc build."""
        with atomic_directory(path, force) as staging:
            for stage in self.manifest.stages:
                for name, _ in stage.files():
                    shutil.copy2(self.directory / name, staging / name)
            self.write_metadata(staging)
        return Path(path).resolve()


def _not_json(constant: str):
    """NaN and Infinity are Python's extensions to JSON, not JSON: a build never holds them."""
    raise ValueError(f"`{constant}` is not a JSON number")


def load(path) -> CompiledModel:
    """Open a build directory, which may come from anyone: the manifest is read (bounded) and
    validated against its schema before any artifact is touched, every file it names must lie
    inside the directory, and every artifact's sha256 must match before anything parses it."""
    from ..digest import sha256

    directory = Path(path)
    if not (directory / MANIFEST).exists() and not (directory / MANIFEST).is_symlink():
        raise ArtifactError(f"{directory} is not a hybridc build: {MANIFEST} is missing. "
                            "Compile first with `hybridc compile MODEL.py -o DIR`.")
    manifest_path = inside(directory, MANIFEST, MANIFEST)
    with parsing(manifest_path, "JSON"):
        data = json.loads(read_bounded(manifest_path, MAX_MANIFEST_BYTES, MANIFEST), parse_constant=_not_json)
    manifest = Manifest.from_dict(data)
    artifacts = [(stage, inside(directory, name, f"stages/{i}/artifact"), name, recorded)
                 for i, stage in enumerate(manifest.stages)
                 for name, recorded in stage.files()]  # all confined before any is read
    for stage, artifact, name, recorded in artifacts:
        digest = sha256(artifact)
        if digest != recorded:
            raise ArtifactError(
                f"Stage `{stage.name}`: {directory / name} was modified after compiling (sha256 "
                f"{digest[:12]}... but the manifest records {recorded[:12]}...). Recompile, or restore the file."
            )
    graph = None
    partitions = []
    if (directory / GRAPH).exists() or (directory / GRAPH).is_symlink():
        graph_path = inside(directory, GRAPH, GRAPH)
        with parsing(graph_path, "JSON"):
            graph = from_json_data(json.loads(read_bounded(graph_path, MAX_GRAPH_BYTES, GRAPH), parse_constant=_not_json))
        for stage in manifest.stages:
            nodes = [n for n, d in graph.nodes(data=True) if d.get("partition") == stage.name]
            partitions.append(PartitionSummary(stage.name, stage.target, nodes))
    return CompiledModel(manifest, directory, graph, partitions)
