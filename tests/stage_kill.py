"""Kill one stage process of a running `hybridc pipeline` once some outputs are journalled:
the mid-stream failure the deploy tests check is reported by name and resumed."""

import os
import signal
import subprocess
import time
from pathlib import Path


def stage_pids(process, names) -> dict:
    """The pid of every stage the pipeline's log names as listening."""
    pids = {}
    deadline = time.monotonic() + 600
    while len(pids) < len(names) and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        for name in names:
            if f"stage `{name}` (pid" in line:
                pids[name] = int(line.split("(pid ")[1].split(")")[0])
    return pids


def journalled(journal: Path) -> int:
    """Whole output records in a pipeline journal (see hybridc.deploy.journal)."""
    from hybridc.deploy.journal import RECORD

    data = journal.read_bytes() if journal.exists() else b""
    at, count = data.find(b"\n", data.find(b"\n") + 1) + 1, 0  # past the magic and identity lines
    while at and at + RECORD.size <= len(data):
        _, length, _ = RECORD.unpack_from(data, at)
        if at + RECORD.size + length > len(data):
            break
        at, count = at + RECORD.size + length, count + 1
    return count


def kill_mid_stream(command, names, victim, journal: Path, after: int = 1):
    """Run `command` (a `hybridc pipeline` CLI call), SIGKILL stage `victim` once `after`
    outputs are journalled; returns (exit code, stderr, outputs journalled at the kill)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "COLUMNS": "200"})
    pids = stage_pids(process, names)
    assert set(pids) == set(names), process.communicate(timeout=60)
    deadline = time.monotonic() + 600
    while journalled(journal) < after and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    kept = journalled(journal)
    os.kill(pids[victim], signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr, kept
