"""The links of a build: which tensor crosses between which processes, in what form.

A link follows one edge of the manifest's stage graph: a producer (a stage's output, or
the client that feeds the model input) to a consumer (a stage's input, or the client that
collects the model output). A stage with several inputs has one link into each (its
`port`: the input's index); an output read by several stages has one link to each. Two
edges into the same input (two accumulators on one tap, summing at the receiver) are one
link: the tensor crosses once.

The form of a link follows the consumer's input: the wire format recorded in the manifest
for a cut (1-bit spikes, packed accumulator counts the producer computes, or signed graded
"values" x scale), an Encoder's graded spikes at its `bits` (one step per `hold` steps when
the manifest records them "held": the receiver repeats each), 1-bit spikes into a spiking
stage, float32 into a dense stage, into a sigma-delta input and into the client.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import ArtifactError, InputError, LinkError
from ..manifest import WireSpec
from ..targets.registry import domain_of
from . import wire as w

CLIENT = "client"


@dataclass
class Link:
    source: str  # producer stage name or "client"
    output: str  # the producer's output name ("input" for the client: the model input)
    destination: str  # consumer stage name or "client"
    tensor: str  # the consumer's input name ("output" into the client)
    port: int  # the consumer's input index (0 into the client)
    form: str  # "spikes", "counts", "values", "graded" (an Encoder's) or "float32"
    shape: tuple  # per sample, as it crosses
    bits: int  # bits per value; 0 for float32
    spec: Optional[WireSpec] = None  # the compile-time wire format, when the manifest records one
    signed: bool = False  # "values": two's complement
    scale: int = 1  # the integer on the wire is value x scale

    @property
    def dtype(self) -> int:
        return w.RAW_FLOAT32 if self.bits == 0 else w.PACKED_INT if self.signed else w.PACKED_UINT

    @property
    def payload_bytes(self) -> int:
        """Bytes per inference of the tensor itself: what `hybridc profile` predicts for a cut."""
        return w.payload_bytes(self.shape, self.bits, self.dtype)

    @property
    def frame_bytes(self) -> int:
        """The whole message (header, shape, payload)."""
        return w.frame_bytes(self.shape, self.bits, self.dtype)

    def describe(self) -> str:
        kind = f"{self.bits}-bit {self.form}" if self.bits else self.form
        return (f"{self.source}/{self.output} -> {self.destination}/{self.tensor}: "
                f"{'x'.join(map(str, self.shape))} as {kind}")

    def encode(self, seq: int, values) -> bytes:
        """A DATA frame of one sample (PyTorch layout, no batch) in this link's form: the
        accumulator of a counts/summed-values link runs here, on the sending side."""
        return w.encode(seq, to_wire(values, self), self.bits, self.signed, self.port)

    def check(self, message) -> None:
        """LinkError unless a decoded DATA message is what this link carries."""
        if message.shape != self.shape or message.bits != self.bits or message.dtype != self.dtype:
            raise LinkError(f"Sample {message.seq} for `{self.tensor}` has shape {message.shape} at "
                            f"{message.bits or 32} bits; this link carries {self.shape} at {self.bits or 32} bits.")

    def values(self, message) -> np.ndarray:
        """The tensor a consumer computes with (float32): the wire's integers / scale, each
        step of a held link repeated over its window."""
        array = message.array()
        if self.spec is not None and self.spec.format == "held":
            return np.repeat(array, self.spec.interval, axis=-1)
        return array / np.float32(self.scale) if self.scale != 1 else array


def _link(manifest, edge, port: int) -> Link:
    producer, consumer = edge.producer, edge.consumer
    source = producer["stage"] or CLIENT
    ends = dict(source=source, output=producer["tensor"], destination=consumer["stage"] or CLIENT,
                tensor=consumer["input"], port=port)
    if consumer["stage"] is None:  # the model output, into the client
        spec = manifest.stage(producer["stage"]).output(producer["tensor"])
        return Link(**ends, form="float32", shape=tuple(spec.pytorch_shape()), bits=0)
    stage = manifest.stage(consumer["stage"])
    spec = stage.input(consumer["input"])
    wire = (stage.wire or {}).get(spec.name)
    if wire is not None:
        if wire.format == "held":  # an Encoder's graded spikes, one step per window of `hold` steps
            return Link(**ends, form="graded", shape=tuple(wire.shape), bits=wire.bits, spec=wire)
        graded = producer["stage"] and manifest.stage(producer["stage"]).output(producer["tensor"]).graded
        if graded and wire.format != "values":
            raise ArtifactError(f"Edge {source}/{producer['tensor']} -> {stage.name}/{spec.name} carries graded "
                                f"(sigma-delta) values, but the manifest sends them as {wire.format}, which only "
                                "holds unary spikes (a build from before graded wire formats). Recompile the "
                                "model with this hybridc.")
        if wire.format == "values":
            return Link(**ends, form="values", shape=tuple(wire.shape), bits=wire.bits, spec=wire, signed=True,
                        scale=wire.scale or 1)
        return Link(**ends, form=wire.format, shape=tuple(wire.shape), bits=wire.bits, spec=wire)
    if edge.conversion.kind == "encoder":  # an Encoder's graded spikes: unsigned integers of `bits` bits
        return Link(**ends, form="graded", shape=tuple(spec.pytorch_shape()), bits=edge.conversion.bits)
    if domain_of(stage.target) == "spiking" and not spec.graded:
        return Link(**ends, form="spikes", shape=tuple(spec.pytorch_shape()), bits=1)
    return Link(**ends, form="float32", shape=tuple(spec.pytorch_shape()), bits=0)


def crossing_edges(manifest) -> list:
    """The first edge into each consumer input, in the manifest's order: the edges whose
    tensors cross (two edges into one input, two accumulators on one tap, are one crossing)."""
    result, seen = [], set()
    for edge in manifest.edges:
        consumer = (edge.consumer["stage"], edge.consumer["input"])
        if consumer not in seen:
            seen.add(consumer)
            result.append(edge)
    return result


def links(manifest) -> list:
    """Every link of the build, in the manifest's edge order (stage order, then the output)."""
    result = []
    for edge in crossing_edges(manifest):
        if edge.consumer["stage"] is None:
            port = 0
        else:
            stage = manifest.stage(edge.consumer["stage"])
            port = [t.name for t in stage.inputs].index(edge.consumer["input"])
        result.append(_link(manifest, edge, port))
    return result


def incoming(manifest, stage_name: str) -> list:
    """The links into a stage (or the client), by port."""
    return sorted((link for link in links(manifest) if link.destination == stage_name), key=lambda link: link.port)


def outgoing(manifest, stage_name: str) -> list:
    """The links out of a stage (or the client), each to its consumer."""
    return [link for link in links(manifest) if link.source == stage_name]


def destinations(link_list) -> list:
    """The distinct consumers of some links, in order."""
    return list(dict.fromkeys(link.destination for link in link_list))


def addresses(given, names, what: str) -> dict:
    """{name: HOST:PORT} from `given`: NAME=HOST:PORT items (a list, or one comma-separated
    string), or a bare HOST:PORT when there is exactly one name."""
    items = [part.strip() for item in ([given] if isinstance(given, str) else list(given or []))
             for part in item.split(",") if part.strip()]
    names = list(names)
    if len(items) == 1 and "=" not in items[0] and len(names) == 1:
        return {names[0]: items[0]}
    found = {}
    for item in items:
        name, sep, address = item.partition("=")
        if not sep or name not in names:
            raise InputError(f"{what}: `{item}` is not NAME=HOST:PORT for one of {', '.join(names)}.")
        found[name] = address
    missing = [name for name in names if name not in found]
    if missing:
        raise InputError(f"{what}: give the address of {', '.join(missing)} as NAME=HOST:PORT "
                         f"(one per consumer: {', '.join(names)}).")
    return found


def to_wire(values, link: Link) -> np.ndarray:
    """A producer's output (one sample, PyTorch layout, no batch) in the link's form: a counts
    or summed-values link is summed over its windows here, on the sending side; graded values
    become integers x scale."""
    import torch

    from ..runtime.stages import accumulate

    tensor = torch.as_tensor(np.array(values.detach().cpu() if hasattr(values, "detach") else values))
    if link.spec is not None and link.spec.format == "held" and list(tensor.shape) == list(link.spec.spikes_shape):
        return _first_of_each_window(tensor.numpy(), link)
    if link.spec is not None and link.spec.summed and list(tensor.shape) == list(link.spec.spikes_shape):
        tensor = accumulate(tensor[None], link.spec)[0]
    array = tensor.detach().cpu().numpy()
    if link.scale != 1:
        array = array.astype(np.float64) * link.scale  # exact: value = integer / scale
    return array


def _first_of_each_window(array: np.ndarray, link: Link) -> np.ndarray:
    """One step per window of a held link; LinkError if a window's steps differ (the receiver
    repeats the first, so anything else would arrive changed)."""
    hold = link.spec.interval
    first = array[..., ::hold]
    if not np.array_equal(np.repeat(first, hold, axis=-1), array):
        raise LinkError(f"The values for `{link.tensor}` are not held for {hold} steps, as its manifest's \"held\" "
                        "wire format says (an Encoder's output repeats each value `hold` times); refusing to send "
                        "them changed. Recompile the build if the model changed.")
    return first
