"""CompiledModel: a manifest plus its artifacts, in memory or in a build directory.

Saving is atomic: the build is written to a hidden temporary directory beside the
destination and renamed into place, so a failed or killed compile leaves either
the previous build or nothing, never a half-written directory.
"""

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ArtifactError, OutputError
from .graph import from_json_data, to_json_data
from .manifest import Manifest

MANIFEST = "manifest.json"
GRAPH = "graph.json"


@dataclass
class PartitionSummary:
    name: str
    target: str
    nodes: list  # fx node names


class CompiledModel:
    def __init__(self, manifest: Manifest, directory: Path, graph, partitions, keepalive=None):
        self.manifest = manifest
        self.directory = Path(directory)
        self.graph = graph  # networkx DiGraph of fx nodes
        self.partitions = partitions
        self._keepalive = keepalive  # TemporaryDirectory holding unsaved artifacts

    def __repr__(self) -> str:
        stages = " -> ".join(f"{s.name}@{s.target}" for s in self.manifest.stages)
        return f"CompiledModel({stages}, T={self.manifest.timesteps}, dir={self.directory})"

    def artifact(self, stage_name: str) -> Path:
        return self.directory / self.manifest.stage(stage_name).artifact

    def save(self, path, force: bool = False) -> Path:
        """Write the build to `path` atomically. An existing directory is replaced only with
        force=True, and only if it is empty or a previous hybridc build."""
        dest = Path(path).resolve()
        if dest.exists():
            if not dest.is_dir():
                raise OutputError(f"Output path {dest} exists and is not a directory; choose another -o.")
            if any(dest.iterdir()):
                if not force:
                    raise OutputError(
                        f"Output directory {dest} already exists and is not empty. Pass --force "
                        "(force=True) to replace a previous hybridc build, or choose another -o."
                    )
                if not (dest / MANIFEST).exists():
                    raise OutputError(
                        f"Output directory {dest} is not a hybridc build (no {MANIFEST}); hybridc "
                        "will not delete files it did not write. Choose another -o."
                    )
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.hybridc-", dir=dest.parent))
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private; a build is not
        except OSError as exc:
            raise OutputError(f"Cannot create the output directory {dest}: {exc.strerror}.") from None
        try:
            for stage in self.manifest.stages:
                shutil.copy2(self.directory / stage.artifact, staging / stage.artifact)
            (staging / GRAPH).write_text(json.dumps(to_json_data(self.graph)))
            (staging / MANIFEST).write_text(self.manifest.to_json())  # last: marks the build complete
            if dest.exists():
                old = dest.with_name(f".{dest.name}.hybridc-old-{os.getpid()}")
                os.rename(dest, old)
                os.rename(staging, dest)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(staging, dest)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise OutputError(f"Writing the build to {dest} failed: {exc.strerror or exc}. "
                              "Nothing was changed there.") from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return dest


def load(path) -> CompiledModel:
    """Open a build directory, checking the manifest format and every artifact's sha256."""
    from ..targets.loihi import sha256

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
        graph = from_json_data(json.loads((directory / GRAPH).read_text()))
        for stage in manifest.stages:
            nodes = [n for n, d in graph.nodes(data=True) if d.get("partition") == stage.name]
            partitions.append(PartitionSummary(stage.name, stage.target, nodes))
    return CompiledModel(manifest, directory, graph, partitions)
