"""Refusals through the real CLI: non-zero exit, the offending module named, no
traceback, and no output directory left behind."""

import textwrap

import pytest
from helpers import model_header

HEADER = model_header()

MODELS = {
    "unsupported_block": ("""
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = slayer.block.cuba.Conv(N, 2, 4, 3, padding=1)
        self.upsample = slayer.block.cuba.ConvT(N, 4, 4, 2, stride=2)
        self.acc = Accumulator(4)
        self.head = torch.nn.Linear(4 * 16 * 16 * 2, 3)
    def forward(self, x):
        return self.head(self.acc(self.upsample(self.conv(x))).flatten(1))
model = M()
example_input = torch.zeros(1, 2, 8, 8, 8)
""", ["upsample", "ConvT", "netx", "slayer.block.cuba.Conv"], 4),
    "ann_to_snn": ("""
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.pre = torch.nn.Linear(8, 8)
        self.snn = slayer.block.cuba.Dense(N, 10, 6)
        self.acc = Accumulator(4)
    def forward(self, x):
        return self.acc(self.snn(self.pre(x)))
model = M()
example_input = torch.zeros(1, 10, 8)
""", ["feeds spiking node `snn`", "dense to spiking"], 5),
    "t_not_multiple_of_i": ("""
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.snn = slayer.block.cuba.Dense(N, 10, 6)
        self.acc = Accumulator(4)
    def forward(self, x):
        return self.acc(self.snn(x))
model = M()
example_input = torch.zeros(1, 10, 10)
""", ["acc", "T=10", "not a multiple of 4"], 6),
    "no_model": ("""
example_input = torch.zeros(1, 10, 10)
""", ["no `model`", "--entry"], 2),
}


@pytest.mark.parametrize("case", sorted(MODELS))
def test_refusal(case, tmp_path, cli):
    source, expected, code = MODELS[case]
    (tmp_path / "model.py").write_text(HEADER + textwrap.dedent(source))
    result = cli("compile", "model.py", "-o", "out", cwd=tmp_path)
    message = " ".join(result.stderr.split())
    assert result.returncode == code, result.stderr
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in: {message}"
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model.py"]  # no temporary leftovers


def test_unknown_target_lists_known_ones(tmp_path, cli):
    (tmp_path / "model.py").write_text("raise SystemExit('must not be imported')\n")
    result = cli("compile", "model.py", "--target", "loihi+tpu9000", "-o", "out", cwd=tmp_path)
    message = " ".join(result.stderr.split())
    assert result.returncode == 7
    assert "Unknown target `tpu9000`" in message and "loihi (spiking)" in message and "jetson (dense)" in message
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_existing_output_is_kept_without_force(tmp_path, cli):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    model_file = tmp_path / "model.py"
    model_file.write_text(HEADER + textwrap.dedent("""
    model = torch.nn.Sequential(slayer.block.cuba.Dense(N, 10, 6), Accumulator(2), torch.nn.Linear(12, 2))
    example_input = torch.zeros(1, 10, 4)
    """))
    result = cli("compile", "model.py", "-o", "out", cwd=tmp_path)
    message = " ".join(result.stderr.split())
    # the first message offers only advice that works: --force would be refused here too
    assert result.returncode == 8 and "not a hybridc build" in message and "Pass --force" not in message
    result = cli("compile", "model.py", "-o", "out", "--force", cwd=tmp_path)
    assert result.returncode == 8 and "not a hybridc build" in " ".join(result.stderr.split())
    assert (out / "notes.txt").read_text() == "mine"
    # over a previous hybridc build the message offers --force, and --force then works
    assert cli("compile", "model.py", "-o", "built", cwd=tmp_path).returncode == 0
    result = cli("compile", "model.py", "-o", "built", cwd=tmp_path)
    assert result.returncode == 8 and "Pass --force" in " ".join(result.stderr.split())
    assert cli("compile", "model.py", "-o", "built", "--force", cwd=tmp_path).returncode == 0
