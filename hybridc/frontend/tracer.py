"""Trace a hybrid model with torch.fx and record every node's output shape.

slayer blocks, hybridc.nn modules and annotated modules stay opaque leaves: the
passes reason about whole layers, the way netx maps one block to one layer.
"""

import inspect

import torch
import torch.fx

from ..errors import HybridcError, TraceError, UnsupportedLayerError
from ..nn import Accumulator, Encoder, start_at_rest
from .annotate import annotated_domain


def is_slayer_module(module: torch.nn.Module) -> bool:
    return type(module).__module__.startswith("lava.lib.dl.slayer")


class HybridTracer(torch.fx.Tracer):
    def is_leaf_module(self, m: torch.nn.Module, qualname: str) -> bool:
        if is_slayer_module(m) or isinstance(m, (Accumulator, Encoder)) or annotated_domain(m):
            return True
        return super().is_leaf_module(m, qualname)


def _user_frame(exc: BaseException) -> str:
    """The innermost traceback frame outside torch/hybridc: the user's line."""
    import traceback
    from pathlib import Path

    package = str(Path(__file__).resolve().parents[1])
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if "/torch/" not in f.filename and not str(Path(f.filename).resolve()).startswith(package)]
    if not frames:
        return ""
    f = frames[-1]
    return f" at {f.filename}:{f.lineno} (`{(f.line or '').strip()}`)"


def _symbolic_trace(model: torch.nn.Module) -> torch.fx.Graph:
    """torch.fx's trace, first without wrapping the `math` module, then, only if that fails,
    again with it (fx's default). Wrapping re-patches all ~60 math functions on every trace,
    a fixed ~0.4 ms of a 10 ms compile, and matters only when forward() calls a math function
    on a traced value (`math.sqrt(x.shape[-1])`): without the wrapper that call raises (a
    Proxy is not a number) and the second trace gives fx's default graph. One exception
    computes the same without raising: `math.prod` of traced values multiplies them, so it
    becomes mul nodes rather than one math.prod node."""
    try:
        return HybridTracer(autowrap_modules=()).trace(model)
    except Exception:  # noqa: BLE001 - any failure: trace as torch.fx does by default
        return HybridTracer().trace(model)


def start_from_rest(model: torch.nn.Module) -> None:
    """Make every slayer block whose neuron keeps its state between calls (persistent_state,
    which slayer's Recurrent and KWTA blocks force on, and write into the neuron_params dict
    they are given, so blocks built from the same dict later have it too) start each call
    from rest: a forward pre-hook resets the neuron's states, the block's spike state and its
    delay buffer. Without it each call of the model continues from the last sample's state,
    while hybridc's Loihi runs (Lava and the emulator) start every sample from rest. Idempotent."""
    for module in model.modules():
        neuron = getattr(module, "neuron", None)
        if (is_slayer_module(module) and getattr(neuron, "persistent_state", False) is True
                and not getattr(module, "_hybridc_starts_from_rest", False)):
            module.register_forward_pre_hook(start_at_rest)
            module._hybridc_starts_from_rest = True


def trace(model: torch.nn.Module) -> torch.fx.GraphModule:
    model.eval()
    start_from_rest(model)
    try:
        graph = _symbolic_trace(model)
    except torch.fx.proxy.TraceError as exc:
        raise TraceError(
            f"torch.fx cannot trace {type(model).__name__}.forward{_user_frame(exc)}: {exc}. "
            "Data-dependent control flow (an `if` or loop on tensor values) cannot be traced; "
            "move that code into its own nn.Module and mark it with "
            "hybridc.annotate(module, 'jetson') so it is kept as one opaque node."
        ) from None
    except HybridcError:
        raise
    except Exception as exc:  # noqa: BLE001 - any user code may raise anything
        if "not installed as a submodule" in str(exc):
            raise TraceError(
                f"{type(model).__name__}.forward{_user_frame(exc)} calls a module that is created "
                "inside forward() or not assigned to the model. Create it in __init__ "
                "(self.name = Module(...)) so torch.fx can trace it as a layer."
            ) from None
        raise TraceError(
            f"Tracing {type(model).__name__}.forward failed{_user_frame(exc)}: "
            f"{type(exc).__name__}: {exc}. hybridc traces forward() symbolically with torch.fx; "
            "wrap untraceable code in a module and mark it with hybridc.annotate."
        ) from None
    return _lazy_graph_module()(model, graph, type(model).__name__)


def _lazy_graph_module():
    """torch's GraphModule that writes forward()'s Python code when first called, not when
    built or edited: a compile never calls it (the passes read the graph, the shape pass
    interprets it), and the code generation was 0.8 ms of a 10 ms compile. Private in
    torch 2.3 (pinned); the public GraphModule where it is missing."""
    try:
        from torch.fx._lazy_graph_module import _LazyGraphModule

        return _LazyGraphModule
    except ImportError:  # pragma: no cover - another torch
        return torch.fx.GraphModule


def fetch_attr(gm, target: str):
    """What a get_attr node reads: `gm.a.b` for target "a.b"."""
    value = gm
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _run_node(gm, modules: dict, node: torch.fx.Node, env: dict):
    """One node's value from its inputs' values, as torch.fx.Interpreter computes it."""
    if node.op == "get_attr":
        return fetch_attr(gm, node.target)
    args = torch.fx.node.map_arg(node.args, env.__getitem__)
    kwargs = torch.fx.node.map_arg(node.kwargs, env.__getitem__)
    if node.op == "call_module":
        return modules[node.target](*args, **kwargs)
    if node.op == "call_function":
        return node.target(*args, **kwargs)
    self_arg, *rest = args  # call_method
    return getattr(self_arg, node.target)(*rest, **kwargs)


def _last_uses(gm) -> dict:
    """node -> the inputs nothing after it reads: their values are dropped there, as
    torch.fx.Interpreter drops them, so a large model's activations never all live at once."""
    seen, last = set(), {}
    for node in reversed(gm.graph.nodes):
        for arg in node.all_input_nodes:
            if arg not in seen:
                seen.add(arg)
                last.setdefault(node, []).append(arg)
    return last


def _describe(gm: torch.fx.GraphModule, n: torch.fx.Node) -> str:
    if n.op == "call_module":
        return f"module `{n.target}`: {type(gm.get_submodule(n.target)).__name__}"
    if n.op in ("call_function", "call_method"):
        name = getattr(n.target, "__name__", str(n.target))
        return f"{n.op.replace('call_', '')} `{name}`"
    return n.op


def describe(gm: torch.fx.GraphModule, n: torch.fx.Node) -> str:
    """A short human description of a node, for error messages and tables."""
    return _describe(gm, n)


RESONATOR_FAMILIES = ("rf", "rf_iz", "adrf", "adrf_iz")


def _slayer_cannot_run(module) -> str:
    """Why slayer's own forward of this block fails, for blocks lava-dl cannot run at all."""
    if module is None or not is_slayer_module(module) or type(module).__name__ != "Recurrent":
        return ""
    family = type(module).__module__.rsplit(".", 1)[-1]
    if family not in RESONATOR_FAMILIES:
        return ""
    return (f"slayer.block.{family}.Recurrent does not run in lava-dl itself: its loop hands the resonator "
            "neuron one real input where that neuron takes a (real, imaginary) pair, so there are no spikes "
            "to lower. hybridc lowers a recurrent layer as slayer.block.cuba.Recurrent (netx's dense_rec); "
            f"use that, or a feed-forward slayer.block.{family}.Dense.")


def _accumulator_cause(gm, modules: dict, failed: torch.fx.Node) -> str:
    """When an Accumulator lies upstream of the node that failed (the nearest one, walking back
    through the node's inputs): what it produced, folded or not, and how to get the other form.
    The likely cause of a shape error after the cut; "" when no accumulator feeds the node."""
    seen, frontier = set(), list(failed.all_input_nodes)
    while frontier:
        node = frontier.pop(0)
        if node in seen:
            continue
        seen.add(node)
        module = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(module, Accumulator) and "shape" in node.meta:
            produced = tuple(node.meta["shape"])
            spikes = node.args[0].meta.get("shape") if isinstance(node.args[0], torch.fx.Node) else None
            into = f" from {tuple(spikes)}" if spikes else ""
            i = module.interval
            if module.fold:
                return (f"The accumulator `{node.name}` before it produced {produced}{into}: fold=True (the "
                        f"default) folds its windows into the feature axis ((N, F, T) -> (N, F*T/{i}), "
                        f"(N, C, H, W, T) -> (N, C*T/{i}, H, W)). For the windows as their own last axis "
                        f"((N, F, T/{i}): tokens for attention, steps for a GRU), use Accumulator({i}, "
                        "fold=False).")
            return (f"The accumulator `{node.name}` before it produced {produced}{into}: fold=False keeps the "
                    f"windows as the last axis ((N, F, T) -> (N, F, T/{i})). To fold them into the features "
                    f"((N, F*T/{i}), or (N, C*T/{i}, H, W) for a conv), use Accumulator({i}) (fold=True), or "
                    "flatten or permute its output to the shape the next layer takes.")
        frontier.extend(node.all_input_nodes)
    return ""


@torch.no_grad()
def record_shapes(gm: torch.fx.GraphModule, example_input):
    """Runs the example input through the graph, storing each tensor's shape and dtype in
    node.meta["shape"] / node.meta["dtype"] and naming the node when one fails; returns the
    model output. A plain loop over the nodes: torch.fx.Interpreter's per-node bookkeeping
    cost 0.3 ms of a 10 ms compile (0.8 ms at 8 layers)."""
    env, modules, last_uses = {}, dict(gm.named_modules()), _last_uses(gm)
    examples, inputs = as_inputs(example_input), 0
    for node in gm.graph.nodes:
        if node.op == "placeholder":  # the example inputs, then (as fx.Interpreter) defaults, () for *args
            if inputs < len(examples):
                result = examples[inputs]
            elif node.target.startswith("*"):
                result = ()
            else:
                result = node.args[0] if node.args else None
            inputs += 1
        elif node.op == "output":
            return torch.fx.node.map_arg(node.args[0], env.__getitem__)
        else:
            try:
                result = _run_node(gm, modules, node, env)
            except HybridcError as exc:
                raise type(exc)(f"At node `{node.name}` ({_describe(gm, node)}): {exc}") from None
            except Exception as exc:  # noqa: BLE001 - any user code may raise anything
                known = _slayer_cannot_run(modules.get(node.target)) if node.op == "call_module" else ""
                if known:
                    raise UnsupportedLayerError(f"Node `{node.name}` ({_describe(gm, node)}): {known}") from None
                cause = _accumulator_cause(gm, modules, node)
                raise TraceError(
                    f"The example input does not run through node `{node.name}` "
                    f"({_describe(gm, node)}): {type(exc).__name__}: {exc}. "
                    + (cause or "Check that example_input has the shape (N, C, H, W, T) or (N, F, T) "
                                "and dtype the model expects.")
                ) from None
        if isinstance(result, torch.Tensor):
            node.meta["shape"] = tuple(result.shape)
            node.meta["dtype"] = str(result.dtype).replace("torch.", "")
        env[node] = result
        for done in last_uses.get(node, ()):
            del env[done]


def as_inputs(example_input) -> tuple:
    """The model's example inputs as a tuple: one tensor, or a tuple/list of them (a model whose
    forward takes several inputs, e.g. events and a frame)."""
    return tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)


def check_inputs(model: torch.nn.Module, example_input) -> None:
    """Refuse, before tracing, what hybridc cannot compile: a non-Module, a non-tensor or
    non-float input, a forward() whose required inputs are not the example inputs given."""
    if not isinstance(model, torch.nn.Module):
        raise TraceError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
    inputs = as_inputs(example_input)
    for i, x in enumerate(inputs):
        which = "`example_input`" if len(inputs) == 1 else f"`example_input[{i}]`"
        if not isinstance(x, torch.Tensor):
            raise TraceError(f"{which} must be a torch.Tensor (or example_input a tuple of tensors, one per input "
                             f"of forward()), got {type(x).__name__}.")
        if not x.is_floating_point():
            raise TraceError(
                f"{which} has dtype {str(x.dtype).replace('torch.', '')}; slayer blocks "
                "compute on float spikes. Use `.float()` (values 0 and 1)."
            )
    n_args = len([p for p in inspect.signature(model.forward).parameters.values()
                  if p.default is inspect.Parameter.empty and p.kind == p.POSITIONAL_OR_KEYWORD])
    if n_args != len(inputs):
        raise TraceError(
            f"{type(model).__name__}.forward takes {n_args} required input(s) but example_input holds "
            f"{len(inputs)}: pass one tensor per input of forward(), as a tuple when there are several "
            "(example_input = (events, frame))."
        )


def trace_with_shapes(model: torch.nn.Module, example_input: torch.Tensor) -> torch.fx.GraphModule:
    check_inputs(model, example_input)
    gm = trace(model)
    record_shapes(gm, example_input)
    return gm
