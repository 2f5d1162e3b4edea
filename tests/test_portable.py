"""Tests that nn3 works where POSIX-only calls are refused: Windows and macOS as seen from Linux.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_portable.py -q

Windows refuses to open a directory (``os.open(dir, O_RDONLY)`` raises PermissionError),
refuses to rename or delete a file that is open or mapped, or a directory that holds
one, and macOS and Windows have no ``os.sched_setaffinity``. Each guarded call is run
here down its other branch: the whole command-line path (train, Ctrl-C or Ctrl-Break,
resume, replay, export, import) under Windows' rules for directories and files in use,
as seen from Linux (Wine, which CI runs the suite under too, lets a directory that holds
an open file be renamed: this is the stricter check), and the thread limit with no
affinity call, or with one that the OS refuses. Under Windows CPython the same tests
meet Windows' own rules. Every file nn3 reads or writes as text names its encoding.
"""
from __future__ import annotations

import ast
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

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


def _in_use() -> set[str]:
    """The files this process has open or mapped (Linux: /proc/self), as absolute paths."""
    fds = "/proc/self/fd"
    paths = set()
    for fd in os.listdir(fds):
        try:
            paths.add(os.readlink(os.path.join(fds, fd)))
        except OSError:
            pass
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
        paths.update(line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6)
    return {p for p in paths if p.startswith("/")}


@pytest.fixture
def windows_files_in_use(monkeypatch):
    """Renames and deletes refused as Windows refuses them: a file that this process has
    open or mapped, or a directory that holds one, cannot be renamed, replaced or deleted
    (ERROR_SHARING_VIOLATION, a PermissionError in Python). Returns what was renamed:
    [(source, is a directory)], to show that the rule was met; None where the stand-in is
    not used: under Windows CPython the real rule applies (Wine keeps it for files, not for
    directories), and without Linux's /proc/self nothing shows which files are in use."""
    if sys.platform == "win32" or not os.path.isdir("/proc/self/fd"):
        return None
    renamed = []

    def guard(path):
        path = os.path.abspath(os.fspath(path))
        busy = [p for p in _in_use() if p == path or p.startswith(path + os.sep)]
        if busy:
            raise PermissionError(errno.EACCES, "The process cannot access the file because it is being used "
                                                f"by another process ({busy[0]})", path)

    def wrap(real, renames):
        def call(src, *args, **kwargs):
            assert kwargs.get("src_dir_fd", kwargs.get("dir_fd")) is None, "a dir_fd call: Windows has none"
            guard(src)
            if renames:
                guard(args[0])  # the destination, which os.replace would remove
                renamed.append((os.fspath(src), os.path.isdir(src)))
            return real(src, *args, **kwargs)
        return call

    for name, renames in (("rename", True), ("replace", True), ("unlink", False), ("remove", False),
                          ("rmdir", False)):
        monkeypatch.setattr(os, name, wrap(getattr(os, name), renames))
    monkeypatch.setattr(shutil, "_use_fd_functions", False)
    return renamed


def test_atomic_write_where_directories_cannot_be_opened(tmp_path, windows_dir_opens):
    files.atomic_write(tmp_path / "a.json", "{}\n")
    assert (tmp_path / "a.json").read_text(encoding="utf-8") == "{}\n"
    assert windows_dir_opens == [str(tmp_path)]  # it did try, and went on
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary file left


WINDOWS = sys.platform == "win32"


def test_atomic_write_syncs_the_directory_where_it_can(tmp_path, monkeypatch):
    """POSIX: the file, then its folder. Windows refuses to open the folder (the real
    refusal here, not a stand-in): the file alone, and the write goes on."""
    synced, real_fsync = [], os.fsync

    def fsync(fd):
        synced.append(os.path.isdir(f"/proc/self/fd/{fd}") if os.path.isdir("/proc/self/fd") else None)
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    files.atomic_write(tmp_path / "a.json", "{}\n")
    if WINDOWS:
        with pytest.raises(PermissionError):
            os.close(os.open(tmp_path, os.O_RDONLY))
        assert len(synced) == 1
    else:
        assert len(synced) == 2 and synced[-1] in (True, None)  # the file, then its folder
    assert (tmp_path / "a.json").read_text(encoding="utf-8") == "{}\n"


def test_a_file_system_that_refuses_fsync_on_a_directory(tmp_path, monkeypatch):
    """Where a folder opens but refuses fsync (EINVAL), the write goes on. Windows never gets
    that far (the folder does not open): one fsync, the file's."""
    real_fsync = os.fsync
    calls = []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:  # the directory's
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    files.atomic_write(tmp_path / "a.json", "[]\n")
    assert (tmp_path / "a.json").read_text(encoding="utf-8") == "[]\n" and len(calls) == (1 if WINDOWS else 2)


def _params(path):
    with open(path, encoding="utf-8") as f:
        net = json.load(f)
    return net["weights"], net["biases"]


@pytest.mark.parametrize("stop", ["SIGINT", "SIGBREAK"])
def test_train_stop_resume_replay_export_import_under_windows_rules(
        tmp_path, monkeypatch, windows_dir_opens, windows_files_in_use, stop):
    """The command-line path with Windows' refusals. ``stop``: Ctrl-C (exit 130) on every
    platform; Ctrl-Break (SIGBREAK, exit 149) where it exists, Windows."""
    if not hasattr(signal, stop):
        pytest.skip(f"{stop} exists only on Windows; .ci/windows runs this test under Windows CPython")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NN3_DATA_DIR", str(write_idx_mnist(tmp_path / "digits")))
    data.clear_cache()
    small = ["--limit", "300", "--epochs", "3", "--chunks", "3", "--quiet"]

    real_run_epoch, calls = Trainer.run_epoch, []

    def run_epoch(self, *args, **kwargs):  # the stop once, in the second epoch
        calls.append(args[0])
        if len(calls) == 2:
            signal.raise_signal(getattr(signal, stop))
        return real_run_epoch(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(Trainer, "run_epoch", run_epoch)
        assert cli.main(["train", "ch1", *small]) == {"SIGINT": 130, "SIGBREAK": 149}[stop]
    assert len(calls) == 2, f"training went on after {stop}"
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
    renamed = windows_files_in_use
    assert renamed is None or any(is_dir for _, is_dir in renamed), "no directory was renamed: the rule went unmet"


def test_the_windows_rules_stand_in_refuses_what_windows_refuses(tmp_path, windows_files_in_use):
    """The stand-in above refuses, so that a pass under it means something."""
    if windows_files_in_use is None:
        pytest.skip("no stand-in here: Windows' own rule applies, or no /proc/self to see files in use")
    (tmp_path / "d").mkdir()
    with open(tmp_path / "d" / "f", "w", encoding="utf-8") as f:
        for doomed in (lambda: os.rename(tmp_path / "d", tmp_path / "e"), lambda: os.unlink(tmp_path / "d" / "f"),
                       lambda: shutil.rmtree(tmp_path / "d"), lambda: os.replace(tmp_path / "x", tmp_path / "d" / "f")):
            with pytest.raises(PermissionError, match="being used by another process"):
                doomed()
        f.write("still open")
    os.rename(tmp_path / "d", tmp_path / "e")  # closed: allowed
    assert (tmp_path / "e" / "f").read_text(encoding="utf-8") == "still open"


def _text_io_without_encoding(path: Path):
    """The calls in ``path`` that read or write text in the locale's encoding: open(...) in a
    text mode, Path.read_text / write_text / open("w"), without ``encoding=``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or any(k.arg == "encoding" for k in node.keywords):
            continue
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
        modes = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        modes += [k.value.value for k in node.keywords if k.arg == "mode" and isinstance(k.value, ast.Constant)]
        text_mode = not any("b" in m for m in modes)
        if (name in ("read_text", "write_text")
                or (isinstance(f, ast.Name) and name == "open" and text_mode)
                or (isinstance(f, ast.Attribute) and name == "open" and modes and text_mode)):
            yield f"{path.name}:{node.lineno}"


def test_every_text_file_nn3_reads_or_writes_names_its_encoding(tmp_path):
    """Without ``encoding=`` Python uses the locale's: cp1252 or cp932 on Windows, where
    nn3's UTF-8 files (config.json, REPORT.md) would read wrong. The tests and benches
    read those files too, so they name it as well."""
    package = Path(cli.__file__).resolve().parent
    found = [hit for folder in ("nn3", "tests", "bench") for p in sorted((package.parent / folder).rglob("*.py"))
             for hit in _text_io_without_encoding(p)]
    assert found == []
    planted = tmp_path / "planted.py"  # what the search must find, and what it must leave
    planted.write_text('open(p)\nopen(p, "w")\np.read_text()\np.write_text(t)\np.open("a")\n'
                       'open(p, "rb")\nopen(p, encoding="utf-8")\np.read_text(encoding="utf-8")\n'
                       'os.open(p, flags)\nRunDir.open(p)\ngzip.open(p, "rb")\n', encoding="utf-8")
    assert list(_text_io_without_encoding(planted)) == [f"planted.py:{n}" for n in range(1, 6)]


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
