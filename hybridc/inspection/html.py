"""One self-contained HTML page: the graph as inline SVG with partitions boxed and
coloured, the cut marked, and every node's details on hover (SVG <title>) or click.
No scripts or styles are fetched from the network."""

import html
import json

import networkx as nx

from .dot import COLOURS, FILL

NODE_W, NODE_H, GAP_X, GAP_Y, MARGIN = 190, 46, 30, 34, 40
LABEL_ROOM = 420  # right of the graph: where the cut's label goes
CUT_GAP = 36  # extra space where the partition changes


def _layout(inspection):
    """Layered layout: one row per topological generation, nodes side by side."""
    rows = list(nx.topological_generations(inspection.graph))
    width = max(len(r) for r in rows) * (NODE_W + GAP_X) - GAP_X + 2 * MARGIN + 60 + LABEL_ROOM
    positions = {}
    top, previous = MARGIN + 20, None
    for row in rows:
        partitions = {inspection.graph.nodes[n].get("partition") for n in row}
        if previous is not None and partitions != previous:
            top += CUT_GAP  # room between partition boxes for the cut line
        previous = partitions
        row_width = len(row) * (NODE_W + GAP_X) - GAP_X
        for x, name in enumerate(sorted(row)):
            positions[name] = (MARGIN + 30 + (width - LABEL_ROOM - 2 * MARGIN - 60 - row_width) / 2
                               + x * (NODE_W + GAP_X), top)
        top += NODE_H + GAP_Y
    return positions, width, top + MARGIN


def _svg(inspection) -> str:
    positions, width, height = _layout(inspection)
    nodes = {n["name"]: n for n in inspection.nodes()}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" id="graph" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="Helvetica, Arial, sans-serif">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker>'
           '<marker id="cutarrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#d62828"/></marker></defs>']
    for stage in inspection.stages:  # partition boxes first, behind the nodes
        members = [positions[n] for n, d in nodes.items() if d["partition"] == stage.name]
        if not members:
            continue
        x0, y0 = min(p[0] for p in members) - 20, min(p[1] for p in members) - 28
        x1, y1 = max(p[0] for p in members) + NODE_W + 20, max(p[1] for p in members) + NODE_H + 12
        colour = COLOURS.get(stage.target)
        out.append(f'<g class="partition" data-partition="{stage.name}" data-target="{stage.target}">'
                   f'<rect x="{x0:.0f}" y="{y0:.0f}" width="{x1 - x0:.0f}" height="{y1 - y0:.0f}" rx="10" '
                   f'fill="{FILL.get(stage.target, "#fff")}" stroke="{colour}" stroke-width="2"/>'
                   f'<text x="{x0 + 10:.0f}" y="{y0 + 18:.0f}" font-size="13" font-weight="bold" fill="#333">'
                   f'{html.escape(stage.name)} @ {html.escape(stage.target)}</text></g>')
    cut_text = {(c.source, c.destination, c.node): f"cut: {c.wire_label()}" for c in inspection.cuts}
    for a, b in inspection.graph.edges:
        (xa, ya), (xb, yb) = positions[a], positions[b]
        pa, pb = nodes[a]["partition"], nodes[b]["partition"]
        x1, y1, x2, y2 = xa + NODE_W / 2, ya + NODE_H, xb + NODE_W / 2, yb
        if pa and pb and pa != pb:
            mid = y2 - 28 - (y2 - 28 - (y1 + 12)) / 2  # between the two partition boxes
            out.append(f'<g class="cut" data-from="{pa}" data-to="{pb}"><line x1="{MARGIN / 2:.0f}" y1="{mid:.0f}" '
                       f'x2="{width - MARGIN / 2:.0f}" y2="{mid:.0f}" stroke="#d62828" stroke-width="1.5" '
                       f'stroke-dasharray="8 5"/><line x1="{x1:.0f}" y1="{y1:.0f}" '
                       f'x2="{x2:.0f}" y2="{y2 - 2:.0f}" stroke="#d62828" stroke-width="4" '
                       f'marker-end="url(#cutarrow)"/><text x="{max(xa, xb) + NODE_W + 40:.0f}" y="{mid - 6:.0f}" '
                       f'font-size="12" fill="#d62828" font-weight="bold">'
                       f'{html.escape(cut_text.get((pa, pb, a), "cut"))}</text></g>')
        else:
            out.append(f'<line class="edge" x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2 - 2:.0f}" '
                       'stroke="#555" stroke-width="1.4" marker-end="url(#arrow)"/>')
    for name, n in nodes.items():
        x, y = positions[name]
        fill = COLOURS.get(n["target"], "#dddddd")
        if n["accumulator"]:
            shape = (f'<polygon points="{x:.0f},{y:.0f} {x + NODE_W:.0f},{y:.0f} {x + NODE_W - 18:.0f},'
                     f'{y + NODE_H:.0f} {x + 18:.0f},{y + NODE_H:.0f}" fill="{fill}" stroke="#d62828" stroke-width="2"/>')
        else:
            rx = NODE_H / 2 if n["op"] in ("placeholder", "output") else 6
            shape = (f'<rect x="{x:.0f}" y="{y:.0f}" width="{NODE_W}" height="{NODE_H}" rx="{rx:.0f}" '
                     f'fill="{fill}" stroke="#333" stroke-width="1"/>')
        what = n["module_type"] or n["call"]
        if n["accumulator"]:
            what += f" I={n['accumulator']['interval']}"
        shape_text = "x".join(map(str, n["shape"] or []))
        tip = (f"{name}\nop: {n['op']}\ncall: {n['call']}\nshape: {shape_text or '-'}\n"
               f"target: {n['target'] or '-'}\npartition: {n['partition'] or '-'}\nparameters: {n['parameters']:,}"
               + (f"\nlowered to: {n['lowered_to']}" if n["lowered_to"] else "")
               + (f"\nfrom NIR: {', '.join(n['nir'])}" if n.get("nir") else ""))
        out.append(f'<g class="node" id="node-{html.escape(name)}" data-name="{html.escape(name)}" '
                   f'data-target="{n["target"] or ""}" data-partition="{n["partition"] or ""}" tabindex="0">'
                   f'<title>{html.escape(tip)}</title>{shape}'
                   f'<text x="{x + NODE_W / 2:.0f}" y="{y + 18:.0f}" text-anchor="middle" font-size="12" '
                   f'font-weight="bold">{html.escape(name[:26])}</text>'
                   f'<text x="{x + NODE_W / 2:.0f}" y="{y + 34:.0f}" text-anchor="middle" font-size="10.5">'
                   f'{html.escape(what[:22])} {html.escape(shape_text[:16])}</text></g>')
    out.append("</svg>")
    return "".join(out)


def _summary(inspection) -> str:
    rows = []
    for s in inspection.stages:
        size = (f"{s.neurons:,} neurons, {s.synapses:,} synapses" if s.neurons
                else f"{s.parameters:,} parameters")
        rows.append(f'<tr><td><span class="swatch" style="background:{COLOURS.get(s.target)}"></span>'
                    f'{html.escape(s.name)}</td><td>{html.escape(s.target)}</td><td>{s.layers}</td>'
                    f'<td>{html.escape(", ".join(s.inputs))}</td><td>{html.escape(", ".join(s.outputs))}</td>'
                    f'<td>{size}</td></tr>')
    for c in inspection.cuts:
        rows.append(f'<tr class="cutrow"><td>cut {html.escape(c.source)} &rarr; {html.escape(c.destination)}</td>'
                    f'<td>link</td><td></td><td>{html.escape(c.tensor)}: {c.layout} {"x".join(map(str, c.shape))}</td>'
                    f'<td>{html.escape(c.conversion_text())}</td>'
                    f'<td>{html.escape(c.wire_text())}; {html.escape(c.bytes_text())}</td></tr>')
    for e in inspection.edges:  # the model's input and output, the ends of the stage graph
        if e.producer["stage"] is None or e.consumer["stage"] is None:
            source, destination = e.producer["stage"] or "model input", e.consumer["stage"] or "model output"
            rows.append(f'<tr class="edgerow"><td>{html.escape(source)} &rarr; {html.escape(destination)}</td>'
                        f'<td>edge</td><td></td><td>{html.escape(e.producer["tensor"])}: {e.layout} '
                        f'{"x".join(map(str, e.shape))}</td><td>{html.escape(e.consumer["input"])}</td>'
                        f'<td>{e.bytes_per_inference:,.0f} B ({e.bits_per_value} bits per value)</td></tr>')
    return ('<table class="summary"><thead><tr><th>stage / cut</th><th>target</th><th>layers</th><th>input</th>'
            f'<th>output</th><th>size</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


STYLE = """
body{font-family:Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
header{padding:14px 24px;background:#263238;color:#fff} header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;font-size:13px;color:#cfd8dc}
main{display:flex;gap:16px;padding:16px 24px;align-items:flex-start}
#canvas{flex:1;overflow:auto;background:#fff;border:1px solid #ddd;border-radius:8px}
aside{width:320px;position:sticky;top:12px;background:#fff;border:1px solid #ddd;border-radius:8px;padding:12px;font-size:13px}
aside h2{font-size:15px;margin:0 0 8px} aside dt{font-weight:bold;margin-top:6px} aside dd{margin:0;word-break:break-all}
table.summary{border-collapse:collapse;margin:12px 24px 0;font-size:13px;background:#fff}
table.summary td,table.summary th{border:1px solid #ddd;padding:4px 8px;text-align:left}
tr.cutrow td{color:#b00020} .swatch{display:inline-block;width:10px;height:10px;margin-right:6px;border-radius:2px}
g.node{cursor:pointer} g.node:hover rect,g.node:hover polygon,g.node.selected rect,g.node.selected polygon{stroke:#1565c0;stroke-width:3}
.legend span{margin-right:14px}
"""

SCRIPT = """
const data = JSON.parse(document.getElementById('hybridc-data').textContent);
const byName = Object.fromEntries(data.nodes.map(n => [n.name, n]));
const panel = document.getElementById('details');
function show(name){
  const n = byName[name]; if(!n) return;
  document.querySelectorAll('g.node.selected').forEach(g => g.classList.remove('selected'));
  document.getElementById('node-' + name).classList.add('selected');
  const rows = [['op', n.op], ['call / module path', n.call], ['module type', n.module_type || '-'],
    ['shape', n.shape ? n.shape.join(' x ') : '-'], ['dtype', n.dtype || '-'], ['target', n.target || '-'],
    ['partition', n.partition || '-'], ['parameters', n.parameters.toLocaleString()],
    ['accumulator', n.accumulator ? ('interval ' + n.accumulator.interval + (n.accumulator.fold ? ', folded' : '')) : '-'],
    ['recognised from', n.recognised_from || '-'], ['lowered to', n.lowered_to || '-'],
    ...(n.nir ? [['from NIR', n.nir.join(', ')]] : [])];
  panel.innerHTML = '<h2></h2><dl></dl>';
  panel.querySelector('h2').textContent = n.name;
  const dl = panel.querySelector('dl');
  for (const [k, v] of rows){ const dt = document.createElement('dt'); dt.textContent = k;
    const dd = document.createElement('dd'); dd.textContent = v; dl.append(dt, dd); }
}
document.querySelectorAll('g.node').forEach(g => {
  g.addEventListener('click', () => show(g.dataset.name));
  g.addEventListener('keydown', e => { if (e.key === 'Enter') show(g.dataset.name); });
});
"""


def _cores(inspection) -> str:
    """The chips and cores the loihi stages take, a row per layer on each chip."""
    view = inspection.cores()
    system, use = view["system"], view["utilisation"]
    rows = []
    for chip in view["chips"]:
        for i, layer in enumerate(chip["layers"]):
            where = (f"{layer['stage']} " + (f"segment {layer['segment']} " if "segment" in layer else "")
                     + f"layer {layer['layer']}")
            head = (f'<td rowspan="{len(chip["layers"])}">chip {chip["chip"]}: {chip["cores"]:,} of '
                    f'{chip["cores_per_chip"]:,} cores, {chip["neurons"]:,} neurons</td>') if i == 0 else ""
            first, last = layer["cores"]
            rows.append(f'<tr>{head}<td>{html.escape(where)}</td><td>{html.escape(layer["kind"])}</td>'
                        f'<td>{"x".join(map(str, layer["shape"]))}</td><td>{first}&ndash;{last}</td>'
                        f'<td>{layer["neurons"]:,}</td></tr>')
    caption = (f'{html.escape(system["name"])}: {use["cores_used"]:,} of {system["cores"]:,} cores '
               f'({use["cores_fraction"]:.1%}) on {use["chips_used"]:,} of {system["chips"]:,} chip(s) of '
               f'{html.escape(system["chip"])}; {use["axons_crossing_chips"]:,} input axons cross chips (estimates)')
    return (f'<table class="summary"><caption>{caption}</caption><thead><tr><th>chip</th><th>layer</th>'
            '<th>kind</th><th>shape</th><th>cores</th><th>neurons</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def to_html(inspection, standalone: bool = True, level: str = "stages") -> str:
    data = json.dumps(inspection.to_dict()).replace("</", "<\\/")
    targets = " + ".join(f'<span><span class="swatch" style="background:{COLOURS.get(s.target)}"></span>'
                         f'{html.escape(s.target)}</span>' for s in inspection.stages)
    body = (f'<header><h1>hybridc partition graph</h1><p>target {html.escape(inspection.compiled.manifest.target)}'
            f' &middot; T={inspection.timesteps} &middot; {len(inspection.graph)} nodes &middot; '
            f'<span class="legend">{targets}</span> &middot; red: the cut</p></header>'
            f'{_summary(inspection)}{_cores(inspection) if level == "cores" else ""}<main><div id="canvas">{_svg(inspection)}</div>'
            '<aside id="details"><h2>details</h2><p>Hover a node for a summary, click it for every '
            'attribute.</p></aside></main>'
            f'<script type="application/json" id="hybridc-data">{data}</script><script>{SCRIPT}</script>')
    if not standalone:
        return f"<div class=\"hybridc-inspect\"><style>{STYLE}</style>{body}</div>"
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>hybridc partition graph</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>\n")
