"""`hybridc targets`."""

from .common import app, guard, make_console, quiet_imports


@app.command()
def targets():
    """List every target, the side of the cut it runs, and what it supports."""
    console = make_console()

    def body():
        quiet_imports()
        from rich.table import Table

        from ..targets.registry import REGISTRY, get_target

        table = Table(title="targets (write the spiking and the dense one joined by '+', e.g. loihi+jetson)")
        for col in ("target", "side", "aliases", "what it produces", "neuron models", "supports"):
            table.add_column(col)
        for entry in REGISTRY.values():
            target = get_target(entry.name)
            table.add_row(entry.name, entry.domain, ", ".join(entry.aliases), entry.summary,
                          "\n".join(target.neuron_models), "\n".join(target.supported_ops))
        console.print(table)

    guard(body)
