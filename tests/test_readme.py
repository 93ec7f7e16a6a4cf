"""The README's commands, run as a new user runs them: every `sh` and `python` block in
order, in a fresh clone of this repository, so the README cannot drift from the code.

The clone reuses this test's virtual environment as its `.venv` (a symlink), so
`make demo` does not reinstall (`make -o .venv/.installed`), and `make test` lines are
left out (CI runs the suite itself). Everything else runs as written. Slow (minutes:
it trains a model); `.ci/run` runs it through `make test-readme`.

The fast tests keep the README a front door and the docs free of a lab notebook: at most
150 lines, a layout block naming only what is in the tree, no dates, "today", load averages
or issue numbers in README.md and docs/*.md, and docs/measurements.md's sections each with a
command that can run.
"""

import os
import re
import shutil
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


# --- the README as a front door -------------------------------------------------------------

README_MAX_LINES = 150
LAYOUT_BLOCK = re.compile(r"^## Layout\n.*?^```text\n(.*?)^```", re.S | re.M)
LAYOUT_NAME = re.compile(r"^[\w.-]+(/|\.[a-z]+)$")  # a folder (`name/`) or a file (`name.ext`)


def layout_paths(block: str) -> list:
    """Every path the README's layout block names, relative to the repository's root.

    The block is a tree indented by two spaces a level: a line's first name is an entry of
    the folder above it; the names after a folder are files or folders inside it, the names
    after a file its siblings; a line indented deeper than a child of the entry above
    continues that entry's list. `#` starts a description, which is not checked."""
    paths, folders, last = [], [], None  # folders: (indent, path) of the enclosing folders
    for line in block.splitlines():
        names = line.split("#", 1)[0].split()
        if not names:
            continue
        bad = [name for name in names if not LAYOUT_NAME.match(name)]
        assert not bad, f"layout line {line!r}: {bad} are not file or folder names (describe after `#`)"
        indent = len(line) - len(line.lstrip())
        if last is not None and indent > last[0] + 2:  # a continuation of the entry above
            paths += [last[1] + name for name in names]
            continue
        while folders and folders[-1][0] >= indent:
            folders.pop()
        parent = folders[-1][1] if folders else ""
        entry = parent + names[0]
        paths.append(entry)
        inside = entry if entry.endswith("/") else parent
        if entry.endswith("/"):
            folders.append((indent, entry))
        paths += [inside + name for name in names[1:]]
        last = (indent, inside)
    return paths


def test_layout_parser_reads_the_tree():
    block = "a/\n  b.py c/   # words, e.g. x.py\n  d/ e.py\n       f.py\ng/ h.py\n"
    assert layout_paths(block) == ["a/", "a/b.py", "a/c/", "a/d/", "a/d/e.py", "a/d/f.py", "g/", "g/h.py"]


def test_readme_is_a_front_door_at_most_150_lines():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines; keep it at most {README_MAX_LINES} (details go to docs/)")


def test_readme_layout_names_only_what_exists():
    match = LAYOUT_BLOCK.search((ROOT / "README.md").read_text())
    assert match, "README.md needs a `## Layout` section with a ```text block"
    paths = layout_paths(match.group(1))
    assert "hybridc/" in paths and len(paths) > 40
    missing = [path for path in paths if not (ROOT / path).exists()
               or path.endswith("/") != (ROOT / path).is_dir()]
    assert not missing, f"README.md's layout names what is not in the tree: {missing}"
    tracked = subprocess.run(["git", "ls-files", "hybridc"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    folders = {str(Path(name).parent) + "/" for name in tracked}
    unnamed = sorted(name for name in set(tracked) | folders if not name.endswith(("__init__.py", "__main__.py"))
                     and name not in paths)
    assert not unnamed, f"README.md's layout leaves out what the package has: {unnamed}"


# --- no lab notebook in the docs --------------------------------------------------------------

UPSTREAM = {"lava", "lava-dl", "lava-nc", "nir", "norse", "onnx", "onnxruntime", "pytorch", "torch", "ray",
            "slayer", "typer", "h5py"}
NOTEBOOK = [
    (re.compile(r"\b20\d\d-\d\d-\d\d\b"), "a date"),
    (re.compile(r"\b\d{1,2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]* 20\d\d\b"), "a date"),
    (re.compile(r"\btoday\b", re.I), "'today'"),
    (re.compile(r"\bload average|\b(at )?load (about |near |of |at )?\d", re.I), "a load average"),
    (re.compile(r"\bissues? #?\d+", re.I), "an issue number"),
]


def notebook_entries(text: str) -> list:
    """Dates, 'today', load averages and hybridc's own issue numbers in `text`; an upstream
    project's issue (`lava-dl #217`) is a citation and passes."""
    found = [(label, m.group(0)) for pattern, label in NOTEBOOK for m in pattern.finditer(text)]
    for m in re.finditer(r"(\S*)\s*#\d+\b", text):
        if m.group(1).strip("([").lower() not in UPSTREAM:
            found.append(("an issue number", m.group(0)))
    return found


def test_notebook_finder_tells_citations_from_notes():
    assert notebook_entries("fixed upstream (lava-dl #217), on 28 Nov 2026") == [("a date", "28 Nov 2026")]
    assert [label for label, _ in notebook_entries("see #24; issue 11; load average 3; today's")] == [
        "'today'", "a load average", "an issue number", "an issue number"]
    assert [label for label, _ in notebook_entries("7.6 s at load 3, 61 s at load 5-6")] == ["a load average"] * 2


def test_readme_and_docs_carry_no_dates_today_load_or_issue_numbers():
    found = {path.relative_to(ROOT).as_posix(): notebook_entries(path.read_text())
             for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]}
    assert not {path: hits for path, hits in found.items() if hits}, found


def python_prose(path: Path) -> str:
    """The docstrings and comments of a Python file: where a lab notebook creeps into code."""
    import ast
    import io
    import tokenize

    source = path.read_text()
    parts = [ast.get_docstring(node, clean=False) or "" for node in ast.walk(ast.parse(source))
             if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    parts += [tok.string for tok in tokenize.generate_tokens(io.StringIO(source).readline)
              if tok.type == tokenize.COMMENT]
    return "\n".join(parts)


def test_docstrings_and_comments_carry_no_dates_today_load_or_issue_numbers():
    files = [path for folder in ("hybridc", "benchmarks", "tests", "examples", "docs")
             for path in sorted((ROOT / folder).rglob("*.py")) if path.name != "test_readme.py"]
    found = {path.relative_to(ROOT).as_posix(): notebook_entries(python_prose(path)) for path in files}
    assert len(files) > 100
    assert not {path: hits for path, hits in found.items() if hits}, found


def test_measurements_sections_each_have_a_command_that_can_run():
    """docs/measurements.md: every section a command block and an output block, and every
    script or example its commands name exists (the check `make measurements` relies on)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_measurements", ROOT / "docs" / "make_measurements.py")
    make_measurements = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_measurements)
    text = (ROOT / "docs" / "measurements.md").read_text()
    assert len(make_measurements.sections(text)) >= 10
    assert make_measurements.problems(text) == []


@pytest.mark.slow
@pytest.mark.lava  # `hybridc verify` in Lava
def test_every_readme_block_runs_in_order_on_a_fresh_clone(tmp_path):
    clone = tmp_path / "hybridc"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=300)
    (clone / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    for built in (ROOT / "hybridc/runtime").glob("kernels.*.so"):  # the install's compiled loops, as the venv is
        shutil.copy2(built, clone / "hybridc/runtime" / built.name)
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
