"""Import lava-dl's slayer without its notices ("Prophesee Dataset Toolbox could not be
found", torch's "No CUDA runtime is found"): they are printed, not warned, on the first
import and say nothing about the user's model.

`import hybridc` installs `SilentSlayerFinder`, so the notices stay away also when a
user's own script imports slayer after hybridc; the API and CLI call
`import_slayer_quietly` for the case where nothing has imported it yet.

The same finder makes slayer's `object_detection` subpackage (`slayer.obd`) load on first
use instead of with slayer: it imports torchvision, 1.9 s of every command's start, and
torchvision's ~220 nn.Module classes and 23 torch.fx-wrapped functions made every torch.fx
trace ~0.8 ms slower (fx patches nn.Module.__call__, which CPython repeats in every loaded
subclass). A model that uses `slayer.obd` loads it when it touches it.
"""

import contextlib
import importlib.util
import io
import sys
import warnings

NOISY = "lava.lib.dl.slayer"
LAZY = "lava.lib.dl.slayer.object_detection"


class SilentSlayerFinder:
    """A meta-path finder that runs slayer's package __init__ (which imports the noisy
    modules) with stdout and stderr captured. Finds nothing itself."""

    def find_spec(self, name, path=None, target=None):
        if name not in (NOISY, LAZY):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _SilentLoader(spec.loader)
                if name == LAZY:
                    spec.loader = importlib.util.LazyLoader(spec.loader)
                return spec
            if spec is not None:
                return spec
        return None


class _SilentLoader:
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="lava")
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                self.loader.exec_module(module)

    def __getattr__(self, name):  # get_resource_reader, is_package, ... of the real loader
        return getattr(self.loader, name)


def install() -> None:
    if not any(isinstance(finder, SilentSlayerFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, SilentSlayerFinder())


def import_slayer_quietly() -> None:
    warnings.filterwarnings("ignore", module="lava")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    install()
    import lava.lib.dl.slayer  # noqa: F401
