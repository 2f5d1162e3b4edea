"""nn3's packages import one way, down DESIGN.md's list; each offers what its ``__all__`` says; no cycle.

    $ python -m pytest tests/test_layering.py -q

The packages, bottom to top: ``engine`` (the functional core), ``store`` (files on
disk), ``runs`` (a run as a user sees it), ``book`` and ``serve`` (what sits above a
run), then the book's own modules where readers import them (``network``,
``network2``, ``network3``, ``mnist_loader``, and ``saved`` behind ``nn3.load``), then the
command line and the package itself. A module may import its own package or a lower
one, never a higher one, not even inside a function: an import inside a function hides
a cycle from Python but not from a reader. From another package it imports only what
that package offers: the submodules in its ``__init__``'s ``__all__``, and from those
only names without a leading underscore. We read the imports with ``ast`` (every
``import`` and ``from ... import``, wherever it stands), so nothing is imported to check them.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "nn3"

# Bottom to top; a name is a package of nn3 or a module at its top.
LAYERS = [
    {"engine"},
    {"store"},
    {"runs"},
    {"book", "serve"},
    {"network", "network2", "network3", "mnist_loader", "saved"},
    {"cli", "__main__", "__init__"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _unit(path: Path, root: Path = PACKAGE) -> str:
    """The layer-table name of a file: ``nn3/x.py`` -> ``x``, ``nn3/engine/...`` -> ``engine``."""
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _dotted(path: Path, root: Path = PACKAGE) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["nn3", *parts])


def _is_module(dotted: str, root: Path = PACKAGE) -> bool:
    rel = Path(*dotted.split(".")[1:]) if "." in dotted else Path()
    return (root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file()


def imports(path: Path, root: Path = PACKAGE) -> set[tuple[str, str | None]]:
    """What ``path`` imports from nn3, anywhere in it: (the module's dotted name, a name taken from it or None)."""
    me = _dotted(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[tuple[str, str | None]] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update((a.name, None) for a in node.names if a.name.split(".")[0] == "nn3")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the file's package
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            if base.split(".")[0] != "nn3":
                continue
            for a in node.names:  # ``from nn3.engine import train`` imports the module nn3.engine.train
                sub = f"{base}.{a.name}"
                found.add((sub, None) if _is_module(sub, root) else (base, a.name))
    return found


def graph(root: Path = PACKAGE) -> dict[str, set[tuple[str, str | None]]]:
    return {_dotted(p, root): imports(p, root) for p in sorted(root.rglob("*.py"))}


def _top(dotted: str) -> str:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _offers(package: str, root: Path = PACKAGE) -> list[str] | None:
    """The ``__all__`` of ``nn3.<package>``'s ``__init__``, or None when it declares none."""
    init = root / package / "__init__.py"
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    return None


def test_every_unit_has_a_layer():
    missing = sorted({_top(m) for m in graph()} - set(LAYER))
    assert not missing, f"packages or modules not in the layer table (give them a layer): {missing}"


def test_no_import_goes_up():
    upward = sorted((a, b) for a, targets in graph().items() for b, _ in targets
                    if LAYER[_top(b)] > LAYER[_top(a)])
    assert not upward, "imports of a higher layer: " + ", ".join(f"{a} imports {b}" for a, b in upward)


def test_every_package_declares_what_it_offers():
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        offered = _offers(init.parent.name)
        assert offered, f"{init}: no __all__"
        tree = ast.parse(init.read_text(encoding="utf-8"))
        defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        defined |= {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
        for name in offered:
            assert _is_module(f"nn3.{init.parent.name}.{name}") or name in defined, \
                f"{init}: __all__ names {name}, which is neither a submodule nor defined or imported there"


def test_other_packages_use_only_what_a_package_offers():
    bad = []
    for importer, targets in graph().items():
        for module, name in targets:
            parts = module.split(".")
            if len(parts) < 2 or _top(importer) == parts[1] or not (PACKAGE / parts[1]).is_dir():
                continue
            if len(parts) == 2 and name is None:  # the package itself
                continue
            offered = _offers(parts[1]) or []
            sub = parts[2] if len(parts) > 2 else name
            if sub not in offered or (name or "").startswith("_"):
                bad.append(f"{importer} imports {module}{'.' + name if name else ''}")
    assert not bad, "imports of what a package does not offer: " + ", ".join(sorted(bad))


def test_no_import_cycle():
    edges = {a: {b for b, _ in targets if b != a} for a, targets in graph().items()}
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
    # names taken from a package all count.
    root = tmp_path / "nn3"
    (root / "serve").mkdir(parents=True)
    (root / "runs").mkdir()
    (root / "runs" / "__init__.py").write_text("", encoding="utf-8")
    (root / "runs" / "session.py").write_text("", encoding="utf-8")
    probe = root / "serve" / "probe.py"
    probe.write_text("import json\n"
                     "def f():\n    from nn3.runs import session, _hidden\n    import nn3.cli\n"
                     "class A:\n    def g(self):\n        from ..runs.session import start\n        from . import x\n", encoding="utf-8")
    assert imports(probe, root) == {("nn3.runs.session", None), ("nn3.runs", "_hidden"), ("nn3.cli", None),
                                    ("nn3.runs.session", "start"), ("nn3.serve", "x")}


def _unannotated(path: Path) -> list[str]:
    """The public functions of ``path`` (not named with a leading underscore, at module level or
    in a public class) with an argument or a return type not annotated."""
    out = []

    def visit(body, prefix, in_class):
        for node in body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                visit(node.body, f"{prefix}{node.name}.", True)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.name.startswith("_") and node.name != "__init__":
                    continue
                a = node.args
                params = [*a.posonlyargs, *a.args, *a.kwonlyargs, *filter(None, [a.vararg, a.kwarg])]
                if in_class and params and params[0].arg in ("self", "cls"):
                    params = params[1:]
                if any(p.annotation is None for p in params) or (node.returns is None and node.name != "__init__"):
                    out.append(f"{path.relative_to(PACKAGE.parent) if path.is_relative_to(PACKAGE.parent) else path.name}:{node.lineno} {prefix}{node.name}")
    visit(ast.parse(path.read_text(encoding="utf-8")).body, "", False)
    return out


def test_every_public_function_is_annotated():
    missing = [f for p in sorted(PACKAGE.rglob("*.py")) for f in _unannotated(p)]
    assert not missing, "public functions without full annotations: " + ", ".join(missing)


def test_the_annotation_check_can_fail(tmp_path):
    probe = tmp_path / "nn3" / "probe.py"
    probe.parent.mkdir()
    probe.write_text("def f(x) -> int:\n    return x\n\ndef _g(y):\n    return y\n\nclass A:\n"
                     "    def h(self, z: int):\n        return z\n", encoding="utf-8")
    assert [m.split(" ")[1] for m in _unannotated(probe)] == ["f", "A.h"]
