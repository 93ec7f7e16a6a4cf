"""`hybridc serve`: one stage of a build as a long-lived process.

It listens (one ROUTER) for every input of the stage, waits until each input of a sample
(one sequence number) has arrived, runs the sample through the stage as `hybridc run`
would (Lava or the emulator for a Loihi stage, onnxruntime for a dense one), sends each
output (DEALER) to every stage that reads it, or to the client, in the form that link
takes, and acknowledges the inputs once the outputs are on their way. A frame that does
not decode is logged and refused with a NACK; the stage carries on. At the end of a
stream a STATS message collects each stage's measurements on its way to the client.

With a key set (`--keys`, deploy/keys.py) only the producers of the stage's inputs can
reach it, each only on its own input, and every link is encrypted; without one it listens
on loopback only (unless told `insecure`). Every message is validated before use (STATS by
a JSON schema), so a peer can make a stage refuse a message, never crash it.
"""

import json
import os
import sys
import time
from collections import deque

import numpy as np

from ..build_dir.compiled import load
from ..errors import InputError, LinkError
from . import hop, links
from . import wire as w
from .keys import KeySet, is_loopback

# what a stage adds to the STATS message that follows the samples (StageStats.as_dict)
_TIMES = {"type": "object", "required": ["mean", "median", "max"], "additionalProperties": False,
          "properties": {k: {"type": "number"} for k in ("mean", "median", "max")}}
_SIDE = {"type": "object", "additionalProperties": False,
         "required": ["link", "source", "output", "destination", "tensor", "payload_bytes_per_inference",
                      "message_bytes_per_inference"],
         "properties": {**{k: {"type": "string", "maxLength": 512}
                           for k in ("link", "source", "output", "destination", "tensor")},
                        "payload_bytes_per_inference": {"type": "number", "minimum": 0},
                        "message_bytes_per_inference": {"type": "number", "minimum": 0}}}
STATS_SCHEMA = {
    "type": "array", "items": {
        "type": "object", "additionalProperties": False,
        "required": ["stage", "target", "backend", "samples", "refused_messages", "resent_messages", "compute_s",
                     "stage_latency_s", "incoming", "outgoing"],
        "properties": {"stage": {"type": "string"}, "target": {"type": "string", "maxLength": 64},
                       "backend": {"type": "string", "maxLength": 64},
                       **{k: {"type": "integer", "minimum": 0}
                          for k in ("samples", "refused_messages", "resent_messages")},
                       "compute_s": _TIMES, "stage_latency_s": _TIMES,
                       "incoming": {"type": "array", "items": _SIDE, "maxItems": w.MAX_PORTS},
                       "outgoing": {"type": "array", "items": _SIDE, "maxItems": w.MAX_PORTS}}}}


def stats_entries(text: str, stage_names) -> list:
    """The per-stage measurements in a STATS message, checked against STATS_SCHEMA, one entry
    per stage of the build at most; LinkError for anything else (not JSON, another shape, a
    stage the build does not have)."""
    import jsonschema

    names = list(stage_names)
    try:
        entries = json.loads(text or "[]")
    except ValueError as exc:
        raise LinkError(f"A STATS message that is not JSON ({exc}).") from None
    schema = {**STATS_SCHEMA, "maxItems": len(names),
              "items": {**STATS_SCHEMA["items"], "properties": {**STATS_SCHEMA["items"]["properties"],
                                                               "stage": {"enum": names}}}}
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(entries))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the top level"
        raise LinkError(f"A STATS message that is not this build's measurements (at {where}: {error.message[:200]}).")
    if len({entry["stage"] for entry in entries}) != len(entries):
        raise LinkError("A STATS message that names a stage twice.")
    return entries


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
        self.held = []  # seconds from receipt of the first input to the outputs being sent
        self.received = {link.port: [0, 0] for link in incoming}  # port -> [payload, frame] bytes
        self.sent = {id(link): [0, 0] for link in outgoing}
        self.refused = 0

    def as_dict(self, resends: int) -> dict:
        n = max(1, len(self.compute))

        def side(link, counted):
            return {"link": link.describe(), "source": link.source, "output": link.output,
                    "destination": link.destination, "tensor": link.tensor,
                    "payload_bytes_per_inference": counted[0] / n, "message_bytes_per_inference": counted[1] / n}

        return {"stage": self.stage.name, "target": self.stage.target, "backend": self.backend,
                "samples": len(self.compute), "refused_messages": self.refused, "resent_messages": resends,
                "compute_s": timing_summary(self.compute), "stage_latency_s": timing_summary(self.held),
                "incoming": [side(link, self.received[link.port]) for link in self.incoming],
                "outgoing": [side(link, self.sent[id(link)]) for link in self.outgoing]}


def timing_summary(values) -> dict:
    """Mean, median and max of a list of seconds (zeros when empty), as serve and pipeline report them."""
    if not values:
        return {"mean": 0.0, "median": 0.0, "max": 0.0}
    return {"mean": float(np.mean(values)), "median": float(np.median(values)), "max": float(np.max(values))}


def warm_up(stage, backend: str) -> None:
    """Import the stage's runtime before announcing readiness, so the first sample is not
    charged for it (Lava only where the stage will run in Lava)."""
    from ..targets.registry import get_runner

    get_runner(stage.target, backend)  # imports the runner's module
    if stage.target == "loihi" and backend == "lava":
        from ..netx.processes import import_lava_runtime

        import_lava_runtime()
    elif stage.target != "loihi":
        import onnxruntime  # noqa: F401


class Inbox:
    """The stage's receiving end: one ROUTER for every input link (a message's `port` says
    which input it is for). Sets of inputs for one sequence number wait here until every
    input has arrived; then the set is ready, in sequence order."""

    RECENT = 4096  # sequence numbers remembered as done, to acknowledge resends without rerunning

    def __init__(self, socket, incoming, stats, log, window: int, producer_ids=None, stage_names=(),
                 partial_timeout: float = 600.0):
        """producer_ids: {port: the CURVE key (z85) that alone may send that input}, or None
        on an unauthenticated link; stage_names: the build's stages (STATS are checked against them).
        partial_timeout: seconds an input waits for the others of its sample before it is dropped."""
        self.socket, self.incoming, self.stats, self.log = socket, incoming, stats, log
        self.producer_ids, self.stage_names = producer_ids, list(stage_names)
        # senders keep at most `window` samples unacknowledged per link: more waiting ones on one
        # input than that (with room for resends) come from a peer ignoring the protocol. The bound
        # is per input, so a producer that floods fills only its own share, never another's.
        self.limit = 2 * window + 2
        self.partial_timeout = partial_timeout
        self.partial = {}  # (kind, seq) -> {port: (peer, message)}, first arrival time
        self.arrived = {}
        self.done, self.done_order = set(), deque()

    def receive(self) -> None:
        """Take every frame waiting: file good DATA/STATS under their sequence number, refuse the rest."""
        import zmq

        limit = max(max(link.frame_bytes for link in self.incoming), w.TEXT_LIMIT)
        while self.socket.poll(0, zmq.POLLIN):
            parts = self.socket.recv_multipart(copy=False)
            peer, frame = parts[0].bytes, parts[-1].bytes
            try:
                if len(parts) != 2:
                    raise LinkError(f"Expected one frame per message, got {len(parts) - 1}.")
                message = w.decode(frame, max_bytes=limit)
                if message.kind not in (w.DATA, w.STATS):
                    raise LinkError(f"A {w.KIND_NAMES[message.kind]} message is not an input.")
                if message.port >= len(self.incoming):
                    raise LinkError(f"Message {message.seq} is for input {message.port}; this stage has "
                                    f"{len(self.incoming)} input(s).")
                link = self.incoming[message.port]
                if self.producer_ids is not None and parts[-1].get("User-Id") != self.producer_ids[message.port]:
                    raise LinkError(f"Input {message.port} ({link.tensor}) is produced by `{link.source}` only; this "
                                    "message comes from another key.")
                if message.kind == w.STATS:
                    message.entries = stats_entries(message.text(), self.stage_names)
                if message.kind == w.DATA:
                    link.check(message)  # decode has matched the frame's size to this shape
                    if message.port not in self.partial.get((w.DATA, message.seq), {}):
                        self.check_share(message, link)
            except LinkError as exc:
                self.stats.refused += 1
                port = hop.port_of(frame)
                claims = self.incoming[port].source if port is not None and port < len(self.incoming) else None
                self.log(f"refused a message {f'for the input of `{claims}` ' if claims else ''}from "
                         f"{self.sender(parts[-1])}: {exc}")
                seq = hop.seq_of(frame)
                hop.reply(self.socket, peer, w.NACK, seq if seq is not None else 0, str(exc))
                continue
            key = (message.kind, message.seq)
            if message.kind == w.DATA and key in self.done:  # a resend of a sample already run
                hop.reply(self.socket, peer, w.ACK, message.seq)
                continue
            self.partial.setdefault(key, {})[message.port] = (peer, message)
            self.arrived.setdefault(key, time.perf_counter())

    def check_share(self, message, link) -> None:
        """Refuse a new sample on an input that already has `limit` samples waiting (after
        dropping those that waited longer than partial_timeout for their other inputs)."""
        self.expire()
        waiting = sum(1 for (kind, _), got in self.partial.items() if kind == w.DATA and message.port in got)
        if waiting >= self.limit:
            raise LinkError(f"Sample {message.seq} refused: {waiting} samples of input {message.port} (from "
                            f"`{link.source}`) already wait, more than its window allows; the sender ignores "
                            "the protocol's credit.")

    def expire(self) -> None:
        """Drop the samples whose first input arrived more than partial_timeout seconds ago and
        that still lack another: a producer that never completes them cannot hold memory forever.
        Each dropped input is NACKed (its sender, if it follows the protocol, resends it)."""
        now = time.perf_counter()
        for key in [key for key, began in self.arrived.items() if now - began > self.partial_timeout
                    and len(self.partial[key]) < len(self.incoming)]:
            got = self.partial.pop(key)
            self.arrived.pop(key)
            self.stats.refused += len(got)
            self.log(f"dropped sample {key[1]}: its other inputs did not arrive within {self.partial_timeout:g} s")
            for peer, message in got.values():
                hop.reply(self.socket, peer, w.NACK, message.seq, "expired waiting for the other inputs")

    def sender(self, frame) -> str:
        """Who sent a frame, as far as the link knows: the producer its CURVE key belongs to."""
        if self.producer_ids is None:
            return "an unauthenticated peer"
        user = frame.get("User-Id")
        names = {key: self.incoming[port].source for port, key in self.producer_ids.items()}
        return f"`{names[user]}`" if user in names else f"the key {user}"

    def ready(self):
        """The first complete set in sequence order, as (kind, seq, {port: (peer, message)}, arrived), or None."""
        complete = [key for key, got in self.partial.items() if len(got) == len(self.incoming)]
        if not complete:
            return None
        key = min(complete, key=lambda k: (k[1], k[0]))
        return (*key, self.partial.pop(key), self.arrived.pop(key))

    def finished(self, seq: int, got: dict) -> None:
        """Acknowledge every input of a sample once its outputs are on their way."""
        for peer, message in got.values():
            hop.reply(self.socket, peer, w.ACK, message.seq)
        self.done.add((w.DATA, seq))
        self.done_order.append((w.DATA, seq))
        while len(self.done_order) > self.RECENT:
            self.done.discard(self.done_order.popleft())


def serve(build_dir, stage_name: str, listen: str = "127.0.0.1:0", to=None, backend: str = "lava",
          window: int = 4, announce=None, log=None, keys=None, insecure: bool = False, parent: int = None,
          partial_timeout: float = 600.0) -> None:
    """Serve one stage until killed. `to`: where each consumer of its outputs listens, as
    NAME=HOST:PORT items (or one HOST:PORT when there is one consumer). `announce(endpoint)`
    is called once listening. `keys`: a key set directory (authenticated, encrypted links);
    without one only loopback addresses are allowed unless `insecure`. `parent`: the pid of
    the client that started the stage; the stage stops when that process is gone.
    `partial_timeout`: seconds one input of a sample waits for the others before it is dropped."""
    import torch
    import zmq

    log = log or (lambda message: print(f"hybridc serve [{stage_name}]: {message}", file=sys.stderr, flush=True))
    compiled = load(build_dir)
    manifest = compiled.manifest
    stage = find_stage(manifest, stage_name)
    run = stage_runner(backend)
    incoming, outgoing = links.incoming(manifest, stage.name), links.outgoing(manifest, stage.name)
    consumers = links.destinations(outgoing)
    if not to:
        raise InputError(f"Stage `{stage.name}` sends its outputs to {', '.join(consumers)}: give where each "
                         "listens with --to HOST:PORT (one consumer) or --to NAME=HOST:PORT for each.")
    where = links.addresses(to, consumers, f"--to of stage `{stage.name}`")
    keyset = KeySet(keys, stage.name) if keys else None
    if keyset is None and not insecure:
        exposed = [a for a in [listen, *where.values()] if not is_loopback(a)]
        if exposed:
            raise LinkError(f"Stage `{stage.name}` would listen or send on {', '.join(exposed)} without keys: anyone "
                            "on that network could then feed it forged inputs and read its outputs. Write a key set "
                            "with `hybridc keys BUILD -o KEYS` and pass --keys KEYS on every stage and the client "
                            "(or --insecure to accept the risk on a network you trust).")
    producer_ids = keyset.producer_ids(incoming) if keyset else None
    warm_up(stage, backend)
    context = zmq.Context()
    authenticators = []
    secure_in = (lambda s: authenticators.append(keyset.serve(s, context, {link.source for link in incoming}))) \
        if keyset else None
    socket, endpoint = hop.receiver(context, listen, window, max(link.frame_bytes for link in incoming), secure_in)
    senders = [hop.Sender(context, where[link.destination], window, log=log,
                          secure=(lambda s, to=link.destination: keyset.connect_to(s, to)) if keyset else None)
               for link in outgoing]
    stats = StageStats(stage, incoming, outgoing, backend)
    inbox = Inbox(socket, incoming, stats, log, window, producer_ids, [s.name for s in manifest.stages],
                  partial_timeout)
    poller = zmq.Poller()
    poller.register(socket, zmq.POLLIN)
    for sender in senders:
        poller.register(sender.socket, zmq.POLLIN)
    (announce or (lambda e: print(f"listening {e}", flush=True)))(endpoint)
    for link in incoming:
        log(f"receiving {link.describe()}")
    for link in outgoing:
        log(f"sending {link.describe()} to {where[link.destination]}")
    waiting = None
    try:
        while True:
            if parent is not None and os.getppid() != parent:
                log("the client that started this stage is gone; stopping")
                return
            credit = all(sender.has_credit() for sender in senders)
            events = dict(poller.poll(0 if waiting and credit else 500))
            for sender in senders:
                if sender.socket in events:
                    sender.receive_replies()
                sender.resend_overdue()
            if socket in events:
                inbox.receive()
            waiting = waiting or inbox.ready()
            if not waiting or not all(sender.has_credit() for sender in senders):
                continue
            kind, seq, got, arrived = waiting
            waiting = None
            if kind == w.STATS:  # end of a stream: merge what every input gathered, add ours, pass it on
                gathered = {}
                for _, message in got.values():
                    for entry in message.entries:
                        gathered.setdefault(entry["stage"], entry)
                gathered[stage.name] = stats.as_dict(sum(sender.resends for sender in senders))
                text = json.dumps(list(gathered.values()))
                for link, sender in zip(outgoing, senders):
                    sender.send(seq, w.encode_text(w.STATS, seq, text, link.port), w.STATS)
                continue
            began = time.perf_counter()
            feeds = {link.tensor: torch.from_numpy(link.values(got[link.port][1]))[None] for link in incoming}
            y = run(stage, compiled.directory, feeds if len(feeds) > 1 else next(iter(feeds.values())))
            done = time.perf_counter()
            results = dict(zip((spec.name for spec in stage.outputs), y if isinstance(y, tuple) else (y,)))
            for link, sender in zip(outgoing, senders):
                frame = link.encode(seq, results[link.output][0])
                sender.send(seq, frame)
                stats.sent[id(link)][0] += len(frame) - w.HEADER.size - 4 * len(link.shape)
                stats.sent[id(link)][1] += len(frame)
            inbox.finished(seq, got)
            stats.compute.append(done - began)
            stats.held.append(time.perf_counter() - arrived)
            for port, (_, message) in got.items():
                stats.received[port][0] += len(message.payload)
                stats.received[port][1] += message.size
    finally:
        socket.close()
        for sender in senders:
            sender.close()
        for authenticator in authenticators:
            authenticator.stop()
        context.term()


__all__ = ["STATS_SCHEMA", "serve", "stage_runner", "stats_entries", "timing_summary"]
