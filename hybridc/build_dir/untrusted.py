"""A build directory is untrusted input: builds are copied between machines and sent by
colleagues, so everything in one is data to check, never code to run.

`inside` confines a file the manifest names to the build directory (after following
symlinks); `parsing` turns a parser's failure on a damaged artifact into an ArtifactError
naming the file, instead of an internal error. docs/manifest.md states the trust model.
"""

from contextlib import contextmanager
from pathlib import Path

from ..errors import ArtifactError, HybridcError

MAX_MANIFEST_BYTES = 4 << 20  # a real manifest is a few KB
MAX_GRAPH_BYTES = 64 << 20


def inside(root: Path, name: str, field: str) -> Path:
    """The regular file `name` in the build directory `root`, resolved; ArtifactError naming
    `field` when it is missing, not a regular file, or resolves outside `root`."""
    root = Path(root).resolve()
    path = root / name
    try:
        resolved = path.resolve(strict=True)
    except FileNotFoundError:
        raise ArtifactError(f"`{field}`: {path} is missing; recompile, or copy the whole build directory."
                            ) from None
    except (OSError, RuntimeError) as exc:  # a symlink loop: RuntimeError in Python 3.10
        raise ArtifactError(f"`{field}`: {path} cannot be resolved ({exc}); the build is damaged.") from None
    if resolved == root or not resolved.is_relative_to(root):
        raise ArtifactError(
            f"`{field}`: {name} resolves to {resolved}, outside the build directory {root}. hybridc reads only "
            "files inside a build, so a build cannot make it read other files on this machine; replace the "
            "symlink by the file itself, or recompile.")
    if not resolved.is_file():
        raise ArtifactError(f"`{field}`: {path} is not a regular file; the build is damaged, recompile.")
    return resolved


def read_bounded(path: Path, limit: int, field: str) -> bytes:
    """A small metadata file's bytes, refusing one larger than `limit` before reading it."""
    size = path.stat().st_size
    if size > limit:
        raise ArtifactError(f"`{field}`: {path} is {size:,} bytes, more than the {limit:,} a hybridc build "
                            "writes; the build is damaged or not from hybridc.")
    return path.read_bytes()


@contextmanager
def parsing(path, what: str, stage: str = None):
    """Run a parser on an artifact; any failure of it becomes an ArtifactError naming the file.
    Its sha256 matched the manifest, so either the build was tampered with, manifest included,
    or the writer had a bug: both are reported as a damaged artifact, with the parser's words."""
    try:
        yield
    except HybridcError:
        raise
    except Exception as exc:  # noqa: BLE001 - parsers of damaged files raise anything
        detail = (str(exc).strip().splitlines() or [""])[0][:300]
        where = f"Stage `{stage}`: " if stage else ""
        raise ArtifactError(
            f"{where}{path} could not be read as {what} ({type(exc).__name__}: {detail}). The file is damaged "
            "or not the one hybridc wrote (its sha256 matches the manifest, so the manifest was rewritten "
            "too): recompile, or get the build again from its source.") from None
