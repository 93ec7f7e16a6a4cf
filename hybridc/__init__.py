"""hybridc: compile hybrid spiking/non-spiking PyTorch models for Loihi + Jetson.

Heavy stacks (torch, Lava, onnx) are imported only when a function needs them,
so `import hybridc` and `hybridc --help` stay instant.
"""

__version__ = "0.1.0"

__all__ = ["compile", "load", "run", "pipeline", "verify", "inspect", "annotate", "nn", "errors", "__version__"]


def compile(model, example_input, target="loihi+jetson", output_dir=None, **kwargs):
    """Compile `model` for `target`; see hybridc.build.driver.compile."""
    from .build.driver import compile as _compile

    return _compile(model, example_input, target, output_dir, **kwargs)


def load(path):
    """Open a compiled build directory (checks format and sha256 of every artifact)."""
    from .build.compiled import load as _load

    return _load(path)


def run(compiled, x, return_stages=False):
    """Run a build as deployed: Lava fixed-point for loihi, onnxruntime for jetson, each stage
    of the stage graph in order. return_stages=True adds {stage: output}; "values" returns
    {(stage, tensor name): value} for every stage output instead."""
    from .runtime.run import run as _run

    return _run(compiled, x, return_stages=return_stages)


def pipeline(build, samples, backend="lava", window=4, stats=None):
    """Stream samples (one tensor each, no batch axis) through every stage of a build, each
    stage its own process linked over TCP; yields the outputs in order (numpy arrays).
    A dict passed as `stats` receives per-stage and per-link measurements at the end."""
    from .deploy.pipeline import pipeline as _pipeline

    return _pipeline(build, samples, backend, window, stats=stats)


def verify(compiled, x):
    """Parity figures between an in-memory compile and its PyTorch model on `x`."""
    from .runtime.verify import verify as _verify

    return _verify(compiled, x)


def inspect(compiled):
    """An Inspection of a CompiledModel (or build directory): .table(), .to_json(),
    .to_dot(), .to_html(path), and rich display in notebooks."""
    from .build.compiled import CompiledModel
    from .build.compiled import load as _load
    from .inspection import Inspection

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
