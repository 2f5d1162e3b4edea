"""A run of several processes that loses one: noticed within seconds, ended in one line.

    >>> from nn3.runs import watchdog
    >>> watchdog.attached()          # a run of one process: nothing to watch
    False

Once a process has joined a run (nn3.runs.cluster calls ``attach``), a ``Watchdog``
thread beats through JAX's coordinator every ``BEAT_S`` and reads the others' beats. A
process whose beat has not moved for ``SILENT_S`` is taken for gone (killed, hung, or its
host cut off): this process then says so in one line and exits with ``PEER_FAILED``. A
process that fails on its own (a bad file, a full disk) leaves its line in the
coordinator first (``fail``), so the others name the cause, not just the silence.
JAX's own heartbeat would abort every process with a stack dump at 45 s; this one speaks
first, at ``SILENT_S``.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, NoReturn

__all__ = ["BEAT_S", "PEER_FAILED", "SILENT_S", "Watchdog", "attach", "attached", "fail", "lost", "one_line"]

SILENT_S = 20         # a process whose heartbeat has not moved for this long is taken for gone
BEAT_S = 1.0          # how often each process beats and looks at the others'
PEER_FAILED = 4       # the exit status of a process that stops because another one failed

_run: dict[str, Any] = {}  # this process's place in the run: JAX's client, its own index, the count
_failing = threading.Lock()


def attach(client: Any, me: int, n: int) -> None:
    """Record that this process is process ``me`` of ``n``, talking to the coordinator
    through ``client`` (JAX's DistributedRuntimeClient): from here on a fault ends it."""
    _run.update(client=client, me=me, n=n)


def attached() -> bool:
    """Whether this process is part of a run of several."""
    return "client" in _run


def one_line(e: BaseException) -> str:
    """The first line of ``e``'s message (at most 300 characters), or its type's name."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def fail(line: str, status: int = PEER_FAILED, *, own: bool = False) -> NoReturn:
    """End this process at once with ``status``, saying ``line`` on stderr (``nn3: line``,
    and unless it is this process's ``own`` fault, that it stops because of the others), and
    leave ``line`` where the other processes' watchdogs read it: they stop too, naming this one.

    The first caller wins: a watchdog and the main thread never both speak. No cleanup:
    JAX's own shutdown would wait for processes that cannot come. The checkpoints already
    written are whole (an interrupted write leaves a temporary directory never read back).
    """
    if not _failing.acquire(blocking=False):
        threading.Event().wait()  # the other caller is ending the process
    me = _run.get("me", 0)
    if attached():
        try:
            _run["client"].key_value_set(f"nn3/last/{me}", line, allow_overwrite=True)
        except Exception:  # the coordinator is gone too: nobody to tell
            pass
    tail = "" if own else f"; process {me} stops; carry on later with nn3 resume"
    print(f"nn3: {line}{tail}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(status)


def lost(e: BaseException) -> None:
    """A collective failed here (another process is gone): wait for the watchdog to name
    it (it ends this process), else end it with ``e``'s first line. Outside a run of
    several, ``e`` is raised again."""
    if not attached():
        raise e
    deadline = time.monotonic() + SILENT_S + 3 * BEAT_S
    while time.monotonic() < deadline:
        time.sleep(0.2)
    fail(f"a collective with the other processes failed ({one_line(e)})")


class Watchdog(threading.Thread):
    """Beats through JAX's coordinator and watches the others' beats (a daemon thread);
    ``done = True`` stops it watching (a run that ended well). Needs ``attach`` first."""

    def __init__(self) -> None:
        super().__init__(name="nn3-watchdog", daemon=True)
        self.me, self.n, self.client = _run["me"], _run["n"], _run["client"]
        self.done = False

    def run(self) -> None:
        beats: dict[int, str] = {}
        moved: dict[int, float] = {}
        count, unreachable = 0, None
        while not self.done:
            now = time.monotonic()
            try:
                count += 1
                self.client.key_value_set(f"nn3/beat/{self.me}", str(count), allow_overwrite=True)
                for key, value in self.client.key_value_dir_get("nn3/beat/"):
                    q = int(key.rsplit("/", 1)[1])
                    if beats.get(q) != value:
                        beats[q], moved[q] = value, now
                unreachable = None
            except Exception as e:  # the coordinator (process 0) is gone, or its host unreachable
                unreachable = unreachable or now
                if now - unreachable > 3 * BEAT_S:
                    fail(f"the coordinator (process 0) cannot be reached: {one_line(e)}")
            for q in range(self.n):
                seen = moved.setdefault(q, now)
                if q != self.me and now - seen > SILENT_S and not self.done:
                    fail(f"process {q} {self.last_words(q)}")
            try:
                for key, words in self.client.key_value_dir_get("nn3/last/"):
                    q = int(key.rsplit("/", 1)[1])
                    if q != self.me and not self.done:
                        fail(f"process {q} stopped: {words}")
            except Exception:  # the coordinator's trouble is reported above
                pass
            time.sleep(BEAT_S)

    def last_words(self, q: int) -> str:
        """What process ``q`` said before it stopped, or what its silence means."""
        try:
            return f"stopped: {self.client.key_value_try_get(f'nn3/last/{q}')}"
        except Exception:  # it left no line: killed, hung, or cut off
            return f"has sent nothing for {SILENT_S} s (it died, hangs, or its host is unreachable)"
