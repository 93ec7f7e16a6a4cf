"""Samples for `verify` and `profile` in any build's input shape, chosen by `--data`:

  synthetic, dvsgesture:PATH   event frames (2, H, W, T) with gesture labels
  npz:PATH                     arrays `x` (N, *input shape) and optional `y` (N,) labels; a build
                               with several inputs: one array per input, named as the manifest
                               names them (`input`, `input_1`, ...)
  random:RATE                  unlabelled spikes, each entry 1 with probability RATE
  NAME[:ARG]                   a Python dataset registered under the `hybridc.data` entry point

An entry point is a callable `factory(arg, *, shape, train, samples, seed)` returning a
sequence of `(x, label)` (label may be None) with `x` of `shape`; a package registers it as
    [project.entry-points."hybridc.data"]
    mydata = "mypackage.data:open"
`shape` is the build's input without the batch axis, in the layout the model's forward
takes (PyTorch's: (C, H, W, T) for event frames, (F, T) for a Dense front). A build with
several inputs passes `shape` as {input name: shape}, and each `x` is then a tuple with one
array per input in forward()'s order.
"""

from dataclasses import dataclass
from typing import Optional

from ..array_files import read_arrays
from ..errors import InputError

DEFAULT_SPIKE_RATE = 0.1  # for builds no bundled data set fits: about one spike in ten steps
ENTRY_POINT_GROUP = "hybridc.data"


@dataclass
class Samples:
    """A sequence of (x, label or None) items and how to say where they came from."""
    items: object  # supports len() and [i]
    description: str
    labelled: bool

    def __len__(self):
        return len(self.items)

    def batch(self, start: int, stop: int):
        """(x of shape (n, *shape), labels tensor or None) for items start..stop-1."""
        import torch

        items = [self.items[i] for i in range(start, stop)]
        if isinstance(items[0][0], (tuple, list)):  # several model inputs: one batch per input
            x = tuple(torch.stack([torch.as_tensor(item[0][k]).float() for item in items])
                      for k in range(len(items[0][0])))
        else:
            x = torch.stack([torch.as_tensor(item[0]).float() for item in items])
        labels = torch.tensor([int(item[1]) for item in items]) if self.labelled else None
        return x, labels


def is_event_frames(shape) -> bool:
    return len(shape) == 4 and shape[0] == 2 and shape[1] == shape[2]


def open_samples(spec, shape, train: bool = False, samples: Optional[int] = None,
                 seed: int = 0) -> Samples:
    """The samples `spec` names, checked against the build's input `shape` ({name: shape} for
    a build with several inputs). spec None: the synthetic gestures for event-frame builds,
    else random spikes at DEFAULT_SPIKE_RATE."""
    if isinstance(shape, dict):
        shape = {name: tuple(int(s) for s in each) for name, each in shape.items()}
        if len(shape) == 1:
            (shape,) = shape.values()
    else:
        shape = tuple(int(s) for s in shape)
    if spec is not None and not isinstance(spec, str):  # a Python sequence of (x, label) from the API
        first = spec[0] if len(spec) else (None, None)
        return Samples(spec, f"{len(spec)} samples from a Python {type(spec).__name__}",
                       len(first) > 1 and first[1] is not None)
    if spec is None:
        spec = "synthetic" if not isinstance(shape, dict) and is_event_frames(shape) else f"random:{DEFAULT_SPIKE_RATE}"
    kind, _, arg = spec.partition(":")
    if kind in ("synthetic", "dvsgesture") and isinstance(shape, dict):
        raise InputError(
            f"--data {kind} gives one array of event frames, but this build takes {len(shape)} inputs "
            f"({', '.join(f'{name} {_shown(each)}' for name, each in shape.items())}). Pass one array per input "
            f"with --data npz:PATH (np.savez(PATH, {', '.join(f'{name}=...' for name in shape)}, y=labels)), or "
            "--data random:RATE for unlabelled spikes in every input.")
    if kind in ("synthetic", "dvsgesture"):
        return _event_frames(spec, shape, train, samples, seed)
    if kind == "npz":
        return _npz(arg, shape)
    if kind == "random":
        return _random(arg, shape, samples, seed)
    return _entry_point(kind, arg, spec, shape, train, samples, seed)


def _event_frames(spec, shape, train, samples, seed) -> Samples:
    from . import open_dataset

    if not is_event_frames(shape):
        raise InputError(
            f"--data {spec.split(':')[0]} gives event frames (2, H, W, T), but this build takes input of shape "
            f"{_shown(shape)}. Pass your own samples with --data npz:PATH (arrays x of shape (N, "
            f"{', '.join(map(str, shape))}) and optional labels y), or --data random:RATE for unlabelled spikes.")
    dataset = open_dataset(spec, train=train, size=shape[2], timesteps=shape[3], samples=samples, seed=seed)
    name = ("synthetic gestures (hybridc.data.SyntheticGestures)" if spec == "synthetic"
            else f"DvsGesture {'train' if train else 'test'} split in {spec.split(':', 1)[1]}")
    return Samples(dataset, name, True)


def _npz(path, shape) -> Samples:
    if not path:
        raise InputError("--data npz: needs a path, e.g. --data npz:samples.npz.")
    wanted = shape if isinstance(shape, dict) else {"x": shape}
    saved = ", ".join(f"{name}={name}" for name in wanted)

    def members(names):  # the inputs and, where saved, the labels
        missing = [name for name in wanted if name not in names]
        if missing:
            raise InputError(f"{path} has no array {', '.join(f'`{name}`' for name in missing)} (it has "
                             f"{', '.join(sorted(names))}); save the inputs as "
                             f"{', '.join(wanted)}, e.g. np.savez(path, {saved}, y=labels).")
        return [*wanted, *(["y"] if "y" in names else [])]

    arrays = read_arrays(path, select=members)
    if not isinstance(arrays, dict):
        raise InputError(f"{path} is an .npy file; --data npz: takes an .npz of the inputs and labels, e.g. "
                         f"np.savez(path, {saved}, y=labels).")
    xs = {name: arrays[name] for name in wanted}
    y = arrays.get("y")
    for name, x in xs.items():
        if x.ndim < 1 or tuple(x.shape[1:]) != wanted[name]:
            which = f"Array {name}" if isinstance(shape, dict) else "Array x"
            raise InputError(f"{which} in {path} has shape {tuple(x.shape)}, but this build takes (N, "
                             f"{', '.join(map(str, wanted[name]))}) in the layout its model's forward takes.")
    count = len(next(iter(xs.values())))
    for name, x in xs.items():
        if len(x) != count:
            raise InputError(f"The arrays in {path} hold different numbers of samples "
                             f"({', '.join(f'{k} {len(v)}' for k, v in xs.items())}); give each input every sample.")
    if y is not None and (y.ndim != 1 or len(y) != count):
        raise InputError(f"Array y in {path} must hold one label per sample: shape ({count},), got {tuple(y.shape)}.")
    if isinstance(shape, dict):
        samples = list(zip(*xs.values()))
    else:
        samples = list(xs["x"])
    items = list(zip(samples, y)) if y is not None else [(sample, None) for sample in samples]
    return Samples(items, f"{count} samples from {path}" + ("" if y is not None else " (no labels)"), y is not None)


class RandomSpikes:
    """Unlabelled Bernoulli spikes; item i is the same on every run (seeded per item)."""

    def __init__(self, count: int, shape, rate: float, seed: int = 0):
        self.count, self.shape, self.rate, self.seed = count, shape, rate, seed

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        import torch

        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        if isinstance(self.shape, dict):  # several inputs: spikes in each, in forward()'s order
            return tuple((torch.rand(shape, generator=generator) < self.rate).float()
                         for shape in self.shape.values()), None
        return (torch.rand(self.shape, generator=generator) < self.rate).float(), None


def _random(arg, shape, samples, seed) -> Samples:
    try:
        rate = float(arg) if arg else DEFAULT_SPIKE_RATE
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise InputError(f"--data random:RATE takes a spike probability between 0 and 1, got `{arg}`.")
    count = samples or 16
    shown = (", ".join(f"{name} {_shown(each)}" for name, each in shape.items()) if isinstance(shape, dict)
             else f"shape {_shown(shape)}")
    return Samples(RandomSpikes(count, shape, rate, seed), f"random spikes at rate {rate:g} "
                   f"(each entry 1 with probability {rate:g}), {shown}", False)


def _entry_point(kind, arg, spec, shape, train, samples, seed) -> Samples:
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if kind not in found:
        extra = f", or a registered {ENTRY_POINT_GROUP} entry point ({', '.join(sorted(found))})" if found else ""
        raise InputError(f"Unknown --data `{spec}`; use synthetic, dvsgesture:PATH, npz:PATH, random:RATE{extra}. "
                         f"A Python data set is registered as an entry point of group `{ENTRY_POINT_GROUP}`.")
    try:
        factory = found[kind].load()
        dataset = factory(arg, shape=shape, train=train, samples=samples, seed=seed)
        first = dataset[0] if len(dataset) else None
    except Exception as exc:  # noqa: BLE001 - user code may raise anything
        raise InputError(f"The data set `{kind}` ({found[kind].value}) raised {type(exc).__name__}: {exc}.") from None
    if first is not None:
        _check_entry_sample(kind, first[0], shape)
    labelled = first is not None and len(first) > 1 and first[1] is not None
    return Samples(dataset, f"data set `{kind}` ({found[kind].value}{', ' + arg if arg else ''})", labelled)


def _check_entry_sample(kind, x, shape) -> None:
    if isinstance(shape, dict):
        given = [tuple(part.shape) for part in x] if isinstance(x, (tuple, list)) else None
        if given != list(shape.values()):
            raise InputError(f"The data set `{kind}` gives samples of shape(s) {given or tuple(x.shape)}, but this build "
                             f"takes {len(shape)} inputs ({', '.join(f'{k} {_shown(v)}' for k, v in shape.items())}): "
                             "make each sample's x a tuple with one array per input, in forward()'s order.")
    elif tuple(x.shape) != shape:
        raise InputError(f"The data set `{kind}` gives samples of shape {tuple(x.shape)}, but this build "
                         f"takes {_shown(shape)}.")


def _shown(shape) -> str:
    return f"({', '.join(map(str, shape))})"
