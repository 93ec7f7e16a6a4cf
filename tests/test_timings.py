"""`hybridc compile --timings`: the phases cover the compile, and the CLI prints them."""

import time

from helpers import SMALL_MODEL_FILE, small_model

import hybridc


def test_phases_cover_the_compile(tmp_path):
    model, x = small_model()
    hybridc.compile(model, x)  # imports and first-call caches out of the way
    wall = time.perf_counter()
    compiled = hybridc.compile(model, x, output_dir=tmp_path / "build")
    wall = (time.perf_counter() - wall) * 1e3
    rows = {name: (w, cpu) for name, w, cpu in compiled.timings.rows()}
    assert {"trace (torch.fx)", "shapes (one forward)", "passes", "lower to loihi", "lower to jetson",
            "write manifest.json, graph.json"} <= set(rows)
    total = rows.pop("total")
    assert abs(total[0] - sum(w for w, _ in rows.values())) < 1e-6
    assert all(w >= 0 and cpu >= 0 for w, cpu in rows.values())
    assert 0.5 * wall <= total[0] <= wall  # the phases are the compile, not a part of it
    assert hybridc.load(tmp_path / "build").timings is None  # a loaded build has no compile to report


def test_cli_prints_the_phase_table(tmp_path, cli):
    (tmp_path / "model.py").write_text(SMALL_MODEL_FILE)
    done = cli("compile", "model.py", "-o", "out", "--timings", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "compile time by phase" in done.stdout and "lower to loihi" in done.stdout
    total = next(line for line in done.stdout.splitlines() if "total" in line)
    assert float(total.split("│")[2]) > 0
