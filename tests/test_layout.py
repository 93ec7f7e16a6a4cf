"""The package layout is the pipeline: front end -> passes -> targets -> build -> runtime.

Every import (module level or inside a function) may only point to the same stage or an
earlier one, so a newcomer can read the compiler from the bottom up.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hybridc"

# Shared by every stage: errors, the nn modules users write, the manifest format, hashing,
# the netx format, the target table (names and sides only) and event data.
BASE = ("errors", "nn", "manifest", "digest", "netx", "targets.registry", "data")
STAGES = ("frontend", "passes", "targets", "build", "runtime", "deploy")
# Known exceptions, each with its reason.
ALLOWED = {
    # `CompiledModel.partition_graph` is a user convenience that renders the stage graph
    # with inspection's cut sizes; it is imported only when a user asks for it.
    ("build/compiled.py", "inspection"),
}


def _rank(module: str):
    if module in ("", "__version__") or any(module == b or module.startswith(b + ".") for b in BASE):
        return -1
    for rank, stage in enumerate(STAGES):
        if module == stage or module.startswith(stage + "."):
            return rank
    return None  # consumers around the pipeline: cli, inspection, profiling, train


def _imports(path: Path):
    relative = path.relative_to(PACKAGE).with_suffix("")
    package = list(relative.parts[:-1]) if relative.name != "__init__" else list(relative.parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [".".join(base + [a.name]) for a in node.names]
            elif node.module and node.module.startswith("hybridc."):
                names = [node.module[len("hybridc."):]]
            else:
                continue
            for name in names:
                yield node.lineno, name


def test_imports_point_down_the_pipeline():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        own = _rank(module)
        if own is None:
            continue
        for line, imported in _imports(path):
            theirs = _rank(imported)
            if (str(path.relative_to(PACKAGE)), imported.split(".")[0]) in ALLOWED:
                continue
            if theirs is None or theirs > own:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {imported}")
    assert not wrong, "imports against the pipeline:\n" + "\n".join(wrong)
