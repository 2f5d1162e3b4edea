"""The book's table in one command: every result BOOK.md lists, trained with the book's
settings, measured the way the book measures it, and reported beside the book's figure.

    $ nn3 book                                   # every row, in checkpoints/book
    $ nn3 book                                   # again: skips the done rows, resumes a stopped one
    $ nn3 book --rows ch1,ch1_100 --seeds 0,1,2  # best of three, as the book quotes chapter 1
    $ nn3 book --quick                           # every row for one epoch on 100 examples
    $ nn3 book --beyond                          # the rows that aim past the book's 99.67%
    $ nn3 book --dir /work/bookrun --report-only # REPORT.md of what is there; trains nothing

    >>> from nn3 import book
    >>> [r.name for r in book.ROWS][:3]
    ['ch1', 'ch1_100', 'ch3_large_init']
    >>> r = book.row("dropout_vote"); r.preset, r.members, r.figure, r.measure
    ('dropout', 5, 99.67, 'test at best validation')
    >>> book.measured(r, [{"epoch": 0, "validation_accuracy": 0.99, "test_accuracy": 0.991},
    ...                   {"epoch": 1, "validation_accuracy": 0.98, "test_accuracy": 0.995}])
    (0.991, 0)

Each row is a run directory of nn3.runs, trained with its preset's own settings: row R
with the default seed is BOOKDIR/R, exactly what ``nn3 train R --run BOOKDIR/R`` makes
(the vote row: ``nn3 train dropout --members 5 --run BOOKDIR/dropout_vote``), so runs
trained that way are adopted as rows: a finished one is done, an unfinished one is
resumed. Seed K (``--seeds``) goes to BOOKDIR/R-seedK (a vote's members then have seeds
5K..5K+4). A directory that holds some other run is refused, never overwritten.

BOOKDIR/book.json keeps what a run directory does not: the seconds each row trained
under ``nn3 book`` and the machine it trained on. BOOKDIR/REPORT.md (a table that reads
on GitHub) and BOOKDIR/figures/ (learning curves of every row; the test digits the
final vote gets wrong, as the book shows its 33) are rewritten by every invocation.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import platform
import sys
import time

from nn3 import backend, files, metrics, presets, runs, threads
from nn3.rundir import RunDir, RunDirError
from nn3.spec import forward_macs

PEAK_TEST, PEAK_VALIDATION, AT_BEST_VALIDATION = "peak test", "peak validation", "test at best validation"


@dataclasses.dataclass(frozen=True)
class Row:
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
LEDGER, REPORT, FIGURES = "book.json", "REPORT.md", "figures"
COMPARED = ("preset", "spec", "init", "sgd", "members", "dataset", "limit")  # a row's directory must agree
FINAL = ("early_stopping", "eta_floor", "nan", "members_stopped")  # stop reasons that end a run for good


def row(name: str) -> Row:
    """The row called ``name`` (of ROWS or BEYOND); a ValueError lists the known ones."""
    for r in ROWS + BEYOND:
        if r.name == name:
            return r
    raise ValueError(f"--rows: no row {name!r} (rows: {', '.join(r.name for r in ROWS + BEYOND)})")


def select(names=None, *, beyond=False) -> list[Row]:
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


def run_dir(bookdir, r: Row, seed: int = DEFAULT_SEED) -> pathlib.Path:
    return pathlib.Path(bookdir) / (r.name if seed == DEFAULT_SEED else f"{r.name}-seed{seed}")


def config(r: Row, seed: int = DEFAULT_SEED, *, quick=False, data_path=None) -> dict:
    """The run config of row ``r`` with ``seed``: its preset's settings, as ``nn3 train`` makes them."""
    settings = dict(QUICK_SETTINGS) if quick else {}
    members = None
    if r.members is not None:
        members = list(range(seed * r.members, (seed + 1) * r.members))
    elif seed != DEFAULT_SEED:
        settings["seed"] = seed
    return runs.make_config(r.preset, data_path=data_path, limit=QUICK_LIMIT if quick else None,
                            members=members, **settings)


def measured(r: Row, history) -> tuple[float | None, int | None]:
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
    state: str        # "new" | "stopped" | "done"
    epochs: int       # epochs completed
    words: str        # for people


def _plain(value):
    return json.loads(json.dumps(value))


def status(path, want: dict) -> Status:
    """Where the run directory ``path`` stands for a row whose config is ``want``.

    Raises RunDirError (one line) for a directory that holds anything but this row's run.
    Reads only config.json and the newest readable checkpoint's info: a run may be
    training there.
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
        return Status("done", done, f"done: {done}/{total} epochs ({loop['stop_reason'].replace('_', ' ')})")
    if loop["batch"] == 0 and done >= total:
        return Status("done", done, f"done: {done}/{total} epochs")
    where = f"in epoch {done}, after mini-batch {loop['batch']}" if loop["batch"] else f"after epoch {done - 1}"
    return Status("stopped", done, f"stopped {where}" if done or loop["batch"] else "stopped before its first epoch")


def _work(cfg: dict) -> float:
    """Forward multiply-adds of one epoch of ``cfg``, what the estimate of time left scales by."""
    n = cfg.get("limit") or 50_000
    n *= 5 if cfg["sgd"].get("augment") == "expand" else 1
    return float(forward_macs(cfg["spec"])) * n * len(cfg.get("members") or [None])


# ------------------------------------------------------------------ the ledger: times and machines


def machine() -> str:
    """This machine in words: CPU model and usable cores, and JAX's device (starts JAX)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores; jax {backend.device_name()}"


def read_ledger(bookdir) -> dict:
    path = pathlib.Path(bookdir) / LEDGER
    try:
        ledger = json.loads(path.read_text())
    except FileNotFoundError:
        return {"rows": {}}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable ({type(e).__name__}); move it away to start a new ledger") from None
    if not isinstance(ledger, dict) or not isinstance(ledger.get("rows"), dict):
        raise ValueError(f"{path}: not a book ledger (expected an object with rows)")
    return ledger


def _write_ledger(bookdir, ledger) -> None:
    files.atomic_write(pathlib.Path(bookdir) / LEDGER, json.dumps(ledger, indent=1, sort_keys=True) + "\n")


def _file_seconds(path) -> float | None:
    """Seconds from a run's config.json to its last metrics line, by their files' times: the
    wall time of a run trained outside ``nn3 book`` (a pause between sessions counts too)."""
    path = pathlib.Path(path)
    try:
        return max(0.0, (path / metrics.METRICS).stat().st_mtime - (path / "config.json").stat().st_mtime)
    except OSError:
        return None


# ------------------------------------------------------------------ training the rows


def _duration(s: float | None) -> str:
    if s is None:
        return "?"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def _kind(cfg: dict) -> str:
    return "conv" if any(l["type"] == "ConvPoolLayer" for l in cfg["spec"]["layers"]) else "mlp"


class _Progress:
    """The progress line: which row, which epoch, and the time left at the rates so far.

    Time left = for each row still to train, its start-up (if not begun: loading and
    compiling, the mean excess of the first epochs so far) plus its remaining work
    (``_work``) at the rate of the later epochs of its kind (conv or MLP; a kind not yet
    measured borrows the other's). A quick book is all start-up; a full one all rate.
    """

    def __init__(self, planned, say):
        self.say, self.began, self.mark = say, time.time(), time.time()
        self.rows = [[_kind(c), _work(c), c["sgd"]["epochs"] - s.epochs, False]  # kind, work, epochs left, begun
                     for _, _, c, _, s in planned if s.state != "done"]
        self.current = -1
        self.work = {"conv": 0.0, "mlp": 0.0}
        self.seconds = {"conv": 0.0, "mlp": 0.0}
        self.first = []  # (seconds, work) of each row's first epoch here
        self.last_tick = 0.0
        self.tty = sys.stderr.isatty()

    def _rate(self, kind) -> float:
        other = "mlp" if kind == "conv" else "conv"
        for k in (kind, other):
            if self.work[k]:
                return self.seconds[k] / self.work[k]
        return 0.0

    def estimate(self) -> str:
        if not self.first:
            return "time left: after the first epoch"
        startup = sum(max(0.0, sec - w * self._rate(k)) for sec, w, k in self.first) / len(self.first)
        left = sum((0.0 if begun else startup) + n * w * self._rate(k) for k, w, n, begun in self.rows)
        return f"about {_duration(left)} left"

    def row(self):
        self.current += 1
        self.mark = time.time()

    def epoch(self, label, cfg, record):
        now = time.time()
        kind, work, _, begun = self.rows[self.current]
        if begun:
            self.work[kind] += work
            self.seconds[kind] += now - self.mark
        else:
            self.first.append((now - self.mark, work, kind))
        self.rows[self.current][2] -= 1
        self.rows[self.current][3] = True
        self.mark = now
        self._clear()
        self.say(f"[{label}] epoch {record['epoch'] + 1}/{cfg['sgd']['epochs']}: "
                 f"validation {record.get('validation_accuracy', float('nan')):.2%}, "
                 f"test {record.get('test_accuracy', float('nan')):.2%}; "
                 f"{_duration(now - self.began)} in, {self.estimate()}")

    def ticker(self, label):
        done = [0]

        def tick(n, per_epoch):  # a line rewritten in place, on a terminal only, at most once a second
            done[0] = (done[0] + n) % per_epoch
            if self.tty and time.time() - self.last_tick >= 1:
                self.last_tick = time.time()
                print(f"\r[{label}] {done[0] / per_epoch:4.0%} of the epoch; {self.estimate()}  ",
                      end="", file=sys.stderr, flush=True)
        return tick

    def _clear(self):
        if self.tty:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


def plan(bookdir, rows, seeds=(DEFAULT_SEED,), *, quick=False, data_path=None) -> list:
    """(row, seed, config, path, Status) for every row and seed, checked before anything trains."""
    out = []
    for r in rows:
        for seed in seeds:
            cfg = config(r, seed, quick=quick, data_path=data_path)
            path = run_dir(bookdir, r, seed)
            out.append((r, seed, cfg, path, status(path, cfg)))
    return out


def limit_threads(planned) -> None:
    """Start JAX with one CPU thread when every row to train is a small MLP (nn3.threads), else all cores."""
    wanted = {threads.for_spec(c["spec"], c["sgd"].get("mini_batch_size", 10))
              for _, _, c, _, s in planned if s.state != "done"}
    threads.limit(wanted.pop() if len(wanted) == 1 else None)


def train_rows(bookdir, planned, *, say=print) -> str | None:
    """Train every planned row that is not done (resuming the stopped ones), in order.

    Returns None when every row ran to its end, or the stop reason that ended the book
    early ("interrupted": Ctrl-C or SIGTERM; the row stopped at a chunk's end with a
    checkpoint, and the next ``nn3 book`` carries on there).
    """
    bookdir = pathlib.Path(bookdir)
    ledger = read_ledger(bookdir) if bookdir.is_dir() else {"rows": {}}
    here = machine()
    progress = _Progress(planned, say)
    for i, (r, seed, cfg, path, st) in enumerate(planned):
        label = f"{i + 1}/{len(planned)} {path.name}"
        entry = ledger["rows"].get(path.name)
        if st.state == "new" or entry is None:  # "before": its wall time outside nn3 book (an adopted run)
            before = 0.0 if st.state == "new" else (_file_seconds(path) or 0.0)
            entry = ledger["rows"][path.name] = {"seconds": 0.0, "machine": None, "before": before}
        if st.state == "done":
            say(f"[{label}] {st.words}; skipped")
            continue
        say(f"[{label}] " + ("starting" if st.state == "new" else f"resuming ({st.words})")
            + f": preset {r.preset}" + (f", {r.members} members" if r.members else "")
            + (f", seed {seed}" if seed != DEFAULT_SEED else ""))

        def report(record, loop, label=label, cfg=cfg):
            progress.epoch(label, cfg, record)

        began = time.time()
        progress.row()
        try:
            if st.state == "new":
                path.parent.mkdir(parents=True, exist_ok=True)
                run, _, loop = runs.start(cfg, path, report=report, on_progress=progress.ticker(label))
            else:
                run, _, loop = runs.resume(path, report=report, on_progress=progress.ticker(label))
            run.close()
        finally:
            progress._clear()
            entry["seconds"] += time.time() - began
            entry["machine"] = here
            bookdir.mkdir(parents=True, exist_ok=True)
            _write_ledger(bookdir, ledger)
        message = runs.stop_message(loop, path)
        if loop.stop_reason == "interrupted":
            say(f"[{label}] {message}; the book carries on with the same nn3 book command")
            return "interrupted"
        if message:
            say(f"[{label}] {message}")
    return None


# ------------------------------------------------------------------ the report


@dataclasses.dataclass
class Result:
    row: Row
    seed: int
    path: pathlib.Path
    status: Status
    value: float | None           # the measured accuracy, a fraction
    at_epoch: int | None
    history: list
    total: int                    # epochs the run is set to
    seconds: float | None
    estimated: bool               # seconds from file times (trained outside nn3 book)
    machine: str


def results(bookdir, rows, *, quick=False, data_path=None) -> list[list[Result]]:
    """Every row's runs found in ``bookdir`` (one per seed directory), read from their metrics."""
    bookdir = pathlib.Path(bookdir)
    ledger = read_ledger(bookdir) if bookdir.is_dir() else {"rows": {}}
    out = []
    for r in rows:
        seeds = [DEFAULT_SEED] + sorted(int(p.name.rsplit("-seed", 1)[1]) for p in bookdir.glob(f"{r.name}-seed*")
                                        if p.name.rsplit("-seed", 1)[1].isdigit())
        found = []
        for seed in seeds:
            cfg = config(r, seed, quick=quick, data_path=data_path)
            path = run_dir(bookdir, r, seed)
            st = status(path, cfg)
            if st.state == "new" and seed != DEFAULT_SEED:
                continue
            history = metrics.read(path) if st.state != "new" else []
            value, at = measured(r, history)
            entry = ledger["rows"].get(path.name, {})
            before = entry.get("before") if entry else _file_seconds(path)
            seconds = None if st.state == "new" else (before or 0.0) + entry.get("seconds", 0.0)
            recorded = RunDir.read_config(path).get("backend", {}) if st.state != "new" else {}
            where = entry.get("machine") or (f"jax {recorded.get('device', '?')} (CPU model not recorded)"
                                             if recorded else "")
            found.append(Result(r, seed, path, st, value, at, history, cfg["sgd"]["epochs"], seconds,
                                bool(before), where))
        out.append(found)
    return out


def best(found: list[Result]) -> Result:
    """The run of a row the report quotes: the best measured of its seeds (the book's best of N)."""
    scored = [f for f in found if f.value is not None]
    return max(scored, key=lambda f: f.value) if scored else found[0]


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
    epochs = "—" if b.status.state == "new" else f"{len(b.history)}/{b.total}" + (
        "" if b.status.state == "done" else f" ({b.status.words})")
    wall = "—" if b.seconds is None else ("≈" if b.estimated else "") + _duration(b.seconds)
    return (f"| {r.name} | {_network(r)} | {r.measure} | {r.figure:.2f}% | {value} | {diff} | {epochs} | "
            f"{wall} | {b.machine or '—'} |")


HEAD = ("| row | network | the book quotes | book | nn3 | diff (pp) | epochs | wall time | machine |\n"
        "|---|---|---|---|---|---|---|---|---|")


def write_report(bookdir, *, quick=False, data_path=None) -> dict:
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


def _figures(bookdir, found) -> tuple[list, str]:
    """figures/curves.png (every row that has epochs) and figures/misclassified.png (the
    book's vote row at its best checkpoint, else the best done vote, else the best done
    conv row); ([paths], a note or "")."""
    from nn3 import plots  # L6; matplotlib only when drawing
    out = bookdir / FIGURES
    panels = [(f"{b.row.name} (book {b.row.figure:.2f}%)", b.history, b.row.figure)
              for b in map(best, found) if b.history]
    if not panels:
        return [], ""
    out.mkdir(exist_ok=True)
    try:
        made = [plots.accuracy_grid(panels, out / "curves.png", title="validation and test accuracy per epoch")]
    except RuntimeError as e:  # no matplotlib
        return [], f"No figures: {e}."
    done = [best(f) for f in found if best(f).status.state == "done" and best(f).value is not None]
    votes = [b for b in done if b.row.members]
    conv = [b for b in done if b.row.members is None
            and any(l["type"] == "ConvPoolLayer" for l in presets.get(b.row.preset).spec["layers"])]
    pick = (next((b for b in votes if b.row.name == "dropout_vote"), None)  # the book's vote, else the best other
            or max(votes or conv or [None], key=lambda b: b.value if b else 0))
    if pick is None:
        return made, "No misclassified-digits figure yet: no vote row and no conv row is done."
    nets = runs.load(pick.path, best=True)
    test = runs.load_splits(RunDir.read_config(pick.path))[2]
    who = (f"the vote of {pick.row.members} ({pick.row.name})" if pick.row.members else pick.row.name)
    plots.wrong_digits(nets, test, out / "misclassified.png", who=f"{who} at its best validation epoch")
    return made + [out / "misclassified.png"], ""
