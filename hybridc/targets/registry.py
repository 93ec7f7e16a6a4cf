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
    aliases: tuple = ()
    # "package.module:function" that runs a stage of this target's artifact (hybridc.runtime);
    # None when hybridc has no simulator for the format.
    runner: str = None
    # "package.module:function" with the same signature that runs the artifact in a batched
    # emulator instead (the `emulate` backend); None: the runner serves every backend.
    emulator: str = None
    # None: the runner reproduces PyTorch's spikes exactly, and verify requires every entry equal.
    # A number: the runner simulates the artifact in float, so verify requires the Dice overlap of
    # its spikes with PyTorch's to reach it at every spiking output (measured: docs/targets.md).
    spike_dice_min: float = None
    # None: the dense artifact equals PyTorch within 1e-4. A number: the artifact is quantised, so
    # verify requires its largest error to stay within that fraction of the reference's largest
    # magnitude (measured: docs/targets.md), and does not require the same argmax.
    output_rel_err_max: float = None


REGISTRY = {
    entry.name: entry
    for entry in (
        TargetEntry("loihi", "spiking", "hybridc.targets.loihi:LoihiTarget",
                    "Intel Loihi 2 through Lava: one stock netx HDF5 network per chain (a branching stage: its "
                    "chains plus extra synapses for spike ADD and concat), verified bit-exact in Lava",
                    runner="hybridc.runtime.lava:run_stage", emulator="hybridc.runtime.emulator:run_stage"),
        TargetEntry("nir", "spiking", "hybridc.targets.nir:NirTarget",
                    "NIR graph (nir.write) for SpiNNaker2, Xylo, Speck and other NIR toolchains",
                    runner="hybridc.runtime.nir_stage:run_stage", spike_dice_min=0.95),
        TargetEntry("jetson", "dense", "hybridc.targets.jetson:JetsonTarget",
                    "NVIDIA Jetson (TensorRT or onnxruntime): one float ONNX model, opset 17",
                    runner="hybridc.runtime.onnx_stage:run_stage"),
        TargetEntry("jetson-int8", "dense", "hybridc.targets.jetson_int8:JetsonInt8Target",
                    "8-bit ANN half (a Jetson's int8 path): QDQ int8 ONNX, static calibration",
                    runner="hybridc.runtime.onnx_stage:run_stage", output_rel_err_max=0.05),
        TargetEntry("cpu", "dense", "hybridc.targets.cpu:CpuTarget",
                    "the host CPU through onnxruntime, for users without a Jetson",
                    runner="hybridc.runtime.onnx_stage:run_stage"),
    )
}
ALIASES = {alias: entry.name for entry in REGISTRY.values() for alias in entry.aliases}
# Names users may try that hybridc deliberately does not offer, with the reason.
NOT_TARGETS = {
    "edgetpu": "a Coral Edge TPU runs a fully-int8 TFLite model compiled by `edgetpu_compiler`, and "
               "hybridc writes no TFLite; compile with `--target loihi+jetson-int8` or `loihi+cpu` and "
               "convert the ONNX stage as docs/targets.md (Edge TPU) describes.",
}


def canonical(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in REGISTRY:
        raise _unknown(name)
    return name


def _unknown(name: str) -> TargetError:
    if name in NOT_TARGETS:
        return TargetError(f"`{name}` is not a hybridc target: {NOT_TARGETS[name]}")
    known = ", ".join(f"{e.name} ({e.domain})" for e in REGISTRY.values())
    aliases = f"; aliases: {', '.join(f'{a}={n}' for a, n in ALIASES.items())}" if ALIASES else ""
    return TargetError(
        f"Unknown target `{name}`. Known targets: {known}{aliases}. Write the spiking target and the "
        "dense target joined by '+', for example `--target loihi+jetson`."
    )


def spike_dice_min(name: str):
    """The Dice overlap verify requires of a spiking target's spikes, or None: exactly equal."""
    return REGISTRY[canonical(name)].spike_dice_min


def output_rel_err_max(name: str):
    """The relative output error verify allows a quantised dense target, or None: within 1e-4."""
    return REGISTRY[canonical(name)].output_rel_err_max


def domain_of(name: str) -> str:
    return REGISTRY[canonical(name)].domain


def get_target(name: str, options: dict = None):
    """An instance of the target class registered under `name` (or an alias)."""
    module_name, class_name = REGISTRY[canonical(name)].implementation.split(":")
    cls = getattr(import_module(module_name), class_name)
    return cls(options or {})


def parse_target_string(spec: str, options: dict = None) -> dict:
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
    return {domain: get_target(name, options) for domain, name in by_domain.items()}


def get_runner(name: str, backend: str = "lava"):
    """The function that runs a stage of target `name` (run_stage(stage, build_dir, x, progress)):
    its emulator for backend `emulate` when it has one, else its runner."""
    entry = REGISTRY[canonical(name)]
    path = entry.emulator if backend == "emulate" and entry.emulator else entry.runner
    if path is None:
        return None
    module_name, function_name = path.split(":")
    return getattr(import_module(module_name), function_name)
