"""Arrays users hand hybridc (`run -i`, `pipeline -i`, `--data npz:`) through one reader: the
same files refused with the same words everywhere, and never unpickled."""

import pickle
import zipfile

import numpy as np
import pytest

from hybridc.array_files import input_members, read_arrays
from hybridc.cli.run import read_inputs
from hybridc.data.sources import open_samples
from hybridc.errors import InputError


def _malformed(tmp_path):
    """A file of each kind NumPy must not be trusted with."""
    (tmp_path / "truncated.npy").write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'sh")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(tmp_path / "zip.npz", "w") as archive:  # a zip holding a pickle, not an array
        archive.writestr("x.npy", pickle.dumps([1, 2, 3]))
    np.savez(tmp_path / "empty.npz")
    np.save(tmp_path / "strings.npy", np.array(["0", "1"]))
    np.savez(tmp_path / "strings.npz", x=np.array(["0", "1"]))
    return ["truncated.npy", "objects.npy", "zip.npz", "empty.npz", "strings.npy", "strings.npz"]


def test_every_reader_refuses_malformed_files_with_the_files_name(tmp_path):
    for name in _malformed(tmp_path):
        path = tmp_path / name
        for read in (lambda: read_arrays(path), lambda: read_arrays(path, mmap=True), lambda: read_inputs([path])):
            with pytest.raises(InputError, match=name.replace(".", r"\.")):
                read()
        if name.endswith(".npz"):  # --data npz: reads .npz files only
            with pytest.raises(InputError, match=name.replace(".", r"\.")):
                open_samples(f"npz:{path}", (4, 3))


def test_npy_handed_to_data_npz_says_how_to_save_one(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 4, 3), np.float32))
    with pytest.raises(InputError, match=r"is an \.npy file.*np\.savez\(path, x=x, y=labels\)"):
        open_samples(f"npz:{tmp_path / 'x.npy'}", (4, 3))


def test_inputs_by_name_or_position_in_forward_order(tmp_path):
    names = ["input", "input_1"]
    assert input_members(["input_1", "input", "y"], names, "f.npz") == names
    assert input_members(["arr_1", "arr_0"], names, "f.npz") == ["arr_0", "arr_1"]
    assert input_members(["arr_1", "arr_0", "arr_2", "y"], names, "f.npz") == ["arr_0", "arr_1"]  # extras alone
    with pytest.raises(InputError, match=r"holds arr_0, arr_2; the build takes input, input_1"):
        input_members(["arr_0", "arr_2"], names, "f.npz")
    with pytest.raises(InputError, match=r"holds frame, spikes; the build takes input, input_1.*np\.savez\(path, "
                                         r"input=\.\.\., input_1=\.\.\.\)"):
        input_members(["spikes", "frame"], names, "f.npz")
    a, b = np.zeros((2, 3)), np.ones((2, 5))
    np.savez(tmp_path / "both.npz", a, b)
    x = read_inputs([tmp_path / "both.npz"])
    assert isinstance(x, tuple) and [v.shape for v in x] == [(2, 3), (2, 5)]
    np.savez(tmp_path / "gap.npz", arr_0=a, arr_2=b)
    with pytest.raises(InputError, match=r"gap\.npz holds arr_0, arr_2: positional arrays must be arr_0 to arr_1"):
        read_inputs([tmp_path / "gap.npz"])


def test_members_nobody_reads_may_hold_anything(tmp_path):
    """Only the members a command picks must be numbers: class names saved beside the samples
    do not stop --data npz: (which reads x and y)."""
    x = (np.random.default_rng(0).random((3, 4, 5)) < 0.5).astype(np.float32)
    np.savez(tmp_path / "named.npz", x=x, y=np.array([0, 1, 1]), classes=np.array(["left", "right"]))
    samples = open_samples(f"npz:{tmp_path / 'named.npz'}", (4, 5))
    assert len(samples.items) == 3 and samples.labelled
    assert read_arrays(tmp_path / "named.npz", select=lambda names: ["x"])["x"].shape == (3, 4, 5)
    with pytest.raises(InputError, match="member `classes` is a <U5 array"):
        read_arrays(tmp_path / "named.npz")
