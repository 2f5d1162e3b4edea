"""The book's report: BOOKDIR/REPORT.md, a table that reads on GitHub, and BOOKDIR/figures/.

    >>> from nn3.book import report as bookreport
    >>> bookreport.duration(75), bookreport.duration(7300)
    ('1 min 15 s', '2 h 01 min')
    >>> bookreport.write_report("checkpoints/book", quick=True)["rows"][:2]   # doctest: +SKIP
    [('ch1', 0.9542), ('ch1_100', None)]

Each row of nn3.book.table gets one line: what the book reports for it, measured on the
row's run the way the book measures it (the best of its seeds, as the book quotes best
of three), the book's figure, the difference, the epochs (and why a run ended early),
the wall time and the machine. The figures: learning curves of every row that has
epochs, and the test digits the final vote gets wrong, as the book shows its 33.

``nn3 book`` writes both when its rows have trained, and ``nn3 book --report-only``
whenever asked; a book that was stopped leaves the last ones as they were.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Sequence

from nn3.book.table import (
    BEYOND,
    DEFAULT_SEED,
    QUICK_LIMIT,
    QUICK_SETTINGS,
    ROWS,
    Row,
    Status,
    config,
    file_seconds,
    measured,
    read_ledger,
    run_dir,
    status,
)
from nn3.engine.spec import has_conv
from nn3.runs import config as run_config
from nn3.runs import inspect, presets
from nn3.store import files, metrics
from nn3.store.rundir import RunDir

__all__ = ["FIGURES", "HEAD", "REPORT", "Result", "best", "duration", "results", "write_report"]

REPORT, FIGURES = "REPORT.md", "figures"


def duration(s: float | None) -> str:
    """Seconds in words, as the report and the progress line give them."""
    if s is None:
        return "?"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


@dataclasses.dataclass
class Result:
    """One run of a row (one seed), as the report reads it from the run's files."""

    row: Row
    seed: int
    path: pathlib.Path
    status: Status
    value: float | None           # the measured accuracy, a fraction
    at_epoch: int | None
    history: list
    total: int                    # epochs the run is set to
    seconds: float | None
    estimated: bool               # seconds from file times (an adopted run: trained outside nn3 book)
    machine: str


def results(bookdir: str | os.PathLike[str], rows: Sequence[Row], *, quick: bool = False,
            data_path: str | os.PathLike[str] | None = None) -> list[list[Result]]:
    """Every row's runs found in ``bookdir`` (one per seed directory that has begun; the
    default seed's, not begun, for a row that has none), read from their metrics."""
    bookdir = pathlib.Path(bookdir)
    ledger = read_ledger(bookdir) if bookdir.is_dir() else {"rows": {}}
    out = []
    for r in rows:
        seeds = [DEFAULT_SEED] + sorted(int(p.name.rsplit("-seed", 1)[1]) for p in bookdir.glob(f"{r.name}-seed*")
                                        if p.name.rsplit("-seed", 1)[1].isdigit())
        found = [_result(r, seed, ledger, bookdir, quick, data_path) for seed in seeds]
        begun = [f for f in found if f.status.state != "new"]
        out.append(begun or found[:1])
    return out


def _result(r: Row, seed: int, ledger: dict, bookdir: pathlib.Path, quick: bool,
            data_path: str | os.PathLike[str] | None) -> Result:
    cfg = config(r, seed, quick=quick, data_path=data_path)
    path = run_dir(bookdir, r, seed)
    st = status(path, cfg)
    history = metrics.read(path) if st.state != "new" else []
    value, at = measured(r, history)
    entry = ledger["rows"].get(path.name)
    # not in the ledger: never trained by nn3 book; an entry without "adopted" counts as
    # adopted when it records time from "before"
    adopted = entry is None or entry.get("adopted", bool(entry.get("before")))
    before = file_seconds(path) if entry is None else entry.get("before", 0.0)
    seconds = None if st.state == "new" else (before or 0.0) + (entry or {}).get("seconds", 0.0)
    recorded = RunDir.read_config(path).get("backend", {}) if st.state != "new" else {}
    where = (entry or {}).get("machine") or (f"jax {recorded.get('device', '?')} (CPU model not recorded)"
                                             if recorded else "")
    return Result(r, seed, path, st, value, at, history, cfg["sgd"]["epochs"], seconds,
                  adopted and st.state != "new", where)


def best(found: list[Result]) -> Result:
    """The run of a row the report quotes: the best measured of its seeds (the book's best of N)."""
    scored = [f for f in found if f.value is not None]
    return max(scored, key=_score) if scored else found[0]


def _score(f: Result) -> float:
    """The measured accuracy, for ranking (a run not yet measured ranks last)."""
    return -1.0 if f.value is None else f.value


def _network(r: Row) -> str:
    """The preset's own words, and the settings that decide its number."""
    p = presets.get(r.preset)
    s = p.sgd
    text = (f"{p.about.split(': ', 1)[-1]} ({p.style}.py; {s['epochs']} epochs, eta {s['eta']:g}, "
            f"lmbda {s.get('lmbda', 0):g}, {presets.data_words(s)})")
    return f"vote of {r.members}: {text}" if r.members else text


def _settings(r: Row) -> str:
    p = presets.get(r.preset)
    s = p.sgd
    bits = [f"{s['epochs']} epochs", f"eta {s['eta']:g}", f"lmbda {s.get('lmbda', 0):g}",
            f"mini-batch {s['mini_batch_size']}", f"data: {presets.data_words(s)}",
            f"schedule {s.get('schedule', 'constant')}"]
    return ", ".join(bits) + (f", {r.members} members (seeds 0-{r.members - 1})" if r.members else "")


def _epochs(b: Result) -> str:
    """The epochs cell: trained / set, and why the run ended early or where it stopped."""
    if b.status.state == "new":
        return "—"
    cell = f"{len(b.history)}/{b.total}"
    if b.status.state == "done":
        return cell + (f" ({b.status.reason})" if b.status.reason else "")
    return cell + f" ({b.status.words})"


def _line(found: list[Result]) -> str:
    b = best(found)
    r = b.row
    if b.value is None:
        value, diff = "—", "—"
    else:
        value = f"{b.value:.2%}" + (f" (epoch {b.at_epoch})" if b.at_epoch is not None else "")
        diff = f"{100 * b.value - r.figure:+.2f}"
    if len(found) > 1:
        value += f"; best of {len(found)}: " + ", ".join(
            f"seed {f.seed} {'—' if f.value is None else f'{f.value:.2%}'}" for f in found)
    wall = "—" if b.seconds is None else ("≈" if b.estimated else "") + duration(b.seconds)
    return (f"| {r.name} | {_network(r)} | {r.measure} | {r.figure:.2f}% | {value} | {diff} | {_epochs(b)} | "
            f"{wall} | {b.machine or '—'} |")


HEAD = ("| row | network | the book quotes | book | nn3 | diff (pp) | epochs | wall time | machine |\n"
        "|---|---|---|---|---|---|---|---|---|")


def write_report(bookdir: str | os.PathLike[str], *, quick: bool = False,
                 data_path: str | os.PathLike[str] | None = None) -> dict:
    """REPORT.md and the figures of every row found in ``bookdir``; returns what was written:
    ``{"report": path, "rows": [(row, value or None)], "figures": [paths], "note": str}``."""
    bookdir = pathlib.Path(bookdir)
    bookdir.mkdir(parents=True, exist_ok=True)
    table = results(bookdir, ROWS, quick=quick, data_path=data_path)
    past = results(bookdir, BEYOND, quick=quick, data_path=data_path)
    lines = ["# The book's results, reproduced by nn3", ""]
    if quick:
        lines += [f"**Quick run**: every row for {QUICK_SETTINGS['epochs']} epoch on the first {QUICK_LIMIT} "
                  "examples of each split. It checks the machinery, not the book's numbers.", ""]
    lines += ["Chapters 1 and 3 quote the peak test accuracy (or validation where the book says so); chapter 6 "
              "the test accuracy at the epoch of best validation accuracy (epochs counted from 0). "
              "A vote is the plurality of its members' predictions. diff: nn3 minus the book, in "
              "percentage points. Wall time ≈: from the run's file times (trained outside `nn3 book`).", "",
              HEAD] + [_line(f) for f in table]
    lines += ["", "## Past the book (`nn3 book --beyond`)", "",
              "Aims: 99.65% for one net, 99.75% for the vote (the book: 99.60% and 99.67%). "
              "`book` here is the book's best result of the same kind.", "", HEAD] + [_line(f) for f in past]
    lines += ["", "Settings:", ""] + [f"- `{r.name}`: {_settings(r)}" for r in BEYOND]
    made, note = _figures(bookdir, table + past)
    if made:
        lines += ["", "## Figures", ""] + [f"![{p.stem}]({FIGURES}/{p.name})" for p in made]
    if note:
        lines += ["", note]
    files.atomic_write(bookdir / REPORT, "\n".join(lines) + "\n")
    rows = [(best(f).row.name, best(f).value) for f in table + past]
    return {"report": bookdir / REPORT, "rows": rows, "figures": made, "note": note}


def _figures(bookdir: pathlib.Path, found: list[list[Result]]) -> tuple[list[pathlib.Path], str]:
    """figures/curves.png (every row that has epochs) and figures/misclassified.png (the
    book's vote row at its best checkpoint, else the best done vote, else the best done
    conv row); ([paths], a note or "")."""
    from nn3.book import plots  # L6; matplotlib only when drawing
    out = bookdir / FIGURES
    panels = [(f"{b.row.name} (book {b.row.figure:.2f}%)", b.history, b.row.figure)
              for b in map(best, found) if b.history]
    if not panels:
        return [], ""
    out.mkdir(exist_ok=True)
    try:
        made = [plots.accuracy_grid(panels, out / "curves.png", title="validation and test accuracy per epoch")]
    except ModuleNotFoundError as e:  # no matplotlib
        return [], f"No figures: {e}."
    done = [best(f) for f in found if best(f).status.state == "done" and best(f).value is not None]
    votes = [b for b in done if b.row.members]
    conv = [b for b in done if b.row.members is None
            and has_conv(presets.get(b.row.preset).spec)]
    others = votes or conv
    pick = (next((b for b in votes if b.row.name == "dropout_vote"), None)  # the book's vote, else the best other
            or (max(others, key=_score) if others else None))
    if pick is None:
        return made, "No misclassified-digits figure yet: no vote row and no conv row is done."
    nets = inspect.load(pick.path, best=True)
    test = run_config.load_splits(RunDir.read_config(pick.path))[2]
    who = (f"the vote of {pick.row.members} ({pick.row.name})" if pick.row.members else pick.row.name)
    plots.wrong_digits(nets, test, out / "misclassified.png", who=f"{who} at its best validation epoch")
    return made + [out / "misclassified.png"], ""
