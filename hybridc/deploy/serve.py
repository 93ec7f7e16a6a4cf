"""`hybridc serve`: one stage of a build as a long-lived process.

It listens (ROUTER) for the stage's input, runs each sample through the stage as
`hybridc run` would (Lava or the emulator for a Loihi stage, onnxruntime for a dense
one), sends the output on (DEALER) to the next stage or to the client in the form that
link takes, and acknowledges the input once the output is on its way. A frame that does
not decode is logged and refused with a NACK; the stage carries on. At the end of a
stream a STATS message collects each stage's measurements on its way to the client.
"""

import json
import sys
import time
from collections import deque

import numpy as np

from ..build.compiled import load
from ..errors import InputError, LinkError
from . import hop, links
from . import wire as w


def stage_runner(backend: str):
    """runtime.stages.run_stage bound to `backend` (checked: an unknown one is an InputError)."""
    from ..runtime.stages import check_backend, run_stage

    check_backend(backend)
    return lambda stage, directory, x: run_stage(stage, directory, x, backend=backend)


def find_stage(manifest, name: str):
    names = [s.name for s in manifest.stages]
    if name not in names:
        raise InputError(f"The build has no stage `{name}`; its stages are {', '.join(names)}.")
    return manifest.stage(name)


class StageStats:
    def __init__(self, stage, incoming, outgoing, backend):
        self.stage, self.incoming, self.outgoing, self.backend = stage, incoming, outgoing, backend
        self.compute = []  # seconds per sample in the stage's runtime
        self.held = []  # seconds from receipt to the output being sent
        self.in_payload = self.in_frames = self.out_payload = self.out_frames = 0
        self.refused = 0

    def as_dict(self, resends: int) -> dict:
        n = max(1, len(self.compute))
        return {"stage": self.stage.name, "target": self.stage.target, "backend": self.backend,
                "samples": len(self.compute), "refused_messages": self.refused, "resent_messages": resends,
                "compute_s": _summary(self.compute), "stage_latency_s": _summary(self.held),
                "incoming": {"link": self.incoming.describe(), "payload_bytes_per_inference": self.in_payload / n,
                             "message_bytes_per_inference": self.in_frames / n},
                "outgoing": {"link": self.outgoing.describe(), "payload_bytes_per_inference": self.out_payload / n,
                             "message_bytes_per_inference": self.out_frames / n}}


def _summary(values) -> dict:
    if not values:
        return {"mean": 0.0, "median": 0.0, "max": 0.0}
    return {"mean": float(np.mean(values)), "median": float(np.median(values)), "max": float(np.max(values))}


def warm_up(stage) -> None:
    """Import the stage's runtime before announcing readiness, so the first sample is not
    charged for it."""
    if stage.target == "loihi":
        from ..runtime.lava import import_lava_runtime

        import_lava_runtime()
    else:
        import onnxruntime  # noqa: F401


def serve(build_dir, stage_name: str, listen: str = "127.0.0.1:0", to: str = None, backend: str = "lava",
          window: int = 4, announce=None, log=None) -> None:
    """Serve one stage until killed. `announce(endpoint)` is called once listening."""
    import torch
    import zmq

    log = log or (lambda message: print(f"hybridc serve [{stage_name}]: {message}", file=sys.stderr, flush=True))
    compiled = load(build_dir)
    manifest = compiled.manifest
    stage = find_stage(manifest, stage_name)
    run = stage_runner(backend)
    incoming, outgoing = links.incoming(manifest, stage.name), links.outgoing(manifest, stage.name)
    if not to:
        raise InputError(f"Stage `{stage.name}` sends its output to {outgoing.destination}: give its address "
                         "with --to HOST:PORT.")
    warm_up(stage)
    context = zmq.Context()
    inbox, endpoint = hop.receiver(context, listen, window, incoming.frame_bytes)
    sender = hop.Sender(context, to, window, log=log)
    stats = StageStats(stage, incoming, outgoing, backend)
    pending = deque()  # (peer, message, received at)
    seen = set()
    poller = zmq.Poller()
    poller.register(inbox, zmq.POLLIN)
    poller.register(sender.socket, zmq.POLLIN)
    (announce or (lambda e: print(f"listening {e}", flush=True)))(endpoint)
    log(f"{incoming.describe()}; sending {outgoing.describe()} to {to}")
    try:
        while True:
            ready = bool(pending) and sender.has_credit()
            events = dict(poller.poll(0 if ready else 500))
            if sender.socket in events:
                sender.receive_replies()
            if inbox in events:
                _receive(inbox, incoming, pending, seen, stats, log)
            if pending and sender.has_credit():
                peer, message, received = pending.popleft()
                if message.kind == w.STATS:  # end of a stream: add ours and pass it on
                    gathered = json.loads(message.text() or "[]")
                    gathered.append(stats.as_dict(sender.resends))
                    sender.send(message.seq, w.encode_text(w.STATS, message.seq, json.dumps(gathered)), w.STATS)
                    continue
                began = time.perf_counter()
                x = torch.from_numpy(message.array())[None]
                y = run(stage, compiled.directory, x)
                done = time.perf_counter()
                frame = w.encode(message.seq, links.to_wire(y[0], outgoing), outgoing.bits)
                sender.send(message.seq, frame)
                hop.reply(inbox, peer, w.ACK, message.seq)
                seen.add(message.seq)
                stats.compute.append(done - began)
                stats.held.append(time.perf_counter() - received)
                stats.in_payload += len(message.payload)
                stats.in_frames += message.size
                stats.out_payload += len(frame) - w.HEADER.size - 4 * len(outgoing.shape)
                stats.out_frames += len(frame)
    finally:
        inbox.close()
        sender.close()
        context.term()


def _receive(inbox, link, pending, seen, stats, log) -> None:
    """Take every frame waiting on the inbox: queue good DATA/STATS, refuse the rest."""
    import zmq

    while inbox.poll(0, zmq.POLLIN):
        parts = inbox.recv_multipart()
        peer, frame = parts[0], parts[-1]
        try:
            if len(parts) != 2:
                raise LinkError(f"Expected one frame per message, got {len(parts) - 1}.")
            message = w.decode(frame, max_bytes=max(link.frame_bytes, w.TEXT_LIMIT))
            if message.kind == w.DATA and (message.shape != link.shape or message.bits != link.bits):
                raise LinkError(f"Sample {message.seq} has shape {message.shape} at {message.bits or 32} bits; "
                                f"this link carries {link.shape} at {link.bits or 32} bits.")
            if message.kind not in (w.DATA, w.STATS):
                raise LinkError(f"A {w.KIND_NAMES[message.kind]} message is not an input.")
        except LinkError as exc:
            stats.refused += 1
            log(f"refused a message from {link.source}: {exc}")
            seq = hop.seq_of(frame)
            hop.reply(inbox, peer, w.NACK, seq if seq is not None else 0, str(exc))
            continue
        if message.kind == w.DATA and message.seq in seen:  # a resend we already handled
            hop.reply(inbox, peer, w.ACK, message.seq)
            continue
        pending.append((peer, message, time.perf_counter()))


def main_announce(endpoint: str) -> None:
    """The line `hybridc pipeline` waits for on a stage's stdout."""
    print(f"hybridc-serve listening {endpoint}", flush=True)


__all__ = ["serve", "stage_runner"]
