"""explore fails up front when nothing can be built, and shows no differences finer than
its estimates."""

import pytest
from helpers import ROOT, model_header

from hybridc.profiling.explore import (
    Candidate,
    axis_span,
    explore,
    pareto_front,
    round_estimate,
)

TWINS = model_header(threshold=0.5) + """
def candidates():
    for name, classes in (("three", 3), ("four", 4)):  # 16 more MACs: a 1e-7 difference in latency
        torch.manual_seed(0)
        model = torch.nn.Sequential(slayer.block.cuba.Dense(N, 12, 16, weight_scale=4), Accumulator(4),
                                    torch.nn.Flatten(), torch.nn.Linear(32, classes))
        yield name, model, torch.zeros(1, 12, 8)
"""


def test_explore_without_candidates_fails_up_front(tmp_path, cli):
    (tmp_path / "single.py").write_text("import torch\nmodel = torch.nn.Linear(2, 2)\nexample_input = torch.zeros(1, 2)\n")
    result = cli("explore", "single.py", "-o", "ex", cwd=tmp_path, timeout=600)
    message = " ".join(result.stderr.split())
    assert result.returncode == 2 and "neither `candidates()` nor `build(split=..., interval=...)`" in message
    assert "--entry" not in message and "Traceback" not in result.stderr and not (tmp_path / "ex").exists()
    assert result.stdout.count("\n") <= 1  # no table of refusals


def test_explore_where_every_candidate_is_refused_is_an_error(tmp_path, cli):
    result = cli("explore", ROOT / "examples/dvs_gesture/model.py", "--splits", "S2A4", "--intervals", "5,6",
                 "--set", "size=32", "-o", "ex", cwd=tmp_path, timeout=600)
    message = " ".join(result.stderr.split())
    assert result.returncode == 2, result.stderr  # build() refuses: T=16 is no multiple of 5 or 6
    assert "None of the 2 candidates" in message and "S2A4-I5" in message and "not a multiple" in message
    assert not (tmp_path / "ex").exists()


def test_estimates_are_rounded_before_ranking_and_marking():
    assert round_estimate(0.4244097) == round_estimate(0.4244416) == 0.424
    assert round_estimate(1361.9) == 1360.0 and round_estimate(None) is None
    rows = [Candidate("a", round_estimate(0.4244097), 10.0), Candidate("b", round_estimate(0.4244416), 10.0),
            Candidate("c", 0.5, 12.0)]
    pareto_front(rows)
    assert [r.pareto for r in rows] == [True, True, False]  # a 0.03 us gap marks nobody
    low, high = axis_span([0.4244097, 0.4244416])
    assert high - low >= 0.1 * 0.4244 and low < 0.4244097 and high > 0.4244416
    low, high = axis_span([2.2, 2.4])  # a real spread is shown whole, with a margin
    assert low < 2.2 and high > 2.4 and high - low < 0.5


def test_explore_ranks_candidates_a_hair_apart_as_equal(tmp_path):
    (tmp_path / "twins.py").write_text(TWINS)
    rows = explore(tmp_path / "twins.py", [], [], tmp_path / "ex", samples=2)
    assert [r.name for r in rows] == ["four", "three"]  # equal estimates: by name
    assert rows[0].latency_ms == rows[1].latency_ms and rows[0].energy_uj == rows[1].energy_uj
    assert all(r.pareto for r in rows) and rows[0].parameters != rows[1].parameters
    for r in rows:
        assert r.latency_ms == pytest.approx(round_estimate(r.latency_ms), rel=0)
    assert (tmp_path / "ex" / "explore.png").stat().st_size > 10_000
