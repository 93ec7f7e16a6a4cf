"""Arrays from the .npy and .npz files users hand hybridc (`run -i`, `pipeline -i`, `--data
npz:`): one reader, so every command refuses the same files with the same words.

The files are untrusted input: no pickles, and anything NumPy cannot read (a truncated
file, an object array, a zip that is not an .npz) becomes an InputError naming the file.
"""

import re
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

from .errors import InputError

__all__ = ["NUMERIC", "input_members", "positional", "read_arrays"]

NUMERIC = "biufc"  # numpy dtype kinds: bool, signed, unsigned, float, complex (refused later, by name)


def read_arrays(path: Path, mmap: bool = False, select: Optional[Callable] = None) -> Union[np.ndarray, dict]:
    """The array of an .npy (memory-mapped with `mmap`), or {name: array} of an .npz (never
    empty): the members select(names) picks, or all. InputError for anything else, and for a
    picked member that is not numbers (others may hold anything: class names, notes)."""
    try:
        loaded = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                if not loaded.files:
                    raise InputError(f"{path} holds no arrays.")
                names = select(list(loaded.files)) if select else loaded.files
                loaded = {name: loaded[name] for name in names}
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever NumPy raises on a malformed file
        raise InputError(f"{path} is not a readable .npy/.npz array: {exc}.") from None
    for name, value in (loaded.items() if isinstance(loaded, dict) else [("", loaded)]):
        # NumPy hands back an .npz member that is not an .npy as raw bytes, and reads strings
        if not isinstance(value, np.ndarray) or value.dtype.kind not in NUMERIC:
            what = f"a {value.dtype} array" if isinstance(value, np.ndarray) else "not an .npy array"
            raise InputError(f"{path}{f' member `{name}`' if name else ''} is {what}; hybridc reads numbers "
                             "(np.save / np.savez of numeric arrays).")
    return loaded


def positional(names: list, path: Path, whole: bool = True) -> Optional[list]:
    """np.savez(path, a, b)'s member names in their order (arr_0, arr_1, ...), or None when
    there are none. whole: every member must be positional, numbered without a gap (InputError
    otherwise); else the run from arr_0 up, other members left alone."""
    if whole and not all(re.fullmatch(r"arr_\d+", name) for name in names):
        return None
    order = []
    while f"arr_{len(order)}" in names:
        order.append(f"arr_{len(order)}")
    if whole and len(order) != len(names):
        raise InputError(f"{path} holds {', '.join(sorted(names))}: positional arrays must be arr_0 to "
                         f"arr_{len(names) - 1} without a gap; or save them by input name.")
    return order or None


def input_members(names: list, inputs: Sequence[str], path: Path) -> list:
    """The .npz members that hold the model inputs `inputs`, in forward()'s order: by input
    name, or np.savez's positional arrays (other members left alone); InputError saying how to
    save them otherwise."""
    if set(inputs) <= set(names):
        return list(inputs)
    ordered = positional(names, path, whole=False)
    if ordered is not None and len(ordered) >= len(inputs):
        return ordered[:len(inputs)]
    raise InputError(f"{path} holds {', '.join(sorted(names))}; the build takes {', '.join(inputs)}: save one "
                     f"array per input under those names (np.savez(path, {', '.join(f'{n}=...' for n in inputs)})).")
