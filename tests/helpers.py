"""What the tests share: the neuron parameters, spike inputs, the example models, the one
way to run the command line, and the parity checks every compiled model must pass.

Test modules import from here (or take the fixtures in conftest.py that hand these out);
no test module imports another test module.
"""

import importlib.util
import subprocess
import sys
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

# The CUBA LIF neuron of every test model (slayer.block.cuba), unless a test varies it with
# `neuron(...)`. Shared by every module: never change it in place.
NEURON = {"threshold": 1.0, "current_decay": 0.3, "voltage_decay": 0.25, "tau_grad": 0.01, "scale_grad": 1.0}
# The sigma-delta (graded spikes, ReLU) and resonate-and-fire neurons of the neuron-family tests.
SIGMA_DELTA = {"threshold": 0.125, "activation": torch.nn.functional.relu}
RESONATOR = {"threshold": 0.5, "period": 8, "decay": 0.1}


def neuron(**changes) -> dict:
    """A new dict of NEURON's parameters with `changes`: neuron(threshold=0.5)."""
    return {**NEURON, **changes}


def model_header(**changes) -> str:
    """The first lines of the model files the CLI tests write: the imports and `N`, the
    neuron parameters (NEURON with `changes`). Five lines: error messages name the lines after."""
    return ("\nimport torch\nfrom lava.lib.dl import slayer\nfrom hybridc.nn import Accumulator\n"
            f"N = {neuron(**changes)!r}\n")


# A model file the CLI tests compile: a spiking Dense layer, its counts over windows of 2 steps
# and a Linear head (the same model small_model() builds in the test's process).
SMALL_MODEL_FILE = model_header() + """
torch.manual_seed(0)
model = torch.nn.Sequential(slayer.block.cuba.Dense(N, 10, 6, weight_scale=3), Accumulator(2), torch.nn.Linear(12, 2))
example_input = (torch.rand(1, 10, 4) < 0.5).float()
"""


def small_model():
    """SMALL_MODEL_FILE's model (in eval mode) and example input, built in this process."""
    from lava.lib.dl import slayer

    from hybridc.nn import Accumulator

    torch.manual_seed(0)
    model = torch.nn.Sequential(slayer.block.cuba.Dense(NEURON, 10, 6, weight_scale=3), Accumulator(2),
                                torch.nn.Linear(12, 2))
    return model.eval(), (torch.rand(1, 10, 4) < 0.5).float()


def spikes(*shape, density=0.25, seed=0) -> torch.Tensor:
    """Unary spikes of `shape`, each entry 1 with probability `density`, from their own generator."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < density).float()


def load_example(name="dvs_gesture"):
    """examples/<name>/model.py as a module."""
    spec = importlib.util.spec_from_file_location(f"{name}_model", ROOT / f"examples/{name}/model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Cli:
    """The hybridc command line as a user runs it: `cli("compile", "model.py", "-o", "out",
    cwd=tmp_path)` runs `python -m hybridc.cli compile model.py -o out` there and returns the
    subprocess.CompletedProcess (returncode, stdout and stderr as text). Arguments may be paths."""

    def __call__(self, *args, cwd=None, timeout=300, in_process=False, **kwargs) -> subprocess.CompletedProcess:
        """in_process=True: through typer's test runner in this process, without paying the
        torch and Lava imports of a new process per call; the result has the same fields."""
        if in_process:
            if kwargs:
                raise TypeError(f"the in-process CLI takes no {sorted(kwargs)}")
            return self._in_process([str(a) for a in args], cwd)
        return subprocess.run(self.command(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              **kwargs)

    @staticmethod
    def command(*args) -> list:
        """The argument list that runs `hybridc ARGS` (for subprocess.Popen)."""
        return [sys.executable, "-m", "hybridc.cli", *map(str, args)]

    @staticmethod
    def _in_process(args, cwd) -> subprocess.CompletedProcess:
        import os

        from typer.testing import CliRunner

        from hybridc.cli import app

        before = os.getcwd()
        if cwd is not None:
            os.chdir(cwd)
        try:
            result = CliRunner().invoke(app, args)
        finally:
            os.chdir(before)
        stderr = result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            # what a process would print for an exception the CLI let through
            stderr += "".join(traceback.format_exception(*result.exc_info))
        return subprocess.CompletedProcess(["hybridc", *args], result.exit_code, result.stdout, stderr)


cli = Cli()


def assert_deploys_exactly(model, x, tmp_path, target="loihi+jetson", min_cut_rate=0.01):
    """The parity checks every compiled model must pass, on every stage of its stage graph,
    against real Lava and onnxruntime (a test calling it is marked `lava`)."""
    import hybridc
    from hybridc.runtime.emulator import run_stage as emulate_stage
    from hybridc.runtime.run import stage_feeds
    from hybridc.runtime.stages import run_stage
    from hybridc.runtime.verify import reference_tensors
    from hybridc.targets.registry import domain_of

    model.eval()
    compiled = hybridc.compile(model, x, target=target, output_dir=tmp_path / "build")
    loaded = hybridc.load(tmp_path / "build")
    manifest = loaded.manifest
    _, reference = reference_tensors(compiled.module, manifest, x)
    deployed_values = hybridc.run(loaded, x, return_stages="values")
    with torch.no_grad():
        expected = model(x)
    for stage in manifest.stages:
        outputs = [(spec, reference[(stage.name, spec.name)]) for spec in stage.outputs]
        if domain_of(stage.target) == "spiking":
            # 1. Lava fixed-point spikes at every spiking output equal PyTorch's, every entry and step.
            for spec, ref in outputs:
                lava = deployed_values[(stage.name, spec.name)]
                assert ref.mean() >= min_cut_rate, f"{stage.name}/{spec.name}: test model too quiet to prove anything"
                assert lava.shape == ref.shape
                assert torch.equal(lava, ref), f"{stage.name}/{spec.name}: {(lava != ref).sum()} of {ref.numel()} differ"
            # 1b. The batched emulator, reading only the artifact, equals Lava entry for entry at every
            #     output of the stage (taps, graded input, every neuron family netx runs).
            if stage.target == "loihi":
                emulated = emulate_stage(stage, loaded.directory, stage_feeds(manifest, stage, deployed_values))
                emulated = emulated if isinstance(emulated, tuple) else (emulated,)
                for spec, got in zip(stage.outputs, emulated):
                    lava = deployed_values[(stage.name, spec.name)]
                    assert torch.equal(got, lava), f"emulator at {spec.name}: {(got != lava).sum()} of {lava.numel()} differ"
        else:
            # 2. Each ONNX stage fed PyTorch's tensors equals the PyTorch dense subgraph.
            fed = stage_feeds(manifest, stage, {**reference, (None, "input"): x})
            result = run_stage(stage, loaded.directory, fed)
            for (spec, ref), got in zip(outputs, result if isinstance(result, tuple) else (result,)):
                assert torch.allclose(got, ref, atol=1e-5, rtol=0), (stage.name, spec.name, (got - ref).abs().max())
    # 3. The deployment run end to end matches model(x).
    deployed = hybridc.run(loaded, x)
    assert (deployed - expected).abs().max() < 1e-4
    assert torch.equal(deployed.argmax(-1), expected.argmax(-1))
    return compiled, loaded
