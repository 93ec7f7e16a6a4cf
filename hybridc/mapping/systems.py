"""The resource model: what one chip holds, per core and per chip, and the systems built of
chips. Every figure is data with its source and its kind (documented by the vendor or a
peer's code, derived from documented figures, an estimate, or unverified), shipped in
`chip_<name>.json` and `systems.json` beside this module; nothing about a chip is written in
the mapper. A user's system file is untrusted input: every field is checked, and a
malformed one is a SystemFileError naming it.

A user's file:

    {"format": "hybridc-system/1", "name": "my-board", "chips": 2,
     "chip": "loihi2"}                        # a shipped chip, or a chip of its own:
     "chip": {"name": "mine", "base": "loihi2",          # base: start from a shipped chip
              "figures": {"neurons_per_core": {"value": 4096, "kind": "estimate",
                                               "source": "INRC notes"}}}}
"""

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..errors import SystemFileError
from ..manifest import MAX_COST

HERE = Path(__file__).resolve().parent
SYSTEM_FORMAT = "hybridc-system/1"
CHIP_FORMAT = "hybridc-chip/1"
KINDS = ("documented", "derived", "estimate", "unverified")
MAX_FILE_BYTES = 1 << 20
MAX_COUNT = 1 << 40
MAX_CHIPS = 1 << 20

# figure -> (type, what it limits). The mapper checks the per-core limits a chip defines.
FIGURES = {
    "cores_per_chip": (int, "neuro cores on one chip"),
    "neurons_per_core": (int, "neurons (compartments) one core holds"),
    "synapses_per_core": (int, "synapses (connections) one core holds"),
    "synapse_bits_per_core": (int, "bits of synapse memory on one core (stored weights x weight_bits)"),
    "input_axons_per_core": (int, "distinct source neurons whose spikes one core receives"),
    "output_axons_per_core": (int, "axons leaving one core: each neuron's spike, once per destination core"),
    "weight_bits": (int, "bits of one stored weight"),
    "conv_weight_sharing": (bool, "whether a conv kernel is stored once per core rather than once per connection"),
    "layers_share_cores": (bool, "whether groups of different layers may share a core (the limits then hold for "
                                 "their sum)"),
    "graded_spike_bits": (int, "payload bits of a graded spike (recorded, not checked)"),
    "max_delay": (int, "longest synaptic delay in time steps (recorded, not checked)"),
    # costs, not limits: where a system gives them, `profile` costs the spikes crossing chips apart
    "chip_crossing_spike_energy_pj": (float, "energy one spike delivered to a core on another chip costs beyond an "
                                             "on-chip spike (pJ; used by profile)"),
    "chip_crossing_spike_time_ns": (float, "time a chip-to-chip link takes for one spike (ns; profile charges an "
                                           "inference's crossing spikes through one link in turn)"),
}
REQUIRED = ("cores_per_chip", "neurons_per_core")


@dataclass(frozen=True)
class Figure:
    value: object
    kind: str
    source: str


@dataclass(frozen=True)
class Chip:
    name: str
    title: str
    figures: dict  # name -> Figure

    def get(self, name: str, default=None):
        figure = self.figures.get(name)
        return default if figure is None else figure.value


@dataclass(frozen=True)
class System:
    name: str
    title: str
    chips: int
    chip: Chip
    source: str  # "shipped" or the user's file

    @property
    def cores(self) -> int:
        return self.chips * self.chip.get("cores_per_chip")

    def describe(self) -> dict:
        """The system as the manifest records it: name, chips, chip, and every figure used."""
        return {"name": self.name, "source": "shipped" if self.source == "shipped" else "file",
                "chips": self.chips, "chip": self.chip.name,
                "cores_per_chip": self.chip.get("cores_per_chip"), "cores": self.cores,
                "figures": {name: {"value": f.value, "kind": f.kind, "source": f.source}
                            for name, f in self.chip.figures.items()}}


def _refuse(where: str, what: str, path) -> None:
    raise SystemFileError(f"System file {path}: `{where}` {what}. See docs/targets.md (\"Will it fit\") for the "
                          "format; `hybridc compile --system loihi2|kapoho-point|hala-point|loihi1` uses a shipped "
                          "system.")


def _text(value, where, path, limit=400) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        _refuse(where, f"must be a non-empty text of at most {limit} characters, not {value!r:.60}", path)
    return value


def _figures(data, where, path, base: dict) -> dict:
    if not isinstance(data, dict):
        _refuse(where, f"must be an object of figures, not {type(data).__name__}", path)
    figures = dict(base)
    for name, entry in data.items():
        at = f"{where}/{name}"
        if name not in FIGURES:
            _refuse(at, f"is not a figure hybridc knows (known: {', '.join(FIGURES)})", path)
        if not isinstance(entry, dict) or set(entry) != {"value", "kind", "source"}:
            _refuse(at, "must be an object with exactly `value`, `kind` and `source`", path)
        kind_of, _ = FIGURES[name]
        value = entry["value"]
        if kind_of is bool:
            if not isinstance(value, bool):
                _refuse(f"{at}/value", f"must be true or false, not {value!r:.60}", path)
        elif kind_of is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_COST:
                _refuse(f"{at}/value", f"must be a number from 0 to {MAX_COST:g}, not {value!r:.60}", path)
        elif isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
            _refuse(f"{at}/value", f"must be an integer from 1 to {MAX_COUNT}, not {value!r:.60}", path)
        if entry["kind"] not in KINDS:
            _refuse(f"{at}/kind", f"must be one of {', '.join(KINDS)}, not {entry['kind']!r:.60}", path)
        figures[name] = Figure(value, entry["kind"], _text(entry["source"], f"{at}/source", path))
    for name in REQUIRED:
        if name not in figures:
            _refuse(f"{where}/{name}", "is missing (every chip gives cores_per_chip and neurons_per_core)", path)
    if "synapse_bits_per_core" in figures and "weight_bits" not in figures:
        _refuse(f"{where}/weight_bits", "is missing: synapse_bits_per_core needs the bits of a weight", path)
    return figures


def _read_json(path: Path, what: str):
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise SystemFileError(f"{what} {path} is larger than {MAX_FILE_BYTES:,} bytes; a system file is small.")
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SystemFileError(f"{what} {path} cannot be read ({exc.strerror or exc}).") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise SystemFileError(f"{what} {path} is not JSON ({exc}).") from exc


@cache
def chip(name: str) -> Chip:
    """A shipped chip generation (`chip_<name>.json`)."""
    path = HERE / f"chip_{name}.json"
    if name not in shipped_chips():
        raise SystemFileError(f"No shipped chip {name!r}; shipped: {', '.join(shipped_chips())}.")
    data = _read_json(path, "Chip file")
    return Chip(data["name"], data["title"], _figures(data["figures"], "figures", path, {}))


def shipped_chips() -> tuple:
    return tuple(sorted(p.stem.removeprefix("chip_") for p in HERE.glob("chip_*.json")))


@cache
def _catalogue() -> dict:
    return _read_json(HERE / "systems.json", "Systems file")


def shipped_systems() -> dict:
    """{name: System} of every shipped system, smallest first (by cores)."""
    found = [System(name, entry["title"], entry["chips"], chip(entry["chip"]), "shipped")
             for name, entry in _catalogue()["systems"].items()]
    return {s.name: s for s in sorted(found, key=lambda s: (s.cores, s.name))}


def default_system() -> str:
    return _catalogue()["default"]


def read_system_file(path) -> System:
    """A user's system file, checked field by field (it is untrusted input)."""
    path = Path(path)
    data = _read_json(path, "System file")
    if not isinstance(data, dict):
        _refuse("(top level)", f"must be an object, not {type(data).__name__}", path)
    allowed = {"format", "name", "title", "chips", "chip"}
    for key in data:
        if key not in allowed:
            _refuse(str(key)[:60], f"is not a field of a system file (fields: {', '.join(sorted(allowed))})", path)
    if data.get("format") != SYSTEM_FORMAT:
        _refuse("format", f"must be {SYSTEM_FORMAT!r}, not {data.get('format')!r:.60}", path)
    name = _text(data.get("name"), "name", path, 64)
    title = _text(data.get("title", name), "title", path)
    chips = data.get("chips")
    if isinstance(chips, bool) or not isinstance(chips, int) or not 1 <= chips <= MAX_CHIPS:
        _refuse("chips", f"must be an integer from 1 to {MAX_CHIPS}, not {chips!r:.60}", path)
    spec = data.get("chip")
    if isinstance(spec, str):
        if spec not in shipped_chips():
            _refuse("chip", f"names no shipped chip ({', '.join(shipped_chips())}): {spec!r:.60}", path)
        return System(name, title, chips, chip(spec), str(path))
    if not isinstance(spec, dict):
        _refuse("chip", "must name a shipped chip or be an object with `name` and `figures`", path)
    for key in spec:
        if key not in ("name", "title", "base", "figures"):
            _refuse(f"chip/{str(key)[:60]}", "is not a field of a chip (fields: base, figures, name, title)", path)
    base = {}
    if "base" in spec:
        if spec["base"] not in shipped_chips():
            _refuse("chip/base", f"names no shipped chip ({', '.join(shipped_chips())}): {spec['base']!r:.60}", path)
        base = chip(spec["base"]).figures
    chip_name = _text(spec.get("name"), "chip/name", path, 64)
    figures = _figures(spec.get("figures", {}), "chip/figures", path, base)
    return System(name, title, chips, Chip(chip_name, _text(spec.get("title", chip_name), "chip/title", path),
                                           figures), str(path))


def resolve(system=None) -> System:
    """A System from a shipped name, a path to a user's file, or a System (None: the default)."""
    if isinstance(system, System):
        return system
    name = default_system() if system is None else str(system)
    systems = shipped_systems()
    if name in systems:
        return systems[name]
    if Path(name).is_file():
        return read_system_file(name)
    raise SystemFileError(f"Unknown system {name!r:.200}: neither a shipped system ({', '.join(systems)}) nor a "
                          "readable file. Pass a shipped name or a system file (docs/targets.md, \"Will it fit\").")
