"""`hybridc.annotate`: let a user override which side of the cut a module runs on."""

import torch

ATTRIBUTE = "_hybridc_domain"
DOMAINS = ("spiking", "dense")


def annotate(module: torch.nn.Module, target: str) -> torch.nn.Module:
    """Pin `module` to a target ("loihi", "jetson", ...) or a domain ("spiking", "dense").

    The module is then traced as one opaque node and tagged with that side,
    whatever its class. Returns the module so it can wrap a constructor call.
    """
    from ..errors import TargetError
    from ..targets.registry import domain_of

    domain = target if target in DOMAINS else domain_of(target)
    if not isinstance(module, torch.nn.Module):
        raise TargetError(f"hybridc.annotate expects an nn.Module, got {type(module).__name__}.")
    setattr(module, ATTRIBUTE, domain)
    return module


def annotated_domain(module: torch.nn.Module):
    return getattr(module, ATTRIBUTE, None)
