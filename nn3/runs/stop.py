"""Ctrl-C, SIGTERM and Ctrl-Break: which signal asked this process to stop, kept once for the command.

    >>> from nn3.runs import stop
    >>> stop.requested() is None
    True
    >>> stop.exit_code(2), stop.exit_code(15), stop.exit_code(21)   # SIGINT, SIGTERM, SIGBREAK: 128 + n
    (130, 143, 149)

The graceful stops differ per platform. POSIX: Ctrl-C (SIGINT) and SIGTERM (``kill``).
Windows: Ctrl-C and Ctrl-Break (SIGBREAK, what ``GenerateConsoleCtrlEvent`` can send to
one process group); its SIGTERM is no signal from outside (``taskkill /F`` and
``Popen.terminate`` end the process at once, like ``kill -9``). Each exits with the
shell's 128 + n: 130 for Ctrl-C, 143 for SIGTERM, 149 for Ctrl-Break (SIGBREAK is 21).

The CLI installs ``handlers(raising=True)`` before it imports anything heavy: until
training starts, a signal ends the command at once (a KeyboardInterrupt that ``main``
turns into one line). Training installs ``handlers(raising=False)``: a signal then only
records itself, and training polls ``requested()`` at the end of every compiled call,
stops there and checkpoints. The record outlives the handlers, so a KeyboardInterrupt
that a library swallowed during start-up (JAX and orbax run Python callbacks whose
exceptions they only log) still stops training at its first stopping point.

No JAX here: the CLI imports this module first.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM) + ((signal.SIGBREAK,) if hasattr(signal, "SIGBREAK") else ())
_requested: int | None = None


def requested() -> int | None:
    """The signal number that asked to stop (the first one), or None."""
    return _requested


def adopt(signum: int) -> None:
    """Take another process's stop request as this one's (a run of several stops together)."""
    global _requested
    if _requested is None:
        _requested = signum


def clear() -> None:
    """Forget a request that has been acted on (a library may train again in this process)."""
    global _requested
    _requested = None


def exit_code(signum: int) -> int:
    """The exit status a shell gives a process ended by ``signum``: 130 for Ctrl-C, 143 for SIGTERM,
    149 for Ctrl-Break (Windows' SIGBREAK, 21: the same rule, as Windows shells have none)."""
    return 128 + int(signum)


def name(signum: int) -> str:
    return signal.Signals(signum).name


@contextlib.contextmanager
def handlers(*, raising: bool) -> Iterator[None]:
    """Record SIGINT/SIGTERM (and SIGBREAK on Windows) while inside; with ``raising`` also
    raise KeyboardInterrupt.

    Python delivers signals to the main thread only, and refuses ``signal.signal``
    anywhere else (a web server's worker, a notebook's thread): there this does nothing,
    and the host program keeps its own handling.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum, frame):
        global _requested
        if _requested is None:
            _requested = signum
        if raising:
            raise KeyboardInterrupt

    old = {s: signal.signal(s, on_signal) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
