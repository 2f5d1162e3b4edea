"""``nn3`` in a child process, paused at a known point and then stopped: never a race.

    proc = children.start(["train", "ch1", "--run", str(d)], pause_at=140, flag=tmp / "paused")
    children.wait_for_pause(proc, tmp / "paused")   # the child now waits at step 140
    children.send(proc, children.STOP)
    code, out, err, at = children.signalled([...], 140, children.CTRL_C, tmp / "paused")
    assert code == children.EXIT[children.CTRL_C]

The child (tests/paused_nn3.py) pauses through a hook the test injects into nn3's session
(``runs.session.Watch``) and writes the file ``flag`` when it is there; only then is it
stopped, in one of three ways, each the platform's own:

- ``CTRL_C``: the keyboard's stop. POSIX: SIGINT. Windows: a CTRL_C_EVENT sent to the
  child's process group. Exit 130 on both.
- ``STOP``: the stop a program sends another. POSIX: SIGTERM (``kill``), exit 143.
  Windows has no SIGTERM from outside (``Popen.terminate`` and ``taskkill /F`` end a
  process at once); its programs send Ctrl-Break (CTRL_BREAK_EVENT, SIGBREAK), exit 149.
- ``HARD_KILL``: no handler runs. POSIX: SIGKILL (exit -9 as Popen reports it).
  Windows: TerminateProcess, whose exit code Popen.kill sets to 1.

On Windows a console event reaches only processes attached to the sender's console, and
only a process group can be named, so each child is started in its own group
(CREATE_NEW_PROCESS_GROUP) and this process makes sure it has a console (one started
without, as a service or an IDE may start it, gets a fresh one). Windows starts a new
group with Ctrl-C ignored; the child turns it back on first (``SetConsoleCtrlHandler(NULL,
FALSE)``), as a program started from a console shell has it.

Wine (../shared/tools/wine-python.sh) differs in two ways, found by trying: its harness
gives Python a console that refuses every console event (GenerateConsoleCtrlEvent fails
with ERROR_INVALID_ACCESS, GetConsoleCP() is 0), so the fresh console above is made there
too, and then CTRL_C_EVENT reaches the child's group as on Windows; but Wine 8 cannot
send CTRL_BREAK_EVENT at all (the call fails, ERROR_INVALID_HANDLE, and no handler
runs). Under Wine a Ctrl-Break is therefore raised inside the child instead: a thread of
the child's launcher waits for the file ``flag + ".break"`` and calls
``signal.raise_signal(SIGBREAK)``, which runs the C runtime's SIGBREAK handler on a
thread of its own, as a console's Ctrl-Break does. Everything after that is nn3's own.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WINDOWS = sys.platform == "win32"
WINE = WINDOWS and hasattr(ctypes.WinDLL("ntdll"), "wine_get_version")

CTRL_C, STOP, HARD_KILL = "Ctrl-C", "stop", "hard kill"
EXIT = {CTRL_C: 130, STOP: 149 if WINDOWS else 143, HARD_KILL: 1 if WINDOWS else -signal.SIGKILL}
SIGNAL = {CTRL_C: "SIGINT", STOP: "SIGBREAK" if WINDOWS else "SIGTERM"}   # as nn3 names them
HOW = {CTRL_C: "Ctrl-C (CTRL_C_EVENT to its group)" if WINDOWS else "Ctrl-C (SIGINT)",
       STOP: ("Ctrl-Break (raised in the child: Wine cannot send CTRL_BREAK_EVENT)" if WINE
              else "Ctrl-Break (CTRL_BREAK_EVENT to its group)") if WINDOWS else "SIGTERM",
       HARD_KILL: "TerminateProcess" if WINDOWS else "SIGKILL"}

# The child's launcher on Windows: Ctrl-C on again, then ``python -m nn3`` or the script named first.
_LAUNCH = """
import ctypes, os, runpy, signal, sys, threading, time
ctypes.windll.kernel32.SetConsoleCtrlHandler(None, False)
where = os.environ.pop("NN3_TEST_BREAK_FILE", "")
def ctrl_break():
    while not os.path.exists(where):
        time.sleep(0.01)
    signal.raise_signal(signal.SIGBREAK)
if where:
    threading.Thread(target=ctrl_break, daemon=True).start()
target = sys.argv.pop(1)
if target == "nn3":
    sys.argv[0] = "nn3"
    runpy.run_module("nn3", run_name="__main__", alter_sys=True)
else:
    sys.argv[0] = target
    runpy.run_path(target, run_name="__main__")
"""


_console_checked = []


def _console() -> None:
    """Windows: attach this process, once, to a console that console events travel through
    (Wine's harness: its own; GetConsoleCP() stays 0 there even then, so it is asked once)."""
    if _console_checked:
        return
    k = ctypes.windll.kernel32
    if k.GetConsoleCP() == 0:
        k.FreeConsole()
        if not k.AllocConsole():
            raise ctypes.WinError()
    _console_checked.append(True)


def popen(argv, env=None, *, script=None, **kw) -> subprocess.Popen:
    """``python -m nn3 *argv`` (or ``python script *argv``), stoppable by ``send``: on
    Windows in a process group of its own."""
    env = {**(os.environ if env is None else env), "PYTHONPATH": str(ROOT)}
    target = [str(script)] if script else ["-m", "nn3"]
    if not WINDOWS:
        return subprocess.Popen([sys.executable, *target, *map(str, argv)], env=env, **kw)
    _console()
    return subprocess.Popen([sys.executable, "-c", _LAUNCH, str(script or "nn3"), *map(str, argv)], env=env,
                            creationflags=subprocess.CREATE_NEW_PROCESS_GROUP, **kw)


def start(argv, pause_at, flag, env=None, **kw) -> subprocess.Popen:
    """``python -m nn3 *argv`` that pauses at ``pause_at`` (a step, or "loaded") until stopped.

    ``env`` (default: this process's) and ``kw`` go to Popen, whose default here is
    stdout and stderr to pipes read as text in the locale's encoding."""
    env = dict(os.environ if env is None else env)
    if WINE:
        env["NN3_TEST_BREAK_FILE"] = f"{flag}.break"
    proc = popen([pause_at, flag, *argv], env, script=ROOT / "tests" / "paused_nn3.py",
                 **{"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **kw})
    proc.pause_flag = Path(flag)
    return proc


def send(proc, how) -> None:
    """Stop ``proc`` (from ``popen`` or ``start``) by ``how``: CTRL_C, STOP or HARD_KILL."""
    if how == HARD_KILL:
        proc.kill()   # POSIX: SIGKILL; Windows: TerminateProcess
    elif not WINDOWS:
        proc.send_signal(signal.SIGINT if how == CTRL_C else signal.SIGTERM)
    elif how == STOP and WINE:
        Path(f"{proc.pause_flag}.break").write_text("break", encoding="utf-8")
    else:
        os.kill(proc.pid, signal.CTRL_C_EVENT if how == CTRL_C else signal.CTRL_BREAK_EVENT)


def wait_for_pause(proc, flag) -> str:
    """Blocks until the child has written its pause file; returns what it wrote there.

    The limit only catches a child that died or never gets there: it waits at its pause
    for as long as it takes."""
    deadline = time.monotonic() + 600
    while not Path(flag).exists():
        if proc.poll() is not None:
            pytest.fail(f"training ended before its pause: {proc.returncode} {(proc.stderr and proc.stderr.read())}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the child never reached its pause")
        time.sleep(0.01)
    return Path(flag).read_text(encoding="utf-8")


def signalled(argv, pause_at, how, flag, env=None, **kw):
    """Run ``argv`` in a child, wait for its pause, stop it by ``how``: (exit code, stdout, stderr, pause word).

    ``env`` and ``kw`` as for ``start``."""
    proc = start(argv, pause_at, flag, env, **kw)
    try:
        at = wait_for_pause(proc, flag)
        send(proc, how)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err, at
