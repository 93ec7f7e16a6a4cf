"""Run a Loihi stage's netx HDF5 in Lava's bit-accurate simulator (Loihi2SimCfg, fixed_pt)."""

from pathlib import Path

import numpy as np
import torch

from ..build.untrusted import parsing
from ..errors import InputError
from ..manifest import Stage


def to_netx(x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W, T) -> (N, W, H, C, T); (N, F, T) unchanged."""
    return (x.permute(0, 3, 2, 1, 4) if x.dim() == 5 else x).cpu().numpy()


def from_netx(y: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(y)).float()
    return t.permute(0, 3, 2, 1, 4) if t.dim() == 5 else t


def check_input(stage: Stage, x: torch.Tensor) -> None:
    """A loihi stage takes unary spikes of the shape it was compiled for (PyTorch layout)."""
    spec = stage.inputs[0]
    expected = tuple(spec.shape[:-1])
    if x.dim() not in (3, 5) or tuple(to_netx(x[:1]).shape[1:-1]) != expected:
        raise InputError(
            f"Stage `{stage.name}` (loihi) expects spikes of PyTorch shape (N, "
            f"{', '.join(map(str, spec.pytorch_shape()[:-1]))}, T), got {tuple(x.shape)}."
        )
    if not spec.graded and not bool(((x == 0) | (x == 1)).all()):
        values = torch.unique(x)
        raise InputError(
            f"Stage `{stage.name}` (loihi) receives unary spikes, but the input holds values "
            f"{values[:6].tolist()}...; binarise it (e.g. `(x > 0).float()`)."
        )


def run_stage(stage: Stage, build_dir: Path, x: torch.Tensor, progress=None) -> torch.Tensor:
    """Runs each sample through Lava's bit-accurate fixed-point simulator."""
    check_input(stage, x)
    spec = stage.inputs[0]
    data = to_netx(x)
    if spec.graded:
        data = to_graded(spec.graded, data)
    outputs = []
    for i in range(data.shape[0]):
        outputs.append(simulate(Path(build_dir) / stage.artifact, data[i], stage.delay,
                                input_shape=tuple(spec.shape[:-1])))
        if progress:
            progress()
    out = from_netx(np.stack(outputs))
    graded = stage.outputs[0].graded
    return out / graded["scale"] if graded else out


def to_graded(graded: dict, values: np.ndarray) -> np.ndarray:
    """Real values -> the integers a Delta encoder receives: value x scale, rounded to the
    grid slayer's input quantisation uses (round half to even, like torch.round) and clipped."""
    step = graded.get("step", 1)
    low, high = graded.get("range", (-(1 << 23), (1 << 23) - 1))
    return np.clip(np.round(values * graded["scale"] / step) * step, low, high)


def import_lava_runtime():
    """Import Lava's runtime even when the process already fixed its multiprocessing start
    method. Lava calls `multiprocessing.set_start_method('fork')` at import, which raises
    "context has already been set" once anything (tqdm's lock, which torch.fx's
    Interpreter creates when tqdm is installed, for one) has touched the default context.
    Asking again for the method already in force is harmless, so it is let through."""
    import multiprocessing

    original = multiprocessing.set_start_method

    def set_start_method(method, force=False):
        if not force and multiprocessing.get_start_method(allow_none=True) == method:
            return
        original(method, force)

    multiprocessing.set_start_method = set_start_method
    try:
        from lava.lib.dl import netx  # noqa: F401
    finally:
        multiprocessing.set_start_method = original


def simulate(net_path: Path, sample: np.ndarray, delay: int, input_shape=None, **network_options) -> np.ndarray:
    """One sample (netx layout, time last) through netx under Loihi2SimCfg(fixed_pt).
    Returns the output spikes aligned with PyTorch's (shifted back by `delay`).
    network_options: further `netx.hdf5.Network` arguments (num_layers, skip_layers, ...)."""
    import_lava_runtime()
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io

    steps = sample.shape[-1]
    with parsing(net_path, "a netx HDF5 network taking the manifest's input shape"):
        net = netx.hdf5.Network(net_config=str(net_path),
                                input_shape=input_shape if input_shape and len(input_shape) == 3 else None,
                                **network_options)
        pad = len(net) + delay + 1  # let the last spikes drain through every layer
        padded = np.concatenate([sample, np.zeros(sample.shape[:-1] + (pad,))], axis=-1)
        source = io.source.RingBuffer(data=padded)
        sink = io.sink.RingBuffer(shape=net.out.shape, buffer=steps + pad)
        if isinstance(net.in_layer, netx.blocks.process.Input):
            # netx's input layer (a Delta encoder) takes its data at the neuron, not at `inp`
            source.s_out.connect(net.in_layer.neuron.a_in)
        else:
            source.s_out.connect(net.inp)
        net.out.connect(sink.a_in)
    with parsing(net_path, "a netx HDF5 network Lava can run"):
        try:
            net.run(condition=RunSteps(num_steps=steps + pad), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
            out = sink.data.get()
        finally:
            net.stop()
    return out[..., delay:delay + steps]
