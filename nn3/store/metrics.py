"""A run's metrics log: metrics.jsonl, one JSON object per completed epoch.

    >>> import tempfile
    >>> from nn3.store import metrics
    >>> run_dir = tempfile.mkdtemp()
    >>> metrics.append(run_dir, {"epoch": 0, "validation_accuracy": 0.9})
    >>> metrics.append(run_dir, {"epoch": 1, "validation_accuracy": 0.95})
    >>> metrics.truncate(run_dir, 1)      # a resume from the end of epoch 0
    >>> metrics.read(run_dir)
    [{'epoch': 0, 'validation_accuracy': 0.9}]

Plain files, no orbax: ``nn3 plot`` and the run's page read the log without opening
the run's checkpoints. Each append is fsync'ed; a process killed mid-append leaves a
torn last line, which ``read`` ignores and the next ``append`` drops. A resumed run
first truncates the log to the epochs before its checkpoint, so that the epochs it
trains again are not recorded twice.
"""
from __future__ import annotations

import json
import math
import os
import pathlib

from nn3.store import files

__all__ = ["METRICS", "MetricsError", "append", "read", "truncate"]

METRICS = "metrics.jsonl"


class MetricsError(ValueError):
    """A metrics log that cannot be read; the message names the file and the line."""


def _json_object(raw: bytes) -> dict | None:
    try:
        rec = json.loads(raw)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


def append(run_dir: str | os.PathLike[str], record: dict) -> None:
    """Appends ``record`` as one JSON line to ``run_dir``'s metrics.jsonl, durably."""
    path = pathlib.Path(run_dir) / METRICS
    line = json.dumps(record, sort_keys=True) + "\n"
    with open(path, "a+b") as f:
        end = f.seek(0, os.SEEK_END)
        f.seek(max(0, end - 1))
        if end and f.read(1) != b"\n":  # a killed process's last append
            f.seek(0)
            data = f.read()
            if _json_object(data[data.rfind(b"\n") + 1:]) is None:
                f.truncate(data.rfind(b"\n") + 1)  # torn: drop it, as read does
            else:
                f.write(b"\n")
        f.write(line.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def read(run_dir: str | os.PathLike[str]) -> list[dict]:
    """All records of ``run_dir``'s metrics.jsonl (none if it has none); a torn last line is ignored."""
    path = pathlib.Path(run_dir) / METRICS
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    records = []
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        rec = _json_object(raw)
        if rec is None:
            if all(not r.strip() for r in lines[i + 1:]):
                break  # the torn tail of an interrupted append
            raise MetricsError(f"{path}: line {i + 1} is not a JSON object")
        records.append(rec)
    return records


def truncate(run_dir: str | os.PathLike[str], epoch: int) -> None:
    """Keeps only records with ``record["epoch"] < epoch`` (records without one stay)."""
    kept = [r for r in read(run_dir) if r.get("epoch", -math.inf) < epoch]
    files.atomic_write(pathlib.Path(run_dir) / METRICS, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
