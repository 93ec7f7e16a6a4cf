"""Reading netx HDF5 fields: how netx stores each value, known in one place.

A netx file holds `layer/0`, `layer/1`, ... (a branching stage's extra synapses:
`synapse/<name>`), each a group of small datasets: `type` (text), `shape` (PyTorch order,
(C, H, W) or (F,)), `weight` (or `weight/real` and `weight/imag`), `bias`, `stride`,
`padding`, `dilation` (pairs, (H, W)), `groups`, `delay`, and a `neuron` group (a `dense_rec`
layer, slayer's Recurrent block, also `weight_rec`: its feedback weights, out x out). The same
field can arrive as a 0-d value, a one-element array or bytes; these readers take each
form, as lava-dl's `netx.utils.NetDict` does, so the emulator, the Lava runners, the
profiler and the Loihi target decode a file the same way. Fields are read when asked for:
a consumer that never needs a field neither pays for it nor fails on its absence.
"""

import numpy as np

from ..errors import ArtifactError

__all__ = ["DEFAULT_NEURON", "LayerGroup", "NeuronGroup", "layer_groups", "open_file", "pair", "scalar",
           "synapse_group", "text"]

# netx's neuron for a dense layer without a `neuron` group: a non-leaky integrator. The
# threshold is netx's own literal `1 << 18 - 1` (netx/hdf5.py), which Python reads as 1 << 17.
DEFAULT_NEURON = {"iDecay": 0, "vDecay": 4096, "vThMant": 1 << 18 - 1}


def scalar(value) -> int:
    """An integer field (`groups`, `delay`, a neuron parameter): its first entry."""
    return int(np.asarray(value).reshape(-1)[0])


def pair(value) -> tuple:
    """A (H, W) field (`stride`, `padding`, `dilation`): one entry means both axes.
    The first two entries otherwise (netx's own files hold exactly two)."""
    array = np.asarray(value).reshape(-1)
    return (int(array[0]),) * 2 if array.size == 1 else (int(array[0]), int(array[1]))


def text(value) -> str:
    """A text field (`type`): netx writes a one-element bytes array, h5py may give a scalar."""
    value = value.reshape(-1)[0] if hasattr(value, "reshape") else value
    return value.decode() if isinstance(value, bytes) else str(value)


def open_file(path, what: str = None):
    """`h5py.File(path, "r")`. With `what` ("netx HDF5 file", ...), a file h5py cannot open
    is an ArtifactError saying the file is not a readable `what`; without it h5py's error
    stands (for callers that report it themselves)."""
    import h5py

    if what is None:
        return h5py.File(path, "r")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ArtifactError(f"{path} is not a readable {what} ({exc}).") from exc


class NeuronGroup:
    """A layer's `neuron` group: `group[key]` is the stored value of a parameter."""

    def __init__(self, group):
        self.group = group

    def __contains__(self, key: str) -> bool:
        return key in self.group

    def __getitem__(self, key: str):
        return self.group[key][()]

    @property
    def message_bits(self):
        """`messageBits`, or None when the group does not say."""
        return scalar(self["messageBits"]) if "messageBits" in self else None


class LayerGroup:
    """One netx layer (or extra-synapse) group, each field decoded when asked for.
    `layer[key]` is a field's stored value as h5py reads it (for callers that convert it
    their own way); the properties decode it."""

    def __init__(self, group, index: int = None):
        self.group = group
        self.index = index  # the layer's position in `layer/`, or None for an extra synapse

    @property
    def name(self) -> str:
        return self.group.name

    def __contains__(self, key: str) -> bool:
        return key in self.group

    def __getitem__(self, key: str):
        return self.group[key][()]

    @property
    def kind(self) -> str:
        """`type`: input, flatten, conv, dense or dense_rec (netx's names)."""
        return text(self["type"])

    @property
    def shape(self) -> tuple:
        """The output shape as stored: PyTorch order, (C, H, W) or (F,)."""
        return tuple(int(v) for v in self["shape"])

    @property
    def size(self) -> int:
        """Neurons in the output (netx's `np.prod(shape)`, which also takes a 0-d shape)."""
        return int(np.prod(self["shape"]))

    @property
    def weight(self) -> np.ndarray:
        return self["weight"]

    @property
    def recurrent(self) -> bool:
        """A recurrent dense layer (netx's `dense_rec`): feedback weights from its spikes to its neurons."""
        return self.kind == "dense_rec"

    @property
    def weight_rec(self):
        """The stored feedback weights (out, out) of a `dense_rec` layer, or None."""
        return self["weight_rec"] if "weight_rec" in self.group else None

    @property
    def complex(self) -> bool:
        """A complex dense layer (resonate-and-fire): `weight/real` and `weight/imag`."""
        return "weight/imag" in self.group

    @property
    def bias(self):
        """The stored bias, or None."""
        return self["bias"] if "bias" in self else None

    @property
    def delay(self):
        """The stored axonal delays (a dense layer's DelayDense), or None."""
        return self["delay"] if "delay" in self else None

    # a conv layer's geometry: (H, W) pairs and the group count
    stride = property(lambda self: pair(self["stride"]))
    padding = property(lambda self: pair(self["padding"]))
    dilation = property(lambda self: pair(self["dilation"]))
    groups = property(lambda self: scalar(self["groups"]))

    @property
    def has_neuron(self) -> bool:
        return "neuron" in self.group

    @property
    def neuron(self):
        """The `neuron` group, or None (netx then builds DEFAULT_NEURON)."""
        return NeuronGroup(self.group["neuron"]) if self.has_neuron else None

    @property
    def neuron_type(self) -> str:
        """`neuron/type` (CUBA, LOIHI, SDNN, RF_PHASE, ...); netx's CUBA when absent."""
        return text(self.group["neuron"]["type"][()]) if self.has_neuron and "type" in self.group["neuron"] else "CUBA"

    def lif_parameters(self) -> dict:
        """iDecay, vDecay and vThMant of a CUBA layer as stored, netx's default without a neuron group."""
        neuron = self.neuron
        return {key: neuron[key] for key in ("iDecay", "vDecay", "vThMant")} if neuron is not None else dict(DEFAULT_NEURON)


def layer_groups(h5, count: int = None):
    """The file's `layer/0`, `layer/1`, ... in order (at most `count`), as LayerGroups."""
    groups = h5["layer"]
    total = len(groups) if count is None else min(len(groups), count)
    for i in range(total):
        yield LayerGroup(groups[str(i)], i)


def synapse_group(h5, name) -> LayerGroup:
    """An extra synapse of a branching stage: `synapse/<name>` (a layer group without a neuron)."""
    return LayerGroup(h5["synapse"][name])
