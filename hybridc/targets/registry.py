"""The one place targets are registered.

Entries name the module that implements a target, so looking up `--target` (and
`hybridc --help`) never imports torch or Lava; the class is imported only when a
compile or a run needs it.
"""

from dataclasses import dataclass
from importlib import import_module

from ..errors import TargetError


@dataclass(frozen=True)
class TargetEntry:
    name: str
    domain: str  # "spiking" or "dense": which side of the cut the target runs
    implementation: str  # "package.module:Class"
    summary: str


REGISTRY = {
    entry.name: entry
    for entry in (
        TargetEntry("loihi", "spiking", "hybridc.targets.loihi:LoihiTarget",
                    "Intel Loihi 2 through Lava: one netx HDF5 network"),
        TargetEntry("jetson", "dense", "hybridc.targets.jetson:JetsonTarget",
                    "NVIDIA Jetson (or any ONNX runtime): one ONNX model, opset 17"),
    )
}


def _unknown(name: str) -> TargetError:
    known = ", ".join(f"{e.name} ({e.domain})" for e in REGISTRY.values())
    return TargetError(
        f"Unknown target `{name}`. Known targets: {known}. Write the spiking target and the "
        "dense target joined by '+', for example `--target loihi+jetson`."
    )


def domain_of(name: str) -> str:
    if name not in REGISTRY:
        raise _unknown(name)
    return REGISTRY[name].domain


def get_target(name: str):
    """An instance of the target class registered under `name`."""
    if name not in REGISTRY:
        raise _unknown(name)
    module_name, class_name = REGISTRY[name].implementation.split(":")
    return getattr(import_module(module_name), class_name)()


def parse_target_string(spec: str) -> dict:
    """'loihi+jetson' -> {'spiking': LoihiTarget(), 'dense': JetsonTarget()}."""
    names = [part.strip() for part in (spec or "").split("+") if part.strip()]
    if not names:
        raise TargetError("Empty target string; use for example `--target loihi+jetson`.")
    by_domain = {}
    for name in names:
        domain = domain_of(name)
        if domain in by_domain:
            raise TargetError(
                f"Target string `{spec}` names two {domain} targets ({by_domain[domain]} and "
                f"{name}); give at most one spiking and one dense target, e.g. `loihi+jetson`."
            )
        by_domain[domain] = name
    return {domain: get_target(name) for domain, name in by_domain.items()}
