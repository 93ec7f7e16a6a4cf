"""Deployment across processes (not a test), three figures measured in one run:

1. bytes on the wire per inference on the S2A4 cut at 128x128, T=16, for I = 1, 2, 4, 8:
   raw spikes at 1 bit against the accumulator's counts packed at ceil(log2(I+1)) bits,
   the form the compiler chose, and the payload of a real frame encoded from the cut
   tensor of a sample (slayer's forward, which `hybridc verify` proves equal to Lava);
2. the dense stage's onnxruntime session built for every call
   against the one session a long-lived stage keeps, per sample;
3. throughput of `hybridc pipeline` (every stage its own process, linked over TCP,
   pipelined) against sequential `hybridc run` in this process, on the same samples, with
   the spiking stage in Lava and in the emulator; and on examples/spike_flownet (three
   taps of one spiking stage, each its own link into the dense decoder) in Lava;
4. what CURVE keys cost: one link's frames per second (the S2A4 input at --size, through
   hop.Sender and hop.receiver) and `hybridc pipeline`'s throughput on the emulator, each
   with keys (CurveZMQ, the default) against the same run without (loopback, `insecure`).

    .venv/bin/python benchmarks/pipeline_bench.py [--size 32] [--samples 8] [--backends lava,emulate] [--graph-samples 4]
"""

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import hybridc  # noqa: E402
from hybridc.deploy import links, wire  # noqa: E402
from hybridc.deploy.pipeline import Pipeline  # noqa: E402
from hybridc.frontend.loader import load_model_file  # noqa: E402
from hybridc.runtime.verify import reference_stages  # noqa: E402

SOURCE = ROOT / "examples/dvs_gesture/model.py"


def wire_bytes(tmp: Path):
    print("S2A4 cut at 128x128, T=16 (8x32x32x16 spikes per inference), bytes per inference:")
    print(f"  {'I':>2}  {'raw spikes (1 bit)':>18}  {'packed counts':>22}  {'chosen':>7}  {'measured frame payload':>22}")
    for interval in (1, 2, 4, 8):
        args = {"split": "S2A4", "size": 128, "interval": interval}
        model, x, path, digest = load_model_file(SOURCE, "build", None, args)
        compiled = hybridc.compile(model, x, output_dir=tmp / f"i{interval}", source_path=path, source_sha256=digest,
                                   recipe={"entry": "build", "args": args})
        snn, ann = compiled.manifest.stages
        (link,) = links.incoming(compiled.manifest, ann.name)
        cut = reference_stages(compiled.module, compiled.fx_partitions, x)[snn.name][0]
        frame = link.encode(0, cut)
        payload = len(frame) - wire.HEADER.size - 4 * len(link.shape)
        spikes = int(np.prod(link.spec.spikes_shape))
        counts = spikes // interval
        bits = interval.bit_length()
        print(f"  {interval:>2}  {spikes // 8:>16,} B  {-(-counts * bits // 8):>12,} B ({bits} bit)  "
              f"{link.form:>7}  {payload:>20,} B")


def _build(tmp: Path, size: int) -> Path:
    args = {"split": "S2A4", "size": size}
    model, x, path, digest = load_model_file(SOURCE, "build", None, args)
    build = tmp / f"throughput{size}"
    if not build.exists():
        hybridc.compile(model, x, output_dir=build, source_path=path, source_sha256=digest,
                        recipe={"entry": "build", "args": args})
    return build


def session_cost(tmp: Path, size: int, calls: int = 20):
    """The ONNX stage per sample: a fresh onnxruntime session each call against the cached one."""
    from hybridc.runtime import onnx_stage

    build = _build(tmp, size)
    compiled = hybridc.load(build)
    ann = compiled.manifest.stages[1]
    counts = torch.zeros(1, *ann.inputs[0].shape)
    onnx_stage.run_stage(ann, build, counts)  # imports
    began = time.perf_counter()
    for _ in range(calls):
        onnx_stage._session.cache_clear()
        onnx_stage.run_stage(ann, build, counts)
    fresh = (time.perf_counter() - began) / calls
    onnx_stage.run_stage(ann, build, counts)
    began = time.perf_counter()
    for _ in range(calls):
        onnx_stage.run_stage(ann, build, counts)
    cached = (time.perf_counter() - began) / calls
    print(f"ONNX stage (S2A4 {size}x{size} head), {calls} calls: session built per call {fresh * 1e3:.1f} ms, "
          f"cached session {cached * 1e3:.2f} ms per sample ({fresh / cached:.0f}x)")


def link_rate(tmp: Path, size: int, frames: int, keyed: bool) -> float:
    """Frames per second through one hop (Sender -> receiver, acknowledged), keyed or not."""
    import zmq

    from hybridc.deploy import hop
    from hybridc.deploy.keys import KeySet, create

    compiled = hybridc.load(_build(tmp, size))
    (feed,) = links.outgoing(compiled.manifest, links.CLIENT)
    frames_by_seq = [feed.encode(seq, np.ones(feed.shape, dtype=np.float32)) for seq in range(frames)]
    context, authenticators = zmq.Context(), []
    keys = tmp / f"keys{size}"
    if keyed and not keys.exists():
        create(compiled.manifest, keys)
    stage, client = (KeySet(keys, feed.destination), KeySet(keys, links.CLIENT)) if keyed else (None, None)
    secure_in = (lambda s: authenticators.append(stage.serve(s, context, [links.CLIENT]))) if keyed else None
    socket, endpoint = hop.receiver(context, "127.0.0.1:0", 4, feed.frame_bytes, secure_in)
    sender = hop.Sender(context, endpoint, 4, secure=(lambda s: client.connect_to(s, feed.destination))
                        if keyed else None)
    poller = zmq.Poller()
    poller.register(socket, zmq.POLLIN)
    poller.register(sender.socket, zmq.POLLIN)
    began = time.perf_counter()
    sent = received = 0
    while received < frames:
        while sent < frames and sender.has_credit():
            sender.send(sent, frames_by_seq[sent])
            sent += 1
        events = dict(poller.poll(100))
        while socket in events and socket.poll(0, zmq.POLLIN):
            peer, got = socket.recv_multipart()
            message = wire.decode(got)
            hop.reply(socket, peer, wire.ACK, message.seq)
            received += 1
        if sender.socket in events:
            sender.receive_replies()
    rate = frames / (time.perf_counter() - began)
    sender.close()
    socket.close()
    for authenticator in authenticators:
        authenticator.stop()
    context.term()
    return rate


def curve_cost(tmp: Path, size: int, samples: int, frames: int = 2000):
    compiled = hybridc.load(_build(tmp, size))
    (feed,) = links.outgoing(compiled.manifest, links.CLIENT)
    plain, keyed = link_rate(tmp, size, frames, False), link_rate(tmp, size, frames, True)
    print(f"One link, {frames} frames of {feed.frame_bytes:,} B (the S2A4 input at {size}x{size}), acknowledged:")
    print(f"  without keys {plain:8.0f} frames/s, {plain * feed.frame_bytes / 1e6:7.1f} MB/s")
    print(f"  CURVE keys   {keyed:8.0f} frames/s, {keyed * feed.frame_bytes / 1e6:7.1f} MB/s ({keyed / plain:.2f}x)")
    rates = {}
    for insecure in (True, False):
        rates[insecure] = throughput(tmp, size, samples, "emulate", insecure=insecure, quiet=True)
    print(f"hybridc pipeline on the emulator, {samples} samples: without keys {rates[True]:.2f} samples/s, "
          f"CURVE keys {rates[False]:.2f} samples/s ({rates[False] / rates[True]:.2f}x)")


def throughput(tmp: Path, size: int, samples: int, backend: str, build: Path = None, title: str = None,
               insecure: bool = False, quiet: bool = False) -> float:
    """Streaming samples per second of `hybridc pipeline` (checked equal to sequential `hybridc run`)."""
    build = build or _build(tmp, size)
    compiled = hybridc.load(build)
    shape = compiled.manifest.stages[0].inputs[0].pytorch_shape()
    xs = (torch.rand(samples, *shape, generator=torch.Generator().manual_seed(0)) < 0.2).float()
    hybridc.run(compiled, xs[:1], backend=backend)  # warm: imports and first Lava start
    began = time.perf_counter()
    sequential = torch.cat([hybridc.run(compiled, xs[i:i + 1], backend=backend) for i in range(samples)]).numpy()
    sequential_s = time.perf_counter() - began
    began = time.perf_counter()
    with Pipeline(build, backend=backend, insecure=insecure) as running:
        started = time.perf_counter()
        pipelined = np.stack([y for _, y in running.stream((i, xs[i]) for i in range(samples))])
        streamed_s = time.perf_counter() - started
        stats = running.stats
    total_s = time.perf_counter() - began
    assert np.array_equal(pipelined, sequential), "pipelined outputs differ from hybridc run"
    if quiet:
        return samples / streamed_s
    print(f"{title or f'S2A4 I=4 {size}x{size} T=16'}, {samples} samples, {backend} backend, outputs identical:")
    print(f"  sequential hybridc run:  {samples / sequential_s:7.3f} samples/s")
    print(f"  hybridc pipeline:        {samples / streamed_s:7.3f} samples/s streaming "
          f"({sequential_s / streamed_s:.2f}x; with process start-up {samples / total_s:.3f} samples/s)")
    for stage in stats["stages"]:
        print(f"    stage {stage['stage']:>4}: {stage['compute_s']['median'] * 1e3:8.1f} ms/sample compute")
    print(f"    end-to-end latency {stats['end_to_end_latency_s']['median'] * 1e3:.1f} ms (median)")
    for edge in stats["edges"]:
        print(f"    {edge['source']} -> {edge['destination']}/{edge['tensor']}: {edge['form']}, "
              f"{edge['payload_bytes_per_inference']:,.0f} B/inference measured, "
              f"{edge['predicted_payload_bytes_per_inference']:,} B predicted")
    return samples / streamed_s


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--backends", default="lava,emulate")
    parser.add_argument("--graph-samples", type=int, default=4, help="0: skip the multi-tap build")
    parser.add_argument("--skip-bytes", action="store_true")
    parser.add_argument("--curve-samples", type=int, default=16, help="0: skip what CURVE keys cost")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_bytes:
            wire_bytes(Path(tmp))
        session_cost(Path(tmp), args.size)
        for backend in filter(None, args.backends.split(",")):
            throughput(Path(tmp), args.size, args.samples, backend)
        if args.curve_samples:
            curve_cost(Path(tmp), args.size, args.curve_samples)
        if args.graph_samples:  # a stage graph: three taps of one spiking stage into the dense decoder
            model, x, path, digest = load_model_file(ROOT / "examples/spike_flownet/model.py")
            build = Path(tmp) / "flownet"
            hybridc.compile(model, x, output_dir=build, source_path=path, source_sha256=digest)
            throughput(Path(tmp), 32, args.graph_samples, "lava", build,
                       "examples/spike_flownet (3 taps, 32x32, T=8)")


if __name__ == "__main__":
    main()
