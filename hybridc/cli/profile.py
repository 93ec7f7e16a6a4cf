"""`hybridc profile`: what a build costs per device and per link."""

from pathlib import Path
from typing import Optional

import typer

from . import common
from .common import DEVICE_OPTION, app, guard, make_console, quiet_imports, reference_files, write_file


@app.command()
def profile(
    build: Path = typer.Argument(..., help="Build directory written by `hybridc compile`."),
    data: Optional[str] = common.DATA_OPTION,
    model: Optional[Path] = common.MODEL_OPTION,
    weights: Optional[Path] = common.WEIGHTS_OPTION,
    trust_source: bool = common.TRUST_SOURCE_OPTION,
    samples: int = typer.Option(16, help="How many samples to average over."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the profile as JSON (and a PNG chart beside it)."),
    device_profile: Optional[Path] = typer.Option(None, "--device-profile", help="JSON overriding the default figures."),
    jetson: Optional[str] = typer.Option(None, help="jetson-nano or orin-nano (default from the profile)."),
    link: Optional[str] = typer.Option(None, help="usb3, gige or pcie (default from the profile)."),
    measured: Optional[Path] = typer.Option(None, "--measured", help="Stats from `hybridc pipeline --json` to "
                                            "show beside the estimates."),
    system: Optional[str] = typer.Option(None, "--system", help="Map the Loihi stages onto this system (loihi2, "
                                         "kapoho-point, hala-point, loihi1 or a file) for their cores and chips; "
                                         "default: the mapping recorded at compile."),
    device: str = DEVICE_OPTION,
):
    """Estimate what one inference costs on Loihi, on the link and on the Jetson."""
    console = make_console()

    def body():
        quiet_imports()
        from ..profiling.report import chart, profile_build

        with console.status("running samples and counting"):
            result = profile_build(build, data, samples, device_profile, jetson, link,
                                   files=reference_files(model, weights, trust_source), system=system)
        console.print(profile_table(result))
        if result.data:
            console.print(f"activity counted on {result.samples} samples: {result.data}"
                          + ("" if data else " (no --data given)"))
        if measured:
            from ..profiling.report import attach_measured

            attach_measured(result, measured)
            console.print(measured_table(result))
        if json_path:
            write_file(json_path, result.to_json())
            try:
                chart(result, json_path.with_suffix(".png"))
            except OSError as exc:
                from ..errors import OutputError

                raise OutputError(f"Cannot write {json_path.with_suffix('.png')}: {exc.strerror or exc}.") from None
            console.print(f"wrote {json_path} and {json_path.with_suffix('.png')}")

    guard(body, device=device)


def profile_table(result):
    from rich.table import Table

    table = Table(title=f"profile of {result.build}\n{result.devices['loihi']} + {result.devices['jetson']} "
                        f"over {result.devices['link']}", title_justify="left")
    for col in ("part", "size", "activity per inference", "latency", "energy"):
        table.add_column(col)
    if result.loihi:
        l = result.loihi  # noqa: E741
        table.add_row("loihi", f"{l['neurons']:,} neurons, {l['synapses']:,} synapses, {l['cores']} cores",
                      f"{l['spikes']:,.0f} spikes, {l['synaptic_ops']:,.0f} synaptic ops",
                      f"{l['time_s'] * 1e3:.3f} ms ({l['timesteps_run']} steps)", f"{l['energy_j'] * 1e6:.3f} uJ")
    if len(result.edges) > 1:  # a stage graph: one row per edge on the link
        for e in result.edges:
            what = {"graded": "graded spikes", "spikes": "raw spikes", "counts": "packed counts",
                    "values": "graded values"}.get(e.get("wire"), e.get("wire"))
            table.add_row(f"link {e['from']} -> {e['to']}", f"{'x'.join(map(str, e['shape']))} x {e['bits_per_value']} bit",
                          f"{e['bytes_sent']:,.0f} B {what} sent ({e['conversion']})",
                          f"{e['time_s'] * 1e3:.3f} ms", f"{e['energy_j'] * 1e6:.3f} uJ")
    elif result.cut:
        c = result.cut
        table.add_row("link", f"{c['tensor']} {'x'.join(map(str, c['shape']))}",
                      (f"{c['bytes_sent']:,.0f} B sent as {c.get('wire_bits', 3)}-bit packed counts of "
                       f"I={c['interval']} (raw spikes: {c['raw_bytes']:,.0f} B)"
                       if c.get("wire") == "counts" else
                       f"{c['bytes_sent']:,.0f} B sent as {c.get('wire_bits')}-bit signed graded values"
                       if c.get("wire") == "values" else
                       f"{c['bytes_sent']:,.0f} B raw spikes sent ({c['accumulated_bytes']:,.0f} B as "
                       f"{c['count_dtype']} counts of I={c['interval']})"),
                      f"{c['time_s'] * 1e3:.3f} ms", f"{c['energy_j'] * 1e6:.3f} uJ")
    if result.jetson:
        j = result.jetson
        measured = j.get("measured_onnxruntime_cpu_s")
        table.add_row("jetson", f"{j['parameters']:,} parameters", f"{j['macs']:,} MACs",
                      f"{j['time_s'] * 1e3:.3f} ms" + (f" (this CPU: {measured * 1e3:.3f} ms)" if measured else ""),
                      f"{j['energy_j'] * 1e6:.3f} uJ")
    table.add_row("[bold]total[/]", "", "", f"[bold]{result.latency_s['total'] * 1e3:.3f} ms[/]",
                  f"[bold]{result.energy_j['total'] * 1e6:.3f} uJ[/]")
    for note in result.notes:
        table.add_row("[yellow]note[/]", note, "", "", "")
    return table


def measured_table(result):
    from rich.table import Table

    m = result.measured
    table = Table(title=f"measured by `hybridc pipeline` ({m['samples']} samples, {m['backend']} backend, "
                        f"{m['throughput_per_s']:.2f} samples/s, end-to-end "
                        f"{m['end_to_end_latency_s']['median'] * 1e3:.1f} ms median)")
    for col in ("link or stage", "form", "measured", "estimated"):
        table.add_column(col)
    for row in m["links"]:
        kind = f"{row['bits']}-bit {row['form']}" if row["bits"] else row["form"]
        estimate = row.get("estimated_bytes_per_inference", row["pipeline_predicted_bytes_per_inference"])
        table.add_row(f"{row['from']} -> {row['to']}" if "to" in row else row["link"], kind, f"{row['measured_bytes_per_inference'] or 0:,.0f} B/inference "
                      f"({row['measured_message_bytes_per_inference'] or 0:,.0f} B with headers)", f"{estimate:,.0f} B")
    estimates = {"loihi": result.latency_s.get("loihi"), "jetson": result.latency_s.get("jetson")}
    for stage in m["stages"]:
        side = "loihi" if stage["target"] == "loihi" else "jetson"
        table.add_row(stage["stage"], stage["target"], f"{stage['compute_s']['median'] * 1e3:.1f} ms per sample "
                      "(simulator / this CPU)", f"{(estimates.get(side) or 0) * 1e3:.3f} ms on the device")
    return table
