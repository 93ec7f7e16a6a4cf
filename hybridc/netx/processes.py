"""What `netx.hdf5.Network` hands Lava's processes for a layer's fields, and importing netx.

netx does not pass a file's values to Lava as they are: dense weights go through its
`optimize_weight_bits`, conv weights are flipped into Lava's (out, W, H, in) order and the
(H, W) pairs reversed into (x, y). The Lava runner of a branching stage builds its extra
synapses with these, and the emulator reproduces the dense weights with the same function.
"""

import importlib.util
from functools import cache
from pathlib import Path

import numpy as np

__all__ = ["conv_weight", "import_lava_runtime", "netx_utils", "optimize_weight_bits", "xy_pair"]


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


@cache
def netx_utils():
    """netx's own `lava.lib.dl.netx.utils`, loaded without the netx package `__init__`, which
    imports the whole Lava runtime (seconds) that a reader of the file does not need."""
    spec = importlib.util.find_spec("lava.lib.dl.netx")
    path = Path(spec.submodule_search_locations[0]) / "utils.py"
    module_spec = importlib.util.spec_from_file_location("hybridc_netx_utils", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def optimize_weight_bits(weight: np.ndarray) -> tuple:
    """netx's `optimize_weight_bits` of a dense weight matrix: (weight, num_weight_bits,
    weight_exp, sign mode), what netx gives Lava's Dense process."""
    return netx_utils().optimize_weight_bits(weight)


def xy_pair(value) -> np.ndarray:
    """A stored (H, W) pair as netx hands it to Lava's Conv: (x, y), a scalar for both."""
    return np.array([value, value]) if np.isscalar(value) or np.ndim(value) == 0 else np.asarray(value)[::-1]


def conv_weight(weight: np.ndarray) -> np.ndarray:
    """A stored conv weight (out, in, H, W) as netx hands it to Lava's Conv: flipped, (out, W, H, in)."""
    weight = weight[:, :, ::-1, ::-1]
    return weight.reshape(weight.shape[:4]).transpose((0, 3, 2, 1))
