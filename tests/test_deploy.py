"""hybridc serve / pipeline: real stage processes, real ZeroMQ sockets, real Lava and onnxruntime.

One small S2A4 build (16x16, T=16, I=4: its cut crosses as 3-bit packed counts) serves
every test; its `hybridc run` output on three samples is the reference the pipelined
outputs must equal exactly."""

import json
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
from helpers import spikes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stage_kill import journalled, kill_mid_stream

import hybridc
from hybridc.deploy import wire
from hybridc.errors import LinkError


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, example):
    """(build dir, x.npy, reference outputs of `hybridc run` in Lava and onnxruntime, traced model):
    a test that takes it runs Lava."""
    root = tmp_path_factory.mktemp("deploy")
    build = root / "b"
    model, example_input = example.build("S2A4", size=16)
    compiled = hybridc.compile(model, example_input, output_dir=build)
    x = spikes(3, 2, 16, 16, 16, density=0.3, seed=3)
    np.save(root / "x.npy", x.numpy())
    reference = hybridc.run(hybridc.load(build), x).numpy()
    return build, root / "x.npy", reference, compiled.module


@pytest.mark.lava
def test_cut_crosses_as_packed_counts_and_run_is_unchanged(deployed, example):
    build, x_path, reference, _ = deployed
    ann = hybridc.load(build).manifest.stages[1]
    wire_spec = ann.wire["counts"]
    assert (wire_spec.format, wire_spec.bits, ann.inputs[0].shape) == ("counts", 3, [8, 4, 4, 4])
    model, _ = example.build("S2A4", size=16)
    with torch.no_grad():
        expected = model(torch.from_numpy(np.load(x_path))).numpy()
    assert np.abs(reference - expected).max() < 1e-4  # the ONNX now takes counts; the deployment still agrees


@pytest.mark.lava
def test_pipeline_api_equals_run_and_link_bytes_equal_profile(deployed, tmp_path):
    build, x_path, reference, traced = deployed
    x = np.load(x_path)
    stats = {}
    outputs = list(hybridc.pipeline(build, (torch.from_numpy(sample) for sample in x), stats=stats))
    assert np.array_equal(np.stack(outputs), reference)  # bit for bit, in input order
    assert stats["samples"] == 3 and [s["stage"] for s in stats["stages"]] == ["snn", "ann"]
    assert all(s["samples"] == 3 and s["refused_messages"] == 0 for s in stats["stages"])
    cut = next(e for e in stats["edges"] if e["source"] == "snn")
    assert cut["form"] == "counts" and cut["payload_bytes_per_inference"] == 8 * 4 * 4 * 4 * 3 / 8
    assert stats["edges"][0]["payload_bytes_per_inference"] == 2 * 16 * 16 * 16 / 8  # input spikes at 1 bit
    from hybridc.profiling.report import attach_measured, profile_build

    (tmp_path / "stats.json").write_text(json.dumps(stats))
    profile = profile_build(build, samples=1, measure=False, reference=traced)
    assert profile.cut["bytes_sent"] == cut["payload_bytes_per_inference"] == 192
    measured = attach_measured(profile, tmp_path / "stats.json")
    row = next(r for r in measured["links"] if r["link"] == "snn -> ann")
    assert row["measured_bytes_per_inference"] == row["estimated_bytes_per_inference"]


@pytest.mark.lava  # the reference run
def test_pipeline_on_the_emulator_equals_run(deployed):
    """The same two-stage build with its spiking stage in hybridc's emulator: every stage
    process still real, the outputs equal `hybridc run --backend emulate` (and Lava's) exactly."""
    build, x_path, reference, _ = deployed
    x = torch.from_numpy(np.load(x_path))
    emulated = hybridc.run(hybridc.load(build), x, backend="emulate").numpy()
    stats = {}
    outputs = np.stack(list(hybridc.pipeline(build, x, backend="emulate", stats=stats)))
    assert np.array_equal(outputs, emulated) and np.array_equal(outputs, reference)
    assert [(s["stage"], s["backend"], s["samples"]) for s in stats["stages"]] == [("snn", "emulate", 3),
                                                                                  ("ann", "emulate", 3)]


# one pipeline start-up (three processes importing torch), the spiking stage on the emulator
@pytest.mark.lava  # the reference run
def test_killed_spiking_stage_exits_16_naming_it_on_the_emulator(deployed, tmp_path, cli):
    """The default run's kill test (the slow ones resume): SIGKILL the spiking stage's process,
    real stage processes and sockets, once one output is journalled. The client exits 16
    naming `snn`, keeps the journal and writes no partial output file."""
    build, x_path, _, _ = deployed
    count = 300  # the three samples repeated: the run is still streaming when its stage dies
    many, out, journal = tmp_path / "x.npy", tmp_path / "y.npy", tmp_path / ".y.npy.hybridc-journal"
    np.save(many, np.tile(np.load(x_path), (count // 3, 1, 1, 1, 1)))
    code, stderr, kept = kill_mid_stream(cli.command("pipeline", build, "--input", many, "--output", out,
                                                     "--backend", "emulate", "--window", "1"), ["snn", "ann"], "snn",
                                         journal)
    assert code == 16, stderr
    assert "Stage `snn`" in stderr and "--resume" in stderr and "Traceback" not in stderr
    assert sorted(f.name for f in tmp_path.iterdir()) == [journal.name, "x.npy"]  # no output file, partial or temp
    assert 1 <= kept <= journalled(journal) < count  # stopped mid-run, the outputs before the kill kept


@pytest.mark.slow  # two pipeline start-ups (torch + Lava in every stage process): about 40 s unloaded
@pytest.mark.lava
def test_killed_stage_is_named_and_resume_completes(deployed, tmp_path, cli):
    build, x_path, reference, _ = deployed
    out = tmp_path / "y.npy"
    journal = tmp_path / ".y.npy.hybridc-journal"
    code, stderr, _ = kill_mid_stream(cli.command("pipeline", build, "--input", x_path, "--output", out),
                                      ["snn", "ann"], "snn", journal)
    assert code == 16, stderr
    assert "Stage `snn`" in stderr and "--resume" in stderr
    assert not out.exists() and journal.exists()  # kept what arrived, wrote no partial output file
    stats_path = tmp_path / "stats.json"
    result = cli("pipeline", build, "--input", x_path, "--output", out, "--resume", "--json", stats_path,
                 timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    stats = json.loads(stats_path.read_text())
    assert 1 <= stats["resumed_from"] < 3 and stats["samples"] == 3 - stats["resumed_from"]  # each sample once
    assert np.array_equal(np.load(out), reference) and not journal.exists()


@pytest.mark.lava  # the reference run
def test_serve_refuses_bad_messages_and_keeps_serving(deployed, cli):
    import zmq

    from hybridc.deploy.pipeline import free_port
    from hybridc.runtime.stages import run_stage

    build, x_path, _, _ = deployed
    context = zmq.Context()
    collector = context.socket(zmq.ROUTER)
    back = collector.bind_to_random_port("tcp://127.0.0.1")
    port = free_port("127.0.0.1")
    server = subprocess.Popen(cli.command("serve", build, "--stage", "ann", "--listen", f"127.0.0.1:{port}",
                                          "--to", f"127.0.0.1:{back}", "--announce", build.parent / "ann.ready"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while not (build.parent / "ann.ready").exists():
            assert server.poll() is None, server.stderr.read()
            time.sleep(0.05)
        feeder = context.socket(zmq.DEALER)
        feeder.connect(f"tcp://127.0.0.1:{port}")
        counts = np.random.default_rng(0).integers(0, 5, size=(8, 4, 4, 4)).astype(np.float32)
        good = wire.encode(7, counts, 3)
        flipped = bytearray(good)
        flipped[-3] ^= 0x10
        bad = [b"not a hybridc message", good[:-5], bytes(flipped), good + b"\0" * 64,
               wire.encode(8, np.zeros((8, 4, 4, 16)), 1),  # raw spikes where counts are due
               wire.encode(9, np.zeros((8, 4, 4, 4000)), 3),  # oversized: 192 kB
               wire.encode(10, counts, 3, port=1),  # for a second input this stage does not have
               wire.encode(11, counts - 4, 3, signed=True)]  # signed values where unsigned counts are due
        for frame in bad:
            feeder.send(frame)
            assert feeder.poll(30_000), "no answer to a bad frame"
            answer = wire.decode(feeder.recv())
            assert answer.kind == wire.NACK, answer
        feeder.send(good)
        assert feeder.poll(60_000)
        assert wire.decode(feeder.recv()).kind == wire.ACK and server.poll() is None
        assert collector.poll(60_000)
        peer, frame = collector.recv_multipart()
        output = wire.decode(frame)
        expected = run_stage(hybridc.load(build).manifest.stages[1], build, torch.from_numpy(counts)[None])[0]
        assert output.seq == 7 and np.array_equal(output.array(), expected.numpy())
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
        context.destroy(linger=0)
    assert err.count("refused a message") == len(bad)


def test_journal_keeps_whole_records_and_refuses_another_input(tmp_path):
    """... and another build or backend: outputs of two models never mix in one Y.npy."""
    from hybridc.deploy.journal import Journal
    from hybridc.errors import InputError

    path = tmp_path / ".y.npy.hybridc-journal"
    journal = Journal(path, "a" * 64, 3, False, "m" * 64, "lava")
    journal.add(0, np.arange(11, dtype=np.float32))
    journal.add(2, np.ones(11, dtype=np.float32))
    journal.close()
    with open(path, "ab") as f:
        f.write(b"\x01\x00\x00")  # the torn start of a record a crash cut short
    with pytest.raises(InputError, match="--resume"):
        Journal(path, "a" * 64, 3, False, "m" * 64, "lava")
    for other in (("b" * 64, "m" * 64, "lava"), ("a" * 64, "n" * 64, "lava"), ("a" * 64, "m" * 64, "emulate")):
        with pytest.raises(InputError, match="another input file, sample count, build or backend"):
            Journal(path, other[0], 3, True, other[1], other[2])
    resumed = Journal(path, "a" * 64, 3, True, "m" * 64, "lava")
    assert sorted(resumed.outputs) == [0, 2] and np.array_equal(resumed.outputs[0], np.arange(11))
    resumed.add(1, np.zeros(11, dtype=np.float32))
    resumed.close()
    assert sorted(Journal(path, "a" * 64, 3, True, "m" * 64, "lava").outputs) == [0, 1, 2]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.lists(st.integers(1, 6), min_size=0, max_size=4), bits=st.integers(0, 20), seq=st.integers(0, 2**63),
       signed=st.booleans(), port=st.integers(0, wire.MAX_PORTS - 1), data=st.data())
def test_wire_round_trip_and_any_damage_is_refused(shape, bits, seq, signed, port, data):
    rng = np.random.default_rng(seq % 1000)
    signed = signed and bits >= 2  # graded values: two's complement at `bits` bits
    low = -(1 << (bits - 1)) if signed else 0
    values = rng.integers(low, low + 2 ** bits, size=shape) if bits else rng.standard_normal(shape)
    frame = wire.encode(seq, values, bits, signed=signed, port=port)
    message = wire.decode(frame)
    assert message.seq == seq and message.shape == tuple(shape) and message.port == port
    assert np.array_equal(message.array(), values.astype(np.float32))
    position = data.draw(st.integers(0, len(frame) - 1))
    damaged = bytearray(frame)
    damaged[position] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(frame) - 1))
    for broken in (bytes(damaged), frame[:cut], frame + data.draw(st.binary(min_size=1, max_size=16))):
        with pytest.raises(LinkError):
            wire.decode(broken)
    with pytest.raises(LinkError):
        wire.decode(frame, max_bytes=len(frame) - 1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_decoder(frame):
    try:
        wire.decode(frame)
    except LinkError:
        pass


@pytest.mark.slow  # a serve process and a pipeline client, about 20 s unloaded
def test_pipeline_connects_to_stages_served_elsewhere(example, tmp_path, cli):
    """The two-machine recipe of docs/deploy.md on one machine: `hybridc serve` started by
    hand, `hybridc pipeline --connect/--collect` feeding it (an all-dense build: no Lava)."""
    from hybridc.deploy.pipeline import free_port

    model, example_input = example.build("ANN", size=16)
    build = tmp_path / "ann"
    hybridc.compile(model, example_input, target="loihi+cpu", output_dir=build)
    stages = hybridc.load(build).manifest.stages
    x = spikes(3, 2, 16, 16, 16, density=0.3, seed=4)
    np.save(tmp_path / "x.npy", x.numpy())
    reference = hybridc.run(hybridc.load(build), x).numpy()
    first, collect = free_port("127.0.0.1"), free_port("127.0.0.1")
    ports = [first] + [free_port("127.0.0.1") for _ in stages[1:]] + [collect]
    servers = [subprocess.Popen(cli.command("serve", build, "--stage", stage.name, "--listen", f"127.0.0.1:{ports[i]}",
                                            "--to", f"127.0.0.1:{ports[i + 1]}"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for i, stage in enumerate(stages)]
    try:
        result = cli("pipeline", build, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy",
                     "--connect", f"127.0.0.1:{first}", "--collect", f"127.0.0.1:{collect}", "--stall-timeout", "300",
                     timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        assert np.array_equal(np.load(tmp_path / "y.npy"), reference)
        assert all(server.poll() is None for server in servers)  # long-lived: still serving
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
