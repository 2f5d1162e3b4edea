"""Tests that nn3 works where POSIX-only calls are refused: Windows and macOS as seen from Linux.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_portable.py -q

Windows refuses to open a directory (``os.open(dir, O_RDONLY)`` raises PermissionError),
and macOS and Windows have no ``os.sched_setaffinity``. Each guarded call is run here
down its other branch: the whole command-line path (train, Ctrl-C, resume, replay,
export, import) with directory opens refused as Windows refuses them, and the thread
limit with no affinity call, or with one that the OS refuses.
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nn3 import cli
from nn3.store import data, files
from nn3.engine import threads
from nn3.engine.trainer import Trainer


def write_idx_mnist(folder):
    """The four MNIST IDX files (uncompressed, random digits) at the standard sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    for name, n in (("train", 60_000), ("t10k", 10_000)):
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        (folder / f"{name}-images-idx3-ubyte").write_bytes(
            np.array([0x803, n, 28, 28], ">u4").tobytes() + imgs.tobytes())
        (folder / f"{name}-labels-idx1-ubyte").write_bytes(np.array([0x801, n], ">u4").tobytes() + labels.tobytes())
    return folder


@pytest.fixture
def windows_dir_opens(monkeypatch):
    """``os.open`` refuses directories with PermissionError, as it does on Windows, and
    shutil.rmtree walks as it does there."""
    real_open, refused = os.open, []

    def open_like_windows(path, flags, *args, **kwargs):
        if kwargs.get("dir_fd") is None and os.path.isdir(path):
            refused.append(os.fspath(path))
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_like_windows)
    # Windows' shutil.rmtree walks by path: it never opens a directory (no dir_fd support)
    monkeypatch.setattr(shutil, "_use_fd_functions", False)
    return refused


def test_atomic_write_where_directories_cannot_be_opened(tmp_path, windows_dir_opens):
    files.atomic_write(tmp_path / "a.json", "{}\n")
    assert (tmp_path / "a.json").read_text() == "{}\n"
    assert windows_dir_opens == [str(tmp_path)]  # it did try, and went on
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary file left


def test_atomic_write_syncs_the_directory_where_it_can(tmp_path, monkeypatch):
    synced, real_fsync = [], os.fsync

    def fsync(fd):
        synced.append(os.path.isdir(f"/proc/self/fd/{fd}") if os.path.isdir("/proc/self/fd") else None)
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    files.atomic_write(tmp_path / "a.json", "{}\n")
    assert len(synced) == 2 and synced[-1] in (True, None)  # the file, then its folder


def test_a_file_system_that_refuses_fsync_on_a_directory(tmp_path, monkeypatch):
    real_fsync = os.fsync
    calls = []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:  # the directory's
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    files.atomic_write(tmp_path / "a.json", "[]\n")
    assert (tmp_path / "a.json").read_text() == "[]\n" and len(calls) == 2


def _params(path):
    with open(path) as f:
        net = json.load(f)
    return net["weights"], net["biases"]


def test_train_ctrl_c_resume_replay_export_import_where_directories_cannot_be_opened(
        tmp_path, monkeypatch, windows_dir_opens):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NN3_DATA_DIR", str(write_idx_mnist(tmp_path / "digits")))
    data.clear_cache()
    small = ["--limit", "300", "--epochs", "3", "--chunks", "3", "--quiet"]

    real_run_epoch, calls = Trainer.run_epoch, []

    def run_epoch(self, *args, **kwargs):  # Ctrl-C once, in the second epoch
        calls.append(args[0])
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)
        return real_run_epoch(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(Trainer, "run_epoch", run_epoch)
        assert cli.main(["train", "ch1", *small]) == cli.EXIT_INTERRUPTED
    assert len(calls) == 2, "training went on after Ctrl-C"
    runs_made = list((tmp_path / "checkpoints").iterdir())
    assert len(runs_made) == 1
    run_dir = runs_made[0]
    assert re.fullmatch(r"[A-Za-z0-9._-]+", run_dir.name), f"{run_dir.name}: not a portable folder name"

    assert cli.main(["resume", str(run_dir), "--quiet"]) == 0
    assert cli.main(["replay", str(run_dir)]) == 0
    assert cli.main(["export", str(run_dir), "resumed.json"]) == 0

    assert cli.main(["train", "ch1", *small, "--run", "straight"]) == 0
    assert cli.main(["export", "straight", "straight.json"]) == 0
    for a, b in zip(_params("resumed.json"), _params("straight.json")):
        assert a == b, "the resumed run ended with other parameters than the one never stopped"

    assert cli.main(["import", "resumed.json", "--run", "imported", "--epochs", "1", "--limit", "300"]) == 0
    assert cli.main(["replay", "imported"]) == 0
    assert windows_dir_opens, "no directory was opened: this test no longer exercises the refusal"


# ---------------------------------------------------------------- threads.limit's other branches

def _python(script: str) -> list[str]:
    """Runs ``script`` in a fresh interpreter (JAX not started); its printed words."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                         env=env, timeout=300, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


STARTED = "from jax._src import xla_bridge; started = xla_bridge.backends_are_initialized()"


def test_limit_without_sched_setaffinity_leaves_jax_to_start_as_usual():
    # macOS and Windows: no affinity call, so JAX starts later with its own pool size
    done, started, works = _python(f"""
        import os
        for name in ("sched_setaffinity", "sched_getaffinity"):
            if hasattr(os, name):
                delattr(os, name)
        from nn3.engine import threads
        done = threads.limit(1)
        {STARTED}
        import jax.numpy as jnp
        print(done, started, float(jnp.ones(3).sum()) == 3.0)
    """)
    assert (done, started, works) == ("False", "False", "True")


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity")
def test_limit_where_the_os_refuses_to_set_affinities():
    # a sandbox (seccomp, a container's cpuset) may refuse the call: JAX starts as usual
    done, started, works = _python(f"""
        import errno, os
        before = os.sched_getaffinity(0)
        def refuse(pid, cores):
            raise PermissionError(errno.EPERM, "Operation not permitted")
        os.sched_setaffinity = refuse
        os.sched_getaffinity = lambda pid: set(range(64))  # as if many cores were usable
        from nn3.engine import threads
        done = threads.limit(1)
        {STARTED}
        import jax.numpy as jnp
        print(done, started, float(jnp.ones(3).sum()) == 3.0)
    """)
    assert (done, started, works) == ("False", "False", "True")
