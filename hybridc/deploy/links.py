"""The links of a build: which tensor crosses between which processes, in what form.

A stage has named inputs and outputs; a link joins a producer (a stage, or the client
that feeds samples) to a consumer (a stage, or the client that collects outputs). The
form of a link follows the consumer's input: the wire format recorded in the manifest
for a cut (1-bit spikes, or packed accumulator counts that the producer computes), 1-bit
spikes into a spiking stage, float32 into the client. Today's manifests are a chain of
stages, so the links are client -> first -> ... -> last -> client.
"""

from dataclasses import dataclass
from typing import Optional

from ..manifest import Stage, WireSpec
from ..targets.registry import domain_of
from . import wire as w

CLIENT = "client"


@dataclass
class Link:
    source: str  # producer stage name or "client"
    destination: str  # consumer stage name or "client"
    tensor: str  # the consumer's input name (or the producer's output name, into the client)
    form: str  # "spikes", "counts" or "float32"
    shape: tuple  # per sample, as it crosses
    bits: int  # bits per value; 0 for float32
    spec: Optional[WireSpec] = None  # the compile-time wire format, when the manifest records one

    @property
    def dtype(self) -> int:
        return w.RAW_FLOAT32 if self.bits == 0 else w.PACKED_UINT

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
        return f"{self.source} -> {self.destination}: {self.tensor} {'x'.join(map(str, self.shape))} as {kind}"


def into(stage: Stage, source: str) -> Link:
    """The link feeding `stage`'s (first) input."""
    spec = stage.inputs[0]
    wire = (stage.wire or {}).get(spec.name)
    if wire is not None:
        return Link(source, stage.name, spec.name, wire.format, tuple(wire.shape), wire.bits, wire)
    if domain_of(stage.target) == "spiking":
        return Link(source, stage.name, spec.name, "spikes", tuple(spec.pytorch_shape()), 1)
    return Link(source, stage.name, spec.name, "float32", tuple(spec.shape), 0)


def out_of(stage: Stage) -> Link:
    """The link from the last stage back to the client."""
    spec = stage.outputs[0]
    return Link(stage.name, CLIENT, spec.name, "float32", tuple(spec.pytorch_shape()), 0)


def links(manifest) -> list:
    """Every link of the build, in stream order."""
    stages = manifest.stages
    sources = [CLIENT] + [s.name for s in stages[:-1]]
    return [into(stage, source) for stage, source in zip(stages, sources)] + [out_of(stages[-1])]


def outgoing(manifest, stage_name: str) -> Link:
    return next(link for link in links(manifest) if link.source == stage_name)


def incoming(manifest, stage_name: str) -> Link:
    return next(link for link in links(manifest) if link.destination == stage_name)


def to_wire(values, link: Link):
    """A producer's output (one sample, PyTorch layout, no batch) in the link's form:
    a counts link is summed over its windows here, on the sending side."""
    import torch

    from ..runtime.stages import accumulate

    tensor = torch.as_tensor(values)
    if link.form == "counts" and list(tensor.shape) == list(link.spec.spikes_shape):
        tensor = accumulate(tensor[None], link.spec)[0]
    return tensor.detach().cpu().numpy()
