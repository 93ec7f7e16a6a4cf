"""See a compiled model's partition graphs: as a table, JSON, Graphviz DOT, or an HTML page.

`hybridc.inspect(compiled)` returns an `Inspection`; the CLI's `hybridc inspect` prints
or writes one of its renderings.
"""

from .model import Inspection, cut_bytes, partition_graph

__all__ = ["Inspection", "partition_graph", "cut_bytes"]
