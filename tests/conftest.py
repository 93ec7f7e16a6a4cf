import importlib.util
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
warnings.filterwarnings("ignore", module="lava")


def load_example(name="dvs_gesture"):
    spec = importlib.util.spec_from_file_location(f"{name}_model", ROOT / f"examples/{name}/model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def example():
    return load_example()


def spikes(*shape, density=0.25, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < density).float()


def assert_deploys_exactly(model, x, tmp_path, target="loihi+jetson", min_cut_rate=0.01):
    """The parity checks every compiled model must pass, on every stage of its stage graph,
    against real Lava and onnxruntime."""
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
