"""`hybridc pipeline` and `hybridc.pipeline`: every stage of a build as its own process on
this machine, linked over TCP, with samples streamed through them.

The client feeds the first stage and collects from the last; each stage forwards to the
next, so stage k works on sample i+1 while stage k+1 works on sample i. At most `window`
samples are unacknowledged on each hop (backpressure, bounded memory). Outputs come back
in input order. A stage process that dies stops the stream with a StageError naming it;
`run_file` keeps every output received in a journal so `--resume` sends only the rest.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..build.compiled import load
from ..errors import InputError, LinkError, StageError
from . import hop, links
from . import wire as w
from .serve import _summary, stage_runner

STARTUP_TIMEOUT_S = 300.0


def free_port(host: str) -> int:
    """A port nothing listens on now (the stage binds it a moment later)."""
    import socket

    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class Pipeline:
    """Stage processes plus the client ends of the first and last links. Use as a context manager."""

    def __init__(self, build_dir, backend: str = "lava", window: int = 4, host: str = "127.0.0.1",
                 stall_timeout: float = 600.0, log=None, connect: str = None, collect: str = None):
        """connect/collect: stages already served elsewhere (`hybridc serve`): send to the first
        at `connect`, receive the last's outputs on `collect`; no process is started."""
        if window < 1:
            raise InputError(f"--window must be at least 1, got {window}.")
        stage_runner(backend)  # refuse an unknown backend before starting any process
        self.compiled = load(build_dir)
        self.manifest = self.compiled.manifest
        self.links = links.links(self.manifest)
        self.backend, self.window, self.host, self.stall_timeout = backend, window, host, stall_timeout
        self.log = log or (lambda message: None)
        self.processes = {}  # stage name -> Popen
        self.stats = None
        self._logs = tempfile.TemporaryDirectory(prefix="hybridc-pipeline-")
        self._context = None
        if bool(connect) != bool(collect):
            raise InputError("Give both --connect (the first stage's HOST:PORT) and --collect (HOST:PORT the last "
                             "stage sends to), or neither to start every stage here.")
        self.remote = (connect, collect) if connect else None

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
        last = self.links[-1]
        if self.remote:
            self.collector, _ = hop.receiver(self._context, self.remote[1], self.window, last.frame_bytes)
            self.feeder = hop.Sender(self._context, self.remote[0], self.window, log=self.log)
            return
        self.collector, to = hop.receiver(self._context, f"{self.host}:0", self.window, last.frame_bytes)
        ready = {}
        for stage in reversed(self.manifest.stages):  # each stage sends to its successor's address
            listen = f"{self.host}:{free_port(self.host)}"
            ready[stage.name] = self._spawn(stage.name, listen, to)
            to = listen
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
        self.feeder = hop.Sender(self._context, to, self.window, log=self.log)

    def _spawn(self, name: str, listen: str, to: str) -> Path:
        ready = Path(self._logs.name) / f"{name}.endpoint"
        log_file = open(Path(self._logs.name) / f"{name}.log", "wb")
        command = [sys.executable, "-m", "hybridc.cli", "serve", str(self.compiled.directory), "--stage", name,
                   "--listen", listen, "--to", to, "--backend", self.backend,
                   "--window", str(self.window), "--announce", str(ready)]
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
            self.feeder.close()
            self.collector.close()
            self._context.term()
            self._context = None
        self._logs.cleanup()

    # --- streaming ---------------------------------------------------------------------

    def _frame(self, index: int, sample) -> bytes:
        link = self.links[0]
        values = np.asarray(sample.detach().cpu().numpy() if hasattr(sample, "detach") else sample, dtype=np.float32)
        if values.shape != link.shape:
            raise InputError(f"Sample {index} has shape {values.shape}; stage `{link.destination}` takes "
                             f"{link.shape} (PyTorch layout, no batch axis, time last).")
        try:
            return w.encode(index, values, link.bits)
        except LinkError:
            raise InputError(f"Sample {index} holds values other than 0 and 1; stage `{link.destination}` takes "
                             "unary spikes: binarise it (e.g. `(x > 0)`).") from None

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
        poller.register(self.feeder.socket, zmq.POLLIN)
        while not exhausted or order:
            while not exhausted and self.feeder.has_credit():
                item = next(source, None)
                if item is None:
                    exhausted = True
                    break
                index, sample = item
                self.feeder.send(index, self._frame(index, sample))
                order.append(index)
                sent_at[index] = time.perf_counter()
            events = dict(poller.poll(100))
            if self.feeder.socket in events:
                self.feeder.receive_replies()
            if self.collector in events:
                for message in self._collect():
                    if message.kind == w.DATA and message.seq in sent_at and message.seq not in outputs:
                        outputs[message.seq] = message.array()
                        latencies.append(time.perf_counter() - sent_at.pop(message.seq))
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
            peer, frame = self._recv2()
            try:
                message = w.decode(frame, max_bytes=max(self.links[-1].frame_bytes, w.TEXT_LIMIT))
                last = self.links[-1]
                if message.kind == w.DATA and (message.shape != last.shape or message.bits != last.bits):
                    raise LinkError(f"Output {message.seq} has shape {message.shape}; the last stage's output is "
                                    f"{last.shape}.")
            except LinkError as exc:
                self.log(f"refused a message from the last stage: {exc}")
                seq = hop.seq_of(frame)
                hop.reply(self.collector, peer, w.NACK, seq if seq is not None else 0, str(exc))
                continue
            if message.kind == w.DATA:
                hop.reply(self.collector, peer, w.ACK, message.seq)
            yield message

    def _recv2(self):
        parts = self.collector.recv_multipart()
        return parts[0], parts[-1]

    def _gather(self, count, wall, latencies, payload, frames) -> dict:
        """Each stage's measurements (collected by a STATS message that runs down the chain)
        and the client's own, as per-stage and per-link figures."""
        import zmq

        stages = []
        if count:
            self.feeder.send(0, w.encode_text(w.STATS, 0, "[]"), w.STATS)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not stages:
                if self.collector.poll(200, zmq.POLLIN):
                    for message in self._collect():
                        if message.kind == w.STATS:
                            stages = json.loads(message.text())
                self._check_alive()
        received = {s["stage"]: s["incoming"] for s in stages}
        edges = []
        for link in self.links:
            measured = received.get(link.destination) if link.destination != links.CLIENT else {
                "payload_bytes_per_inference": payload / max(1, count),
                "message_bytes_per_inference": frames / max(1, count)}
            edges.append({"source": link.source, "destination": link.destination, "tensor": link.tensor,
                          "form": link.form, "bits": link.bits, "shape": list(link.shape),
                          "predicted_payload_bytes_per_inference": link.payload_bytes,
                          "predicted_message_bytes_per_inference": link.frame_bytes,
                          **(measured or {})})
        return {"format": "hybridc-pipeline-stats/1", "build": str(self.compiled.directory), "backend": self.backend,
                "window": self.window, "samples": count, "wall_s": wall,
                "throughput_per_s": count / wall if wall > 0 else 0.0,
                "end_to_end_latency_s": _summary(latencies), "stages": stages, "edges": edges}


def pipeline(build_dir, samples, backend: str = "lava", window: int = 4, log=None, stats: dict = None):
    """Stream `samples` (an iterable of tensors or arrays, one sample each: no batch axis,
    time last) through every stage of a build, each in its own process; yields the outputs
    in order. hybridc.pipeline(build, xs). `stats`, if given, receives the measurements."""
    with Pipeline(build_dir, backend, window, log=log) as running:
        for _, output in running.stream(enumerate(samples)):
            yield output
        if stats is not None:
            stats.update(running.stats or {})


def run_file(build_dir, input_path, output_path, backend: str = "lava", window: int = 4, resume: bool = False,
             stats_path=None, log=None, progress=None, connect: str = None, collect: str = None,
             stall_timeout: float = 600.0) -> dict:
    """`hybridc pipeline`: X.npy through the stage processes into Y.npy; returns the stats.
    Outputs are journalled as they arrive, so a stopped run keeps them and resume=True
    sends only the missing samples."""
    from ..digest import sha256
    from .journal import Journal, path_for

    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise InputError(f"Input file {input_path} does not exist.")
    try:
        x = np.load(input_path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{input_path} is not a readable .npy array: {exc}.") from None
    if x.ndim < 2 or x.shape[0] == 0:
        raise InputError(f"{input_path} holds shape {x.shape}; pass a batch (N, ..., T) with N >= 1.")
    if not output_path.resolve().parent.is_dir():
        from ..errors import OutputError

        raise OutputError(f"Cannot write {output_path}: directory {output_path.resolve().parent} does not exist.")
    journal = Journal(path_for(output_path), sha256(input_path), int(x.shape[0]), resume)
    missing = [i for i in range(x.shape[0]) if i not in journal.outputs]
    if progress:
        progress(len(journal.outputs))
    stats = None
    try:
        if missing:
            with Pipeline(build_dir, backend, window, log=log, connect=connect, collect=collect,
                          stall_timeout=stall_timeout) as running:
                for index, output in running.stream((i, np.asarray(x[i])) for i in missing):
                    journal.add(index, output)
                    if progress:
                        progress(1)
                stats = running.stats
    finally:
        journal.close()
    y = np.stack([journal.outputs[i] for i in range(x.shape[0])])
    tmp = output_path.with_name(f".{output_path.name}.hybridc-tmp.npy")
    np.save(tmp, y)
    os.replace(tmp, output_path)
    journal.discard()
    stats = stats or {"samples": 0}
    stats["resumed_from"] = len(x) - len(missing)
    if stats_path:
        Path(stats_path).write_text(json.dumps(stats, indent=2) + "\n")
    return stats
