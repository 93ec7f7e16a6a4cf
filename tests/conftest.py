import importlib.util
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
warnings.filterwarnings("ignore", module="lava")


def load_example():
    spec = importlib.util.spec_from_file_location("dvs_gesture_model", ROOT / "examples/dvs_gesture/model.py")
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
    """The three parity checks every compiled model must pass, against real Lava and onnxruntime."""
    import hybridc
    from hybridc.errors import ArtifactError
    from hybridc.runtime.emulator import run_stage as emulate_stage
    from hybridc.runtime.stages import run_stage
    from hybridc.runtime.verify import reference_stages

    model.eval()
    compiled = hybridc.compile(model, x, target=target, output_dir=tmp_path / "build")
    loaded = hybridc.load(tmp_path / "build")
    reference = reference_stages(compiled.module, compiled.fx_partitions, x)
    snn, ann = loaded.manifest.stages
    # 1. Lava fixed-point spikes at the cut equal PyTorch's, every entry and timestep.
    cut = reference[snn.name]
    assert cut.mean() >= min_cut_rate, "test model too quiet to prove anything"
    lava = run_stage(snn, loaded.directory, x)
    assert lava.shape == cut.shape
    assert torch.equal(lava, cut), f"{(lava != cut).sum()} of {cut.numel()} spikes differ"
    # 1b. The batched emulator, reading only the artifact, equals Lava entry for entry
    #     (it runs CUBA layers; other neuron models must be refused, with the reason).
    try:
        emulated = emulate_stage(snn, loaded.directory, x)
    except ArtifactError as exc:
        assert "the emulator runs CUBA (LIF) layers only" in str(exc)
    else:
        assert torch.equal(emulated, lava), f"emulator: {(emulated != lava).sum()} of {lava.numel()} spikes differ"
    # 2. The ONNX stage fed PyTorch's cut tensor equals the PyTorch dense half.
    onnx_out = run_stage(ann, loaded.directory, cut)
    with torch.no_grad():
        expected = model(x)
    assert torch.allclose(onnx_out, expected, atol=1e-5, rtol=0), (onnx_out - expected).abs().max()
    # 3. The deployment run end to end matches model(x).
    deployed = hybridc.run(loaded, x)
    assert (deployed - expected).abs().max() < 1e-4
    assert torch.equal(deployed.argmax(-1), expected.argmax(-1))
    return compiled, loaded
