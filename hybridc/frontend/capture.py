"""Run a traced model and keep the values of chosen nodes (the cut tensors, calibration data)."""

import torch
import torch.fx


@torch.no_grad()
def run_capturing(gm: torch.fx.GraphModule, x, keep=None):
    """(output, {node name: value}) for the nodes named in `keep` (every node when None).
    x: the model input, or a tuple of them for a forward() with several."""
    values = {}

    class Capture(torch.fx.Interpreter):
        def run_node(self, n):
            result = super().run_node(n)
            if keep is None or n.name in keep:
                values[n.name] = result
            return result

    return Capture(gm).run(*(x if isinstance(x, tuple) else (x,))), values
