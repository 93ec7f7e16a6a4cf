"""The README's commands, run as a new user runs them: every `sh` and `python` block in
order, in a fresh clone of this repository, so the README cannot drift from the code.

The clone reuses this test's virtual environment as its `.venv` (a symlink), so
`make demo` does not reinstall (`make -o .venv/.installed`), and `make test` lines are
left out (CI runs the suite itself). Everything else runs as written. Slow (minutes:
it trains a model); `.ci/run` runs it through `make test-readme`.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT

BLOCK = re.compile(r"^```(sh|python)\n(.*?)^```", re.S | re.M)


def readme_blocks(text: str) -> list:
    """(language, code) of each runnable block, in order; `text` blocks are synopses."""
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(text)]


def as_run(language: str, code: str) -> str:
    if language == "python":
        return code
    lines = []
    for line in code.splitlines():
        if re.match(r"\s*make test\b", line):
            continue
        lines.append(re.sub(r"^(\s*)make demo\b", r"\1make -o .venv/.installed demo", line))
    return "\n".join(lines) + "\n"


def test_readme_blocks_are_found():
    blocks = readme_blocks((ROOT / "README.md").read_text())
    assert [lang for lang, _ in blocks].count("python") == 1 and len(blocks) >= 4
    assert "make demo" in blocks[0][1] and "source .venv/bin/activate" in blocks[1][1]


@pytest.mark.slow
@pytest.mark.lava  # `hybridc verify` in Lava
def test_every_readme_block_runs_in_order_on_a_fresh_clone(tmp_path):
    clone = tmp_path / "hybridc"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=300)
    (clone / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(clone), "PATH": f"{Path(sys.prefix) / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    timings = []
    for i, (language, code) in enumerate(readme_blocks((clone / "README.md").read_text())):
        script = clone / f".readme_block_{i}.{'py' if language == 'python' else 'sh'}"
        script.write_text(as_run(language, code))
        command = [sys.executable, str(script)] if language == "python" else ["bash", "-euo", "pipefail", str(script)]
        began = time.perf_counter()
        result = subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True, timeout=1800)
        timings.append(f"block {i} ({language}): {time.perf_counter() - began:.0f} s")
        assert result.returncode == 0, f"README block {i} failed:\n{code}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        assert "Traceback" not in result.stderr and "Prophesee" not in result.stdout + result.stderr
    print("\n".join(timings))
    # what the blocks promise to leave behind, each at its own path
    for path in ("build/demo/manifest.json", "build/tour/manifest.json", "build/tour.html", "build/tour-profile.png",
                 "runs/s2a4/model.pt", "build/s2a4/manifest.json", "build/python/manifest.json", "build/python.html"):
        assert (clone / path).exists(), path
