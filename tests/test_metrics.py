"""Tests for nn3.store.metrics: the metrics log of a run, apart from its checkpoints."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from nn3.store import metrics


def test_metrics_torn_line_and_truncate(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    for e in range(4):
        metrics.append(run, {"epoch": e, "validation_accuracy": e / 10})
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"epoch": 4, "valid')  # killed mid-write
    assert [r["epoch"] for r in metrics.read(run)] == [0, 1, 2, 3]
    metrics.append(run, {"epoch": 4, "validation_accuracy": 0.4})  # drops the torn tail
    assert [r["epoch"] for r in metrics.read(run)] == [0, 1, 2, 3, 4]
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"epoch": 5}')  # complete, but killed before its newline
    assert [r["epoch"] for r in metrics.read(run)] == [0, 1, 2, 3, 4, 5]
    metrics.append(run, {"epoch": 6})
    assert [r["epoch"] for r in metrics.read(run)] == [0, 1, 2, 3, 4, 5, 6]
    metrics.truncate(run, 2)
    assert metrics.read(run) == [{"epoch": 0, "validation_accuracy": 0.0},
                                  {"epoch": 1, "validation_accuracy": 0.1}]
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    (run / "metrics.jsonl").write_text("\n".join(["{oops", *lines]) + "\n", encoding="utf-8")
    with pytest.raises(metrics.MetricsError, match=r"metrics.jsonl: line 1 is not a JSON object"):
        metrics.read(run)


def test_no_log_reads_as_empty(tmp_path):
    """A run stopped before its first epoch ended has no log yet."""
    assert metrics.read(tmp_path) == []


def test_reading_the_log_imports_neither_orbax_nor_jax(tmp_path):
    """``nn3 plot`` and the run's page read the log without the checkpoint store."""
    metrics.append(tmp_path, {"epoch": 0})
    code = ("import sys; from nn3.store import metrics; metrics.read(sys.argv[1]); "
            "print(sorted(m for m in ('orbax.checkpoint', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).parents[1])})
    assert out.stdout.strip() == "[]"
