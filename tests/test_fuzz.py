"""Differential fuzzing: every random hybrid model (one cut, or a stage graph with taps,
an ANN front end, or SNN -> ANN -> SNN -> ANN) either compiles and then matches PyTorch
exactly (Lava spikes 100% at every spiking output, deployed output within 1e-4, same
argmax) or is refused with a hybridc.errors subclass. Anything else is a bug.

Fast profile in `make test` (HYBRIDC_FUZZ_EXAMPLES, default 20, derandomized);
`make fuzz` runs the long profile and writes the counts to fuzz_report.json.
"""

import collections
import json
import os
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
from fuzz_models import Spec, build, specs
from hypothesis import HealthCheck, given, settings

import hybridc
from hybridc.errors import HybridcError
from hybridc.runtime.verify import reference_tensors
from hybridc.targets.registry import domain_of

EXAMPLES = int(os.environ.get("HYBRIDC_FUZZ_EXAMPLES", "20"))
GRAPHS_ONLY = bool(os.environ.get("HYBRIDC_FUZZ_GRAPHS"))  # only stage graphs (taps, front ends, alternation)
REPORT = os.environ.get("HYBRIDC_FUZZ_REPORT")
COUNTS = collections.Counter()


def check(spec):
    """Compile and compare one generated model; returns 'compiled' or 'refused: <Error>'."""
    model, x = build(spec)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # half the models accept slayer's weight clipping, to check it stays exact
            on_overflow = "clip" if spec.seed % 2 else "error"
            compiled = hybridc.compile(model, x, output_dir=Path(tmp) / "build", on_overflow=on_overflow)
        except HybridcError as exc:
            return f"refused: {type(exc).__name__}"
        manifest = compiled.manifest
        _, reference = reference_tensors(compiled.module, manifest, x)
        values = hybridc.run(compiled, x, return_stages="values")
        spikes = 0.0
        for stage in manifest.stages:  # every spiking output of the stage graph, every entry
            if domain_of(stage.target) != "spiking":
                continue
            for spec_out in stage.outputs:
                lava, cut = values[(stage.name, spec_out.name)], reference[(stage.name, spec_out.name)]
                assert torch.equal(lava, cut), (f"Lava spikes at {stage.name}/{spec_out.name} differ in "
                                                f"{(lava != cut).sum().item()} of {cut.numel()}: {spec}")
                spikes += float(cut.sum())
        final = manifest.edges_into(None)[0].producer
        deployed = values[(final["stage"], final["tensor"])]
        with torch.no_grad():
            expected = model(x)
        assert (deployed - expected).abs().max() < 1e-4, f"deployed output differs: {spec}"
        assert torch.equal(deployed.argmax(-1), expected.argmax(-1)), f"argmax differs: {spec}"
        shape = "spiking cut" if len(manifest.stages) == 2 and len(manifest.edges) == 3 else \
            f"{len(manifest.stages)} stages, {len(manifest.edges)} edges"
        return f"compiled ({shape})" if spikes > 0 else f"compiled ({shape}, silent)"


@settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 50, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=specs().filter(lambda s: s.front or s.taps or s.second) if GRAPHS_ONLY else specs())
def test_random_hybrids_compile_exactly_or_are_refused(spec):
    outcome = check(spec)
    COUNTS[outcome] += 1
    if REPORT:
        Path(REPORT).write_text(json.dumps({"examples": sum(COUNTS.values()), "mismatched": 0,
                                            **dict(sorted(COUNTS.items()))}, indent=2) + "\n")


def test_fuzz_outcomes_were_mixed():
    """The generator must reach both outcomes, or it proves little."""
    if sum(COUNTS.values()) < 10:
        pytest.skip("run together with the fuzz test")
    assert any(k.startswith("compiled") for k in COUNTS) and COUNTS["compiled (spiking cut)"] > 0
    assert any("stages" in k and "silent" not in k for k in COUNTS), "no multi-stage graph compiled"


# Regression examples the fuzzer found. Each was a crash or mismatch before its fix.
REGRESSIONS = {
    # netx raised "Expected synapse output shape (10, 10, 1), found (9, 9, 1)": slayer's Pool pads an
    # odd 19x19 input at the bottom/right only; now refused before lowering.
    "pool on odd size": Spec(timesteps=4, interval=2, fold=True, input_shape=(1, 19, 19),
                             neuron={"threshold": 0.5, "current_decay": 0.0, "voltage_decay": 0.0,
                                     "tau_grad": 0.01, "scale_grad": 1.0},
                             spiking=[("pool", 2)], dense=[("flatten",), ("linear", 3)], seed=1),
    # the same pool on an even size lowers exactly
    "pool on even size": Spec(timesteps=4, interval=2, fold=True, input_shape=(1, 18, 18),
                              neuron={"threshold": 0.5, "current_decay": 0.0, "voltage_decay": 0.0,
                                      "tau_grad": 0.01, "scale_grad": 1.0},
                              spiking=[("pool", 2)], dense=[("flatten",), ("linear", 3)], seed=1),
}


@pytest.mark.parametrize("name,outcome", [("pool on odd size", "refused: UnsupportedLayerError"),
                                          ("pool on even size", "compiled (spiking cut)")])
def test_fuzz_regressions(name, outcome):
    assert check(REGRESSIONS[name]) == outcome
