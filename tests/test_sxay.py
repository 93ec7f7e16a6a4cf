"""The paper's SxAy family compiles, and every artifact computes what PyTorch computes."""

import pytest
from helpers import assert_deploys_exactly


@pytest.mark.parametrize("split", ["S1A5", "S2A4", "S3A3", "S4A2"])
@pytest.mark.lava
def test_sxay_32x32_deploys_exactly(example, split, tmp_path):
    model, x = example.build(split, interval=4, size=32, timesteps=16, batch=2, seed=3)
    _, loaded = assert_deploys_exactly(model, x, tmp_path)
    snn, ann = loaded.manifest.stages
    spiking = int(split[1])
    assert (snn.target, ann.target) == ("loihi", "jetson")
    assert snn.layers == spiking and snn.delay == 0
    assert ann.accumulator.interval == 4 and ann.accumulator.windows == 4 and ann.accumulator.fold
    channels = example.CHANNELS[spiking]
    side = 32 >> spiking
    # I=4: 3-bit counts are smaller than 1-bit spikes, so the ONNX input is the 4 window counts
    assert ann.inputs[0].shape == [channels, side, side, 4] and ann.inputs[0].layout == "CHWK"
    assert ann.wire["counts"].spikes_shape == [channels, side, side, 16]
    assert snn.outputs[0].shape == [side, side, channels, 16] and snn.outputs[0].layout == "WHCT"


@pytest.mark.lava
def test_s2a4_128x128_paper_shape(example, tmp_path):
    model, x = example.build("S2A4", interval=4, size=128, timesteps=16, batch=1)
    _, loaded = assert_deploys_exactly(model, x, tmp_path)
    snn, ann = loaded.manifest.stages
    assert snn.inputs[0].shape == [128, 128, 2, 16]
    # 2->4 channels at 64x64 plus 4->8 at 32x32
    assert snn.neurons == 4 * 64 * 64 + 8 * 32 * 32
    assert ann.wire["counts"].spikes_shape == [8, 32, 32, 16] and ann.inputs[0].shape == [8, 32, 32, 4]


@pytest.mark.parametrize("baseline,stages", [("ANN", ["jetson"]),  # all dense: no Lava
                                             pytest.param("SNN", ["loihi", "jetson"], marks=pytest.mark.lava)])
def test_paper_baselines_compile_and_deploy_exactly(example, baseline, stages):
    import torch

    import hybridc

    model, x = example.build(baseline, interval=4, size=32, timesteps=16, batch=2)
    compiled = hybridc.compile(model, x)
    assert [s.target for s in compiled.manifest.stages] == stages
    parity = hybridc.verify(compiled, x)
    assert parity.spike_match in (None, 1.0) and parity.argmax_agreement == 1.0
    with torch.no_grad():
        assert (hybridc.run(compiled, x) - model(x)).abs().max() < 1e-4
