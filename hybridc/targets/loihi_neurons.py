"""Neuron families on Loihi through netx: which slayer block families netx runs, what
each needs in the HDF5 beyond slayer's own export, and how graded values cross the cut.

netx's `get_neuron_params` knows three neuron types: CUBA (LIF), SDNN (Delta for the
input layer, SigmaDelta after it, Sigma for a `sigma_output` layer) and RF / RF_IZ
(complex-dense layers only). slayer's ALIF and adaptive RF blocks have no netx neuron.
"""

import numpy as np

# family -> (slayer.block module, what `hybridc targets` shows)
FAMILIES = {
    "cuba": ("cuba", "CUBA LIF (binary spikes): Input, Conv, Pool, Flatten, Dense"),
    "sigma_delta": ("sigma_delta", "sigma-delta ReLU (graded spikes): Input (Delta), Conv, Pool, Flatten, "
                                   "Dense, Output (Sigma)"),
    "rf": ("rf", "resonate-and-fire RF (binary spikes): Dense, Flatten"),
    "rf_iz": ("rf_iz", "resonate-and-fire Izhikevich RF_IZ (binary spikes): Dense, Flatten"),
}
# families slayer has and netx does not run: the exact reason
NOT_IN_NETX = {
    "alif": "netx has no adaptive LIF (ALIF) neuron: its HDF5 reader knows only CUBA, SDNN and RF/RF_IZ neurons",
    "adrf": ("netx has no adaptive resonate-and-fire neuron: it would build the layer as a plain RF neuron "
             "without the adaptive threshold"),
    "adrf_iz": ("netx has no adaptive resonate-and-fire (Izhikevich) neuron: it would build the layer as a "
                "plain RF_IZ neuron without the adaptive threshold"),
}
DECAY_NUDGE = 1 + 2.0 ** -20


def _slayer():
    from lava.lib.dl import slayer

    return slayer


def family_of(block) -> str:
    """'cuba', 'sigma_delta', 'rf', 'rf_iz', 'alif', ... from the slayer.block module, or ''."""
    module = type(block).__module__
    prefix = "lava.lib.dl.slayer.block."
    return module[len(prefix):] if module.startswith(prefix) else ""


def has_neuron(block) -> bool:
    return getattr(block, "neuron", None) is not None


def is_delta_input(block) -> bool:
    """A sigma_delta.Input with a neuron: netx's Delta encoder, fed integers through its a_in."""
    return family_of(block) == "sigma_delta" and type(block).__name__ == "Input" and has_neuron(block)


def family_problem(block) -> str:
    """Why netx cannot run this block of a non-CUBA family, or '' when it can."""
    family, kind = family_of(block), type(block).__name__
    if family in NOT_IN_NETX:
        return NOT_IN_NETX[family] + f" (slayer `{type(block).__module__}.{kind}`)."
    neuron = getattr(block, "neuron", None)
    if family == "sigma_delta":
        if kind == "Input" and neuron is None:
            return ("a sigma-delta stage starts at netx's Delta encoder, a sigma_delta.Input block *with* "
                    "neuron_params; without a neuron the block is only a shape and netx would receive the "
                    "real-valued input as unary spikes.")
        if kind == "Input" and (block.weight is not None or block.bias is not None):
            return ("netx's input layer ignores the Input block's weight and bias (its Delta neuron takes the "
                    "data as is); build sigma_delta.Input without weight/bias and scale the data beforehand.")
        if neuron is None:
            return ""
        activation = getattr(neuron.activation, "__name__", repr(neuron.activation))
        if activation != "relu":
            return (f"netx builds every sigma-delta neuron with a ReLU (Lava's SigmaDelta act_mode RELU; it does "
                    f"not read the HDF5 `activation` field), but this block's activation is `{activation}`. "
                    "Use torch.nn.functional.relu.")
        if neuron.delta.cum_error:
            return "netx builds sigma-delta neurons without cumulative error; build the block with cum_error=False."
        if neuron.norm is not None or neuron.bias_is_set:
            return ("slayer's export does not write a sigma-delta neuron's bias or norm, so netx would run the "
                    "layer without it; fold it into the weights or drop it.")
        if not neuron.delta.shared_param:
            return "netx takes one threshold per sigma-delta layer; build the block with shared_param=True."
    if family in ("rf", "rf_iz"):
        if kind not in ("Dense", "Flatten"):
            return (f"netx builds resonate-and-fire layers only as complex dense layers (`dense` with "
                    f"weight/real and weight/imag); its {kind.lower()} reader takes real weights only. Use "
                    f"slayer.block.{family}.Dense, with Flatten before it.")
        if neuron is not None and neuron.graded_spike:
            return "netx's RF neurons send binary spikes only; build the block with graded_spike=False."
        if neuron is not None and not neuron.shared_param:
            return "netx takes one period and decay per RF layer; build the block with shared_param=True."
    return ""


def write_rf(block, group):
    """slayer's export, with the decays written so that netx's round trip lands on them.
    netx turns sinDecay/cosDecay into a period and a decay and Lava's RF turns those back
    into int32(x * 4096): in float, 2607 comes back as 2606.99999 and truncates to 2606.
    A relative nudge of 2^-20 (far below one step) makes the truncation give 2607 again."""
    block.export_hdf5(group)
    for key in ("sinDecay", "cosDecay"):
        value = np.asarray(group[f"neuron/{key}"][()], dtype=np.float64)
        del group[f"neuron/{key}"]
        group.create_dataset(f"neuron/{key}", data=value * DECAY_NUDGE)


def graded_input(block):
    """How the stage input crosses into a Delta encoder: netx wants integers = value x 64,
    on slayer's 8-bit input grid (steps of 2, range [-256, 254]; slayer's quantize_8bit)."""
    if not is_delta_input(block):
        return None
    scale = int(block.neuron.w_scale)
    return {"scale": scale, "step": 2, "range": [-256, 254]}


def graded_output(block):
    """How a graded output crosses the cut: value = integer / scale. A SigmaDelta layer sends
    its delta in units of slayer's s_scale (64 x 64); a Sigma (Output) layer its sum of
    weight x delta, in units of w_scale x s_scale."""
    if family_of(block) != "sigma_delta" or not has_neuron(block):
        return None
    neuron = block.neuron
    if type(block).__name__ == "Output":
        return {"scale": int(neuron.w_scale * neuron.s_scale), "message_bits": 16}
    return {"scale": int(neuron.s_scale), "message_bits": 16}
