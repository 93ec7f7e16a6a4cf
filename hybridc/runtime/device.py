"""Where the emulator runs: the CPU, or a CUDA GPU when there is one (`--device`).

The emulator computes integer sums in float32 and relies on them being exact below 2**24, so
on a GPU TF32 (which rounds a float32 product's operands to a 10-bit mantissa) is switched
off while it runs, and cuDNN is kept to deterministic algorithms. The choice is a context
(`using`), set once by a command or API call and read where tensors are placed, so the runners
between them need no extra argument.
"""

import contextlib
from contextvars import ContextVar

from ..errors import DeviceError

__all__ = ["DEVICES", "batch_budget", "current", "exact_arithmetic", "resolve", "using"]

DEVICES = ("cpu", "cuda", "auto")
_CURRENT = ContextVar("hybridc_emulator_device", default="cpu")


def resolve(name: str) -> str:
    """cpu, cuda or auto -> "cpu" or "cuda" (auto: cuda where torch sees a GPU), or DeviceError."""
    import torch

    name = (name or "cpu").lower()
    if name not in DEVICES:
        raise DeviceError(f"Unknown device `{name}`; use {', '.join(DEVICES)} (auto: a CUDA GPU when torch sees "
                          "one, else the CPU).")
    available = torch.cuda.is_available()
    if name == "cuda" and not available:
        raise DeviceError(
            f"--device cuda was asked for, but torch {torch.__version__} sees no CUDA GPU on this machine "
            f"(torch.version.cuda: {torch.version.cuda}). Use --device cpu (or auto, which falls back to the "
            "CPU), or install a CUDA build of torch on a machine with an NVIDIA GPU.")
    return "cuda" if name == "cuda" or (name == "auto" and available) else "cpu"


@contextlib.contextmanager
def using(name: str = "cpu"):
    """Run the emulator on `name` (cpu, cuda, auto) inside this block."""
    token = _CURRENT.set(resolve(name))
    try:
        yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)


def current() -> str:
    """The device the emulator runs on here: "cpu" unless a `using` block says otherwise."""
    return _CURRENT.get()


@contextlib.contextmanager
def exact_arithmetic(device: str):
    """Tensors made without a device go to `device`; on CUDA, TF32 off and cuDNN deterministic,
    restored afterwards (training in the same process keeps its own settings)."""
    import torch

    if device != "cuda":
        yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        with torch.device(device):
            yield
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
         torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) = saved


def batch_budget(device: str) -> int:
    """How many int64 values the largest intermediate of a batch may hold: 64 MB on the CPU
    (bounded memory while streaming a data set), a quarter of the free memory on a GPU."""
    if device == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info()
        return max(1 << 20, free // 8 // 4)
    return 1 << 23
