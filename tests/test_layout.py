"""The package layout is the pipeline, and the checks that keep it so.

front end -> passes -> targets -> mapping -> build directory I/O -> compiler -> runtime -> deploy:
every import (module level or inside a function) may only point to the same stage or an
earlier one, so a newcomer can read the compiler from the bottom up. Two more rules keep
modules honest about what they share: no import cycle between modules (a function-local
import counts: it hides a cycle, it does not remove it), and no private name (a leading
underscore) used outside the module that defines it.

The checkers take any package directory, so the planted-violation tests below prove they
catch what they claim. To see them fail on the real tree, plant a cycle (add
`from ..compiler import driver` inside a function in hybridc/frontend/graph.py and
`from ..frontend import graph` to hybridc/compiler/driver.py) or a private import
(`from .slayer_blocks import _slayer` in hybridc/targets/nir.py) and run
`python -m pytest tests/test_layout.py`.
"""

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[1] / "hybridc"

# Shared by every stage: errors, the nn modules users write, the manifest format, hashing,
# the version, quiet imports, event data, users' array files, the netx file format, and the
# target table and contract (names and sides only).
BASE = ("errors", "nn", "nir_import", "manifest", "digest", "version", "quiet", "data", "array_files", "netx",
        "targets.registry", "targets.base")
STAGES = ("frontend", "passes", "targets", "mapping", "build_dir", "compiler", "runtime", "deploy")
# Known exceptions, each with its reason.
ALLOWED = {
    # `CompiledModel.partition_graph` is a user convenience that renders the stage graph
    # with inspection's cut sizes; it is imported only when a user asks for it.
    ("build_dir/compiled.py", "inspection"),
}


def _rank(module: str):
    if any(module == b or module.startswith(b + ".") for b in BASE):
        return -1
    for rank, stage in enumerate(STAGES):
        if module == stage or module.startswith(stage + "."):
            return rank
    return None  # consumers around the pipeline: the API (hybridc/__init__.py), cli, inspection, profiling, train


def modules(package: Path) -> dict:
    """{dotted module name relative to the package ('' for its __init__): path}."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imports(package: Path, module: str, path: Path):
    """(line, imported module, names taken from it, (name, module) the import binds or None)
    for every import of the package's own modules, at any depth of the file."""
    own = package.name
    here = module.split(".") if module else []
    if not _is_package(path):
        here = here[:-1]
    known = modules(package)
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module == own or (node.module or "").startswith(own + "."):
                target = node.module[len(own) + 1:]
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                if sub in known:  # `from . import emulator`: the module itself
                    yield node.lineno, sub, (), (alias.asname or alias.name, sub)
                else:
                    yield node.lineno, target, (alias.name,), None
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == own or alias.name.startswith(own + "."):
                    target = alias.name[len(own) + 1:]
                    # `import pkg.x as y` binds y to pkg.x; `import pkg.x` binds pkg, the root ('')
                    yield node.lineno, target, (), (alias.asname, target) if alias.asname else (own, "")


def import_graph(package: Path) -> nx.DiGraph:
    """Module -> module edges for every import of the package's own modules."""
    graph = nx.DiGraph()
    for module, path in modules(package).items():
        graph.add_node(module)
        for line, imported, _, _ in imports(package, module, path):
            if imported != module:
                graph.add_edge(module, imported, line=line)
    return graph


def import_cycles(package: Path) -> list:
    """Each set of modules that import one another, with one cycle through it ('a -> b -> a')."""
    graph = import_graph(package)
    found = []
    for component in nx.strongly_connected_components(graph):
        if len(component) > 1:
            cycle = nx.find_cycle(graph.subgraph(component))
            path = " -> ".join([a or package.name for a, _ in cycle] + [cycle[0][0] or package.name])
            found.append(path if len(component) == len(cycle) else
                         f"{path} (and {', '.join(sorted(set(component) - {a for a, _ in cycle}))})")
    return sorted(found)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(package: Path) -> list:
    """'file:line uses module._name' for private names taken from another module: imported
    (`from .x import _y`), private modules imported (`from . import _x`), or reached as an
    attribute of an imported module (`x._y`)."""
    wrong = []
    for module, path in modules(package).items():
        where = path.relative_to(package.parent)
        bound = {}
        for line, imported, names, alias in imports(package, module, path):
            if any(_private(part) for part in imported.split(".") if part):
                wrong.append(f"{where}:{line} imports the private module {imported}")
            for name in names:
                if _private(name):
                    wrong.append(f"{where}:{line} imports {imported}.{name}")
            if alias:
                bound[alias[0]] = alias[1]
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Attribute) and _private(node.attr)):
                continue
            chain, value = [], node.value  # `a.b.c._d`: the names before the private one
            while isinstance(value, ast.Attribute):
                chain.insert(0, value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in bound:
                owner = ".".join(part for part in [bound[value.id], *chain] if part)
                wrong.append(f"{where}:{node.lineno} uses {owner}.{node.attr}")
    return sorted(set(wrong))


def against_the_pipeline(package: Path) -> list:
    wrong = []
    for module, path in modules(package).items():
        own = _rank(module)
        if own is None:
            continue
        for line, imported, _, _ in imports(package, module, path):
            theirs = _rank(imported)
            if (str(path.relative_to(package)), imported.split(".")[0]) in ALLOWED:
                continue
            if theirs is None or theirs > own:
                wrong.append(f"{path.relative_to(package.parent)}:{line} imports {imported}")
    return wrong


def test_imports_point_down_the_pipeline():
    wrong = against_the_pipeline(PACKAGE)
    assert not wrong, "imports against the pipeline:\n" + "\n".join(wrong)


def test_every_stage_exists():
    found = modules(PACKAGE)
    missing = [name for name in BASE + STAGES if name not in found]
    assert not missing, f"test_layout names modules the package does not have: {missing}"


def test_no_import_cycles():
    cycles = import_cycles(PACKAGE)
    assert not cycles, "import cycles (function-local imports count):\n" + "\n".join(cycles)


def test_no_private_name_leaves_its_module():
    wrong = private_uses(PACKAGE)
    assert not wrong, "private names used outside their module:\n" + "\n".join(wrong)


def _plant(tmp_path: Path, files: dict) -> Path:
    package = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    return package


def test_a_planted_cycle_through_a_function_local_import_is_found(tmp_path):
    package = _plant(tmp_path, {
        "a.py": "from .b import g\n\ndef f():\n    return g()\n",
        "sub/__init__.py": "",
        "sub/c.py": "def h():\n    from ..a import f\n    return f()\n",
        "b.py": "def g():\n    from .sub import c\n    return c\n",
    })
    assert import_cycles(package) == ["a -> b -> sub.c -> a"]
    (package / "sub/c.py").write_text("def h():\n    return 1\n")
    assert import_cycles(package) == []


def test_planted_private_imports_are_found(tmp_path):
    package = _plant(tmp_path, {
        "a.py": "def _hidden():\n    return 1\n\ndef shown():\n    return _hidden()\n",
        "b.py": "from .a import _hidden, shown\n",
        "c.py": "from . import a\n\ndef f():\n    return a._hidden() + a.shown()\n",
        "d.py": "import pkg.a as alias\nfrom . import _private_module\nx = alias._hidden\n",
        "_private_module.py": "",
        "e.py": "from .a import shown\nfrom . import a\n__all__ = [a.__name__]\n",
        "f.py": "import pkg.a\nimport pkg\ny = pkg.a._hidden\n",
    })
    assert private_uses(package) == [
        "pkg/b.py:1 imports a._hidden",
        "pkg/c.py:4 uses a._hidden",
        "pkg/d.py:2 imports the private module _private_module",
        "pkg/d.py:3 uses a._hidden",
        "pkg/f.py:3 uses a._hidden",
    ]


def test_registry_names_public_functions_and_classes_that_exist():
    """The target table names implementations, runners and emulators as 'module:name'
    strings (imported only when used): each must be a public name its module defines."""
    from hybridc.targets.registry import REGISTRY

    found = modules(PACKAGE)
    wrong = []
    for entry in REGISTRY.values():
        for path in filter(None, (entry.implementation, entry.runner, entry.emulator)):
            module, name = path.split(":")
            relative = module.removeprefix(PACKAGE.name + ".")
            if relative not in found:
                wrong.append(f"{entry.name}: {path} (no module {module})")
                continue
            tree = ast.parse(found[relative].read_text())
            defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
            defined |= {alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
                        for alias in node.names}
            if _private(name) or name not in defined:
                wrong.append(f"{entry.name}: {path} ({'private' if _private(name) else 'not defined there'})")
    assert not wrong, "registry entries that name nothing public:\n" + "\n".join(wrong)
