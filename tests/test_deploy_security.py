"""The links of `hybridc serve` / `pipeline` as an attacker on the same machine meets them:
real stage processes, real ZeroMQ sockets with CURVE keys, a real ZAP authenticator. No
Lava: the stage under attack is the dense one (onnxruntime), the pipeline runs the emulator."""

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import spikes

import hybridc
from hybridc.deploy import wire
from hybridc.deploy.keys import KeySet
from hybridc.deploy.pipeline import free_port


@pytest.fixture(scope="module")
def build(tmp_path_factory, example):
    """A 16x16 S2A4 build (its cut crosses as 3-bit counts), its key set and an input file."""
    root = tmp_path_factory.mktemp("secure")
    model, example_input = example.build("S2A4", size=16)
    hybridc.compile(model, example_input, output_dir=root / "b")
    np.save(root / "x.npy", spikes(3, 2, 16, 16, 16, density=0.3, seed=3).numpy())
    return root


def test_keys_writes_one_private_pair_per_party_and_never_overwrites(build, cli, tmp_path):
    result = cli("keys", build / "b", "-o", tmp_path / "k")
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (tmp_path / "k").iterdir())
    assert names == ["ann.key", "ann.key_secret", "client.key", "client.key_secret", "snn.key", "snn.key_secret"]
    for secret in (tmp_path / "k").glob("*.key_secret"):
        assert secret.stat().st_mode & 0o777 == 0o600
    again = cli("keys", build / "b", "-o", tmp_path / "k")
    assert again.returncode == 8 and "already holds keys" in again.stderr
    os.chmod(tmp_path / "k" / "ann.key_secret", 0o644)
    with pytest.raises(hybridc.errors.InputError, match="readable by other users.*chmod 600"):
        KeySet(tmp_path / "k", "ann")


def test_serve_without_keys_refuses_a_network_address(build, cli):
    result = cli("serve", build / "b", "--stage", "ann", "--listen", "0.0.0.0:0", "--to", "127.0.0.1:9")
    assert result.returncode == 15, result.stdout + result.stderr
    text = " ".join(result.stderr.split())
    assert "would listen or send on 0.0.0.0:0 without keys" in text and "hybridc keys BUILD -o KEYS" in text


def _curve_dealer(context, port, keys=None, party=None, server_key=None, stage="ann"):
    """A DEALER to `stage`: plain (no keys), or a CURVE client with `party`'s keys from
    `keys` (or a key pair nobody issued when party is None and server_key is given)."""
    import zmq

    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    if keys is not None:
        KeySet(keys, party).connect_to(socket, stage)
    elif server_key is not None:
        socket.curve_publickey, socket.curve_secretkey = zmq.curve_keypair()
        socket.curve_serverkey = server_key
    socket.connect(f"tcp://127.0.0.1:{port}")
    return socket


def _serve(cli, build_dir, stage, keys, to, ready, *extra):
    """`hybridc serve` of one stage with keys, on a free port; returns (process, port) once it listens."""
    port = free_port("127.0.0.1")
    server = subprocess.Popen(cli.command("serve", build_dir, "--stage", stage, "--listen", f"127.0.0.1:{port}",
                                          *[a for item in to for a in ("--to", item)], "--keys", keys,
                                          "--backend", "emulate", "--announce", ready, *extra),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not ready.exists():
        assert server.poll() is None, server.stderr.read()
        time.sleep(0.05)
    return server, port


def _stop(server) -> list:
    """Stop a served stage; its log lines that refused a message."""
    server.send_signal(signal.SIGTERM)
    _, err = server.communicate(timeout=30)
    return [line for line in err.splitlines() if "refused a message" in line]


def test_keyed_stage_runs_only_frames_its_producer_sends(build, cli, tmp_path):
    """The dense stage `ann` served with keys: a peer without keys, one with a key nobody
    issued, and the client's valid key (the client does not feed `ann`) are never answered,
    run or forwarded; STATS that are not JSON, or invent a stage, are refused; the stage
    stays up and runs the real producer's frame exactly as `run_stage` does."""
    import zmq

    from hybridc.runtime.stages import run_stage

    keys = tmp_path / "k"
    assert cli("keys", build / "b", "-o", keys).returncode == 0
    context = zmq.Context()
    collector = context.socket(zmq.ROUTER)
    collector.setsockopt(zmq.LINGER, 0)
    authenticator = KeySet(keys, "client").serve(collector, context, ["ann"])
    back = collector.bind_to_random_port("tcp://127.0.0.1")
    server, port = _serve(cli, build / "b", "ann", keys, [f"127.0.0.1:{back}"], tmp_path / "ann.ready")
    counts = np.random.default_rng(0).integers(0, 5, size=(8, 4, 4, 4)).astype(np.float32)
    good = wire.encode(7, counts, 3)
    try:
        outsiders = [_curve_dealer(context, port),  # no keys at all: the CURVE handshake never completes
                     _curve_dealer(context, port, server_key=KeySet(keys, "ann").public),  # a key nobody issued
                     _curve_dealer(context, port, keys, "client")]  # a valid key of a party that does not feed `ann`
        for socket in outsiders:
            socket.send(good)
        producer = _curve_dealer(context, port, keys, "snn")
        forged_stats = ('[{"stage": "mallory", "target": "x", "backend": "x", "samples": 1, "refused_messages": 0, '
                        '"resent_messages": 0, "compute_s": {"mean": 0, "median": 0, "max": 0}, '
                        '"stage_latency_s": {"mean": 0, "median": 0, "max": 0}, "incoming": [], "outgoing": []}]')
        for text in ("not json", forged_stats, '{"stage": "snn"}'):
            producer.send(wire.encode_text(wire.STATS, 1, text))
            assert producer.poll(30_000) and wire.decode(producer.recv()).kind == wire.NACK
        producer.send(good)
        assert producer.poll(60_000) and wire.decode(producer.recv()).kind == wire.ACK
        assert collector.poll(60_000)
        parts = collector.recv_multipart(copy=False)
        assert parts[-1].get("User-Id") == KeySet(keys, "ann").public.decode()  # the stage's key, checked by ZAP
        output = wire.decode(parts[-1].bytes)
        expected = run_stage(hybridc.load(build / "b").manifest.stages[1], build / "b", torch.from_numpy(counts)[None])
        assert output.seq == 7 and np.array_equal(output.array(), expected[0].numpy())
        assert not collector.poll(1000), "only the real producer's sample may come out"
        assert not any(socket.poll(0) for socket in outsiders), "an outsider got an answer"
        assert server.poll() is None
    finally:
        refusals = _stop(server)
        authenticator.stop()
        context.destroy(linger=0)
    assert len(refusals) == 3, refusals
    assert "not JSON" in refusals[0] and "mallory" in refusals[1] and "from `snn`" in refusals[0]


def test_a_valid_key_on_another_producers_input_is_refused(cli, tmp_path):
    """`ann2` of SNN -> ANN -> SNN -> ANN reads `snn2`'s counts and the model input: the
    client's key may send the model input only, never counts in `snn2`'s place."""
    import zmq
    from hybrid_models import AlternatingWithSkip, example_input

    from hybridc.deploy import links

    torch.manual_seed(2)
    build_dir = tmp_path / "b"
    manifest = hybridc.compile(AlternatingWithSkip().eval(), example_input("snn", batch=1), output_dir=build_dir).manifest
    keys = tmp_path / "k"
    assert cli("keys", build_dir, "-o", keys).returncode == 0
    counts_link = next(link for link in links.incoming(manifest, "ann2") if link.source == "snn2")
    server, port = _serve(cli, build_dir, "ann2", keys, ["client=127.0.0.1:9"], tmp_path / "ann2.ready")
    context = zmq.Context()
    try:
        impostor = context.socket(zmq.DEALER)
        impostor.setsockopt(zmq.LINGER, 0)
        KeySet(keys, "client").connect_to(impostor, "ann2")
        impostor.connect(f"tcp://127.0.0.1:{port}")
        impostor.send(counts_link.encode(3, np.zeros(counts_link.shape, dtype=np.float32)))
        assert impostor.poll(30_000) and wire.decode(impostor.recv()).kind == wire.NACK
        assert server.poll() is None
    finally:
        refusals = _stop(server)
        context.destroy(linger=0)
    assert len(refusals) == 1 and f"from `client`: Input {counts_link.port} (counts) is produced by `snn2`" \
        in refusals[0], refusals



def test_a_flood_of_half_samples_fills_only_its_producers_share(cli, tmp_path):
    """`ann2` waits for two inputs (the model input from the client, counts from `snn2`). The
    client floods it with 20 model inputs whose counts never come: past its share of 10
    (2 x window + 2) they are NACKed, yet `snn2`'s counts are still taken; once the flood
    has waited longer than --partial-timeout it is dropped, and the legitimate sample runs
    and reaches the client exactly as `run_stage` computes it."""
    import zmq
    from hybrid_models import AlternatingWithSkip, example_input

    from hybridc.deploy import links
    from hybridc.runtime.stages import run_stage

    torch.manual_seed(2)
    build_dir = tmp_path / "b"
    manifest = hybridc.compile(AlternatingWithSkip().eval(), example_input("snn", batch=1), output_dir=build_dir).manifest
    keys = tmp_path / "k"
    assert cli("keys", build_dir, "-o", keys).returncode == 0
    incoming = {link.source: link for link in links.incoming(manifest, "ann2")}
    assert set(incoming) == {"client", "snn2"}, incoming
    rng = np.random.default_rng(0)
    arrays = {name: rng.integers(0, 2, size=link.shape).astype(np.float32) for name, link in incoming.items()}
    context = zmq.Context()
    collector = context.socket(zmq.ROUTER)
    collector.setsockopt(zmq.LINGER, 0)
    authenticator = KeySet(keys, "client").serve(collector, context, ["ann2"])
    back = collector.bind_to_random_port("tcp://127.0.0.1")
    server, port = _serve(cli, build_dir, "ann2", keys, [f"client=127.0.0.1:{back}"], tmp_path / "ann2.ready",
                          "--partial-timeout", "3")
    try:
        flooder = _curve_dealer(context, port, keys, "client", stage="ann2")
        began = time.perf_counter()
        for seq in range(100, 120):
            flooder.send(incoming["client"].encode(seq, arrays["client"]))
        nacks = []
        while flooder.poll(3_000):
            nacks.append(wire.decode(flooder.recv()))
        assert len(nacks) == 10 and all(m.kind == wire.NACK and "already wait" in m.text() for m in nacks), \
            [(m.seq, m.text()) for m in nacks]
        producer = _curve_dealer(context, port, keys, "snn2", stage="ann2")
        producer.send(incoming["snn2"].encode(5, arrays["snn2"]))
        assert not producer.poll(1_000), "the other producer's input must be taken, not refused"
        time.sleep(max(0.0, 3.5 - (time.perf_counter() - began)))
        flooder.send(incoming["client"].encode(5, arrays["client"]))
        assert collector.poll(60_000), "the completed sample never came out"
        output = wire.decode(collector.recv_multipart()[-1])
        stage = manifest.stage("ann2")
        feeds = {link.tensor: torch.from_numpy(link.values(wire.decode(link.encode(5, arrays[name]))))[None]
                 for name, link in incoming.items()}
        expected = run_stage(stage, build_dir, feeds)
        expected = expected[0] if isinstance(expected, tuple) else expected
        assert output.seq == 5 and np.allclose(output.array(), expected[0].numpy(), atol=1e-5)
        replies = []
        while flooder.poll(2_000):
            replies.append(wire.decode(flooder.recv()))
        dropped = [m for m in replies if m.kind == wire.NACK and "expired" in m.text()]
        assert len(dropped) == 10 and any(m.kind == wire.ACK and m.seq == 5 for m in replies)
        assert server.poll() is None
    finally:
        refusals = _stop(server)
        authenticator.stop()
        context.destroy(linger=0)
    assert len(refusals) == 10 and all("from `client`) already wait" in line for line in refusals), refusals

def _children(pid: int) -> list:
    """The pids whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_killing_the_client_leaves_no_stage_process(build, cli, tmp_path):
    """`hybridc pipeline` killed with SIGKILL (no chance to clean up): its stage processes
    notice their client is gone and stop."""
    np.save(tmp_path / "x.npy", spikes(200, 2, 16, 16, 16, density=0.3, seed=5).numpy())
    client = subprocess.Popen(cli.command("pipeline", build / "b", "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npy",
                                          "--backend", "emulate"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    stages = []
    while len(stages) < 2 and time.monotonic() < deadline:
        stages = [pid for pid in _children(client.pid) if b"serve" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        time.sleep(0.2)
    assert len(stages) == 2, "the pipeline did not start its two stages"
    client.send_signal(signal.SIGKILL)
    client.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in stages) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in stages), "a stage outlived its client"
