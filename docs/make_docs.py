"""Regenerate every figure and picture in the docs from one run, each stamped with the
command and sample count that produced it:

    make docs        (or: .venv/bin/python docs/make_docs.py [inspect profile explore])

Pictures go to docs/images/; tables and figures quoted in prose are written between
`<!-- make_docs: NAME -->` and `<!-- /make_docs -->` markers in docs/*.md. (Measured
figures, timings and parity, live in docs/measurements.md: `make measurements`.)
Needs Graphviz (`dot`) and Chromium for the inspect pictures (apt-get install graphviz chromium).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
IMAGES = DOCS / "images"
MODEL = "examples/dvs_gesture/model.py"
PROFILE_SAMPLES = 16
EXPLORE_SAMPLES = 4


def hybridc(*args) -> str:
    """Run the CLI as a user does (from the repository root) and return what it printed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "hybridc.cli", *map(str, args)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=3600)
    if result.returncode:
        sys.exit(f"hybridc {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result.stdout


def shown(*args) -> str:
    """The command as the docs quote it: relative paths, temporary directories as build/ and explore/."""
    text = "hybridc " + " ".join(map(str, args))
    return re.sub(r"\S*/hybridc-docs-\w+/", "", text)


def replace_marked(path: Path, name: str, body: str) -> None:
    text = path.read_text()
    pattern = re.compile(rf"(<!-- make_docs: {name} -->\n).*?(<!-- /make_docs -->)", re.S)
    if not pattern.search(text):
        sys.exit(f"{path} has no `<!-- make_docs: {name} -->` ... `<!-- /make_docs -->` markers")
    path.write_text(pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text))


def block(text: str) -> str:
    text = re.sub(r"\S*/hybridc-docs-\w+/", "", text)
    return "```text\n" + "\n".join(line.rstrip() for line in text.strip("\n").splitlines()) + "\n```\n"


def inspect_docs(tmp: Path) -> None:
    build = tmp / "build"
    hybridc("compile", MODEL, "-o", build)
    table = hybridc("inspect", build)
    replace_marked(DOCS / "inspect.md", "inspect-table",
                   f"`{shown('compile', MODEL, '-o', build)}`, then `{shown('inspect', build)}`:\n\n" + block(table))
    hybridc("inspect", build, "-f", "png", "-o", IMAGES / "inspect_graph.png")
    page = tmp / "graph.html"
    hybridc("inspect", build, "-f", "html", "-o", page)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("Chromium is needed for docs/images/inspect_page.png (apt-get install chromium)")
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--disable-background-networking", "--no-first-run", f"--user-data-dir={tmp}/profile",
                    "--window-size=1280,900", f"--screenshot={IMAGES / 'inspect_page.png'}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    replace_marked(DOCS / "inspect.md", "inspect-pictures",
                   f"![hybridc inspect -f png](images/inspect_graph.png)\n\n"
                   f"*`{shown('inspect', build, '-f', 'png', '-o', 'graph.png')}` (Graphviz).*\n\n"
                   f"![hybridc inspect HTML page](images/inspect_page.png)\n\n"
                   f"*`{shown('inspect', build, '-f', 'html', '-o', 'graph.html')}`, opened in Chromium "
                   "(1280x900 window).*\n")


def profile_docs(tmp: Path) -> None:
    build = tmp / "build"
    if not (build / "manifest.json").exists():
        hybridc("compile", MODEL, "-o", build)
    out = tmp / "p.json"
    args = ("profile", build, "--samples", PROFILE_SAMPLES, "--trust-source", "--json", out)
    table = hybridc(*args)
    shutil.copy(out.with_suffix(".png"), IMAGES / "profile_s2a4.png")
    replace_marked(DOCS / "profile.md", "profile-table",
                   f"`{shown('compile', MODEL, '-o', build)}` (S2A4, I=4, 128x128, T=16, untrained weights), "
                   f"then `{shown(*args)}`, which also writes `p.png` (below):\n\n" + block(table)
                   + "\n![profile of S2A4](images/profile_s2a4.png)\n")


def explore_docs(tmp: Path) -> None:
    out = tmp / "explore"
    args = ("explore", MODEL, "--splits", "S1A5,S2A4,S3A3,S4A2", "--intervals", "2,4,8",
            "--samples", EXPLORE_SAMPLES, "-o", out)
    table = hybridc(*args)
    shutil.copy(out / "explore.png", IMAGES / "explore.png")
    rows = [r for r in json.loads((out / "explore.json").read_text()) if not r["refused"]]
    replace_marked(DOCS / "explore.md", "explore-table",
                   f"`{shown(*args)}` (128x128, T=16, untrained weights, {EXPLORE_SAMPLES} synthetic samples per "
                   "candidate; the scatter below is its `explore.png`):\n\n" + block(table)
                   + "\n![explore scatter](images/explore.png)\n")
    cheapest = min(rows, key=lambda r: r["energy_uj"])
    dearest = max(rows, key=lambda r: r["energy_uj"])
    latencies = sorted(r["latency_ms"] for r in rows)
    cuts = {r["name"].split("-")[0]: r["cut_bytes"] for r in rows}
    summary = (f"for the paper's family at 128x128, T=16, with Loihi 2 + Orin Nano over Gigabit Ethernet, "
               f"{cheapest['name']} is estimated cheapest ({cheapest['energy_uj'] / 1e3:.3g} mJ per inference) and "
               f"{dearest['name']} dearest ({dearest['energy_uj'] / 1e3:.3g} mJ); the cut shrinks from "
               f"{cuts.get('S1A5', 0) / 1024:.0f} KiB (S1A5) to {cuts.get('S4A2', 0) / 1024:.0f} KiB (S4A2) of raw "
               f"spike bits per inference; latency stays between {latencies[0]:.2f} and {latencies[-1]:.2f} ms. "
               f"Pareto front: {', '.join(r['name'] for r in sorted(rows, key=lambda r: r['latency_ms']) if r['pareto'])}. "
               f"(`make docs`: `{shown(*args)}`.)")
    replace_marked(DOCS / "explore.md", "explore-summary", summary[0].upper() + summary[1:])


STEPS = {"inspect": inspect_docs, "profile": profile_docs, "explore": explore_docs}


def main(names):
    IMAGES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hybridc-docs-") as tmp:
        for name in names or STEPS:
            print(f"regenerating the {name} figures", flush=True)
            STEPS[name](Path(tmp))
    print("done: look at docs/images/*.png before committing")


if __name__ == "__main__":
    main(sys.argv[1:])
