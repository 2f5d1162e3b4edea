"""Which runs a server shows: the run directories it was given, and the runs under the directories it was given.

    >>> import tempfile, pathlib
    >>> from nn3.serve.catalog import Catalog
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("a", "b/c"):
    ...     (root / name).mkdir(parents=True); _ = (root / name / "config.json").write_text("{}", encoding="utf-8")
    >>> sorted(Catalog([root]).runs())
    ['a', 'b/c']

A run is named by its path relative to the directory it was found in (``book/ch1``), or
by its own name when it was given itself. The server looks names up in this mapping and
nowhere else, so a request can only ever reach a run that was given: there is no path
from a URL to the file system. Directories are listed again on every call, so a run
started after the server still appears on the index.
"""
from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable, Iterator

from nn3.store.rundir import CONFIG

__all__ = ["MAX_DEPTH", "Catalog", "is_run"]

MAX_DEPTH = 4  # a nn3 book directory nests runs two levels deep; deeper is someone's home


def is_run(path: pathlib.Path) -> bool:
    """Whether ``path`` is a run directory (it holds a config.json)."""
    return (path / CONFIG).is_file()


def _runs_under(root: pathlib.Path, depth: int = 0) -> Iterator[pathlib.Path]:
    """Run directories under ``root``, without entering runs, hidden folders or linked folders."""
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:  # unreadable, or gone since the last listing
        return
    for child in children:
        if is_run(child):
            yield child
        elif depth + 1 < MAX_DEPTH and not child.is_symlink():
            yield from _runs_under(child, depth + 1)


class Catalog:
    """The runs given to a server, by name."""

    def __init__(self, paths: Iterable[str | os.PathLike[str]]):
        """``paths``: run directories and directories of runs; a ValueError names one that is not a directory."""
        self.roots = [pathlib.Path(p) for p in paths]
        for p in self.roots:
            if not p.is_dir():
                raise ValueError(f"{p}: no such run or directory of runs")

    def runs(self) -> dict[str, pathlib.Path]:
        """{name: run directory}, listed now."""
        found: dict[str, pathlib.Path] = {}
        for root in self.roots:
            prefix = f"{root.resolve().name}/" if len(self.roots) > 1 else ""
            if is_run(root):
                pairs = [(root.resolve().name, root)]
            else:
                pairs = [(prefix + p.relative_to(root).as_posix(), p) for p in _runs_under(root)]
            for name, path in pairs:
                unique, k = name, 2
                while unique in found:
                    unique, k = f"{name}~{k}", k + 1
                found[unique] = path
        return found

    def get(self, name: str) -> pathlib.Path | None:
        """The run directory called ``name``, or None."""
        return self.runs().get(name)
