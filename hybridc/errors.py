"""One exception family for everything a user can get wrong.

Each class carries the CLI exit code for its kind of problem, so scripts can tell
a bad model file from an unsupported layer without parsing text. Messages are one
paragraph: what is wrong, where (node, module or file), and what to do.
"""


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
