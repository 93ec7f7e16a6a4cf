"""Tagging: decide for every node which side of the cut, and so which target, runs it.

Only writes node.meta["hybridc_domain"] and node.meta["hybridc_target"] (ExecuTorch's
rule: a partitioner tags, a separate driver lowers). Support is expressed with
torch.fx's composable OperatorSupport predicates.
"""

import torch.fx
from torch.fx.passes.operator_support import create_op_support

from ..errors import UnsupportedLayerError
from ..frontend.annotate import annotated_domain
from ..frontend.tracer import describe, is_slayer_module
from .spike_merges import tag_spike_merges

COMPUTE_OPS = ("call_module", "call_function", "call_method")


def _module(submodules, node):
    return submodules.get(node.target) if node.op == "call_module" else None


def _is_spiking(submodules, node: torch.fx.Node) -> bool:
    module = _module(submodules, node)
    if module is None:
        return False
    domain = annotated_domain(module)
    if domain is not None:
        return domain == "spiking"
    return is_slayer_module(module)


is_spiking = create_op_support(_is_spiking)


def is_spiking_node(gm: torch.fx.GraphModule, node: torch.fx.Node) -> bool:
    return is_spiking.is_node_supported(dict(gm.named_modules()), node)


def tag_targets(gm: torch.fx.GraphModule, targets: dict) -> None:
    """targets: {"spiking": target, "dense": target} as parsed from the target string."""
    submodules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if node.op not in COMPUTE_OPS:
            continue
        domain = "spiking" if is_spiking.is_node_supported(submodules, node) else "dense"
        target = targets.get(domain)
        if target is None:
            raise UnsupportedLayerError(
                f"Node `{node.name}` ({describe(gm, node)}) is {domain} but the target string "
                f"names no {domain} target (it has: {', '.join(t.name for t in targets.values())}). "
                "Add one, for example `--target loihi+jetson`."
            )
        if not target.supports.is_node_supported(submodules, node):
            raise UnsupportedLayerError(
                f"`{node.target}` ({describe(gm, node)}) cannot run on {target.name}: "
                f"{target.why_unsupported(submodules, node)} {target.name} supports: "
                f"{', '.join(target.supported_ops)}. Replace the layer with a supported one, or "
                "pin it to the other side with hybridc.annotate(module, ...)."
            )
        node.meta["hybridc_domain"] = domain
        node.meta["hybridc_target"] = target.name
    # Constants (get_attr) belong to whichever side uses them.
    for node in gm.graph.nodes:
        if node.op == "get_attr" and node.users:
            user = next(iter(node.users))
            node.meta["hybridc_domain"] = user.meta.get("hybridc_domain")
            node.meta["hybridc_target"] = user.meta.get("hybridc_target")
    # ADD / cat of spike tensors feeding spiking code runs on the spiking side (as synapses)
    if "spiking" in targets:
        tag_spike_merges(gm, targets["spiking"])
