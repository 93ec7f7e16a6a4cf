"""hybridc.build_dir.atomic: a build directory is written beside its destination and renamed into
place, so a write that fails (or a compile that was killed) leaves the previous build or
nothing, and no staging directory behind; only hybridc builds are ever replaced."""

import os
import subprocess

import pytest

from hybridc.build_dir.atomic import atomic_directory, check_destination
from hybridc.errors import OutputError


def write_build(directory, text):
    """A minimal hybridc build: its marker file and one artifact."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifest.json").write_text(text)
    (directory / "snn.net").write_text(text * 2)


def contents(directory) -> dict:
    return {p.name: p.read_text() for p in sorted(directory.iterdir())}


def leftovers(dest) -> list:
    """Staging or set-aside directories of `dest` still beside it."""
    return sorted(p.name for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}.hybridc-"))


def dead_pid() -> int:
    """The pid of a process that has exited (a compile that was killed)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_new_build_appears_whole_at_the_end(tmp_path):
    dest = tmp_path / "out"
    with atomic_directory(dest) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(f".out.hybridc-{os.getpid()}-")
        assert staging.is_dir() and list(staging.iterdir()) == []
        umask = os.umask(0)
        os.umask(umask)
        assert staging.stat().st_mode & 0o777 == 0o777 & ~umask  # a plain mkdir's permissions
        write_build(staging, "new")
        assert not dest.exists()  # nothing at the destination until the write is complete
    assert contents(dest) == {"manifest.json": "new", "snn.net": "newnew"}
    assert leftovers(dest) == []


def test_a_failed_write_leaves_nothing_and_no_staging(tmp_path):
    dest = tmp_path / "sub" / "out"
    with pytest.raises(RuntimeError, match="a target failed"), atomic_directory(dest) as staging:
        write_build(staging, "half")
        raise RuntimeError("a target failed")
    assert not dest.exists() and leftovers(dest) == []


def test_a_failed_rebuild_keeps_the_previous_build(tmp_path):
    dest = tmp_path / "out"
    write_build(dest, "old")
    with pytest.raises(KeyboardInterrupt), atomic_directory(dest, force=True) as staging:
        write_build(staging, "new")
        raise KeyboardInterrupt  # interrupted: not an Exception, still cleaned up
    assert contents(dest) == {"manifest.json": "old", "snn.net": "oldold"}
    assert leftovers(dest) == []


def test_a_forced_rebuild_replaces_the_previous_build_whole(tmp_path):
    dest = tmp_path / "out"
    write_build(dest, "old")
    (dest / "ann.onnx").write_text("only in the old build")
    with atomic_directory(dest, force=True) as staging:
        write_build(staging, "new")
    assert contents(dest) == {"manifest.json": "new", "snn.net": "newnew"}  # no file of the old one left
    assert leftovers(dest) == []


def test_an_os_error_while_writing_is_an_output_error_that_changed_nothing(tmp_path):
    dest = tmp_path / "out"
    write_build(dest, "old")
    with pytest.raises(OutputError, match=r"Writing the build to .*/out failed: No space left on device\. "
                                          r"Nothing was changed there\."):
        with atomic_directory(dest, force=True):
            raise OSError(28, "No space left on device")
    assert contents(dest)["manifest.json"] == "old" and leftovers(dest) == []


def test_a_failed_final_rename_puts_the_previous_build_back(tmp_path, monkeypatch):
    dest = tmp_path / "out"
    write_build(dest, "old")
    rename = os.rename

    def refuse_the_staging(source, target):
        if ".hybridc-" in str(source) and not str(source).endswith("-old"):
            raise OSError(5, "Input/output error")
        rename(source, target)

    monkeypatch.setattr(os, "rename", refuse_the_staging)  # the os.rename atomic.py calls
    with pytest.raises(OutputError, match="Input/output error"), atomic_directory(dest, force=True) as staging:
        write_build(staging, "new")
    assert contents(dest)["manifest.json"] == "old" and leftovers(dest) == []


@pytest.mark.parametrize("force", [False, True])
def test_a_directory_that_is_not_a_build_is_never_replaced(tmp_path, force):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"is not a hybridc build \(no manifest\.json\).*even with --force"):
        with atomic_directory(dest, force=force):
            pytest.fail("the block must not run")
    assert contents(dest) == {"notes.txt": "mine"} and leftovers(dest) == []


def test_a_previous_build_is_replaced_only_with_force(tmp_path):
    dest = tmp_path / "out"
    write_build(dest, "old")
    with pytest.raises(OutputError, match=r"holds a previous hybridc build\. Pass --force"):
        check_destination(dest, force=False)
    check_destination(dest, force=True)
    check_destination(tmp_path / "missing", force=False)
    (tmp_path / "empty").mkdir()
    check_destination(tmp_path / "empty", force=False)  # an empty directory is free to use
    (tmp_path / "afile").write_text("")
    with pytest.raises(OutputError, match="exists and is not a directory"):
        check_destination(tmp_path / "afile", force=True)


def test_a_destination_that_appears_during_the_write_is_not_overwritten(tmp_path):
    dest = tmp_path / "out"
    with pytest.raises(OutputError, match="is not a hybridc build"), atomic_directory(dest) as staging:
        write_build(staging, "new")
        dest.mkdir()  # someone else's files, written meanwhile
        (dest / "theirs.txt").write_text("theirs")
    assert contents(dest) == {"theirs.txt": "theirs"} and leftovers(dest) == []


def test_an_unwritable_place_is_an_output_error(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(OutputError, match=r"Cannot create the output directory .*afile/out"):
        with atomic_directory(tmp_path / "afile" / "out"):
            pytest.fail("the block must not run")


def test_a_killed_compiles_staging_is_removed_and_a_live_ones_kept(tmp_path):
    dest = tmp_path / "out"
    killed = tmp_path / f".out.hybridc-{dead_pid()}-0a1b2c3d"
    write_build(killed, "half")
    running = tmp_path / f".out.hybridc-{os.getpid()}-live"  # a compile still running (here: this process)
    running.mkdir()
    with atomic_directory(dest) as staging:
        write_build(staging, "new")
    assert contents(dest)["manifest.json"] == "new"
    assert leftovers(dest) == [running.name]


def test_a_killed_compiles_set_aside_build_is_put_back(tmp_path):
    """Killed between setting the previous build aside and renaming the new one in: the next
    write finds the destination missing and the previous build beside it, and restores it."""
    dest = tmp_path / "out"
    write_build(tmp_path / f".out.hybridc-{dead_pid()}-old", "old")
    with pytest.raises(RuntimeError), atomic_directory(dest, force=True):
        assert contents(dest)["manifest.json"] == "old"  # back before this write began
        raise RuntimeError("this write fails too")
    assert contents(dest)["manifest.json"] == "old" and leftovers(dest) == []
