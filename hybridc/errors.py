"""One exception family for everything a user can get wrong.

Each class carries the CLI exit code for its kind of problem, so scripts can tell
a bad model file from an unsupported layer without parsing text. Messages are one
paragraph: what is wrong, where (node, module or file), and what to do. `reporting`
turns anything else raised by a target or a third-party library into one of these.
"""

from contextlib import contextmanager
from contextvars import ContextVar


class HybridcError(Exception):
    """Base class: any problem hybridc reports to the user (exit code 1)."""

    exit_code = 1


class ModelFileError(HybridcError):
    """The model file is missing, does not import, or lacks `model`/`example_input`."""

    exit_code = 2


class TraceError(HybridcError):
    """torch.fx could not trace the model, or the example input does not run through it."""

    exit_code = 3


class UnsupportedLayerError(HybridcError):
    """A module has no lowering on the target it was assigned to."""

    exit_code = 4


class PartitionError(HybridcError):
    """The spiking/dense split is not deployable (dense->spiking edge, two cuts, branches)."""

    exit_code = 5


class TimestepError(HybridcError):
    """T is not a multiple of an accumulator interval, or time shapes disagree."""

    exit_code = 6


class TargetError(HybridcError):
    """Unknown target name or malformed target string."""

    exit_code = 7


class OutputError(HybridcError):
    """The output directory cannot be written (exists, not writable, disk full)."""

    exit_code = 8


class ArtifactError(HybridcError):
    """A compiled build is missing a file, was modified, or has an unknown format."""

    exit_code = 9


class InputError(HybridcError):
    """Input given to `hybridc run` has the wrong shape, layout, dtype or values."""

    exit_code = 10


class LoweringError(HybridcError):
    """A backend failed to produce or check its artifact."""

    exit_code = 11


class RenderError(HybridcError):
    """A picture cannot be rendered (Graphviz's `dot` missing or failing)."""

    exit_code = 13


class NumericsError(HybridcError):
    """NaN/Inf in parameters, or values that do not fit the target's fixed-point ranges."""

    exit_code = 14


class LinkError(HybridcError):
    """A message on a link between stage processes is malformed, truncated, oversized or
    corrupted, or a link cannot be opened (address in use, unreachable)."""

    exit_code = 15


class StageError(HybridcError):
    """A stage process of `hybridc pipeline` died, failed or stopped answering mid-stream."""

    exit_code = 16


class MappingError(HybridcError):
    """The spiking stages do not fit the chosen system: a layer that no core can hold, or more
    cores than the system has (named with the constraint, the figure, the limit and the smallest
    system that would hold the build)."""

    exit_code = 17


class SystemFileError(HybridcError):
    """An unknown system name, or a system file that is malformed (the field is named)."""

    exit_code = 18


class DeviceError(HybridcError):
    """A device the emulator or training cannot use: `cuda` asked for where torch sees no CUDA
    GPU, or a name that is not cpu, cuda or auto."""

    exit_code = 19


# --- what is not a HybridcError --------------------------------------------------------

_STEPS = ContextVar("hybridc_steps", default=())


@contextmanager
def reporting(step: str, error=None, passing=(OSError,)):
    """Where a step may fail inside a target or a third-party library (torch, Lava, onnx,
    nir...): anything raised inside that is not a HybridcError becomes `error` (LoweringError
    unless told otherwise), one paragraph naming every enclosing step, outermost first (for
    example "compile > lowering partition `snn` for nir > layer `_1` (Pool)"), with the
    original exception's type and message; the original stays chained as `__cause__`.
    Nested uses add detail; the innermost one converts. Works as a decorator too.
    `passing` exceptions go through unchanged: by default OSError, which the code that
    writes files turns into an OutputError (atomic_directory); the public API passes ()
    so that nothing foreign escapes it."""
    token = _STEPS.set(_STEPS.get() + (step,))
    try:
        yield
    except HybridcError:
        raise
    except passing:
        raise
    except Exception as exc:  # noqa: BLE001 - the point: nothing foreign reaches the user
        steps = " > ".join(_STEPS.get())
        detail = str(exc).strip().replace("\n", " ") or "(no message)"
        raise (error or LoweringError)(
            f"{steps} failed: {_origin(exc)} raised {type(exc).__name__}: {detail}. hybridc has no "
            "specific explanation for this; check what the step names against `hybridc targets` and "
            "docs/targets.md, and if the model is valid report it with the output of "
            "`hybridc --debug ...` (the original traceback is kept as __cause__)."
        ) from exc
    finally:
        _STEPS.reset(token)


def _origin(exc: BaseException) -> str:
    """The top-level package of the code that raised `exc` (its innermost Python frame)."""
    tb, name = exc.__traceback__, "?"
    while tb is not None:
        name = tb.tb_frame.f_globals.get("__name__", name)
        tb = tb.tb_next
    return name.split(".")[0]
