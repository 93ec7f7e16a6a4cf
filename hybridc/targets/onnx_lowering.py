"""The dense partition's fx nodes written straight as ONNX nodes with onnx-graphsurgeon.

Why: torch.onnx.export traces the partition again and runs its own passes; for the
plain layers of a dense half (Linear, Conv, ReLU, Flatten, pooling, arithmetic) one
ONNX node per fx node is enough and costs a fraction of that. One short function per
supported operation, in three tables (module type, function, method). A node outside
the tables, or with an argument that is not a tensor of the partition or a plain
number, raises `Unsupported`, and the Jetson target exports the whole partition with
torch.onnx: nothing doubtful is guessed here.
"""

import operator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..frontend.tracer import fetch_attr


class Unsupported(Exception):
    """This node has no direct lowering; the caller falls back to torch.onnx.export."""


class Lowering:
    """gs nodes for a list of fx nodes, each tensor named after its fx node. `tensors` maps
    the partition's inputs (fx nodes outside it, or accumulators written in front) to gs
    tensors; `output_names` the partition's outputs to their ONNX output names."""

    def __init__(self, gs, gm, tensors: dict, output_names: dict, taken: set, members=()):
        self.gs, self.gm = gs, gm
        self.members = set(members)
        self.tensors = dict(tensors)
        self.output_names = output_names
        self.taken = set(taken)
        self.nodes = []

    def name(self, wanted: str) -> str:
        name, i = wanted, 0
        while name in self.taken:
            i += 1
            name = f"{wanted}_{i}"
        self.taken.add(name)
        return name

    def variable(self, node):
        """The gs tensor node's result goes into: the ONNX output, or one named after it."""
        if node in self.output_names:
            shape = node.meta["shape"]
            return self.gs.Variable(self.output_names[node], dtype=np.float32, shape=["batch", *shape[1:]])
        return self.gs.Variable(self.name(node.name))

    def input(self, arg):
        if not isinstance(arg, torch.fx.Node) or arg not in self.tensors:
            raise Unsupported(f"argument {arg!r} is not a tensor of the partition")
        if arg.meta.get("dtype") != "float32":  # ONNX does not promote types as torch does
            raise Unsupported(f"argument `{arg.name}` is not float32")
        return self.tensors[arg]

    def const(self, node, what: str, value):
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        return self.gs.Constant(self.name(f"{node.name}/{what}"), np.asarray(array, order="C"))

    def literal(self, node, what: str, array):
        """A small fixed tensor (a scalar operand, Resize scales) as a Constant node, as
        torch.onnx writes one: not an initializer, so profile's parameter count leaves it out."""
        out = self.gs.Variable(self.name(f"{node.name}/{what}"))
        self.nodes.append(self.gs.Node("Constant", name=self.name(f"{node.name}/{what}/Constant"), outputs=[out],
                                       attrs={"value": self.gs.Constant(out.name, np.asarray(array, order="C"))}))
        return out

    def emit(self, node, op: str, inputs, attrs=None, suffix: str = "", output=None):
        """One ONNX node named after `node` (plus suffix); returns its output tensor."""
        out = output if output is not None else self.gs.Variable(self.name(f"{node.name}{suffix}"))
        self.nodes.append(self.gs.Node(op, name=self.name(f"{node.name}{suffix}/{op}") if suffix else node.name,
                                       inputs=list(inputs), outputs=[out], attrs=attrs or {}))
        return out

    def lower(self, node):
        if node in self.tensors:  # already written by its producer (a batch norm folded into a conv)
            return
        if node.meta.get("dtype") != "float32" or "shape" not in node.meta:
            raise Unsupported(f"`{node.name}` is not a float32 tensor")
        if node.op == "get_attr":
            value = fetch_attr(self.gm, node.target)
            if node in self.output_names or not isinstance(value, torch.Tensor) or value.dtype != torch.float32:
                raise Unsupported(f"attribute `{node.target}`")
            self.tensors[node] = self.const(node, "value", value)
            return
        if node.op == "call_module":
            module = self.gm.get_submodule(node.target)
            rule = MODULES.get(type(module))
            if rule is None or len(node.args) != 1 or node.kwargs:
                raise Unsupported(f"module {type(module).__name__}")
            rule(self, node, module)
        elif node.op == "call_function":
            rule = FUNCTIONS.get(node.target)
            if rule is None:
                raise Unsupported(f"function {node.target}")
            rule(self, node)
        elif node.op == "call_method":
            rule = METHODS.get(node.target)
            if rule is None:
                raise Unsupported(f"method {node.target}")
            rule(self, node)
        else:
            raise Unsupported(node.op)
        if node not in self.tensors:
            raise Unsupported(f"`{node.name}` was not lowered")

    def unary(self, node, op: str, attrs=None):
        x = self.input(node.args[0])
        self.tensors[node] = self.emit(node, op, [x], attrs, output=self.variable(node))

    def alias(self, node):
        """No computation: the node's tensor is its input (an Identity node if it is an output)."""
        if node in self.output_names:
            self.unary(node, "Identity")
        else:
            self.tensors[node] = self.input(node.args[0])


def _rank(arg) -> int:
    return len(arg.meta["shape"])


def _float_params(*tensors):
    if any(t is not None and t.dtype != torch.float32 for t in tensors):
        raise Unsupported("parameters are not float32")


# -- modules ------------------------------------------------------------------------------

def _linear(low: Lowering, node, m: nn.Linear):
    _float_params(m.weight, m.bias)
    x, out = low.input(node.args[0]), low.variable(node)
    if _rank(node.args[0]) == 2:  # Gemm, as torch.onnx writes a 2-D Linear
        inputs = [x, low.const(node, "weight", m.weight)] + ([low.const(node, "bias", m.bias)] if m.bias is not None
                                                             else [])
        low.tensors[node] = low.emit(node, "Gemm", inputs, {"transB": 1}, output=out)
        return
    weight = low.const(node, "weight", m.weight.t())
    if m.bias is None:
        low.tensors[node] = low.emit(node, "MatMul", [x, weight], output=out)
        return
    product = low.emit(node, "MatMul", [x, weight])
    low.tensors[node] = low.emit(node, "Add", [product, low.const(node, "bias", m.bias)], suffix="/bias", output=out)


def _batch_norm_after(low: Lowering, node):
    """The BatchNorm module that alone reads this conv's output, if any: torch.onnx folds it
    into the conv's weight and bias in eval mode, and so does this lowering (same file, same
    parameter count in `hybridc profile`)."""
    users = list(node.users)
    if len(users) != 1 or node in low.output_names or users[0].op != "call_module" or len(users[0].args) != 1 \
            or users[0].kwargs or users[0] not in low.members:
        return None
    bn = low.gm.get_submodule(users[0].target)
    if type(bn) not in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d) or bn.training or bn.running_mean is None \
            or users[0].meta.get("dtype") != "float32":
        return None
    return users[0], bn


def _conv(low: Lowering, node, m):
    _float_params(m.weight, m.bias)
    dims = len(m.kernel_size)
    if m.padding_mode != "zeros" or isinstance(m.padding, str) and m.padding != "valid" \
            or _rank(node.args[0]) != dims + 2:
        raise Unsupported("conv padding or rank")
    padding = [0] * dims if isinstance(m.padding, str) else list(m.padding)
    attrs = {"kernel_shape": list(m.kernel_size), "strides": list(m.stride), "pads": padding * 2,
             "dilations": list(m.dilation), "group": m.groups}
    weight, bias, result = m.weight, m.bias, node
    folded = _batch_norm_after(low, node)
    if folded is not None:
        result, bn = folded
        _float_params(bn.weight, bn.bias, bn.running_mean, bn.running_var)
        scale = torch.rsqrt(bn.running_var + bn.eps) * (bn.weight if bn.weight is not None else 1)
        weight = weight * scale.reshape(-1, *[1] * (weight.dim() - 1))
        shift = bn.bias if bn.bias is not None else torch.zeros_like(scale)
        bias = ((bias if bias is not None else 0) - bn.running_mean) * scale + shift
    inputs = [low.input(node.args[0]), low.const(node, "weight", weight)]
    if bias is not None:
        inputs.append(low.const(node, "bias", bias))
    low.tensors[result] = low.emit(node, "Conv", inputs, attrs, output=low.variable(result))
    if folded is not None:
        low.tensors[node] = low.tensors[result]  # nothing else reads it


def _batch_norm(low: Lowering, node, m):
    if m.training or m.running_mean is None or _rank(node.args[0]) < 2:
        raise Unsupported("batch norm in training mode or without running statistics")
    channels = m.num_features
    weight = m.weight if m.weight is not None else torch.ones(channels)
    bias = m.bias if m.bias is not None else torch.zeros(channels)
    _float_params(weight, bias, m.running_mean, m.running_var)
    inputs = [low.input(node.args[0]), low.const(node, "weight", weight), low.const(node, "bias", bias),
              low.const(node, "running_mean", m.running_mean), low.const(node, "running_var", m.running_var)]
    low.tensors[node] = low.emit(node, "BatchNormalization", inputs, {"epsilon": float(m.eps)},
                                 output=low.variable(node))


def _pair(value) -> list:
    return list(value) if isinstance(value, (tuple, list)) else [value, value]


def _max_pool(low: Lowering, node, m: nn.MaxPool2d):
    if m.return_indices or m.ceil_mode or _pair(m.dilation) != [1, 1] or _rank(node.args[0]) != 4:
        raise Unsupported("max pool beyond the plain case")
    kernel = _pair(m.kernel_size)
    attrs = {"kernel_shape": kernel, "strides": _pair(m.stride or m.kernel_size), "pads": _pair(m.padding) * 2}
    low.unary(node, "MaxPool", attrs)


def _avg_pool(low: Lowering, node, m: nn.AvgPool2d):
    if m.ceil_mode or m.divisor_override is not None or _pair(m.padding) != [0, 0] or _rank(node.args[0]) != 4:
        raise Unsupported("average pool beyond the plain case")
    attrs = {"kernel_shape": _pair(m.kernel_size), "strides": _pair(m.stride or m.kernel_size)}
    low.unary(node, "AveragePool", attrs)


def _upsample(low: Lowering, node, m: nn.Upsample):
    """Nearest-neighbour upsampling by whole factors, as torch.onnx writes it (Resize)."""
    rank = _rank(node.args[0])
    factors = m.scale_factor if isinstance(m.scale_factor, tuple) else (m.scale_factor,) * (rank - 2)
    if m.mode != "nearest" or m.size is not None or m.scale_factor is None or rank < 3 \
            or len(factors) != rank - 2 or any(float(f) != int(f) or f < 1 for f in factors):
        raise Unsupported("upsampling other than nearest by whole factors")
    scales = low.literal(node, "scales", np.array([1, 1, *factors], dtype=np.float32))
    attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    low.tensors[node] = low.emit(node, "Resize", [low.input(node.args[0]), low.gs.Variable.empty(), scales], attrs,
                                 output=low.variable(node))


def _flatten_from(low: Lowering, node, start: int, end: int):
    rank = _rank(node.args[0])
    if start != 1 or end not in (-1, rank - 1):
        raise Unsupported("flatten other than start_dim=1 to the end")
    low.unary(node, "Flatten", {"axis": 1})


def _activation(op: str):
    """ReLU/Sigmoid/Tanh modules; an in-place one overwrites its input, which other readers
    then see: ONNX has no such node, so it falls back to torch.onnx (which models it)."""
    def rule(low: Lowering, node, m):
        if getattr(m, "inplace", False):
            raise Unsupported(f"in-place {op}")
        low.unary(node, op)
    return rule


def _unary_function(op: str, allowed=()):
    """torch.relu(x) / F.relu(x, inplace=...) / x.relu(): one tensor, only `allowed` keywords."""
    def rule(low: Lowering, node):
        if len(node.args) != 1 or set(node.kwargs) - set(allowed) or node.kwargs.get("inplace"):
            raise Unsupported(f"{op} with extra arguments or in place")
        low.unary(node, op)
    return rule


def _flatten_call(low: Lowering, node):
    """torch.flatten(x, 1) / x.flatten(1) / keywords start_dim, end_dim."""
    names = ("start_dim", "end_dim")
    if not 1 <= len(node.args) <= 3 or set(node.kwargs) - set(names):
        raise Unsupported("flatten arguments")
    given = dict(zip(names, node.args[1:]), **node.kwargs)
    start, end = given.get("start_dim", 0), given.get("end_dim", -1)
    if not all(isinstance(v, int) for v in (start, end)):
        raise Unsupported("flatten with dynamic dims")
    _flatten_from(low, node, start, end)


def _binary(op: str):
    """a (op) b for tensors of the partition and plain numbers (either side)."""
    def rule(low: Lowering, node):
        if len(node.args) != 2 or node.kwargs:
            raise Unsupported(f"{op} arguments")
        inputs = []
        for arg in node.args:
            if isinstance(arg, torch.fx.Node):
                inputs.append(low.input(arg))
            elif isinstance(arg, (int, float)) and not isinstance(arg, bool):
                inputs.append(low.literal(node, "scalar", np.array(arg, dtype=np.float32)))
            else:
                raise Unsupported(f"{op} argument {arg!r}")
        if not any(isinstance(a, torch.fx.Node) for a in node.args):
            raise Unsupported(f"{op} of two numbers")
        low.tensors[node] = low.emit(node, op, inputs, output=low.variable(node))
    return rule


def _cat(low: Lowering, node):
    if len(node.args) > 2 or set(node.kwargs) - {"dim"}:
        raise Unsupported("cat arguments")
    tensors = node.args[0]
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    if not isinstance(tensors, (list, tuple)) or not isinstance(dim, int) or not tensors:
        raise Unsupported("cat of a dynamic list or dim")
    inputs = [low.input(t) for t in tensors]
    axis = dim % _rank(node)
    if axis == 0:
        raise Unsupported("cat along the batch axis")
    low.tensors[node] = low.emit(node, "Concat", inputs, {"axis": axis}, output=low.variable(node))


_IDENTITY = lambda low, node, m=None: low.alias(node)  # noqa: E731 - a table entry

MODULES = {
    nn.Linear: _linear,
    nn.Conv1d: _conv, nn.Conv2d: _conv, nn.Conv3d: _conv,
    nn.BatchNorm1d: _batch_norm, nn.BatchNorm2d: _batch_norm, nn.BatchNorm3d: _batch_norm,
    nn.MaxPool2d: _max_pool, nn.AvgPool2d: _avg_pool, nn.Upsample: _upsample,
    nn.ReLU: _activation("Relu"), nn.Sigmoid: _activation("Sigmoid"), nn.Tanh: _activation("Tanh"),
    nn.Flatten: lambda low, node, m: _flatten_from(low, node, m.start_dim, m.end_dim),
    nn.Identity: _IDENTITY, nn.Dropout: _IDENTITY, nn.Dropout1d: _IDENTITY, nn.Dropout2d: _IDENTITY,
    nn.Dropout3d: _IDENTITY,
}

FUNCTIONS = {
    torch.relu: _unary_function("Relu"), F.relu: _unary_function("Relu", ("inplace",)),
    torch.sigmoid: _unary_function("Sigmoid"), F.sigmoid: _unary_function("Sigmoid"),
    torch.tanh: _unary_function("Tanh"), F.tanh: _unary_function("Tanh"),
    operator.neg: _unary_function("Neg"), torch.neg: _unary_function("Neg"),
    torch.flatten: _flatten_call,
    operator.add: _binary("Add"), torch.add: _binary("Add"),
    operator.sub: _binary("Sub"), torch.sub: _binary("Sub"),
    operator.mul: _binary("Mul"), torch.mul: _binary("Mul"),
    operator.truediv: _binary("Div"), torch.div: _binary("Div"),
    torch.cat: _cat,
}

METHODS = {
    "relu": _unary_function("Relu"), "sigmoid": _unary_function("Sigmoid"), "tanh": _unary_function("Tanh"),
    "neg": _unary_function("Neg"), "flatten": _flatten_call,
    "add": _binary("Add"), "sub": _binary("Sub"), "mul": _binary("Mul"), "div": _binary("Div"),
}


def lower_nodes(gs, gm, nodes, tensors: dict, output_names: dict, taken: set) -> list:
    """gs nodes computing `nodes` (topological order) from `tensors`; raises Unsupported."""
    low = Lowering(gs, gm, tensors, output_names, taken, nodes)
    for node in nodes:
        try:
            low.lower(node)
        except Unsupported as exc:
            raise Unsupported(f"node `{node.name}`: {exc}") from None
    return low.nodes
