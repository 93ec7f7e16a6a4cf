"""Load a user's model file: module-level `model` and `example_input`, or an entry function."""

import hashlib
import importlib.util
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path

from ..errors import HybridcError, ModelFileError


def _passed_on(exc: HybridcError, path: Path, what: str) -> HybridcError:
    """A hybridc error raised by hybridc code the model file calls (a `hybridc.nn.NIR` that
    refuses its graph) keeps its class and exit code, with where in the file it came from."""
    return type(exc)(f"{what} {path}{_user_traceback_line(exc, path)}: {exc}")


def _user_traceback_line(exc: BaseException, path: Path) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
    return f" (line {frames[-1].lineno}: `{(frames[-1].line or '').strip()}`)" if frames else ""


def parse_entry_args(pairs) -> dict:
    """['size=32', 'split=S3A3'] -> {'size': 32, 'split': 'S3A3'} (Python literals, else strings)."""
    import ast

    args = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ModelFileError(f"--set expects NAME=VALUE, got {pair!r}.")
        try:
            args[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            args[key] = value
    return args


def load_model_file(path, entry=None, weights=None, entry_args=None):
    """Returns (model, example_input, resolved path, sha256 of the file)."""
    if entry_args and not entry:
        raise ModelFileError("--set passes arguments to the --entry function; name it with --entry NAME.")
    path = Path(path).resolve()
    with model_module(path) as module:
        return _load(module, path, entry, weights, path.read_bytes(), entry_args or {})


@contextmanager
def model_module(path):
    """Import a user's model file with clean errors; its folder stays importable (for sibling
    modules, also inside entry functions) until the block ends."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ModelFileError(f"Model file {path} does not exist. Pass the path of a Python file "
                             "that defines `model` and `example_input`.")
    name = f"hybridc_user_model_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        try:
            spec.loader.exec_module(module)
        except SyntaxError as exc:
            raise ModelFileError(f"{path} has a syntax error at line {exc.lineno}: {exc.msg}. "
                                 "Fix it and compile again.") from None
        except HybridcError as exc:
            raise _passed_on(exc, path, "While importing") from None
        except Exception as exc:  # noqa: BLE001 - user code may raise anything
            raise ModelFileError(
                f"Importing {path} raised {type(exc).__name__}: {exc}{_user_traceback_line(exc, path)}. "
                "The file must import cleanly; run it with `python` to debug."
            ) from None
        yield module
    finally:
        sys.path.remove(str(path.parent))


def _load(module, path, entry, weights, source, entry_args):
    import torch

    if entry:
        factory = getattr(module, entry, None)
        if not callable(factory):
            raise ModelFileError(f"{path} has no function `{entry}` (given with --entry). "
                                 f"Functions it defines: {_callables(module)}.")
        try:
            result = factory(**entry_args)
        except HybridcError as exc:
            raise _passed_on(exc, path, f"In {entry}({_call_args(entry_args)}) of") from None
        except Exception as exc:  # noqa: BLE001
            raise ModelFileError(f"{entry}({_call_args(entry_args)}) in {path} raised {type(exc).__name__}: {exc}"
                                 f"{_user_traceback_line(exc, path)}.") from None
        if not (isinstance(result, tuple) and len(result) == 2):
            raise ModelFileError(f"{entry}() in {path} must return (model, example_input); "
                                 f"it returned {type(result).__name__}.")
        model, example_input = result
    else:
        missing = [n for n in ("model", "example_input") if not hasattr(module, n)]
        if missing:
            raise ModelFileError(
                f"{path} defines no {' and no '.join('`' + m + '`' for m in missing)} at module level. "
                "Define `model` (an nn.Module) and `example_input` (a tensor (N, C, H, W, T) or "
                "(N, F, T)), or name a function returning both with --entry NAME."
            )
        model, example_input = module.model, module.example_input
    if not isinstance(model, torch.nn.Module):
        raise ModelFileError(f"`model` in {path} is a {type(model).__name__}, not a torch.nn.Module.")
    several = isinstance(example_input, (tuple, list)) and example_input
    if not (isinstance(example_input, torch.Tensor) or several and all(isinstance(x, torch.Tensor)
                                                                       for x in example_input)):
        raise ModelFileError(f"`example_input` in {path} is a {type(example_input).__name__}, "
                             "not a torch.Tensor (or a tuple of tensors, one per input of forward()).")
    if several:
        example_input = tuple(example_input)
    if weights:
        load_weights(model, weights)
    return model, example_input, path, hashlib.sha256(source).hexdigest()


def _call_args(args: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


def _callables(module) -> str:
    names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
             and getattr(v, "__module__", None) == module.__name__]
    return ", ".join(names) or "none"


def load_weights(model, weights) -> None:
    import pickle

    import torch

    path = Path(weights)
    if not path.is_file():
        raise ModelFileError(f"Weights file {path} does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelFileError(
            f"{path} needs pickled Python code to load, which hybridc refuses for safety "
            f"(torch.load weights_only=True: {str(exc).splitlines()[0]}). Save a plain state_dict: "
            "`torch.save(model.state_dict(), path)`."
        ) from None
    except Exception as exc:  # noqa: BLE001
        raise ModelFileError(f"{path} is not a readable PyTorch checkpoint: {exc}.") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelFileError(f"{path} holds a {type(state).__name__}, not a state_dict.")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in state and hasattr(state[k], "shape") and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}")
        if wrong:
            parts.append(f"shape mismatches {wrong[:5]}")
        raise ModelFileError(f"{path} does not match the model: {'; '.join(parts)}. Load the "
                             "checkpoint of this exact architecture (same split, interval, size).")
    model.load_state_dict(state)
