"""The book's table: its rows, the run directory of each, where each stands, and the ledger.

    >>> from nn3.book import table as bt
    >>> [r.name for r in bt.ROWS][:3]
    ['ch1', 'ch1_100', 'ch3_large_init']
    >>> r = bt.row("dropout_vote"); r.preset, r.members, r.figure, r.measure
    ('dropout', 5, 99.67, 'test at best validation')
    >>> bt.measured(r, [{"epoch": 0, "validation_accuracy": 0.99, "test_accuracy": 0.991},
    ...                 {"epoch": 1, "validation_accuracy": 0.98, "test_accuracy": 0.995}])
    (0.991, 0)
    >>> bt.run_dir("checkpoints/book", r, seed=2).name
    'dropout_vote-seed2'
    >>> bt.status("checkpoints/book/ch1", bt.config(bt.row("ch1"))).words
    'not started'

Each row is a run directory of nn3.runs, trained with its preset's own settings: row R
with the default seed is BOOKDIR/R, exactly what ``nn3 train R --run BOOKDIR/R`` makes
(the vote row: ``nn3 train dropout --members 5 --run BOOKDIR/dropout_vote``), so runs
trained that way are adopted as rows: a finished one is done, an unfinished one is
resumed. Seed K goes to BOOKDIR/R-seedK (a vote's members then have seeds 5K..5K+4). A
directory that holds some other run is refused, never overwritten.

BOOKDIR/book.json, the ledger, keeps what a run directory does not: the seconds each
row trained under ``nn3 book``, the machine it trained on, and whether the run was
adopted (its time before that then comes from its files' times, an estimate).
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import platform
from collections.abc import Sequence
from typing import Any

from nn3.engine import backend, threads
from nn3.runs import config as run_config
from nn3.store import files, metrics
from nn3.store.rundir import RunDir, RunDirError

__all__ = ["AT_BEST_VALIDATION", "BEYOND", "COMPARED", "DEFAULT_SEED", "FINAL", "LEDGER", "PEAK_TEST",
           "PEAK_VALIDATION", "QUICK_LIMIT", "QUICK_SETTINGS", "ROWS", "Row", "Status", "config", "entry",
           "file_seconds", "machine", "measured", "read_ledger", "row", "run_dir", "select", "status",
           "write_ledger"]

PEAK_TEST, PEAK_VALIDATION, AT_BEST_VALIDATION = "peak test", "peak validation", "test at best validation"


@dataclasses.dataclass(frozen=True)
class Row:
    """A result of the book's table: the preset that trains it and how the book measures it."""

    name: str
    preset: str
    figure: float                 # the book's figure, in %; past the book: the book's best to beat
    measure: str                  # PEAK_TEST | PEAK_VALIDATION | AT_BEST_VALIDATION
    members: int | None = None    # a plurality vote of this many nets, trained as one member run


# One row per result of BOOK.md's table, in its order (its "FC 300 / FC 1000" line is two
# rows). Chapters 1 and 3 quote the peak test accuracy, or the peak validation accuracy
# where the book says so; chapter 6 the test accuracy at the epoch of best validation.
ROWS = [
    Row("ch1", "ch1", 95.42, PEAK_TEST),
    Row("ch1_100", "ch1_100", 96.59, PEAK_TEST),
    Row("ch3_large_init", "ch3_large_init", 95.49, PEAK_TEST),
    Row("ch3_large_init_100", "ch3_large_init_100", 96.82, PEAK_TEST),
    Row("ch3", "ch3", 96.49, PEAK_TEST),
    Row("ch3_100", "ch3_100", 97.92, PEAK_VALIDATION),
    Row("ch3_100_60", "ch3_100_60", 98.04, PEAK_VALIDATION),
    Row("shallow", "shallow", 97.80, AT_BEST_VALIDATION),
    Row("basic_conv", "basic_conv", 98.78, AT_BEST_VALIDATION),
    Row("dbl_conv", "dbl_conv", 99.06, AT_BEST_VALIDATION),
    Row("dbl_conv_relu", "dbl_conv_relu", 99.23, AT_BEST_VALIDATION),
    Row("expanded", "expanded", 99.37, AT_BEST_VALIDATION),
    Row("expanded_300", "expanded_300", 99.46, AT_BEST_VALIDATION),
    Row("expanded_1000", "expanded_1000", 99.43, AT_BEST_VALIDATION),
    Row("expanded_double_fc", "expanded_double_fc", 99.43, AT_BEST_VALIDATION),
    Row("dropout", "dropout", 99.60, AT_BEST_VALIDATION),
    Row("dropout_vote", "dropout", 99.67, AT_BEST_VALIDATION, members=5),
]

# Past the book (``--beyond``): each measured against the book's best of its kind (one
# net 99.60%, a vote 99.67%); the aim is 99.65% for one net and 99.75% for the vote.
BEYOND = [
    Row("dropout_plateau", "dropout_plateau", 99.60, AT_BEST_VALIDATION),
    Row("beyond", "beyond", 99.60, AT_BEST_VALIDATION),
    Row("beyond_vote", "beyond", 99.67, AT_BEST_VALIDATION, members=10),
]

DEFAULT_SEED = 0       # the presets' own (train.SGDConfig's): a row without --seeds
QUICK_LIMIT = 100      # --quick: the first 100 examples of each split ...
QUICK_SETTINGS = {"epochs": 1, "chunks": 2}  # ... for one epoch, in two calls (a stop can land mid-row)
LEDGER = "book.json"
COMPARED = ("preset", "spec", "init", "sgd", "members", "dataset", "limit")  # a row's directory must agree
# The stop reasons that end a run for good (its last checkpoint records them), in words.
FINAL = {"early_stopping": "early stopping", "eta_floor": "eta at its floor", "nan": "diverged",
         "members_stopped": "every member stopped"}


def row(name: str) -> Row:
    """The row called ``name`` (of ROWS or BEYOND); a ValueError lists the known ones."""
    for r in ROWS + BEYOND:
        if r.name == name:
            return r
    raise ValueError(f"--rows: no row {name!r} (rows: {', '.join(r.name for r in ROWS + BEYOND)})")


def select(names: str | Sequence[str] | None = None, *, beyond: bool = False) -> list[Row]:
    """The rows to train: ``names`` (a comma-separated string or a list), else the book's
    table, or with ``beyond`` the rows past it. Unknown or repeated names raise ValueError."""
    if names is None:
        return list(BEYOND if beyond else ROWS)
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",")]
    picked = [row(n) for n in names]
    if len({r.name for r in picked}) != len(picked):
        raise ValueError(f"--rows: a row named twice in {','.join(names)}")
    return picked


def run_dir(bookdir: str | os.PathLike[str], r: Row, seed: int = DEFAULT_SEED) -> pathlib.Path:
    """The run directory of row ``r`` with ``seed``: BOOKDIR/R, or BOOKDIR/R-seedK."""
    return pathlib.Path(bookdir) / (r.name if seed == DEFAULT_SEED else f"{r.name}-seed{seed}")


def config(r: Row, seed: int = DEFAULT_SEED, *, quick: bool = False,
           data_path: str | os.PathLike[str] | None = None) -> dict:
    """The run config of row ``r`` with ``seed``: its preset's settings, as ``nn3 train`` makes them."""
    settings: dict[str, Any] = dict(QUICK_SETTINGS) if quick else {}
    members = None
    if r.members is not None:
        members = list(range(seed * r.members, (seed + 1) * r.members))
    elif seed != DEFAULT_SEED:
        settings["seed"] = seed
    return run_config.make_config(r.preset, data_path=data_path, limit=QUICK_LIMIT if quick else None,
                                  members=members, **settings)


def measured(r: Row, history: list[dict]) -> tuple[float | None, int | None]:
    """(the accuracy the book quotes for ``r``, as a fraction; the epoch it was measured at),
    from a run's metrics records; (None, None) before the first epoch."""
    if not history:
        return None, None
    if r.measure == PEAK_TEST:
        best = max(history, key=lambda h: (h["test_accuracy"], -h["epoch"]))
        return best["test_accuracy"], best["epoch"]
    best = max(history, key=lambda h: (h["validation_accuracy"], -h["epoch"]))  # the first best, as training judges
    key = "validation_accuracy" if r.measure == PEAK_VALIDATION else "test_accuracy"
    return best[key], best["epoch"]


# ------------------------------------------------------------------ a row's directory


@dataclasses.dataclass
class Status:
    """Where a row's run directory stands."""

    state: str                # "new" | "stopped" | "done"
    epochs: int               # epochs completed
    words: str                # for people
    reason: str | None = None  # why a done run ended early, in words (FINAL's); None: it ran all its epochs


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def status(path: str | os.PathLike[str], want: dict) -> Status:
    """Where the run directory ``path`` stands for a row whose config is ``want``.

    Raises RunDirError (one line) for a directory that holds anything but this row's run.
    Reads only config.json and the newest readable checkpoint's info: a run may be
    training there. Opening the checkpoints starts JAX: limit its threads first.
    """
    path = pathlib.Path(path)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return Status("new", 0, "not started")
    have = RunDir.read_config(path)
    differ = [k for k in COMPARED if _plain(have.get(k)) != _plain(want.get(k))]
    if differ:
        raise RunDirError(f"{path}: holds a run whose {', '.join(differ)} differ from this row's "
                          f"(preset {want['preset']}); move it away or give another --dir")
    total = have["sgd"]["epochs"]
    run = RunDir.open(path, read_only=True)
    try:
        loop = None
        for step in reversed(run.steps()):
            try:
                loop = run.read_info(step)["loop"]
                break
            except (RunDirError, KeyError, TypeError):
                continue  # a damaged step: resume falls back past it the same way
    finally:
        run.close()
    if loop is None:
        return Status("stopped", 0, "stopped before its first checkpoint")
    done = loop["epoch"]
    if loop.get("stop_reason") in FINAL:
        reason = FINAL[loop["stop_reason"]]
        return Status("done", done, f"done: {done}/{total} epochs ({reason})", reason)
    if loop["batch"] == 0 and done >= total:
        return Status("done", done, f"done: {done}/{total} epochs")
    where = f"in epoch {done}, after mini-batch {loop['batch']}" if loop["batch"] else f"after epoch {done - 1}"
    return Status("stopped", done, f"stopped {where}" if done or loop["batch"] else "stopped before its first epoch")


# ------------------------------------------------------------------ the ledger: times and machines


def machine() -> str:
    """This machine in words: CPU model and usable cores, and JAX's device (starts JAX)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {threads.cores()} cores; jax {backend.device_name()}"


def read_ledger(bookdir: str | os.PathLike[str]) -> dict:
    """BOOKDIR/book.json: ``{"rows": {run directory name: {"seconds", "machine", "before",
    "adopted"}}}``; an empty ledger where there is none."""
    path = pathlib.Path(bookdir) / LEDGER
    try:
        ledger = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"rows": {}}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable ({type(e).__name__}); move it away to start a new ledger") from None
    if not isinstance(ledger, dict) or not isinstance(ledger.get("rows"), dict):
        raise ValueError(f"{path}: not a book ledger (expected an object with rows)")
    return ledger


def write_ledger(bookdir: str | os.PathLike[str], ledger: dict) -> None:
    """Writes ``ledger`` as BOOKDIR/book.json, atomically."""
    files.atomic_write(pathlib.Path(bookdir) / LEDGER, json.dumps(ledger, indent=1, sort_keys=True) + "\n")


def entry(ledger: dict, path: str | os.PathLike[str], st: Status) -> dict:
    """The ledger's entry for the run at ``path`` (a Status ``st``), made if missing: a run
    found already begun is adopted, its time so far taken from its files (``file_seconds``)."""
    name = pathlib.Path(path).name
    if st.state == "new" or name not in ledger["rows"]:
        adopted = st.state != "new"
        ledger["rows"][name] = {"seconds": 0.0, "machine": None, "adopted": adopted,
                                "before": (file_seconds(path) or 0.0) if adopted else 0.0}
    return ledger["rows"][name]


def file_seconds(path: str | os.PathLike[str]) -> float | None:
    """Seconds from a run's config.json to its last metrics line, by their files' times: the
    wall time of a run trained outside ``nn3 book`` (a pause between sessions counts too)."""
    path = pathlib.Path(path)
    try:
        return max(0.0, (path / metrics.METRICS).stat().st_mtime - (path / "config.json").stat().st_mtime)
    except OSError:
        return None
