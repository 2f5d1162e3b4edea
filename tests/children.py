"""``nn3`` in a child process, paused at a known point and then signalled: never a race.

    proc, flag = children.start(["train", "ch1", "--run", str(d)], pause_at=140, flag=tmp / "paused")
    children.wait_for_pause(proc, flag)        # the child now waits at step 140
    code, out, err, at = children.signalled([...], 140, signal.SIGTERM, tmp / "paused")

The child (tests/paused_nn3.py) pauses through a hook the test injects into nn3's session
(``runs.session.Watch``) and writes the file ``flag`` when it is there; only then is it
signalled.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def start(argv, pause_at, flag) -> subprocess.Popen:
    """``python -m nn3 *argv`` that pauses at ``pause_at`` (a step, or "loaded") until signalled."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(ROOT / "tests" / "paused_nn3.py"), str(pause_at), str(flag),
                             *map(str, argv)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_pause(proc, flag) -> str:
    """Blocks until the child has written its pause file; returns what it wrote there.

    The limit only catches a child that died or never gets there: it waits at its pause
    for as long as it takes."""
    deadline = time.monotonic() + 600
    while not Path(flag).exists():
        if proc.poll() is not None:
            pytest.fail(f"training ended before its pause: {proc.returncode} {proc.stderr.read()[-800:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the child never reached its pause")
        time.sleep(0.01)
    return Path(flag).read_text()


def signalled(argv, pause_at, signum, flag):
    """Run ``argv`` in a child, wait for its pause, send ``signum``: (exit code, stdout, stderr, pause word)."""
    proc = start(argv, pause_at, flag)
    try:
        at = wait_for_pause(proc, flag)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err, at
