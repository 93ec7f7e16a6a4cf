"""Every slayer block lava-dl has, against docs/targets.md's table, and each block kind
netx has no layer for refused with its reason (the block named, what to do instead)."""

import inspect
import re

import pytest
import torch
from helpers import ROOT, neuron
from lava.lib.dl import slayer

import hybridc
from hybridc.errors import UnsupportedLayerError
from hybridc.nn import Accumulator

FAMILIES = ("cuba", "sigma_delta", "rf", "rf_iz", "alif", "adrf", "adrf_iz")


def block_kinds() -> set:
    """The block classes of every family, by name (the families' abstract bases left out)."""
    kinds = set()
    for family in FAMILIES:
        module = getattr(slayer.block, family)
        kinds |= {name for name, cls in inspect.getmembers(module, inspect.isclass)
                  if issubclass(cls, torch.nn.Module) and cls.__module__ == module.__name__
                  and not name.startswith("Abstract")}
    return kinds


def test_the_docs_table_lists_every_block_lava_dl_has():
    text = (ROOT / "docs/targets.md").read_text()
    table = text[text.index("### slayer blocks on Loihi"):text.index("### Learned axonal delays")]
    rows = {name for line in table.splitlines() if line.startswith("| ") and not line.startswith("| block")
            for name in re.split(r",\s*", line.split("|")[1].strip())}
    assert block_kinds() <= rows, block_kinds() - rows
    header = next(line for line in table.splitlines() if line.startswith("| block"))
    assert set(FAMILIES) == {f for f in re.findall(r"\w+", header) if f in FAMILIES}


N = neuron()
SPATIAL = (torch.rand(1, 2, 8, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.3).float()
FLAT = (torch.rand(1, 10, 8, generator=torch.Generator().manual_seed(0)) < 0.3).float()


@pytest.mark.parametrize("make, x, words", [
    (lambda: slayer.block.cuba.Affine(N, 10, 6), FLAT, r"Affine block is a non-spiking readout.*Accumulator"),
    (lambda: slayer.block.cuba.KWTA(N, 10, 6, 2), FLAT, r"KWTA keeps the k strongest.*Recurrent"),
    (lambda: slayer.block.cuba.TimeDecimation(2), FLAT, r"TimeDecimation merges.*interval = factor"),
    (lambda: slayer.block.cuba.Average(2), FLAT, r"Average block averages.*dense part"),
    (lambda: slayer.block.cuba.ConvT(N, 2, 2, 2, stride=2), SPATIAL,
     r"no transposed-convolution or unpool layer.*2x8x8 -> 2x16x16, would hold 65,536 weights"),
    (lambda: slayer.block.cuba.Unpool(N, 2), SPATIAL, r"no transposed-convolution or unpool layer.*Upsample"),
    (lambda: slayer.block.sigma_delta.ConvT({"threshold": 0.1, "activation": torch.relu}, 2, 2, 2, stride=2),
     SPATIAL, r"no transposed-convolution"),
], ids=["Affine", "KWTA", "TimeDecimation", "Average", "ConvT", "Unpool", "sigma_delta.ConvT"])
def test_block_kinds_netx_has_no_layer_for_are_refused(make, x, words):
    torch.manual_seed(0)
    block = make()
    model = torch.nn.Sequential(block, Accumulator(4), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    with torch.no_grad():  # slayer's TimeDecimation cannot run with autograd recording
        model(x)
    with pytest.raises(UnsupportedLayerError, match=rf"`0` \(module `0`: {type(block).__name__}\).*{words}"):
        hybridc.compile(model.eval(), x, target="loihi+jetson")
