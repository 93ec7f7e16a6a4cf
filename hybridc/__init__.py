"""hybridc: compile hybrid spiking/non-spiking PyTorch models for Loihi + Jetson.

Heavy stacks (torch, Lava, onnx) are imported only when a function needs them,
so `import hybridc` and `hybridc --help` stay instant. Every entry point raises only
hybridc.errors classes: whatever a target or a library raises arrives as a LoweringError
(ArtifactError for `load`) naming the step, as the CLI prints it.
"""

from .errors import reporting
from .quiet import install as _install_quiet_imports
from .version import __version__

_install_quiet_imports()  # lava-dl's import notices are not the user's business

__all__ = ["compile", "load", "run", "pipeline", "verify", "inspect", "annotate", "nn", "errors", "__version__"]


def compile(model, example_input, target="loihi+jetson", output_dir=None, **kwargs):
    """Compile `model` for `target`; see hybridc.compiler.driver.compile. example_input: one
    tensor, or a tuple with one per input of forward() (the build's inputs `input`, `input_1`...,
    in that order). system="loihi2" (the
    default), "kapoho-point", "hala-point", "loihi1" or a system file: where the loihi stages
    must fit (the manifest's `mapping`; a build that does not fit raises MappingError)."""
    from .quiet import import_slayer_quietly

    import_slayer_quietly()
    from .compiler.driver import compile as _compile

    with reporting("compile", passing=()):
        return _compile(model, example_input, target, output_dir, **kwargs)


def load(path):
    """Open a compiled build directory (checks format and sha256 of every artifact)."""
    from .build_dir.compiled import load as _load
    from .errors import ArtifactError

    with reporting(f"load {path}", ArtifactError, passing=()):
        return _load(path)


def run(compiled, x, return_stages=False, backend="lava", device="cpu"):
    """Run a build as deployed: Lava fixed-point (backend="lava") or hybridc's batched
    emulator of it (backend="emulate") for loihi, onnxruntime for jetson, each stage of the
    stage graph in order. x: one tensor, or a tuple (or {name: tensor}) for a build with several
    inputs; several outputs come back as a tuple. return_stages=True adds {stage: output}; "values" returns
    {(stage, tensor name): value} for every stage output instead. device: where the emulator
    runs ("cpu", "cuda" or "auto"; exact on each)."""
    from .quiet import import_slayer_quietly

    import_slayer_quietly()
    from .runtime.device import using
    from .runtime.run import run as _run

    with reporting("run", passing=()), using(device):
        return _run(compiled, x, return_stages=return_stages, backend=backend)


def pipeline(build, samples, backend="lava", window=4, stats=None, device="cpu"):
    """Stream samples (one tensor each, no batch axis) through every stage of a build, each
    stage its own process linked over TCP; yields the outputs in order (numpy arrays).
    A dict passed as `stats` receives per-stage and per-link measurements at the end."""
    from .deploy.pipeline import pipeline as _pipeline

    return _pipeline(build, samples, backend, window, stats=stats, device=device)


def verify(compiled, x=None, data=None, samples=8, backend="lava", batch_size=16, device="cpu"):
    """Compare an in-memory compile's artifacts with its PyTorch model: on the tensor `x`
    (a Parity), or on `samples` samples of `data` ("synthetic", "dvsgesture:PATH"; a Report
    as `hybridc verify` prints). backend: "lava" or "emulate" runs the Loihi stage; device:
    where the emulator runs ("cpu", "cuda" or "auto")."""
    from .quiet import import_slayer_quietly

    import_slayer_quietly()
    from .runtime.device import using

    with reporting("verify", passing=()), using(device):
        if x is not None:
            from .runtime.verify import verify as _verify

            return _verify(compiled, x, backend=backend)
        from .errors import ArtifactError
        from .runtime.dataset_verify import verify_dataset

        if getattr(compiled, "module", None) is None:
            raise ArtifactError("hybridc.verify(compiled, data=...) needs the result of hybridc.compile(...) (its "
                                "in-memory model is the reference); for a build on disk run `hybridc verify BUILD`.")
        return verify_dataset(compiled, data or "synthetic", samples, backend, batch_size,
                              reference=(compiled.module, compiled.fx_partitions))


def inspect(compiled):
    """An Inspection of a CompiledModel (or build directory): .table(), .to_json(),
    .to_dot(), .to_html(path), and rich display in notebooks."""
    from .build_dir.compiled import CompiledModel
    from .build_dir.compiled import load as _load
    from .inspection import Inspection

    with reporting("inspect", passing=()):
        return Inspection(compiled if isinstance(compiled, CompiledModel) else _load(compiled))


def annotate(module, target):
    """Pin a module to a target ('loihi', 'jetson') or a side ('spiking', 'dense')."""
    from .frontend.annotate import annotate as _annotate

    return _annotate(module, target)


def __getattr__(name):
    if name in ("nn", "errors"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(name)
