"""Run a Loihi stage's netx HDF5 without Lava: a batched, bit-exact emulator.

It reads only the artifact (and, through `run_stage`, the manifest's stage entry) and
reproduces what `netx.hdf5.Network` builds and what Lava's
`Loihi2SimCfg(select_tag="fixed_pt")` process models compute, with integer arithmetic on
batched torch tensors. By job:

- `decode`: a netx file (read through `hybridc.netx`) as layers with Lava's values;
- `neurons`: the neuron models, one public step function each (`lif`, `sigma_delta`,
  `resonate`);
- `synapses`: the dense, delay-dense and conv synapses' currents;
- `chain`: the batched chain runner (`emulate`, `run_layer`);
- `graph`: the branching-graph runner (netx chains joined by extra synapses);
- `stage`: the `emulate` backend of a loihi stage (`run_stage`), which picks one of the two.
"""

from .chain import emulate, run_layer, stage_input
from .decode import Layer, on_device, read_network, read_stage_network
from .neurons import resonator
from .stage import run_stage

__all__ = ["Layer", "emulate", "on_device", "read_network", "read_stage_network", "resonator", "run_layer", "run_stage",
           "stage_input"]
