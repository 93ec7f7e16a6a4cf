"""NIR builds are simulated, not only written: the graph in the build directory is read
back by a NIR consumer (Norse's from_nir, hybridc's `nir` runner) and its spikes are
compared with PyTorch's. NIR is float and Loihi fixed point, so they agree closely but
not exactly; the figures asserted here fall when a weight or a neuron parameter in the
file is wrong (each corruption below is written into a copy of the file and run)."""

import numpy as np
import pytest
import torch
from helpers import NEURON, model_header
from lava.lib.dl import slayer

import hybridc
from hybridc.nn import Accumulator
from hybridc.runtime.nir_stage import run_stage
from hybridc.runtime.verify import reference_stages, spike_agreement


def conv_pool_conv(side=26, timesteps=12, seed=0):
    """Spiking Conv -> Pool -> Conv (a 26x26 input: not a power of two), then a dense head."""
    torch.manual_seed(seed)
    pooled = side // 2
    out = (pooled + 2 - 3) // 2 + 1
    model = torch.nn.Sequential(
        slayer.block.cuba.Conv(NEURON, 2, 6, 3, stride=1, padding=1, weight_scale=2.0),
        slayer.block.cuba.Pool(NEURON, 2, weight_scale=2.0),
        slayer.block.cuba.Conv(NEURON, 6, 8, 3, stride=2, padding=1, weight_scale=2.0),
        Accumulator(4), torch.nn.Flatten(), torch.nn.Linear(8 * out * out * (timesteps // 4), 5),
    ).eval()
    x = (torch.rand(2, 2, side, side, timesteps, generator=torch.Generator().manual_seed(seed + 1)) < 0.3).float()
    return model, x


@pytest.fixture(scope="module")
def nir_build(tmp_path_factory):
    model, x = conv_pool_conv()
    out = tmp_path_factory.mktemp("nir") / "build"
    compiled = hybridc.compile(model, x, target="nir+jetson", output_dir=out)
    reference = reference_stages(compiled.module, compiled.fx_partitions, x)
    return model, x, compiled, reference


def test_conv_pool_conv_compiles_for_nir_and_reads_back(nir_build):
    import nir

    _, _, compiled, _ = nir_build
    graph = nir.read(compiled.directory / "snn.nir")  # nir's own type check passes
    kinds = [type(graph.nodes[name]).__name__ for name in graph.nodes if name not in ("input", "output")]
    assert sorted(kinds) == sorted(["Conv2d", "CubaLIF", "SumPool2d", "CubaLIF", "Conv2d", "CubaLIF"])
    assert tuple(graph.nodes["input"].input_type["input"]) == (2, 26, 26)
    pool_neuron = next(n for name, n in graph.nodes.items() if isinstance(n, nir.CubaLIF)
                       and any(isinstance(graph.nodes[a], nir.SumPool2d) for a, b in graph.edges if b == name))
    assert pool_neuron.input_type["input"].tolist() == [6, 13, 13]
    assert int(graph.metadata["lead_steps"]) == 3  # three delay_shift layers NIR cannot express


def test_nir_spikes_agree_with_pytorch_and_a_corrupted_file_does_not(nir_build, tmp_path):
    import nir

    model, x, compiled, reference = nir_build
    cut = reference["snn"]
    assert cut.mean() > 0.05, "test model too quiet to prove anything"
    # hybridc.run on the nir build: Norse for the NIR graph, onnxruntime for the dense half
    y, stages = hybridc.run(hybridc.load(compiled.directory), x, return_stages=True)
    assert y.shape == model(x).shape
    good = spike_agreement(stages["snn"], cut)
    # measured 0.9946 / 0.9984 (docs/targets.md); float NIR vs fixed point, so not 1
    assert good["dice"] >= 0.98 and good["equal"] >= 0.99, good

    stage = compiled.manifest.stages[0]
    path = compiled.directory / stage.artifact

    def corrupted(change):
        graph = nir.read(path)
        change(graph)
        directory = tmp_path / f"c{len(list(tmp_path.iterdir()))}"
        directory.mkdir()
        nir.write(directory / stage.artifact, graph)
        return spike_agreement(run_stage(stage, directory, x), cut)["dice"]

    def transpose(graph):  # the second conv's kernel written HW instead of WH
        node = graph.nodes["_2.synapse"]
        node.weight = np.ascontiguousarray(node.weight.swapaxes(2, 3))

    def threshold(graph):
        node = graph.nodes["_0.neuron"]
        node.v_threshold = node.v_threshold * 1.1

    def pool_weight(graph):
        node = graph.nodes["_1.neuron"]
        node.w_in = node.tau_syn.copy()  # the pool's weight left out

    assert corrupted(transpose) < 0.8
    assert corrupted(threshold) < 0.95
    assert corrupted(pool_weight) < 0.5


def test_grouped_conv_and_dense_simulate_from_nir(tmp_path):
    """A grouped conv (written ungrouped: nir infers input channels from the weight) and a
    Flatten -> Dense tail read back and simulate."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        slayer.block.cuba.Conv(NEURON, 2, 6, 3, stride=2, padding=1, weight_scale=2.0),
        slayer.block.cuba.Conv(NEURON, 6, 6, 3, stride=1, padding=1, groups=3, weight_scale=2.0),
        slayer.block.cuba.Flatten(), slayer.block.cuba.Dense(NEURON, 6 * 10 * 10, 20, weight_scale=2.0),
        Accumulator(4), torch.nn.Flatten(), torch.nn.Linear(60, 5)).eval()
    x = (torch.rand(2, 2, 20, 20, 12, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    compiled = hybridc.compile(model, x, target="nir+cpu", output_dir=tmp_path / "b")
    cut = reference_stages(compiled.module, compiled.fx_partitions, x)["snn"]
    _, stages = hybridc.run(compiled.directory, x, return_stages=True)
    agreement = spike_agreement(stages["snn"], cut)
    assert cut.sum() > 50 and agreement["dice"] >= 0.95, agreement


NIR_MODEL = model_header() + """torch.manual_seed(0)
model = torch.nn.Sequential(
    slayer.block.cuba.Conv(N, 2, 6, 3, stride=1, padding=1, weight_scale=2.0),
    slayer.block.cuba.Pool(N, 2, weight_scale=2.0),
    slayer.block.cuba.Conv(N, 6, 8, 3, stride=2, padding=1, weight_scale=2.0),
    Accumulator(4), torch.nn.Flatten(), torch.nn.Linear(8 * 7 * 7 * 3, 5)).eval()
example_input = (torch.rand(1, 2, 26, 26, 12) < 0.3).float()
"""


def test_verify_holds_nir_to_its_measured_tolerance_and_a_wrong_weight_fails(tmp_path, cli):
    """`hybridc verify` on a nir+jetson build: float NIR cannot equal fixed point entry for
    entry, so the spikes must overlap PyTorch's by the nir target's measured Dice (0.95,
    docs/targets.md); the same build with the second conv's kernel transposed (sha256
    rewritten to match) exits 12."""
    import json

    import nir

    from hybridc.digest import sha256

    (tmp_path / "model.py").write_text(NIR_MODEL)
    result = cli("compile", "model.py", "--target", "nir+jetson", "-o", "build", cwd=tmp_path, in_process=True)
    assert result.returncode == 0, result.stdout + result.stderr
    verify = ("verify", "build", "--model", "model.py", "--data", "random:0.3", "--samples", "4")
    result = cli(*verify, "--json", "good.json", cwd=tmp_path, in_process=True)
    good = json.loads((tmp_path / "good.json").read_text())
    assert result.returncode == 0 and good["passed"], result.stdout + result.stderr
    assert good["spike_dice_min"] == 0.95 and good["spike_dice"]["snn/_2"] >= 0.95, good
    assert "Dice >= 0.95" in result.stdout + result.stderr

    artifact = tmp_path / "build" / "snn.nir"
    graph = nir.read(artifact)
    node = graph.nodes["_2.synapse"]
    node.weight = np.ascontiguousarray(node.weight.swapaxes(2, 3))
    nir.write(artifact, graph)
    manifest = json.loads((tmp_path / "build/manifest.json").read_text())
    manifest["stages"][0]["sha256"] = sha256(artifact)
    (tmp_path / "build/manifest.json").write_text(json.dumps(manifest))
    result = cli(*verify, "--json", "bad.json", cwd=tmp_path, in_process=True)
    bad = json.loads((tmp_path / "bad.json").read_text())
    assert result.returncode == 12 and not bad["passed"] and bad["spike_dice"]["snn/_2"] < 0.8, bad
