"""Arrays from the .npy and .npz files users hand hybridc (`run -i`, `pipeline -i`, `--data
npz:`): one reader, so every command refuses the same files with the same words.

The files are untrusted input: no pickles, and anything NumPy cannot read (a truncated
file, an object array, a zip that is not an .npz) becomes an InputError naming the file.
"""

import re
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from .errors import InputError

__all__ = ["NUMERIC", "in_input_order", "positional", "read_arrays"]

NUMERIC = "biufc"  # numpy dtype kinds: bool, signed, unsigned, float, complex (refused later, by name)


def read_arrays(path: Path, mmap: bool = False) -> Union[np.ndarray, dict]:
    """The array of an .npy (memory-mapped with `mmap`), or {name: array} of an .npz (read
    whole; never empty). InputError for anything else."""
    try:
        loaded = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                loaded = {name: loaded[name] for name in loaded.files}
    except Exception as exc:  # noqa: BLE001 - whatever NumPy raises on a malformed file
        raise InputError(f"{path} is not a readable .npy/.npz array: {exc}.") from None
    if isinstance(loaded, dict) and not loaded:
        raise InputError(f"{path} holds no arrays; save one per model input (np.savez(path, input=...)).")
    for name, value in (loaded.items() if isinstance(loaded, dict) else [("", loaded)]):
        # NumPy hands back an .npz member that is not an .npy as raw bytes, and reads strings
        if not isinstance(value, np.ndarray) or value.dtype.kind not in NUMERIC:
            what = f"a {value.dtype} array" if isinstance(value, np.ndarray) else "not an .npy array"
            raise InputError(f"{path}{f' member `{name}`' if name else ''} is {what}; hybridc reads numbers "
                             "(np.save / np.savez of numeric arrays).")
    return loaded


def positional(named: dict, path: Path) -> Optional[list]:
    """np.savez(path, a, b)'s arrays in their order (arr_0, arr_1, ...), or None when `named`
    holds other names. InputError for a gap in the numbering."""
    if not all(re.fullmatch(r"arr_\d+", name) for name in named):
        return None
    order = [f"arr_{i}" for i in range(len(named))]
    if set(order) != set(named):
        raise InputError(f"{path} holds {', '.join(sorted(named))}: positional arrays must be arr_0 to "
                         f"arr_{len(named) - 1} without a gap; or save them by input name.")
    return [named[name] for name in order]


def in_input_order(named: dict, names: Sequence[str], path: Path) -> list:
    """An .npz's arrays for the model inputs `names`, in forward()'s order: by input name, or
    np.savez's positional arrays; InputError saying how to save them otherwise."""
    if set(names) <= set(named):
        return [named[name] for name in names]
    ordered = positional(named, path)
    if ordered is not None and len(ordered) == len(names):
        return ordered
    raise InputError(f"{path} holds {', '.join(sorted(named))}; the build takes {', '.join(names)}: save one "
                     f"array per input under those names (np.savez(path, {', '.join(f'{n}=...' for n in names)})).")
