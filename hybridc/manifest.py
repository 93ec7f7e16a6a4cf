"""The deployment manifest: what each device runs, in what order, on which tensors.

A dataclass tree serialised to `manifest.json` and checked against the JSON Schema
shipped beside this module (copied to docs/manifest.schema.json).
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from .errors import ArtifactError

FORMAT = "hybridc-manifest/1"
SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")


@dataclass
class TensorSpec:
    name: str
    shape: list  # without the batch axis
    dtype: str
    layout: str  # axis letters without batch: "WHCT" (netx), "CHWT"/"FT" (PyTorch), ...
    # graded values (sigma-delta): integer on the wire = value x graded["scale"]; inputs also
    # give the grid ("step", "range") the integers are rounded and clipped to
    graded: Optional[dict] = None

    def pytorch_shape(self) -> tuple:
        """The shape in PyTorch's layout: netx's (W, H, C, T) becomes (C, H, W, T)."""
        if self.layout == "WHCT":
            w, h, c, t = self.shape
            return (c, h, w, t)
        return tuple(self.shape)


@dataclass
class AccumulatorSpec:
    interval: int
    windows: int
    fold: bool


@dataclass
class WireSpec:
    """How one stage input travels over a link, chosen at compile time (issue 18): raw spikes
    at 1 bit each, or the accumulator's counts at `bits` = ceil(log2(interval+1)) bits each,
    whichever is smaller. With "counts" the sender runs the accumulator and the stage's input
    (its ONNX input) is the counts tensor (spikes_shape without T, then `windows`)."""
    format: str  # "spikes" or "counts"
    bits: int
    interval: int
    windows: int
    spikes_shape: list  # the spike tensor the producer emits, PyTorch layout, without batch

    @property
    def shape(self) -> list:
        """What crosses the link, without batch."""
        return list(self.spikes_shape) if self.format == "spikes" else [*self.spikes_shape[:-1], self.windows]

    @property
    def bytes_per_inference(self) -> int:
        """Payload bytes of one sample on the link: every value at `bits` bits, packed."""
        values = 1
        for n in self.shape:
            values *= n
        return -(-values * self.bits // 8)


@dataclass
class Stage:
    name: str
    target: str
    artifact: str  # relative to the manifest
    sha256: str
    inputs: list
    outputs: list
    # loihi stages
    delay: Optional[int] = None
    layers: Optional[int] = None
    neurons: Optional[int] = None
    synapses: Optional[int] = None
    # jetson stages
    accumulator: Optional[AccumulatorSpec] = None
    opset: Optional[int] = None
    quantization: Optional[dict] = None  # jetson-int8 stages
    wire: Optional[dict] = None  # input name -> WireSpec, for inputs that arrive over a link as spikes/counts

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if v is not None}
        for key in ("inputs", "outputs"):  # optional tensor fields too
            data[key] = [{k: v for k, v in t.items() if v is not None} for t in data[key]]
        return data


@dataclass
class Source:
    path: Optional[str]
    sha256: Optional[str]
    # how the reference model was built, so `hybridc verify` can rebuild it
    entry: Optional[str] = None
    args: dict = field(default_factory=dict)
    weights: Optional[str] = None
    weights_sha256: Optional[str] = None


@dataclass
class Manifest:
    target: str
    timesteps: int
    source: Optional[Source]  # None when compiled from Python (no model file to rebuild from)
    stages: list
    hybridc_version: str
    format: str = FORMAT
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = asdict(self)
        if self.source is not None and self.source.path is None:
            data["source"] = None
        data["stages"] = [s.to_dict() for s in self.stages]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    @classmethod
    def from_dict(cls, data: dict) -> "Manifest":
        validate(data)
        stages = []
        for s in data["stages"]:
            s = dict(s)
            s["inputs"] = [TensorSpec(**t) for t in s["inputs"]]
            s["outputs"] = [TensorSpec(**t) for t in s["outputs"]]
            if "accumulator" in s:
                s["accumulator"] = AccumulatorSpec(**s["accumulator"])
            if "wire" in s:
                s["wire"] = {name: WireSpec(**w) for name, w in s["wire"].items()}
            stages.append(Stage(**s))
        return cls(target=data["target"], timesteps=data["timesteps"], source=Source(**data["source"]) if data["source"] else None,
                   stages=stages, hybridc_version=data["hybridc_version"], format=data["format"],
                   extra=data.get("extra", {}))


def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


# Bounds JSON Schema cannot state: the elements of one tensor (a sample), checked in code.
MAX_TENSOR_ELEMENTS = 1 << 26


def _validator():
    """A draft 2020-12 validator whose `integer` is a Python int only: JSON Schema counts 2.0 as
    an integer, which would reach numpy as a float shape."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool))
    return jsonschema.validators.extend(base, type_checker=checker)(schema())


def _where(path) -> str:
    return "/".join(str(p) for p in path) or "(top level)"


def validate(data: dict) -> None:
    """Check a manifest read from a build directory, which may come from anyone: its format,
    the schema (with bounds on every string, shape and count), then what a schema cannot say."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ArtifactError(
            f"This manifest has format {found!r:.80}; this hybridc ({FORMAT}) reads only {FORMAT!r}. "
            "Recompile the model with this version of hybridc."
        )
    from jsonschema.exceptions import best_match

    error = best_match(_validator().iter_errors(data))
    if error is not None:
        message = error.message if len(error.message) <= 200 else error.message[:200] + "..."
        raise ArtifactError(f"manifest.json is not valid at `{_where(error.absolute_path)}`: {message}. "
                            "The build is damaged or was not written by this hybridc; recompile the model.")
    _check_consistency(data)


def _check_consistency(data: dict) -> None:
    def refuse(where, what):
        raise ArtifactError(f"manifest.json is not valid at `{where}`: {what}. The build is damaged or was "
                            "not written by this hybridc; recompile the model.")

    for i, stage in enumerate(data["stages"]):  # Python's `$` lets one trailing newline through a pattern
        for key in ("name", "artifact"):
            if stage[key].endswith("\n"):
                refuse(f"stages/{i}/{key}", f"{stage[key]!r} ends in a newline")
    for kind in ("name", "artifact"):
        seen = set()
        for i, stage in enumerate(data["stages"]):
            if stage[kind] in seen:
                refuse(f"stages/{i}/{kind}", f"{stage[kind]!r} names two stages")
            seen.add(stage[kind])
    for i, stage in enumerate(data["stages"]):
        for side in ("inputs", "outputs"):
            for j, tensor in enumerate(stage[side]):
                where = f"stages/{i}/{side}/{j}"
                if len(tensor["layout"]) != len(tensor["shape"]):
                    refuse(f"{where}/layout", f"layout {tensor['layout']!r} has {len(tensor['layout'])} axes "
                                              f"but the shape {tensor['shape']} has {len(tensor['shape'])}")
                if len(set(tensor["layout"])) != len(tensor["layout"]):
                    refuse(f"{where}/layout", f"layout {tensor['layout']!r} repeats an axis")
                elements = 1
                for size in tensor["shape"]:
                    elements *= size
                if elements > MAX_TENSOR_ELEMENTS:
                    refuse(f"{where}/shape", f"shape {tensor['shape']} holds {elements:,} values per sample, "
                                             f"more than the {MAX_TENSOR_ELEMENTS:,} hybridc accepts")
