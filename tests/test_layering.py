"""No module of nn3 imports one above it, and the imports make no cycle.

    $ python -m pytest tests/test_layering.py -q

The layers are issue 13's (DESIGN.md's list, bottom to top). A module may import its own layer or a
lower one, never a higher one, not even inside a function: an import inside a
function hides a cycle from Python but not from a reader. We read the imports with
``ast`` (every ``import`` and ``from ... import``, wherever it stands), so nothing is
imported to check them. A module that is not in the table fails: a new module must be
given its place.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "nn3"

# Bottom to top. presets will import spec only; the L0 modules stay JAX-free where they can.
LAYERS = [
    {"spec", "stop", "threads", "backend", "data", "presets", "files"},
    {"activations", "costs", "conv", "augment", "optim"},
    {"layers"},
    {"evaluation", "train"},
    {"ensemble", "rundir", "metrics", "export", "bundle"},
    {"runs"},
    {"facade", "network", "network2", "network3", "mnist_loader", "saved", "plots"},
    {"book", "booktable", "bookreport", "serve"},
    {"cli", "__main__", "__init__"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}

# Imports that break the layering, each (importer, imported), with the reason it stays.
# None today; the test fails once a listed one no longer happens, so that whoever removes
# an import removes its entry too.
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()


def _module(path: Path, root: Path = PACKAGE) -> str:
    """The layer-table name of a file: ``nn3/x.py`` -> ``x``, ``nn3/serve/...`` -> ``serve``."""
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _target(name: str) -> str | None:
    """The layer-table name of an imported dotted name inside nn3, else None."""
    parts = name.split(".")
    if parts[0] != "nn3":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _is_module(name: str) -> bool:
    return (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name / "__init__.py").is_file()


def imports(path: Path, root: Path = PACKAGE) -> set[str]:
    """The nn3 modules that ``path`` (a file of the package at ``root``) imports, anywhere in it."""
    me = _module(path, root)
    package = "nn3" if path.parent == root else "nn3." + ".".join(path.parent.relative_to(root).parts)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the file's package
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            # ``from nn3 import layers`` imports the module nn3.layers; ``from nn3 import
            # __version__`` takes a name from the package's __init__
            names = [f"{base}.{a.name}" if base == "nn3" and _is_module(a.name) else base for a in node.names]
        else:
            continue
        found.update(t for t in map(_target, names) if t is not None and t != me)
    return found


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        edges.setdefault(_module(path), set()).update(imports(path))
    return edges


def test_every_module_has_a_layer():
    missing = sorted(set(graph()) - set(LAYER))
    assert not missing, f"modules not in the layer table (give them a layer): {missing}"


def test_no_module_imports_one_above_it():
    edges = graph()
    upward = {(a, b) for a, bs in edges.items() for b in bs if b in LAYER and a in LAYER and LAYER[b] > LAYER[a]}
    unknown = {(a, b) for a, bs in edges.items() for b in bs if b not in LAYER}
    assert not unknown, f"imports of modules not in the layer table: {sorted(unknown)}"
    new = sorted(upward - KNOWN_EXCEPTIONS)
    assert not new, "imports of a higher layer: " + ", ".join(
        f"{a} (L{LAYER[a]}) imports {b} (L{LAYER[b]})" for a, b in new)
    stale = sorted(KNOWN_EXCEPTIONS - upward)
    assert not stale, f"known exceptions that no longer happen (remove them from the list): {stale}"


def test_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])


def test_the_checker_sees_every_import(tmp_path):
    # The check must be able to fail: imports inside functions, relative imports and
    # names taken from the package all count.
    root = tmp_path / "nn3"
    (root / "serve").mkdir(parents=True)
    probe = root / "serve" / "probe.py"
    probe.write_text("import json\n"
                     "def f():\n    from nn3 import runs, __version__\n    import nn3.cli\n"
                     "class A:\n    def g(self):\n        from ..train import fit\n        from . import x\n", encoding="utf-8")
    assert imports(probe, root) == {"runs", "__init__", "cli", "train"}
