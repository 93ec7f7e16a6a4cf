"""Regenerate docs/inspect.md's figures: the table output and a screenshot of the HTML page.

    .venv/bin/python docs/make_inspect_docs.py   (needs chromium: apt-get install chromium)
"""

import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples/dvs_gesture"))

import hybridc  # noqa: E402
import model as sxay  # noqa: E402
from rich.console import Console  # noqa: E402


def main():
    model, x = sxay.build("S2A4", interval=4, size=128, timesteps=16)
    inspection = hybridc.inspect(hybridc.compile(model, x))
    console = Console(width=150, record=True, file=open("/dev/null", "w"))
    console.print(inspection.table())
    (DOCS / "images/inspect_table.txt").write_text(console.export_text())
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "graph.html"
        inspection.to_html(page)
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--disable-background-networking", "--no-first-run", f"--user-data-dir={tmp}/profile",
                        "--window-size=1280,900", f"--screenshot={DOCS / 'images/inspect_page.png'}",
                        page.as_uri()], check=True, capture_output=True, timeout=120)
    print("wrote docs/images/inspect_table.txt and docs/images/inspect_page.png")


if __name__ == "__main__":
    main()
