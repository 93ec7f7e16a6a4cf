"""Rerun the commands in docs/measurements.md and write what they print back into it.

    make measurements       (or: .venv/bin/python docs/make_measurements.py [NAME ...])
    make bench              (only the sections that run a benchmarks/ script: --benchmarks)

Each section of the file is a pair of fenced blocks between markers:

    <!-- measure: NAME -->
    ```sh
    the commands, run in order from the repository's root
    ```
    ```text
    what they printed (standard output), rewritten by this script
    ```
    <!-- /measure -->

The commands run in `bash -euo pipefail` with this interpreter's `bin/` first on PATH (so
`python` and `hybridc` are the ones of `.venv`) and the repository on PYTHONPATH. A section
is rewritten as soon as its commands succeed; a failing command stops the run and leaves
that section as it was. `--list` shows the sections, `--check` only checks that every
section is well formed and that the scripts and examples its commands name exist (no
command is run; the fast tests do this).
"""

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
FILE = DOCS / "measurements.md"

SECTION = re.compile(
    r"^(?P<head><!-- measure: (?P<name>[\w-]+) -->\n```sh\n(?P<commands>.*?)^```\n```text\n)"
    r"(?P<output>.*?)(?P<tail>^```\n<!-- /measure -->$)",
    re.S | re.M,
)
MARKER = re.compile(r"^<!-- measure: ([\w-]+) -->$", re.M)
# files a command names, which must exist for it to run: scripts, examples, test modules
NAMED_FILE = re.compile(r"(?<![\w/.-])((?:benchmarks|examples|tests|docs)/[\w./-]+\.py)\b")


def sections(text: str) -> list:
    """(name, commands, output) of every section, in file order."""
    return [(m["name"], m["commands"], m["output"]) for m in SECTION.finditer(text)]


def problems(text: str) -> list:
    """What is wrong with the file's sections: markers without a well-formed section,
    names used twice, empty commands, files named by a command that do not exist."""
    found = sections(text)
    names = [name for name, _, _ in found]
    wrong = [f"section `{name}`: not a ```sh block then a ```text block before <!-- /measure -->"
             for name in MARKER.findall(text) if name not in names]
    wrong += [f"section `{name}` appears twice" for name in sorted({n for n in names if names.count(n) > 1})]
    for name, commands, _ in found:
        if not commands.strip():
            wrong.append(f"section `{name}` has no command")
        for path in NAMED_FILE.findall(commands):
            if not (ROOT / path).exists():
                wrong.append(f"section `{name}`: {path} does not exist")
    return wrong


def is_benchmark(commands: str) -> bool:
    return "benchmarks/" in commands


def run(commands: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", commands], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if result.returncode:
        sys.exit(f"failed (exit {result.returncode}):\n{commands}\n{result.stderr[-3000:]}")
    text = re.sub(r"\S*/tmp\w*/", "", result.stdout)  # temporary directories say nothing
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines()) + "\n"


def rewrite(path: Path, name: str, output: str) -> None:
    text = path.read_text()
    match = next(m for m in SECTION.finditer(text) if m["name"] == name)
    path.write_text(text[:match.start("output")] + output + text[match.end("output"):])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="sections to rerun (default: all)")
    parser.add_argument("--benchmarks", action="store_true", help="only sections that run benchmarks/ scripts")
    parser.add_argument("--list", action="store_true", help="list the sections and their commands")
    parser.add_argument("--check", action="store_true", help="check the file's sections; run nothing")
    parser.add_argument("--file", type=Path, default=FILE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    text = args.file.read_text()
    found = sections(text)
    if args.check:
        wrong = problems(text)
        print("\n".join(wrong) or f"{len(found)} sections, each with its command")
        sys.exit(1 if wrong else 0)
    unknown = set(args.names) - {name for name, _, _ in found}
    if unknown:
        sys.exit(f"no such section: {', '.join(sorted(unknown))} (--list shows them)")
    chosen = [(name, commands) for name, commands, _ in found
              if (not args.names or name in args.names) and (not args.benchmarks or is_benchmark(commands))]
    for name, commands in chosen:
        if args.list:
            print(f"{name}:\n" + "".join(f"    {line}\n" for line in commands.splitlines()))
            continue
        print(f"rerunning {name}", flush=True)
        rewrite(args.file, name, run(commands))
    if not args.list:
        print(f"rewrote {len(chosen)} section(s) of {args.file.name}; read the prose around them before committing")


if __name__ == "__main__":
    main()
