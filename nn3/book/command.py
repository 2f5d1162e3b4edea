"""``nn3 book``: the book's table trained with the book's settings, then reported beside the book.

    $ nn3 book                                   # every row, in checkpoints/book
    $ nn3 book                                   # again: skips the done rows, resumes a stopped one
    $ nn3 book --rows ch1,ch1_100 --seeds 0,1,2  # best of three, as the book quotes chapter 1
    $ nn3 book --quick                           # every row for one epoch on 100 examples
    $ nn3 book --beyond                          # the rows that aim past the book's 99.67%
    $ nn3 book --dir /work/bookrun --report-only # REPORT.md of what is there; trains nothing

    >>> from nn3.book import command as book
    >>> [r.name for r in book.ROWS][:3]
    ['ch1', 'ch1_100', 'ch3_large_init']
    >>> book.default_dir(quick=True)
    'checkpoints/book-quick'
    >>> book.command("checkpoints/book", rows="ch1,ch3", quick=True)   # doctest: +SKIP
    0

The rows, their run directories and the ledger are nn3.book.table's (its names are
re-exported here: ``book.ROWS``, ``book.row``, ``book.status``, ...); REPORT.md and the
figures are nn3.book.report's. This module trains: it picks JAX's CPU threads (and, for
a vote, its devices) from the rows' configs before anything starts JAX, trains every
row that is not done in order (resuming a stopped one), keeps the ledger's times, and
prints a progress line with the time left. Once the rows have trained (or with
``--report-only``) it writes the report; a book that was stopped (Ctrl-C, SIGTERM)
leaves REPORT.md and the figures as they were and exits 130 or 143, and the same
command carries on where it stopped.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence

from nn3.book.report import FIGURES, REPORT, duration, write_report  # noqa: F401
from nn3.book.table import (  # noqa: F401  (re-exported: the book's table is book.ROWS, book.row, ...)
    AT_BEST_VALIDATION,
    BEYOND,
    COMPARED,
    DEFAULT_SEED,
    FINAL,
    LEDGER,
    PEAK_TEST,
    PEAK_VALIDATION,
    QUICK_LIMIT,
    QUICK_SETTINGS,
    ROWS,
    Row,
    Status,
    config,
    entry,
    machine,
    measured,
    read_ledger,
    row,
    run_dir,
    select,
    status,
    write_ledger,
)
from nn3.engine import backend, processes, threads
from nn3.engine.spec import forward_macs, has_conv
from nn3.runs import cluster, session, stop
from nn3.runs import config as run_config


def default_dir(quick: bool = False) -> str:
    """Where ``nn3 book`` keeps its rows unless told: checkpoints/book (checkpoints/book-quick)."""
    return "checkpoints/book-quick" if quick else "checkpoints/book"


def configs(rows: Sequence[Row], seeds: Sequence[int] = (DEFAULT_SEED,), *, quick: bool = False,
            data_path: str | None = None) -> list[tuple[Row, int, dict]]:
    """(row, seed, config) for every row and seed, in training order."""
    return [(r, seed, config(r, seed, quick=quick, data_path=data_path)) for r in rows for seed in seeds]


def limit_threads(cfgs: Iterable[dict], setup: cluster.Setup | None = None) -> None:
    """Start JAX as ``nn3 train`` would for these rows (session.limit_threads), from their
    configs alone: opening a run directory starts JAX, so this comes before ``plan``.

    A row with members gets one CPU device per core (the most members any row has; the
    lone rows then share the pool of every core); rows that all want the same pool get
    it (one thread for small MLPs); a mix of MLPs and conv nets gets every core. With
    ``setup`` (a ``runs.cluster.Setup``), this process joins the other processes of the book.
    """
    cfgs = list(cfgs)
    voting = [c for c in cfgs if len(run_config.member_seeds(c) or ()) > 1]
    if voting:
        session.limit_threads(max(voting, key=lambda c: len(c["members"])), setup)
    elif len({threads.for_spec(c["spec"], c["sgd"].get("mini_batch_size", 10)) for c in cfgs}) == 1:
        session.limit_threads(cfgs[0])


def plan(bookdir: str | os.PathLike, configured: Sequence[tuple[Row, int, dict]]) -> list:
    """(row, seed, config, path, Status) for each of ``configs``' triples, checked before anything
    trains. In a book of several processes, process 0 reads the directories and the others take its word."""
    states, error = [], None
    if processes.is_primary():
        try:
            states = [dataclasses.asdict(status(run_dir(bookdir, r, seed), cfg)) for r, seed, cfg in configured]
        except ValueError as e:  # RunDirError: a directory holding another run
            error = str(e)
    cluster.first_error(error)
    states = cluster.agree(states)
    return [(r, seed, cfg, run_dir(bookdir, r, seed), Status(**st)) for (r, seed, cfg), st in zip(configured, states)]


def command(bookdir: str | os.PathLike | None = None, *, rows: str | Sequence[str] | None = None, beyond: bool = False,
            seeds: Sequence[int] | None = None, quick: bool = False, data_path: str | None = None,
            report_only: bool = False, say: Callable[[str], None] = print,
            warn: Callable[[str], None] | None = None, setup: cluster.Setup | None = None) -> int:
    """``nn3 book``: train the rows (``select(rows, beyond=beyond)``, each seed of ``seeds``)
    that are not done in ``bookdir`` (default: ``default_dir``), then write the report.

    Lines go to ``say``, the one saying that the book stopped to ``warn`` (stderr by
    default). Returns the exit status: 0, or 130 / 143 when Ctrl-C or SIGTERM stopped the
    book (the report is then not rewritten). Bad rows, seeds or directories raise one-line
    ValueErrors before anything is written. With ``setup`` (a ``runs.cluster.Setup``) the
    book's vote rows train across the processes of the setup; its rows of one network
    are left to a book of one process, and process 0 writes the report.
    """
    warn = warn or (lambda line: print(line, file=sys.stderr))
    picked = select(rows, beyond=beyond)
    if setup is not None:
        lone = [r.name for r in picked if not r.members]
        picked = [r for r in picked if r.members]
        if not picked:
            raise cluster.ClusterError("none of these rows is a vote: rows of one network train on one process "
                                       "(leave out --coordinator)")
        if lone:
            say(f"rows of one network, left to a book of one process: {', '.join(lone)}")
    bookdir = pathlib.Path(bookdir or default_dir(quick))
    configured = configs(picked, sorted(set(seeds or [DEFAULT_SEED])), quick=quick, data_path=data_path)
    started = time.time()
    if not report_only:
        limit_threads((c for _, _, c in configured), setup)
    planned = plan(bookdir, configured)
    if not report_only:
        say(backend.describe())
        try:
            stopped = train_rows(bookdir, planned, say=say)
        except KeyboardInterrupt:  # while a row loaded its data: that row wrote nothing, the others stay
            stopped = "interrupted"
        if stopped == "interrupted":
            warn(f"the book stopped; {REPORT} not rewritten (nn3 book --report-only writes it)")
            return stop.exit_code(stop.requested() or signal.SIGINT)
    if not processes.is_primary():
        say("process 0 writes the report")
        return 0
    made = write_report(bookdir, quick=quick, data_path=data_path)
    for name, value in made["rows"]:
        say(f"{name:20s} {'—' if value is None else f'{value:.2%}'}")
    say(f"wrote {made['report']}" + "".join(f", {p}" for p in made["figures"]) + f"; {time.time() - started:.1f} s")
    if made["note"]:
        say(made["note"])
    return 0


# ------------------------------------------------------------------ training the rows


def train_rows(bookdir: str | os.PathLike, planned: list, *, say: Callable[[str], None] = print) -> str | None:
    """Train every planned row that is not done (resuming the stopped ones), in order.

    Returns None when every row ran to its end, or the stop reason that ended the book
    early ("interrupted": Ctrl-C or SIGTERM; the row stopped at a chunk's end with a
    checkpoint, and the next ``nn3 book`` carries on there).
    """
    bookdir = pathlib.Path(bookdir)
    writes = processes.is_primary()  # in a book of several processes, process 0 keeps the ledger
    ledger = read_ledger(bookdir) if writes and bookdir.is_dir() else {"rows": {}}
    here = machine()
    progress = Progress(planned, say)
    for i, (r, seed, cfg, path, st) in enumerate(planned):
        label = f"{i + 1}/{len(planned)} {path.name}"
        spent = entry(ledger, path, st)
        if st.state == "done":
            say(f"[{label}] {st.words}; skipped")
            continue
        say(f"[{label}] " + ("starting" if st.state == "new" else f"resuming ({st.words})")
            + f": preset {r.preset}" + (f", {r.members} members" if r.members else "")
            + (f", seed {seed}" if seed != DEFAULT_SEED else ""))

        def report(record, state, label=label, cfg=cfg):
            progress.epoch(label, cfg, record)

        began = time.time()
        progress.row()
        try:
            if st.state == "new":
                if writes:
                    path.parent.mkdir(parents=True, exist_ok=True)
                run, _, state = session.start(cfg, path, watch=session.Watch(on_progress=progress.ticker(label),
                                                                              on_epoch=report))
            else:
                run, _, state = session.resume(path, watch=session.Watch(on_progress=progress.ticker(label),
                                                                         on_epoch=report))
            if run is not None:
                run.close()
        finally:
            progress.clear()
            spent["seconds"] += time.time() - began
            spent["machine"] = here
            if writes:
                bookdir.mkdir(parents=True, exist_ok=True)
                write_ledger(bookdir, ledger)
        message = session.stop_message(state, path, members="members" in cfg)
        if state.stop_reason == "interrupted":
            say(f"[{label}] {message}; the book carries on with the same nn3 book command")
            return "interrupted"
        progress.end()
        if message:
            say(f"[{label}] {message}")
    if writes and ledger["rows"] and bookdir.is_dir():  # the runs adopted here, done ones too
        write_ledger(bookdir, ledger)
    return None


def _work(cfg: dict) -> float:
    """Forward multiply-adds of one epoch of ``cfg``, what the estimate of time left scales by."""
    n = cfg.get("limit") or 50_000
    n *= 5 if cfg["sgd"].get("augment") == "expand" else 1
    return float(forward_macs(cfg["spec"])) * n * len(cfg.get("members") or [None])


def _kind(cfg: dict) -> str:
    return "conv" if has_conv(cfg["spec"]) else "mlp"


class Progress:
    """The progress line: which row, which epoch, and the time left at the rates so far.

    Time left = for each row still to train, its start-up (if not begun: loading and
    compiling, the mean excess of the first epochs so far) plus its remaining work
    (``_work``) at the rate of the later epochs of its kind (conv or MLP; a kind not yet
    measured borrows the other's). A quick book is all start-up; a full one all rate. A
    row that ended (early stopping, the eta floor, a divergence) has no epochs left.
    ``clock`` (seconds) is for tests.
    """

    def __init__(self, planned: list, say: Callable[[str], None], clock: Callable[[], float] = time.time):
        self.say, self.clock = say, clock
        self.began = self.mark = clock()
        self.rows = [[_kind(c), _work(c), c["sgd"]["epochs"] - s.epochs, False]  # kind, work, epochs left, begun
                     for _, _, c, _, s in planned if s.state != "done"]
        self.current = -1
        self.work = {"conv": 0.0, "mlp": 0.0}
        self.seconds = {"conv": 0.0, "mlp": 0.0}
        self.first: list[tuple[float, float, str]] = []  # (seconds, work, kind) of each row's first epoch here
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
        return f"about {duration(left)} left"

    def row(self) -> None:
        """The next row to train begins."""
        self.current += 1
        self.mark = self.clock()

    def end(self) -> None:
        """The current row has ended (all its epochs, or early): nothing of it is left."""
        self.rows[self.current][2] = 0

    def epoch(self, label: str, cfg: dict, record: dict) -> None:
        now = self.clock()
        kind, work, _, begun = self.rows[self.current]
        if begun:
            self.work[kind] += work
            self.seconds[kind] += now - self.mark
        else:
            self.first.append((now - self.mark, work, kind))
        self.rows[self.current][2] -= 1
        self.rows[self.current][3] = True
        self.mark = now
        self.clear()
        self.say(f"[{label}] epoch {record['epoch'] + 1}/{cfg['sgd']['epochs']}: "
                 f"validation {record.get('validation_accuracy', float('nan')):.2%}, "
                 f"test {record.get('test_accuracy', float('nan')):.2%}; "
                 f"{duration(now - self.began)} in, {self.estimate()}")

    def ticker(self, label: str) -> Callable[[int, int, int], None]:
        done = [0]

        def tick(n: int, per_epoch: int, step: int) -> None:
            # a line rewritten in place, on a terminal only, at most once a second
            done[0] = (done[0] + n) % per_epoch
            if self.tty and self.clock() - self.last_tick >= 1:
                self.last_tick = self.clock()
                print(f"\r[{label}] {done[0] / per_epoch:4.0%} of the epoch; {self.estimate()}  ",
                      end="", file=sys.stderr, flush=True)
        return tick

    def clear(self) -> None:
        if self.tty:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
