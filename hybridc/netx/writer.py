"""A fast writer of netx HDF5 files: record the tree, then write it in one go.

slayer's `export_hdf5` and hybridc's own layer writers speak h5py's Group API
(`create_group`, `create_dataset`, ...). Through h5py's high-level API every dataset
costs about 0.3 ms of Python bookkeeping (property lists, type objects, path lookups),
most of a spiking stage's compile time. `File` takes the same calls into memory
(values converted exactly as h5py converts them) and, on close, writes every group and
dataset with h5py's low-level API, reusing one type, dataspace and property list per
kind, into an in-memory HDF5 image that is saved once (about 0.06 ms a dataset, HDF5's
own cost; the image is one more copy of the file in memory while it is written, and netx
files are small). The file holds the same tree (names, dtypes, shapes, values, creation
properties) as the high-level route, byte for byte when the writers only add;
`tests/test_netx_writer.py` compares the two. `benchmarks/netx_write_bench.py` times both.
"""

from pathlib import Path

import numpy as np

__all__ = ["File", "Group", "Dataset"]
_PLAIN = (bool, int, float)  # Python scalars h5py converts with plain numpy


class Dataset:
    """A recorded dataset: the array h5py would write, and the file's dtype and shape."""

    __slots__ = ("data", "dtype", "shape")

    def __init__(self, data, dtype, shape):
        self.data, self.dtype, self.shape = data, dtype, shape

    def __getitem__(self, key):
        """What reading the written file gives: the file's dtype, strings as bytes."""
        from h5py import h5t

        data = self.data
        if data is None:
            raise ValueError("this dataset was created without data; hybridc's netx writer cannot read it back")
        if h5t.check_string_dtype(self.dtype) is not None and self.dtype.kind == "O":
            data = np.vectorize(lambda s: s.encode() if isinstance(s, str) else s, otypes=[object])(data)
        elif data.dtype != self.dtype:
            data = data.astype(self.dtype)
        return data[key]


class Group:
    """A recorded group: children in creation order (h5py lists them sorted by name)."""

    __slots__ = ("_items", "_root")

    def __init__(self, root=None):
        self._items = {}
        self._root = root if root is not None else self

    # -- navigation ---------------------------------------------------------------------
    def _parent(self, name: str, create: bool):
        """(group holding the last part of `name`, that part); '/'-paths as in h5py."""
        if "/" not in name:
            return self, name
        group = self._root if name.startswith("/") else self
        *parents, last = [part for part in name.split("/") if part]
        for part in parents:
            group = group.require_group(part) if create else group[part]
            if not isinstance(group, Group):
                raise TypeError(f"`{part}` in `{name}` is a dataset, not a group")
        return group, last

    def __getitem__(self, name: str):
        group, last = self._parent(name, create=False)
        return group._items[last]

    def __contains__(self, name: str) -> bool:
        try:
            self[name]
        except (KeyError, TypeError):
            return False
        return True

    def __delitem__(self, name: str):
        group, last = self._parent(name, create=False)
        del group._items[last]

    def __len__(self) -> int:
        return len(self._items)

    def keys(self):
        return sorted(self._items, key=lambda n: n.encode())

    def __iter__(self):
        return iter(self.keys())

    # -- creation -----------------------------------------------------------------------
    def _add(self, name: str, item, create_parents: bool):
        group, last = self._parent(name, create=create_parents)
        if last in group._items:
            raise ValueError(f"Unable to create `{name}`: the name already exists")
        group._items[last] = item
        return item

    def create_group(self, name: str):
        return self._add(name, Group(self._root), create_parents=True)

    def require_group(self, name: str):
        group, last = self._parent(name, create=True)
        item = group._items.get(last)
        if item is None:
            return group._add(last, Group(self._root), create_parents=False)
        if not isinstance(item, Group):
            raise TypeError(f"Incompatible object (Dataset) already exists at `{name}`")
        return item

    def create_dataset(self, name: str, shape=None, dtype=None, data=None, **options):
        """h5py's create_dataset for what netx files hold: no chunking, compression or fill options."""
        # h5py's own conversion of `data` (what its high-level create_dataset applies)
        from h5py._hl.base import array_for_new_object

        if options:
            raise TypeError(f"hybridc's netx writer does not take the dataset options {sorted(options)}")
        if dtype is None and (type(data) in _PLAIN or isinstance(data, (np.ndarray, np.generic))
                              and data.dtype.kind in "biuf"):
            data = np.array(data, order="C")  # what h5py's conversion gives these, as a copy
        elif data is not None:
            given = data
            data = array_for_new_object(data, specified_dtype=dtype)
            if data is given or not data.flags.owndata:  # the caller may change its array before the flush
                data = data.copy()
        if shape is None:
            if data is None:
                raise TypeError("One of data, shape or dtype must be specified")
            shape = data.shape
        else:
            shape = (shape,) if isinstance(shape, int) else tuple(shape)
            if data is not None:
                if int(np.prod(shape)) != data.size:
                    raise ValueError("Shape tuple is incompatible with data")
                data = data.reshape(shape)  # the same C-order buffer h5py writes
        if dtype is None:
            if data is None:
                raise TypeError(f"create_dataset(`{name}`) needs data or a dtype")
            dtype = data.dtype
        _storable(np.dtype(dtype))
        return self._add(name, Dataset(data, np.dtype(dtype), shape), create_parents=True)


class File(Group):
    """`h5py.File(path, "w")` for the writers: records; `close()` (or leaving the `with`
    block without an exception) writes the file. After an exception nothing is written."""

    __slots__ = ("path", "written")

    def __init__(self, path):
        super().__init__()
        self.path, self.written = Path(path), False

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.close()

    def close(self):
        if not self.written:  # closing twice is harmless, as in h5py
            _write(self, self.path)
            self.written = True


class _Writer:
    """Writes a recorded tree with h5py's low-level API, making one HDF5 type, dataspace and
    property list per kind of object: what h5py's high-level API makes afresh every time."""

    def __init__(self):
        from h5py import h5d, h5g, h5p, h5s, h5t

        self.h5d, self.h5g, self.h5s, self.h5t = h5d, h5g, h5s, h5t
        self.dataset = h5p.create(h5p.DATASET_CREATE)
        self.dataset.set_obj_track_times(False)  # h5py's default: no timestamps
        self.group = h5p.create(h5p.GROUP_CREATE)
        self.group.set_obj_track_times(False)
        self.links = {}
        for coding in (h5t.CSET_ASCII, h5t.CSET_UTF8):  # as h5py's Group._e: intermediate groups, name coding
            self.links[coding] = h5p.create(h5p.LINK_CREATE)
            self.links[coding].set_create_intermediate_group(True)
            self.links[coding].set_char_encoding(coding)
        self.types, self.spaces = {}, {}

    def types_of(self, dataset):
        """(file type, memory type): h5py's py_create(dtype, logical=1) and py_create(data's dtype).
        Keyed with the dtype's metadata: h5py tags string dtypes that compare equal to 'O'."""
        data = dataset.data
        key = (dataset.dtype, _tag(dataset.dtype), None if data is None else data.dtype,
               None if data is None else _tag(data.dtype))
        found = self.types.get(key)
        if found is None:
            memory = None if data is None else self.h5t.py_create(data.dtype)
            found = self.types[key] = (self.h5t.py_create(dataset.dtype, logical=1), memory)
        return found

    def space(self, shape):
        found = self.spaces.get(shape)
        if found is None:
            found = self.spaces[shape] = self.h5s.create_simple(shape)
        return found

    def write(self, group: Group, gid):
        """Depth first, in creation order: the order the high-level route would have used."""
        for name, item in group._items.items():
            try:  # h5py's encoding of a link name: ASCII when it can, else UTF-8 (group links say which)
                encoded, coding = name.encode("ascii"), self.h5t.CSET_ASCII
            except UnicodeEncodeError:
                encoded, coding = name.encode("utf8"), self.h5t.CSET_UTF8
            if isinstance(item, Group):
                self.write(item, self.h5g.create(gid, encoded, lcpl=self.links[coding], gcpl=self.group))
                continue
            file_type, memory_type = self.types_of(item)
            dataset = self.h5d.create(gid, encoded, file_type, self.space(item.shape), dcpl=self.dataset)
            if item.data is not None:
                dataset.write(self.h5s.ALL, self.h5s.ALL, item.data, mtype=memory_type)


_STORABLE = set()


def _storable(dtype):
    """Raise now, as h5py's create_dataset would, for a dtype HDF5 cannot store (an object
    array): a writer's error then names the layer being written, not the final flush."""
    key = (dtype, _tag(dtype))
    if key not in _STORABLE:
        from h5py import h5t

        h5t.py_create(dtype, logical=1)
        _STORABLE.add(key)


def _tag(dtype):
    return tuple(dtype.metadata.items()) if dtype.kind == "O" and dtype.metadata else None


def _write(root: Group, path: Path):
    """The whole file into an in-memory HDF5 image (h5py's "core" driver), saved at close."""
    import h5py

    with h5py.File(path, "w", driver="core", backing_store=True) as h5:
        _Writer().write(root, h5.id)
