"""`hybridc pipeline` and `hybridc.pipeline`: every stage of a build as its own process on
this machine, linked over TCP along the manifest's stage graph, with samples streamed
through them.

The client feeds the model input to every stage that reads it and collects the model
output; each stage sends each output to every stage that reads it, and runs a sample once
all its inputs for that sample have arrived, so stage k works on sample i+1 while stage
k+1 works on sample i. At most `window` samples are unacknowledged on each link
(backpressure, bounded memory). Outputs come back in input order. A stage process that
dies stops the stream with a StageError naming it; `run_file` keeps every output received
in a journal so `--resume` sends only the rest.

Every run makes a fresh CURVE key set for its own stage processes in a private directory
(deploy/keys.py): only they and this client can use the links, and they stop when the
client does. Stages served elsewhere are reached with the build's key set (`keys`).
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..array_files import input_members, read_arrays
from ..build_dir.compiled import load
from ..errors import InputError, LinkError, StageError
from ..runtime.device import current as current_device
from ..runtime.device import resolve as resolve_device
from ..runtime.run import input_names
from . import hop, links
from . import keys as curve
from . import wire as w
from .serve import stage_runner, stats_entries, timing_summary

STARTUP_TIMEOUT_S = 300.0


def free_port(host: str) -> int:
    """A port nothing listens on now (the stage binds it a moment later)."""
    import socket

    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class Pipeline:
    """Stage processes plus the client's ends of the links (feeding the model input to every
    stage that reads it, collecting the model output). Use as a context manager."""

    def __init__(self, build_dir, backend: str = "lava", window: int = 4, host: str = "127.0.0.1",
                 stall_timeout: float = 600.0, log=None, connect=None, collect: str = None, keys=None,
                 insecure: bool = False, device: str = None):
        """connect/collect: stages already served elsewhere (`hybridc serve`): send the model
        input to each stage that reads it at `connect` (HOST:PORT, or NAME=HOST:PORT items when
        several stages read it), receive the model output on `collect`; no process is started.
        keys: the key set those stages were served with (without one, loopback addresses only,
        unless `insecure`). A local run makes a fresh key set, unless `insecure` (loopback
        links without CURVE: the baseline benchmarks/pipeline_bench.py measures keys against).
        device: where the stages' emulators run (cpu, cuda, auto; default: the current one)."""
        if window < 1:
            raise InputError(f"--window must be at least 1, got {window}.")
        stage_runner(backend)  # refuse an unknown backend before starting any process
        self.device = resolve_device(device) if device else current_device()
        self.compiled = load(build_dir)
        self.manifest = self.compiled.manifest
        self.links = links.links(self.manifest)
        self.feeds = links.outgoing(self.manifest, links.CLIENT)  # the model input, to each stage reading it
        results = links.incoming(self.manifest, links.CLIENT)  # the model output
        if len(results) != 1:
            raise InputError(f"The build returns {len(results)} outputs; `pipeline` collects one. Run it with "
                             "`hybridc run` (which writes every output) or return one tensor from forward().")
        (self.result,) = results
        self.backend, self.window, self.host, self.stall_timeout = backend, window, host, stall_timeout
        self.log = log or (lambda message: None)
        self.processes = {}  # stage name -> Popen
        self.stats = None
        self._logs = tempfile.TemporaryDirectory(prefix="hybridc-pipeline-")
        self._context = None
        self.feeders = []
        # sequence numbers of this stream: index + a random base, so that long-lived stages
        # served elsewhere never take a new run's samples for resends of an earlier run's
        self.base = int.from_bytes(os.urandom(3), "little") << 32
        if bool(connect) != bool(collect):
            raise InputError("Give both --connect (where the stage(s) reading the model input listen) and --collect "
                             "(HOST:PORT the last stage sends to), or neither to start every stage here.")
        self.remote = None
        self.keys_dir, self.insecure = keys, insecure
        self._authenticators = []
        if connect:
            entry = links.destinations(self.feeds)
            self.remote = (links.addresses(connect, entry, "--connect"), collect)
            exposed = [a for a in [*self.remote[0].values(), collect] if not curve.is_loopback(a)]
            if exposed and not keys and not insecure:
                raise LinkError(f"The client would send and receive on {', '.join(exposed)} without keys: anyone on "
                                "that network could read the samples and forge the outputs. Pass --keys KEYS (the "
                                "key set the stages were served with; `hybridc keys BUILD -o KEYS` writes one), or "
                                "--insecure to accept the risk on a network you trust.")
        elif keys:
            raise InputError("--keys is for stages served elsewhere (--connect/--collect); a local run makes a "
                             "fresh key set of its own.")

    # --- processes ---------------------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self) -> None:
        """Start every stage at once (each loads its runtime in parallel), on ports picked up
        front, and wait until all listen."""
        import zmq

        self._context = zmq.Context()
        if not self.remote and not self.insecure:  # a fresh key set for this run's stages, in the private log directory
            self.keys_dir = Path(self._logs.name) / "keys"
            curve.create(self.manifest, self.keys_dir)
        self.keyset = curve.KeySet(self.keys_dir, links.CLIENT) if self.keys_dir else None
        self.result_id = self.keyset.producer_ids([self.result])[0] if self.keyset else None
        secure = (lambda s: self._authenticators.append(self.keyset.serve(s, self._context, [self.result.source]))) \
            if self.keyset else None
        if self.remote:
            self.collector, _ = hop.receiver(self._context, self.remote[1], self.window, self.result.frame_bytes,
                                             secure)
            self._connect(self.remote[0])
            return
        self.collector, back = hop.receiver(self._context, f"{self.host}:0", self.window, self.result.frame_bytes,
                                            secure)
        where = {stage.name: f"{self.host}:{free_port(self.host)}" for stage in self.manifest.stages}
        where[links.CLIENT] = back
        ready = {}
        for stage in self.manifest.stages:
            consumers = links.destinations(links.outgoing(self.manifest, stage.name))
            ready[stage.name] = self._spawn(stage.name, where[stage.name], [f"{c}={where[c]}" for c in consumers])
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        for name, path in ready.items():
            process = self.processes[name]
            while not path.exists():
                if process.poll() is not None:
                    raise StageError(f"Stage `{name}` exited with code {process.returncode} while starting: "
                                     f"{self.log_tail(name)}")
                if time.monotonic() > deadline:
                    raise StageError(f"Stage `{name}` did not start listening within {STARTUP_TIMEOUT_S:.0f} s.")
                time.sleep(0.05)
            self.log(f"stage `{name}` (pid {process.pid}) listening on tcp://{path.read_text().strip()}")
        self._connect(where)

    def _connect(self, where: dict) -> None:
        self.feeders = [hop.Sender(self._context, where[link.destination], self.window, log=self.log,
                                   secure=(lambda s, to=link.destination: self.keyset.connect_to(s, to))
                                   if self.keyset else None)
                        for link in self.feeds]

    def _spawn(self, name: str, listen: str, to: list) -> Path:
        ready = Path(self._logs.name) / f"{name}.endpoint"
        log_file = open(Path(self._logs.name) / f"{name}.log", "wb")
        command = [sys.executable, "-m", "hybridc.cli", "serve", str(self.compiled.directory), "--stage", name,
                   "--listen", listen, *[arg for item in to for arg in ("--to", item)], "--backend", self.backend,
                   "--device", self.device,
                   "--window", str(self.window), "--announce", str(ready), "--parent", str(os.getpid()),
                   *(["--keys", str(self.keys_dir)] if self.keys_dir else [])]
        self.processes[name] = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL)
        log_file.close()
        return ready

    def log_tail(self, name: str, lines: int = 6) -> str:
        path = Path(self._logs.name) / f"{name}.log"
        text = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
        return " | ".join(text[-lines:]) or "(no output)"

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise StageError(
                    f"Stage `{name}` (pid {process.pid}) stopped mid-stream with exit code {process.returncode}. "
                    f"Outputs received so far are kept; start the stage again (or rerun `hybridc pipeline` with "
                    f"--resume) to continue from the first missing sample. Its last output: {self.log_tail(name)}")

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._context is not None:
            for feeder in self.feeders:
                feeder.close()
            self.collector.close()
            for authenticator in self._authenticators:
                authenticator.stop()
            self._context.term()
            self._context = None
        self._logs.cleanup()

    # --- streaming ---------------------------------------------------------------------

    def _frames(self, index: int, sample) -> list:
        """The sample as a frame for every stage that reads a model input: one array, or a
        tuple of them (one per input of forward(), in its order)."""
        names = input_names(self.manifest)
        given = sample if isinstance(sample, (tuple, list)) else (sample,)
        if len(given) != len(names):
            raise InputError(f"Sample {index} holds {len(given)} array(s); the build takes {len(names)} input(s) "
                             f"({', '.join(names)}): pass a tuple with one per input of forward().")
        by_name = {name: np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float32)
                   for name, x in zip(names, given)}
        frames = []
        for link in self.feeds:
            values = by_name[link.output]
            if values.shape != link.shape:
                raise InputError(f"Sample {index}" + (f", input `{link.output}`," if len(names) > 1 else "")
                                 + f" has shape {values.shape}; stage `{link.destination}` takes {link.shape} "
                                 "(PyTorch layout, no batch axis).")
            try:
                frames.append(link.encode(self.base + index, values))
            except LinkError:
                raise InputError(f"Sample {index} holds values other than 0 and 1; stage `{link.destination}` takes "
                                 "unary spikes: binarise it (e.g. `(x > 0)`).") from None
        return frames

    def stream(self, samples):
        """Yield (index, output) in input order for an iterable of (index, sample) pairs."""
        import zmq

        source = iter(samples)
        exhausted = False
        order, outputs, sent_at = [], {}, {}
        latencies, payload, frames = [], 0, 0
        began = last_progress = time.perf_counter()
        poller = zmq.Poller()
        poller.register(self.collector, zmq.POLLIN)
        for feeder in self.feeders:
            poller.register(feeder.socket, zmq.POLLIN)
        while not exhausted or order:
            while not exhausted and all(feeder.has_credit() for feeder in self.feeders):
                item = next(source, None)
                if item is None:
                    exhausted = True
                    break
                index, sample = item
                for feeder, frame in zip(self.feeders, self._frames(index, sample)):
                    feeder.send(self.base + index, frame)
                order.append(index)
                sent_at[index] = time.perf_counter()
            events = dict(poller.poll(100))
            for feeder in self.feeders:
                if feeder.socket in events:
                    feeder.receive_replies()
                feeder.resend_overdue()
            if self.collector in events:
                for message in self._collect():
                    index = message.seq - self.base
                    if message.kind == w.DATA and index in sent_at and index not in outputs:
                        outputs[index] = self.result.values(message)
                        latencies.append(time.perf_counter() - sent_at.pop(index))
                        payload += len(message.payload)
                        frames += message.size
                        last_progress = time.perf_counter()
            while order and order[0] in outputs:
                index = order.pop(0)
                yield index, outputs.pop(index)
            self._check_alive()
            if time.perf_counter() - last_progress > self.stall_timeout:
                stages = ", ".join(f"`{s.name}`" for s in self.manifest.stages)
                raise StageError(f"No output for {self.stall_timeout:.0f} s with {len(order)} sample(s) in flight "
                                 f"through stages {stages}; a stage process or link is down or stuck. Outputs "
                                 "received so far are kept; restart the stage and rerun with --resume.")
        wall = time.perf_counter() - began
        self.stats = self._gather(len(latencies), wall, latencies, payload, frames)

    def _collect(self):
        import zmq

        while self.collector.poll(0, zmq.POLLIN):
            parts = self.collector.recv_multipart(copy=False)
            peer, frame = parts[0].bytes, parts[-1].bytes
            try:
                if self.result_id is not None and parts[-1].get("User-Id") != self.result_id:
                    raise LinkError(f"The model output comes from `{self.result.source}` only; this message comes "
                                    "from another key.")
                message = w.decode(frame, max_bytes=max(self.result.frame_bytes, w.TEXT_LIMIT))
                if message.kind == w.DATA:
                    self.result.check(message)
                elif message.kind == w.STATS:
                    message.entries = stats_entries(message.text(), [s.name for s in self.manifest.stages])
                else:
                    raise LinkError(f"A {w.KIND_NAMES[message.kind]} message is not an output.")
            except LinkError as exc:
                self.log(f"refused a message from the last stage: {exc}")
                seq = hop.seq_of(frame)
                hop.reply(self.collector, peer, w.NACK, seq if seq is not None else 0, str(exc))
                continue
            if message.kind == w.DATA:
                hop.reply(self.collector, peer, w.ACK, message.seq)
            yield message

    def _gather(self, count, wall, latencies, payload, frames) -> dict:
        """Each stage's measurements (collected by a STATS message that follows the samples
        along every link of the stage graph) and the client's own, per stage and per link."""
        import zmq

        stages = []
        if count:
            for link, feeder in zip(self.feeds, self.feeders):
                feeder.send(0, w.encode_text(w.STATS, 0, "[]", link.port), w.STATS)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not stages:
                if self.collector.poll(200, zmq.POLLIN):
                    for message in self._collect():
                        if message.kind == w.STATS:
                            stages = message.entries
                self._check_alive()
        order = {stage.name: i for i, stage in enumerate(self.manifest.stages)}
        stages.sort(key=lambda s: order.get(s["stage"], len(order)))
        received = {(side["destination"], side["tensor"]): side for s in stages for side in s["incoming"]}
        edges = []
        for link in self.links:
            measured = received.get((link.destination, link.tensor)) if link.destination != links.CLIENT else {
                "payload_bytes_per_inference": payload / max(1, count),
                "message_bytes_per_inference": frames / max(1, count)}
            measured = {k: v for k, v in (measured or {}).items() if k.endswith("_per_inference")}
            edges.append({"source": link.source, "output": link.output, "destination": link.destination,
                          "tensor": link.tensor, "form": link.form, "bits": link.bits, "shape": list(link.shape),
                          "predicted_payload_bytes_per_inference": link.payload_bytes,
                          "predicted_message_bytes_per_inference": link.frame_bytes, **measured})
        return {"format": "hybridc-pipeline-stats/2", "build": str(self.compiled.directory), "backend": self.backend,
                "window": self.window, "samples": count, "wall_s": wall,
                "throughput_per_s": count / wall if wall > 0 else 0.0,
                "end_to_end_latency_s": timing_summary(latencies), "stages": stages, "edges": edges}


def pipeline(build_dir, samples, backend: str = "lava", window: int = 4, log=None, stats: dict = None,
             device: str = None):
    """Stream `samples` (an iterable of tensors or arrays, one sample each: no batch axis,
    time last) through every stage of a build, each in its own process; yields the outputs
    in order. hybridc.pipeline(build, xs). `stats`, if given, receives the measurements."""
    with Pipeline(build_dir, backend, window, log=log, device=device) as running:
        for _, output in running.stream(enumerate(samples)):
            yield output
        if stats is not None:
            stats.update(running.stats or {})


def _read_samples(path: Path, names: list) -> list:
    """One array of samples per model input from `path`: an .npy for a one-input build
    (memory-mapped), or an .npz holding one array per input by its manifest name (or
    np.savez's positional arr_0, arr_1, ... in forward()'s order). Untrusted: `array_files`."""
    loaded = read_arrays(path, mmap=True, select=lambda members: input_members(members, names, path))
    arrays = list(loaded.values()) if isinstance(loaded, dict) else [loaded]
    if len(arrays) != len(names):
        raise InputError(f"The build takes {len(names)} inputs ({', '.join(names)}) and {path} holds one array; "
                         f"pass an .npz with one array per input (np.savez(path, "
                         f"{', '.join(f'{n}=...' for n in names)})).")
    for name, x in zip(names, arrays):
        if x.ndim < 2 or x.shape[0] == 0:
            raise InputError(f"{path} holds shape {x.shape} for `{name}`; pass a batch (N, ...) with N >= 1.")
    if len({x.shape[0] for x in arrays}) > 1:
        raise InputError(f"The arrays in {path} hold different numbers of samples "
                         f"({', '.join(f'{n} {x.shape[0]}' for n, x in zip(names, arrays))}).")
    return arrays


def run_file(build_dir, input_path, output_path, backend: str = "lava", window: int = 4, resume: bool = False,
             stats_path=None, log=None, progress=None, connect: str = None, collect: str = None,
             stall_timeout: float = 600.0, keys=None, insecure: bool = False, total=None) -> dict:
    """`hybridc pipeline`: X.npy (or X.npz, one array per input) through the stage processes
    into Y.npy; returns the stats.
    Outputs are journalled as they arrive, so a stopped run keeps them and resume=True
    sends only the missing samples. total(count) is called once the input is read (a progress
    bar's length), progress(n) as n more samples are done."""
    from ..digest import sha256
    from .journal import Journal, path_for

    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise InputError(f"Input file {input_path} does not exist.")
    arrays = _read_samples(input_path, input_names(load(build_dir).manifest))
    count = int(arrays[0].shape[0])
    if total:
        total(count)
    if not output_path.resolve().parent.is_dir():
        from ..errors import OutputError

        raise OutputError(f"Cannot write {output_path}: directory {output_path.resolve().parent} does not exist.")
    manifest_path = load(build_dir).directory / "manifest.json"
    journal = Journal(path_for(output_path), sha256(input_path), count, resume, sha256(manifest_path), backend)
    missing = [i for i in range(count) if i not in journal.outputs]
    if progress:
        progress(len(journal.outputs))
    stats = None
    try:
        if missing:
            with Pipeline(build_dir, backend, window, log=log, connect=connect, collect=collect,
                          stall_timeout=stall_timeout, keys=keys, insecure=insecure) as running:
                samples = ((i, tuple(np.asarray(a[i]) for a in arrays) if len(arrays) > 1 else np.asarray(arrays[0][i]))
                           for i in missing)
                for index, output in running.stream(samples):
                    journal.add(index, output)
                    if progress:
                        progress(1)
                stats = running.stats
    finally:
        journal.close()
    y = np.stack([journal.outputs[i] for i in range(count)])
    tmp = output_path.with_name(f".{output_path.name}.hybridc-tmp.npy")
    np.save(tmp, y)
    os.replace(tmp, output_path)
    journal.discard()
    stats = stats or {"samples": 0}
    stats["resumed_from"] = count - len(missing)
    if stats_path:
        Path(stats_path).write_text(json.dumps(stats, indent=2) + "\n")
    return stats
