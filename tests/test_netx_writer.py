"""The fast netx writer writes what h5py's high-level API wrote: for every block type the
Loihi target lowers (cuba, sigma-delta, rf, rf_iz chains; branching stages with their
segment and extra-synapse files), the files `LoihiTarget.preprocess` writes hold the same
tree (names, HDF5 types, shapes, values, attributes, creation properties) as the files it
writes with `h5py.File` in the writer's place, and netx loads them."""

import warnings

import h5py
import numpy as np
import pytest
import torch
from branch_models import BRANCH_MODELS
from helpers import NEURON, spikes
from helpers import RESONATOR as RF
from helpers import SIGMA_DELTA as SD
from lava.lib.dl import slayer

from hybridc.compiler.driver import lower
from hybridc.netx import writer as netx_writer
from hybridc.nn import Accumulator


class Chain(torch.nn.Module):
    """A spiking chain of the given blocks, counted over 4 steps into a linear head."""

    def __init__(self, blocks, features):
        super().__init__()
        self.snn = torch.nn.Sequential(*blocks)
        self.acc = Accumulator(4)
        self.head = torch.nn.Linear(features * 2, 3)

    def forward(self, x):
        return self.head(self.acc(self.snn(x)))


def cuba_chain():
    cuba = slayer.block.cuba
    return Chain([cuba.Input(None, delay_shift=False), cuba.Conv(NEURON, 2, 4, 3, padding=1, weight_scale=3),
                  cuba.Pool(NEURON, 2, weight_scale=2), slayer.neuron.Dropout(p=0.1),
                  cuba.Conv(NEURON, 4, 4, 3, stride=2, padding=1, weight_scale=3), cuba.Flatten(),
                  cuba.Dense(NEURON, 4 * 2 * 2, 6, weight_scale=3)], 6), spikes(1, 2, 8, 8, 8)


def sigma_delta_chain():
    sd = slayer.block.sigma_delta
    return Chain([sd.Input(SD), sd.Conv(SD, 2, 4, 3, padding=1, weight_scale=2), sd.Pool(SD, 2, weight_scale=0.5),
                  sd.Conv(SD, 4, 4, 3, stride=2, padding=1, weight_scale=2), sd.Flatten(),
                  sd.Dense(SD, 4 * 2 * 2, 8, weight_scale=2), sd.Output(SD, 8, 5, weight_scale=2)], 5), \
        torch.rand(1, 2, 8, 8, 8) * 2


def rf_chain():
    return Chain([slayer.block.rf.Dense(RF, 12, 8, weight_scale=3), slayer.block.rf.Dense(RF, 8, 6, weight_scale=3)],
                 6), spikes(1, 12, 8, density=0.3)


def rf_iz_chain():
    rf_iz = slayer.block.rf_iz
    return Chain([rf_iz.Flatten(), rf_iz.Dense(RF, 2 * 3 * 2, 6, weight_scale=3)], 6), spikes(1, 2, 3, 2, 8, density=0.3)


MODELS = {"cuba": cuba_chain, "sigma_delta": sigma_delta_chain, "rf": rf_chain, "rf_iz": rf_iz_chain, **BRANCH_MODELS}


def tree(path) -> dict:
    """Everything netx or a reader can see in an HDF5 file, by path."""
    items = {}

    def visit(name, obj):
        attrs = {k: obj.attrs[k] for k in obj.attrs}
        if isinstance(obj, h5py.Group):
            items[name] = ("group", attrs, obj.id.get_create_plist().get_obj_track_times())
        else:
            plist = obj.id.get_create_plist()
            items[name] = ("dataset", obj.id.get_type(), obj.shape, obj.dtype, obj[()], attrs, plist.get_layout(),
                           obj.chunks, obj.compression, plist.get_obj_track_times())

    with h5py.File(path, "r") as h5:
        h5.visititems(visit)
    return items


def assert_same_tree(old, new):
    a, b = tree(old), tree(new)
    assert list(a) == list(b), f"{new.name}: names differ"
    for name in a:
        (kind, *fa), (_, *fb) = a[name], b[name]
        if kind == "group":
            assert fa == fb, name
            continue
        htype, shape, dtype, value, attrs, *props = fa
        assert htype == fb[0], f"{name}: HDF5 type differs"  # H5Tequal: string kinds and encodings too
        assert (shape, dtype, attrs, props) == (fb[1], fb[2], fb[4], fb[5:]), name
        assert type(value) is type(fb[3]) and np.array_equal(value, fb[3]), f"{name}: {value} != {fb[3]}"


def _preprocess(model, x, workdir):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm, partitions, targets = lower(model, x, on_overflow="clip")
    partition = next(p for p in partitions if p.domain == "spiking")
    with torch.no_grad():
        return targets["spiking"].preprocess(partition, gm, workdir)


def _without_hashes(value):
    if isinstance(value, dict):
        return {k: _without_hashes(v) for k, v in value.items() if k != "sha256"}
    return [_without_hashes(v) for v in value] if isinstance(value, list) else value


def _netx_loads(stage, directory):
    from hybridc.netx.processes import import_lava_runtime

    import_lava_runtime()
    from lava.lib.dl import netx

    nets = [(stage.artifact, stage.inputs[0].shape[:-1], stage.layers)]
    if stage.segments:
        nets = [(s["artifact"], s["input_shape"], s["layers"]) for s in stage.segments]
    for artifact, input_shape, layers in nets:
        network = netx.hdf5.Network(net_config=str(directory / artifact), input_shape=tuple(input_shape))
        assert len(network.layers) == layers


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.lava  # netx loads the files
def test_files_equal_the_high_level_h5py_route_and_load_in_netx(name, tmp_path, monkeypatch):
    torch.manual_seed(0)
    model, x = MODELS[name]()
    new, old = tmp_path / "new", tmp_path / "old"
    new.mkdir(), old.mkdir()
    stage = _preprocess(model, x, new)
    with monkeypatch.context() as patch:
        patch.setattr(netx_writer, "File", lambda path: h5py.File(path, "w"))
        old_stage = _preprocess(model, x, old)
    assert _without_hashes(old_stage.to_dict()) == _without_hashes(stage.to_dict())
    files = sorted(p.name for p in new.iterdir())
    assert files == sorted(p.name for p in old.iterdir()) and stage.artifact in files
    if stage.links:
        assert stage.links["artifact"] in files
    for file in files:
        assert_same_tree(old / file, new / file)
    if name in ("cuba", "sigma_delta"):  # no writer deletes a dataset here: the very same bytes
        assert (old / stage.artifact).read_bytes() == (new / stage.artifact).read_bytes()
    _netx_loads(stage, new)


def _fill(group):
    """Every kind of value slayer's and hybridc's writers pass."""
    group.create_dataset("type", (1,), "S10", [b"conv"])
    group.create_dataset("shape", data=np.array([4, 2, 2]))
    group.create_dataset("groups", data=3)
    group.create_dataset("weight", data=np.arange(-6, 6, dtype=np.float32).reshape(3, 4) * 2)
    group.create_dataset("neuron/type", data="CUBA")
    group.create_dataset("neuron/gradedSpike", data=False)
    group.create_dataset("neuron/sinDecay", data=np.float64(2606.5))
    group.create_dataset("neuron/vThMant", data=torch.tensor(64))
    group.create_dataset("cast", data=np.array([1.75, -2.5]), dtype="i4")
    group.create_dataset("weight2", (2, 3), data=np.arange(6))
    group.create_group("empty")


def test_the_recording_reads_back_what_h5py_reads_from_the_file(tmp_path):
    """hybridc's writers read datasets back (RF decays, synapse copies and slices): the
    recording must give what reading the written file gives."""
    with netx_writer.File(tmp_path / "new.h5") as recorded, h5py.File(tmp_path / "old.h5", "w") as h5:
        _fill(recorded.create_group("layer/0"))
        _fill(h5.create_group("layer/0"))
        assert len(recorded["layer"]) == 1 and len(recorded["layer/0"]) == len(h5["layer/0"]) == 8
        assert list(recorded["layer/0"]) == list(h5["layer/0"]) and "neuron/type" in recorded["layer/0"]
        assert "neuron/nothing" not in recorded["layer/0"] and "type/x" not in recorded["layer/0"]
        for name in ("type", "shape", "groups", "weight", "neuron/type", "neuron/gradedSpike", "neuron/sinDecay",
                     "neuron/vThMant", "cast", "weight2"):
            ours, theirs = recorded[f"layer/0/{name}"][()], h5[f"layer/0/{name}"][()]
            assert type(ours) is type(theirs) and np.asarray(ours).dtype == np.asarray(theirs).dtype, name
            assert np.array_equal(ours, theirs), name
        assert np.array_equal(recorded["layer/0/weight"][()][:, 1:3], h5["layer/0/weight"][()][:, 1:3])
        for handle in (recorded, h5):
            del handle["layer/0/groups"]
            handle["layer/0"].create_dataset("groups", data=4)
    assert_same_tree(tmp_path / "old.h5", tmp_path / "new.h5")


def test_misuse_is_refused_as_h5py_refuses_it_and_a_failed_write_leaves_no_file(tmp_path):
    recorded = netx_writer.File(tmp_path / "x.h5")
    recorded.create_dataset("a/b", data=1)
    with pytest.raises(ValueError, match="already exists"):
        recorded.create_group("a")
    with pytest.raises(TypeError, match="(?i)dataset"):
        recorded.create_dataset("a/b/c", data=1)
    with pytest.raises(TypeError, match="compression"):
        recorded.create_dataset("z", data=np.zeros(3), compression="gzip")
    with pytest.raises(KeyError):
        recorded["a/missing"]
    with pytest.raises(TypeError, match="has no native HDF5 equivalent"):  # when recorded, as h5py: the layer is named
        recorded.create_dataset("objects", data=np.array([object(), object()]))
    recorded.close()
    stamp = (tmp_path / "x.h5").stat().st_mtime_ns
    recorded.close()  # a second close writes nothing
    assert (tmp_path / "x.h5").stat().st_mtime_ns == stamp
    with pytest.raises(RuntimeError), netx_writer.File(tmp_path / "y.h5") as h5:
        h5.create_dataset("a", data=1)
        raise RuntimeError("a writer failed")
    assert not (tmp_path / "y.h5").exists()


def test_a_recorded_array_is_a_copy(tmp_path):
    """The file is written at close: an array the caller changes afterwards must not leak in."""
    weight = np.ones((2, 2))
    with netx_writer.File(tmp_path / "x.h5") as h5:
        h5.create_dataset("weight", data=weight)
        h5.create_dataset("view", data=weight[:, :1])
        weight[:] = 5
    with h5py.File(tmp_path / "x.h5") as h5:
        assert h5["weight"][()].tolist() == [[1, 1], [1, 1]] and h5["view"][()].tolist() == [[1], [1]]
