"""Graph passes over a torch.fx GraphModule, run in this order by the driver:

1. recognise_accumulators: plain time reductions at the cut become Accumulator nodes.
2. tag_targets: write node.meta["hybridc_target"]; never changes the graph. Ends with
   spike_merges: ADD / cat of spikes feeding spiking code is spiking, other spike
   combinations feeding it (AND, IAND, products) are refused.
   check_numerics: refuse NaN/Inf and values outside a target's fixed-point ranges.
3. insert_cut_accumulators: a raw spike crossing gets an interval-1 accumulator.
4. partition: group tagged nodes into one partition per side and check the split.
"""

from .check_numerics import check_numerics
from .insert_cut_accumulators import insert_cut_accumulators
from .partition import Partition, partition
from .recognise_accumulators import recognise_accumulators
from .tag_targets import is_spiking_node, tag_targets

__all__ = ["check_numerics", "recognise_accumulators", "tag_targets", "insert_cut_accumulators", "partition",
           "Partition", "is_spiking_node"]
