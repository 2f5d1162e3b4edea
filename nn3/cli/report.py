"""What a command prints: the book's lines per epoch, a progress bar, the end of a run, a replay's verdict.

    >>> from nn3.cli import report
    >>> report.best_phrase({"epoch": 3, "validation_accuracy": 0.9712, "test_accuracy": None})
    'best validation accuracy 97.12% at epoch 3 (test none)'
"""
from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nn3.engine.train import RunState

__all__ = ["best_phrase", "finish", "progress_bar", "reporter", "say", "verdict"]


def say(*a: object) -> None:
    print(*a, flush=True)


def reporter(style: str, before: Callable[[], None] | None = None, monitor: tuple = ()) -> Callable:
    """What a run prints per epoch: the lines of the book program the preset comes from
    (``book.facade.epoch_lines``, which the façades print too), with the monitors it asked
    for; for a member run, one line of each member's accuracy and the vote's.

    ``before`` runs first (it clears the progress bar, so the lines stand on their own).
    """
    from nn3.book import facade
    if style == "network2":  # network2's runs show the evaluation accuracy, as the book's chapter-3 scripts do
        monitor = (*monitor, "validation_accuracy")

    def report(record: dict, state: object) -> None:
        if before:
            before()
        if "members" in record:
            say(facade.members_line(record))
            return
        for line in facade.epoch_lines(record, style, monitor):
            say(line)
    return report


def progress_bar(quiet: bool) -> tuple[Callable[[int, int, int], None] | None, Callable[[], None]]:
    """A progress bar per epoch on stderr (when it is a terminal): (tick, close)."""
    if quiet:
        return None, lambda: None
    from tqdm import tqdm
    bar: list = [None]

    def tick(n: int, per_epoch: int, step: int) -> None:
        if bar[0] is None:
            bar[0] = tqdm(total=per_epoch, unit="batch", leave=False, disable=None, dynamic_ncols=True)
        bar[0].update(n)

    def close() -> None:
        if bar[0] is not None:
            bar[0].close()
            bar[0] = None
    return tick, close


def finish(state: RunState, run_dir: str | os.PathLike, started: float, members: bool) -> int:
    """The lines at the end of ``nn3 train``/``resume``/``import``, and its exit status.

    ``state`` is the run's ``RunState``; ``members``: a member run (each member's best first).
    """
    from nn3.cli.flags import EXIT_DIVERGED
    from nn3.engine.train import best_record
    from nn3.runs import inspect, session, stop
    for i, loop in enumerate(state.loops if members else ()):
        best_of_member = inspect.best_of(loop)
        if best_of_member:
            say(f"member {i}: {best_phrase(best_of_member)}")
    best = best_record(state)
    if best:
        say(f"Best validation accuracy {best.get('validation_accuracy', 0):.2%} at epoch {best['epoch']}"
            f" (test {best.get('test_accuracy', float('nan')):.2%}); {time.time() - started:.1f} s")
    say(f"run directory: {run_dir}")
    if members and state.diverged:
        print(f"nn3: member(s) {', '.join(map(str, state.diverged))} diverged", file=sys.stderr)
    msg = session.stop_message(state, run_dir, members=members)
    if msg:
        print(f"nn3: {msg}", file=sys.stderr)
    if state.stop_reason == "interrupted":
        return stop.exit_code(stop.requested() or signal.SIGINT)
    return EXIT_DIVERGED if state.stop_reason == "nan" else 0


def best_phrase(best: dict) -> str:
    """A best epoch (``runs.inspect.best_of``) in words, as the end of a run and replay say it."""
    def pct(key: str) -> str:
        return "none" if best[key] is None else f"{best[key]:.2%}"
    return (f"best validation accuracy {pct('validation_accuracy')} at epoch {best['epoch']} "
            f"(test {pct('test_accuracy')})")


def verdict(res: dict, lead: str) -> str:
    """A replay's comparison with the accuracy recorded at save time, or "" when none was."""
    if res["recorded"] is None:
        return ""
    return f"{lead}: {res['recorded']:.2%} -- {'equal' if res['equal'] else 'DIFFERENT'}"
