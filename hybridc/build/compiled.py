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
        (directory / GRAPH).write_text(json.dumps(to_json_data(self.graph)))
        (directory / MANIFEST).write_text(self.manifest.to_json())  # last: marks the build complete

    def save(self, path, force: bool = False) -> Path:
        """Write the build to `path` atomically. An existing directory is replaced only with
        force=True, and only if it is empty or a previous hybridc build."""
        with atomic_directory(path, force) as staging:
            for stage in self.manifest.stages:
                shutil.copy2(self.directory / stage.artifact, staging / stage.artifact)
            self.write_metadata(staging)
        return Path(path).resolve()


def load(path) -> CompiledModel:
    """Open a build directory, checking the manifest format and every artifact's sha256."""
    from ..digest import sha256

    directory = Path(path)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise ArtifactError(f"{directory} is not a hybridc build: {MANIFEST} is missing. "
                            "Compile first with `hybridc compile MODEL.py -o DIR`.")
    try:
        data = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{manifest_path} is not valid JSON ({exc}); recompile the model.") from None
    manifest = Manifest.from_dict(data)
    for stage in manifest.stages:
        artifact = directory / stage.artifact
        if not artifact.is_file():
            raise ArtifactError(f"Stage `{stage.name}`: artifact {artifact} is missing; recompile.")
        digest = sha256(artifact)
        if digest != stage.sha256:
            raise ArtifactError(
                f"Stage `{stage.name}`: {artifact} was modified after compiling (sha256 {digest[:12]}... "
                f"but the manifest records {stage.sha256[:12]}...). Recompile, or restore the file."
            )
    graph = None
    partitions = []
    if (directory / GRAPH).is_file():
        try:
            graph = from_json_data(json.loads((directory / GRAPH).read_text()))
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{directory / GRAPH} is corrupt ({exc}); recompile the model.") from None
        for stage in manifest.stages:
            nodes = [n for n, d in graph.nodes(data=True) if d.get("partition") == stage.name]
            partitions.append(PartitionSummary(stage.name, stage.target, nodes))
    return CompiledModel(manifest, directory, graph, partitions)
