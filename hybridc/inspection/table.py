"""rich tables: one row per stage and per cut, or one row per fx node."""

from rich.markup import escape
from rich.table import Table as RichTable


class Table(RichTable):
    """A rich table that also prints as text (`print(hybridc.inspect(c).table())`)."""

    def __str__(self) -> str:
        import io
        import shutil

        from rich.console import Console

        out = io.StringIO()
        Console(file=out, width=max(shutil.get_terminal_size((140, 24)).columns, 100), highlight=False).print(self)
        return out.getvalue()


def stages_table(inspection) -> Table:
    table = Table(title=f"partitions (T={inspection.timesteps})")
    for col in ("stage / cut", "target", "layers", "input", "output", "size"):
        table.add_column(col)
    for s in inspection.stages:
        size = (f"{s.neurons:,} neurons, {s.synapses:,} synapses" if s.neurons
                else f"{s.parameters:,} parameters")
        table.add_row(s.name, s.target, str(s.layers), ", ".join(s.inputs), ", ".join(s.outputs), size)
    for c in inspection.cuts:
        table.add_row(
            f"[bold]cut {c.source} -> {c.destination}[/]", "link", "",
            f"{c.tensor}: {c.layout} {'x'.join(map(str, c.shape))}", c.conversion_text(),
            f"{c.wire_text()}\n{c.bytes_text()}",
        )
    nir = [(s.name, [(n, names) for n, names in inspection.nir_nodes.items()
                     if inspection.graph.nodes.get(n, {}).get("partition") == s.name]) for s in inspection.stages]
    lines = [f"{name} layers from NIR: " + "; ".join(f"{n} from {', '.join(names)}" for n, names in layers)
             for name, layers in nir if layers]
    if lines:  # only for builds with hybridc.nn.NIR modules; names are the graph's, shown as text
        table.caption, table.caption_justify = escape("\n".join(lines)), "left"
    return table


def nodes_table(inspection) -> Table:
    table = Table(title="fx nodes")
    nodes = inspection.nodes()
    branching = any(n["lowered_to"] for n in nodes)  # a branching Loihi stage: where each layer went
    nir = any(n.get("nir") for n in nodes)  # blocks of hybridc.nn.NIR modules: the NIR nodes they came from
    for col in ("node", "op", "call", "reads", "shape", "target", "partition", "params") + (
            ("lowered to",) if branching else ()) + (("from NIR",) if nir else ()):
        table.add_column(col)
    for n in nodes:
        call = n["call"] + (f" ({n['module_type']})" if n["module_type"] else "")
        if n["accumulator"]:
            call += f" I={n['accumulator']['interval']}"
        table.add_row(n["name"], n["op"], call, ", ".join(n["reads"]) or "-",
                      "x".join(map(str, n["shape"] or [])) or "-",
                      n["target"] or "-", n["partition"] or "-", f"{n['parameters']:,}" if n["parameters"] else "",
                      *((n["lowered_to"] or "",) if branching else ()),
                      *((escape(", ".join(n.get("nir") or [])),) if nir else ()))
    return table


def cores_table(inspection) -> Table:
    view = inspection.cores()
    system, use = view["system"], view["utilisation"]
    table = Table(title=f"{system['name']}: {use['cores_used']:,} of {system['cores']:,} cores "
                        f"({use['cores_fraction']:.1%}) on {use['chips_used']:,} of {system['chips']:,} chip(s) of "
                        f"{system['chip']}; {use['axons_crossing_chips']:,} input axons cross chips (estimates)")
    for col in ("chip", "cores", "neurons", "layer", "kind", "shape", "its cores here", "its neurons here"):
        table.add_column(col)
    for chip in view["chips"]:
        for i, layer in enumerate(chip["layers"]):
            where = (f"{layer['stage']} " + (f"segment {layer['segment']} " if "segment" in layer else "")
                     + f"layer {layer['layer']}")
            first, last = layer["cores"]
            head = (str(chip["chip"]), f"{chip['cores']:,} of {chip['cores_per_chip']:,}", f"{chip['neurons']:,}") \
                if i == 0 else ("", "", "")
            table.add_row(*head, where, layer["kind"], "x".join(map(str, layer["shape"])),
                          f"{first}-{last}" if last > first else str(first), f"{layer['neurons']:,}")
    return table
