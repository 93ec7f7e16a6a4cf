"""Graphviz DOT: one cluster per partition, nodes coloured by target, accumulators as
trapezia, the cut edges drawn bold with their bytes; and rendering with `dot`."""

import shutil
import subprocess

from ..errors import RenderError

COLOURS = {"loihi": "#f4a261", "nir": "#e76f51", "jetson": "#76b900", "jetson-int8": "#2a9d8f", "cpu": "#8ab17d",
           None: "#dddddd"}
FILL = {"loihi": "#fde8d7", "nir": "#fbe0d8", "jetson": "#e4f3c6", "jetson-int8": "#d4eeeb", "cpu": "#e8f0e2"}


def _q(text) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _label(n) -> str:
    what = n["module_type"] or n["call"]
    shape = "x".join(map(str, n["shape"] or []))
    nir = f"\nfrom NIR {', '.join(n['nir'])}" if n.get("nir") else ""
    return f"{n['name']}\n{what}" + (f"\n{shape}" if shape else "") + nir


def to_dot(inspection) -> str:
    nodes = inspection.nodes()
    lines = ["digraph hybridc {", '  rankdir=TB; node [style=filled, fontname="Helvetica", fontsize=10];',
             '  edge [color="#555555", fontname="Helvetica", fontsize=10];']
    by_partition = {}
    for n in nodes:
        by_partition.setdefault(n["partition"], []).append(n)
    targets = {s.name: s.target for s in inspection.stages}
    rows = _fold_rows(inspection.graph, nodes)
    if rows:  # folded columns cut across clusters: name the partitions in a caption instead
        from html import escape

        caption = " &nbsp; ".join(f'<font color="{COLOURS.get(target, "#dddddd")}">&#9632;</font> '
                                  f'{escape(name)} @ {escape(str(target))}' for name, target in targets.items())
        lines.append(f'  labelloc=t; fontname="Helvetica"; fontsize=14; label=<{caption}>;')
    for partition, members in by_partition.items():
        indent = "  "
        if partition and not rows:
            lines.append(f"  subgraph cluster_{partition} {{")
            lines.append(f"    label={_q(f'{partition} @ {targets.get(partition)}')}; style=filled; "
                         f"color={_q(COLOURS.get(targets.get(partition)))}; "
                         f"fillcolor={_q(FILL.get(targets.get(partition), '#ffffff'))};")
            indent = "    "
        for n in members:
            shape = "invtrapezium" if n["accumulator"] else ("ellipse" if n["op"] in ("placeholder", "output") else "box")
            tooltip = f"{n['op']} {n['call']} shape={n['shape']} target={n['target']} params={n['parameters']}"
            if n["lowered_to"]:
                tooltip += f" lowered to {n['lowered_to']}"
            if n.get("nir"):
                tooltip += f" from NIR {', '.join(n['nir'])}"
            lines.append(f"{indent}{_q(n['name'])} [label={_q(_label(n))}, shape={shape}, "
                         f"fillcolor={_q(COLOURS.get(n['target']))}, tooltip={_q(tooltip)}];")
        if partition and not rows:
            lines.append("  }")
    if rows:  # a long chain: lay it out in columns of `rows` nodes, not as one tall strip
        names = [n["name"] for n in nodes]
        for r in range(rows):
            lines.append("  { rank=same; " + "; ".join(_q(m) for m in names[r::rows]) + "; }")
        wrap = {(names[i - 1], names[i]) for i in range(rows, len(names), rows)}
    else:
        wrap = set()
    part = {n["name"]: n["partition"] for n in nodes}
    cut_label = {(c.source, c.destination, c.node): f"cut: {c.wire_label()}" for c in inspection.cuts}
    for a, b in inspection.graph.edges:
        pa, pb = part.get(a), part.get(b)
        loose = ", constraint=false" if (a, b) in wrap else ""
        if pa and pb and pa != pb:
            lines.append(f"  {_q(a)} -> {_q(b)} [penwidth=3, color=\"#d62828\", "
                         f"label={_q(cut_label.get((pa, pb, a), 'cut'))}, fontcolor=\"#d62828\"{loose}];")
        else:
            lines.append(f"  {_q(a)} -> {_q(b)}" + (f" [{loose[2:]}]" if loose else "") + ";")
    for name in inspection.feedback:  # a recurrent layer's feedback synapse onto its own neurons
        lines.append(f"  {_q(name)} -> {_q(name)} [style=dashed, label=\"feedback\"];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _fold_rows(graph, nodes) -> int:
    """Nodes per column when the graph is a single chain longer than a screen, else 0."""
    import math

    chain = all(graph.in_degree(n["name"]) <= 1 and graph.out_degree(n["name"]) <= 1 for n in nodes)
    if not chain or len(nodes) <= 8:
        return 0
    return math.ceil(math.sqrt(len(nodes) * 1.2))


def render(dot_source: str, fmt: str) -> bytes:
    """SVG or PNG bytes from Graphviz's `dot` program."""
    exe = shutil.which("dot")
    if exe is None:
        raise RenderError(
            f"Rendering {fmt} needs Graphviz's `dot` program, which is not installed. Install it "
            "(Debian/Ubuntu: `apt-get install graphviz`; conda: `conda install graphviz`; the pip "
            "package `graphviz` is only a wrapper and does not include it), or use --format dot "
            "for the source or --format html for a page that needs nothing."
        )
    result = subprocess.run([exe, f"-T{fmt}"], input=dot_source.encode(), capture_output=True, timeout=120)
    if result.returncode:
        raise RenderError(f"Graphviz `dot -T{fmt}` failed: {result.stderr.decode(errors='replace')[:500]}")
    return result.stdout
