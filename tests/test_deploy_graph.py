"""hybridc pipeline on stage graphs beyond one cut: real stage processes, real ZeroMQ sockets.

Multi-tap (three taps of one spiking stage into one dense stage: a stage with three inputs
waits for all three), and SNN -> ANN -> SNN -> ANN with the model input also read by the
last stage (the client feeds two stages; an Encoder's graded spikes cross one link). The
pipelined outputs equal `hybridc run` exactly, and every link's measured bytes equal the
manifest's and `hybridc profile`'s prediction. Spiking stages run in hybridc's emulator (taps,
Encoder input, sigma-delta): Lava's parity with it is tested in tests/test_emulator*.py."""

import json
import subprocess

import numpy as np
import pytest
import torch
from helpers import load_example
from hybrid_models import AlternatingWithSkip, AnnFirst, MultiTap, example_input

import hybridc
from hybridc.errors import ArtifactError


def _measured(stats) -> dict:
    return {(e["destination"], e["tensor"]): e for e in stats["edges"]}


def test_multi_tap_pipeline_cli_equals_run_and_bytes_equal_profile(tmp_path, cli):
    from hybridc.profiling.report import attach_measured, profile_build

    torch.manual_seed(0)
    build = tmp_path / "b"
    compiled = hybridc.compile(MultiTap().eval(), example_input("snn", batch=1), output_dir=build)
    x = example_input("snn", batch=2, seed=5)
    reference = hybridc.run(hybridc.load(build), x, backend="emulate").numpy()
    np.save(tmp_path / "x.npy", x.numpy())
    result = cli("pipeline", build, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy",
                 "--backend", "emulate", "--json", tmp_path / "s.json", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert np.array_equal(np.load(tmp_path / "y.npy"), reference)  # bit for bit, in input order
    stats = json.loads((tmp_path / "s.json").read_text())
    assert [(s["stage"], s["samples"], len(s["incoming"])) for s in stats["stages"]] == [("snn", 2, 1), ("ann", 2, 3)]
    measured = _measured(stats)
    # one link per tap, each in its own wire format: 3-bit counts (I=4), raw spikes (I=2), 4-bit counts (I=8)
    taps = {e.consumer["input"]: e for e in compiled.manifest.edges if e.producer["stage"] == "snn"}
    assert {name: (measured[("ann", name)]["form"], measured[("ann", name)]["bits"]) for name in taps} == {
        "e1_counts": ("counts", 3), "e2": ("spikes", 1), "e3_counts": ("counts", 4)}
    for name, edge in taps.items():
        assert measured[("ann", name)]["payload_bytes_per_inference"] == edge.bytes_per_inference
    profile = profile_build(build, samples=1, measure=False)
    rows = attach_measured(profile, tmp_path / "s.json")["links"]
    cut = [r for r in rows if r["link"] == "snn -> ann"]
    assert len(cut) == 3 and all(r["measured_bytes_per_inference"] == r["estimated_bytes_per_inference"] for r in cut)
    assert sorted(r["measured_bytes_per_inference"] for r in cut) == sorted(e["bytes_sent"] for e in profile.edges)


# four stage processes on the emulator (several times faster than with Lava)
def test_alternating_with_input_skip_pipeline_equals_run(tmp_path):
    torch.manual_seed(2)
    build = tmp_path / "b"
    compiled = hybridc.compile(AlternatingWithSkip().eval(), example_input("snn", batch=1), output_dir=build)
    manifest = compiled.manifest
    assert [s.name for s in manifest.stages] == ["snn1", "ann1", "snn2", "ann2"]
    x = example_input("snn", batch=2, seed=5)
    reference = hybridc.run(hybridc.load(build), x, backend="emulate").numpy()
    stats = {}
    outputs = np.stack(list(hybridc.pipeline(build, x, backend="emulate", stats=stats)))
    assert np.array_equal(outputs, reference)
    assert [(s["stage"], s["samples"], s["refused_messages"]) for s in stats["stages"]] == [
        ("snn1", 2, 0), ("ann1", 2, 0), ("snn2", 2, 0), ("ann2", 2, 0)]
    measured = _measured(stats)
    # the client feeds the input to two stages: 1-bit spikes to snn1, float32 to ann2's skip
    assert [(e["destination"], e["form"], e["bits"]) for e in stats["edges"] if e["source"] == "client"] == [
        ("snn1", "spikes", 1), ("ann2", "float32", 0)]
    encoder = measured[("snn2", "spikes_in")]
    assert (encoder["form"], encoder["bits"]) == ("graded", 3)  # the Encoder's 3-bit graded spikes, packed
    # held 2 steps, so 4 of the 8 steps cross (the receiver repeats each): 4x8x8x4 values at 3 bits
    assert encoder["payload_bytes_per_inference"] == 4 * 8 * 8 * 4 * 3 / 8 == 384
    from hybridc.profiling.report import profile_build

    predicted = {e["to"]: e["bytes_sent"] for e in profile_build(build, samples=1, measure=False).edges}
    assert predicted["snn2/spikes_in"] == 384
    for edge in manifest.edges:
        if edge.producer["stage"] and edge.consumer["stage"]:
            got = measured[(edge.consumer["stage"], edge.consumer["input"])]
            assert got["payload_bytes_per_inference"] == edge.bytes_per_inference == \
                got["predicted_payload_bytes_per_inference"]


# eight stage-process start-ups (two runs of four) on the emulator
@pytest.mark.slow
def test_killed_middle_stage_of_four_is_named_and_resume_completes(tmp_path, cli):
    """SIGKILL `snn2` (third of four stages; `ann2` after it also reads the model input, so it
    holds skip inputs of samples snn2 never sent on) once two outputs are journalled: the run
    stops naming snn2 and keeps those outputs; --resume sends only the rest, each once, and
    the result equals `hybridc run`."""
    from stage_kill import kill_mid_stream

    torch.manual_seed(2)
    build = tmp_path / "b"
    hybridc.compile(AlternatingWithSkip().eval(), example_input("snn", batch=1), output_dir=build)
    count = 10
    x = example_input("snn", batch=count, seed=7)
    reference = hybridc.run(hybridc.load(build), x, backend="emulate").numpy()
    x_path, out, journal = tmp_path / "x.npy", tmp_path / "y.npy", tmp_path / ".y.npy.hybridc-journal"
    np.save(x_path, x.numpy())
    command = ["pipeline", build, "--input", x_path, "--output", out, "--backend", "emulate"]
    code, stderr, kept = kill_mid_stream(cli.command(*command, "--window", "1"), ["snn1", "ann1", "snn2", "ann2"],
                                         "snn2", journal, after=2)
    assert code == 16, stderr
    assert "Stage `snn2`" in stderr and "--resume" in stderr
    assert not out.exists() and journal.exists()  # kept what arrived, wrote no partial output file
    result = cli(*command, "--resume", "--json", tmp_path / "s.json", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    stats = json.loads((tmp_path / "s.json").read_text())
    assert kept <= stats["resumed_from"] < count  # every output journalled before the kill was kept
    assert stats["samples"] == count - stats["resumed_from"]  # the rest sent once, none again
    assert [(s["stage"], s["samples"]) for s in stats["stages"]] == [
        (name, count - stats["resumed_from"]) for name in ("snn1", "ann1", "snn2", "ann2")]
    assert np.array_equal(np.load(out), reference) and not journal.exists()


# three stage processes on the emulator
def test_ann_first_example_pipeline_equals_run(tmp_path):
    torch.manual_seed(1)
    build = tmp_path / "b"
    hybridc.compile(AnnFirst().eval(), example_input("ann_first", batch=1), output_dir=build)
    x = example_input("ann_first", batch=2, seed=5)
    reference = hybridc.run(hybridc.load(build), x, backend="emulate").numpy()
    stats = {}
    assert np.array_equal(np.stack(list(hybridc.pipeline(build, x, backend="emulate", stats=stats))), reference)
    assert [s["stage"] for s in stats["stages"]] == ["ann1", "snn", "ann2"]


# the emulator runs the sigma-delta stage (a few times faster than Lava), so it is in the default run
def test_sigma_delta_cut_crosses_as_graded_values(tmp_path, load_sdnn):
    model, example = load_sdnn
    build = tmp_path / "b"
    compiled = hybridc.compile(model, example, output_dir=build)
    wire = compiled.manifest.stage("ann").wire["counts"]
    assert (wire.format, wire.bits, wire.interval, wire.scale) == ("values", 18, 4, 4096)
    x = example.repeat(2, 1, 1, 1, 1) * torch.tensor([1.0, 0.5]).view(2, 1, 1, 1, 1)
    reference = hybridc.run(hybridc.load(build), x, backend="emulate").numpy()
    stats = {}
    assert np.array_equal(np.stack(list(hybridc.pipeline(build, x, backend="emulate", stats=stats))), reference)
    cut = _measured(stats)[("ann", "counts")]
    assert cut["form"] == "values" and cut["payload_bytes_per_inference"] == 24 * 2 * 18 / 8 == \
        compiled.manifest.edges_into("ann")[0].bytes_per_inference
    # a build from before graded wire formats sent such a cut as 3-bit counts: refused up front
    data = json.loads((build / "manifest.json").read_text())
    data["stages"][1]["wire"]["counts"].update(format="counts", bits=3)
    data["stages"][1]["wire"]["counts"].pop("scale")
    (build / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="Recompile"):
        next(hybridc.pipeline(build, x))


@pytest.fixture
def load_sdnn():
    return load_example("sdnn").build()


def test_graded_values_travel_exactly_as_integers_times_scale():
    """No process: a sigma-delta tap's values (integers / 4096, as Lava's runner returns them),
    summed over windows by the sender, decode to exactly what `hybridc run` hands the ONNX."""
    from hybridc.deploy import links, wire
    from hybridc.manifest import WireSpec
    from hybridc.runtime.stages import accumulate

    spec = WireSpec("values", 18, 4, 2, [24, 8], 4096)
    link = links.Link("snn", "snn_4", "ann", "counts", 0, "values", tuple(spec.shape), 18, spec, True, 4096)
    integers = torch.randint(-(1 << 15), 1 << 15, (24, 8), generator=torch.Generator().manual_seed(0))
    values = integers.float() / 4096
    message = wire.decode(link.encode(3, values))
    assert message.dtype == wire.PACKED_INT and len(message.payload) == 24 * 2 * 18 // 8
    assert np.array_equal(link.values(message), accumulate(values[None], spec)[0].numpy())
    with pytest.raises(hybridc.errors.LinkError, match="18-bit signed"):
        link.encode(4, torch.full((24, 8), 40000.0 / 4096))  # sums beyond 18 bits are refused, not wrapped


# four `hybridc serve` processes started by hand, on the emulator (several times faster than with Lava)
def test_served_elsewhere_with_the_input_read_by_two_stages(tmp_path, cli):
    """docs/deploy.md's multi-machine recipe on one machine: one `hybridc serve` per stage,
    each told where every consumer of its outputs listens (`--to NAME=HOST:PORT`), and the
    client told where both stages reading the model input listen (`--connect A=..,B=..`)."""
    from hybridc.deploy import links
    from hybridc.deploy.pipeline import free_port

    torch.manual_seed(2)
    build = tmp_path / "b"
    compiled = hybridc.compile(AlternatingWithSkip().eval(), example_input("snn", batch=1), output_dir=build)
    manifest = compiled.manifest
    x = example_input("snn", batch=2, seed=6)
    reference = hybridc.run(hybridc.load(build), x, backend="emulate").numpy()
    np.save(tmp_path / "x.npy", x.numpy())
    where = {name: f"127.0.0.1:{free_port('127.0.0.1')}" for name in [s.name for s in manifest.stages] + ["client"]}
    servers = []
    for stage in manifest.stages:
        to = [arg for c in links.destinations(links.outgoing(manifest, stage.name)) for arg in ("--to", f"{c}={where[c]}")]
        servers.append(subprocess.Popen(cli.command("serve", build, "--stage", stage.name, "--listen",
                                                    where[stage.name], "--backend", "emulate", *to),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        result = cli("pipeline", build, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy",
                     "--connect", f"snn1={where['snn1']},ann2={where['ann2']}", "--collect", where["client"],
                     "--stall-timeout", "300", timeout=900)
        assert result.returncode == 0, result.stdout + result.stderr
        assert np.array_equal(np.load(tmp_path / "y.npy"), reference)
        assert all(server.poll() is None for server in servers)
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
