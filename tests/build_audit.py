"""Watch what hybridc reads and runs while it opens a build: the checks behind "no read
outside the build directory, no code run" in the untrusted-build tests.

Python-level opens and code execution come from audit hooks (`sys.addaudithook`: "open",
"exec", "import" events). Native parsers open files in C, out of the hooks' sight, so the
two that read artifacts, h5py (netx) and onnxruntime, are wrapped to record their paths too.
"""

import contextlib
import os
import sys
from pathlib import Path

_active = []  # the Audit being recorded, if any (audit hooks cannot be removed once added)


def _hook(event, args):
    if not _active:
        return
    audit = _active[-1]
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        audit.opened.append(os.fsdecode(args[0]))
    elif event == "exec":
        audit.executed.append(getattr(args[0], "co_filename", "?"))
    elif event == "import":
        audit.imported.append(args[0])


sys.addaudithook(_hook)


class Audit:
    def __init__(self):
        self.opened, self.executed, self.imported, self.parsed = [], [], [], []

    def read_outside(self, build: Path, forbidden) -> list:
        """Paths opened (by Python or a native parser) that resolve into a forbidden place, or
        native-parser paths outside the build: the parsers must only ever see the build's files."""
        build = Path(build).resolve()
        forbidden = [Path(f).resolve() for f in forbidden]
        bad = [p for p in self.parsed if not Path(p).resolve().is_relative_to(build)]
        for p in self.opened + self.parsed:
            resolved = Path(p).resolve()
            if any(resolved == f or resolved.is_relative_to(f) for f in forbidden):
                bad.append(p)
        return bad

    def code_run_from(self, places) -> list:
        """Code objects executed, or user-model modules imported, from any of `places`."""
        places = [Path(p).resolve() for p in places]
        ran = [f for f in self.executed if f and not f.startswith("<")
               and any(Path(f).resolve().is_relative_to(p) for p in places)]
        return ran + [m for m in self.imported if str(m).startswith("hybridc_user_model_")]


@contextlib.contextmanager
def audit():
    """Record opens, execs and imports, and the paths handed to h5py and onnxruntime."""
    import h5py
    import onnxruntime

    record = Audit()
    originals = (h5py.File.__init__, onnxruntime.InferenceSession.__init__)

    def h5_init(self, name, *args, **kwargs):
        if isinstance(name, (str, bytes, os.PathLike)):
            record.parsed.append(os.fsdecode(name))
        return originals[0](self, name, *args, **kwargs)

    def ort_init(self, path_or_bytes, *args, **kwargs):
        if isinstance(path_or_bytes, (str, os.PathLike)):
            record.parsed.append(os.fsdecode(path_or_bytes))
        return originals[1](self, path_or_bytes, *args, **kwargs)

    h5py.File.__init__, onnxruntime.InferenceSession.__init__ = h5_init, ort_init
    _active.append(record)
    try:
        yield record
    finally:
        _active.pop()
        h5py.File.__init__, onnxruntime.InferenceSession.__init__ = originals
