"""``nn3`` with a pause that a test can wait for: ``python tests/paused_nn3.py AT FLAG ARGS...``.

The test injects the pause through the library's own hooks (``runs.session.Watch``): with
AT = ``loaded`` the command pauses once its data is loaded and its networks built (before
the run directory exists); with AT = N, at the end of the first compiled call that reaches
global step N, once the checkpoint in flight is on disk. There it writes AT's word to the
file FLAG and waits until a signal asks the process to stop (or a hard kill ends it);
then it goes on as after any signal. nn3 itself reads no test switch.
"""
from __future__ import annotations

import dataclasses
import pathlib
import sys
import time

from nn3 import cli
from nn3.runs import session, stop


def pause(word: str, flag: pathlib.Path) -> None:
    tmp = flag.with_name(flag.name + ".tmp")
    tmp.write_text(word, encoding="utf-8")
    tmp.replace(flag)  # the test sees the whole word or nothing
    give_up = time.monotonic() + 600  # a test that never signals does not hang CI for ever
    while stop.requested() is None and time.monotonic() < give_up:
        time.sleep(0.01)


def with_pause(at: str, flag: pathlib.Path, watch: session.Watch) -> session.Watch:
    """``watch`` with the pause added (the command's own callbacks still run)."""
    if at == "loaded":
        return dataclasses.replace(watch, on_ready=lambda: pause("loaded", flag))
    paused = [False]
    inner = watch.on_progress

    def on_progress(n: int, per_epoch: int, step: int) -> None:
        if inner:
            inner(n, per_epoch, step)
        if step >= int(at) and not paused[0]:
            paused[0] = True
            pause(str(step), flag)
    return dataclasses.replace(watch, on_progress=on_progress, settled=True)


def main(argv: list[str]) -> int:
    at, flag, args = argv[0], pathlib.Path(argv[1]), argv[2:]
    start, resume = session.start, session.resume
    session.start = lambda *a, watch=session.Watch(), **k: start(*a, watch=with_pause(at, flag, watch), **k)
    session.resume = lambda *a, watch=session.Watch(), **k: resume(*a, watch=with_pause(at, flag, watch), **k)
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
