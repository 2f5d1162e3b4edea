"""Checkpoints written on a background thread, spaced when epochs are short.

    >>> from nn3.runs.saver import Saver   # Saver(run).submit(step, arrays, info); saver.close()
"""
from __future__ import annotations

import concurrent.futures
import time

from nn3.store import metrics
from nn3.store.rundir import RunDir


class Saver:
    """Writes checkpoints on one background thread, so that training does not wait for disk.

    At most one save is in flight: the next one (and ``wait``) first waits for it and
    re-raises its error, so a failed write still stops the run with its one-line
    message, and steps land in order. The arrays are copied to host memory before the
    thread starts; a process killed mid-write leaves orbax's temporary directory,
    which is never taken for a checkpoint.

    ``due`` spaces the saves of runs whose epochs are shorter than a save is long:
    a save is due when the time since the last one is at least SPACING times what the
    last one took (so saving costs at most ~1/SPACING of the run). The first epoch,
    the last, a new best one (``replay --best`` must find it), an interrupted one and
    the end of a stopped run are always saved.
    """

    SPACING = 100

    def __init__(self, run: RunDir):
        self.run = run
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="nn3-save")
        self.pending: concurrent.futures.Future | None = None
        self.records: list[dict] = []   # metrics of epochs not yet written
        self.last_end: float | None = None  # perf_counter when the last save finished
        self.last_took = 0.0

    def due(self) -> bool:
        """Whether enough time has passed since the last save for another (see the class)."""
        return self.last_end is None or time.perf_counter() - self.last_end >= self.SPACING * self.last_took

    def submit(self, step: int, arrays: dict, info: dict) -> None:
        """Write checkpoint ``step`` (and the records waiting) once the save in flight has landed."""
        self.wait()
        records, self.records = self.records, []
        self.pending = self.pool.submit(self._write, step, arrays, info, records)

    def _write(self, step: int, arrays: dict, info: dict, records: list[dict]) -> None:
        began = time.perf_counter()
        self.run.save(step, arrays, info)
        for record in records:
            metrics.append(self.run.path, record)
        self.last_end = time.perf_counter()
        self.last_took = self.last_end - began

    def wait(self) -> None:
        """Block until the save in flight (if any) has landed; re-raise its error."""
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Wait for the save in flight, then stop the thread."""
        try:
            self.wait()
        finally:
            self.pool.shutdown(wait=True)
