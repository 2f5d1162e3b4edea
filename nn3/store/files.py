"""Durable small writes: a file replaced whole or not at all, and its folder synced.

    >>> import pathlib, tempfile
    >>> from nn3.store import files
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "config.json"
    >>> files.atomic_write(p, "{}\\n")
    >>> p.read_text(encoding="utf-8")
    '{}\\n'

A run's config.json and its metrics log after a resume's truncation are written this
way, so that a process killed mid-write leaves the old file or the new one, never half.
"""
from __future__ import annotations

import os
import pathlib

__all__ = ["atomic_write", "sync_dir"]


def atomic_write(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Replaces ``path`` with ``data`` (text as UTF-8): written and fsync'ed beside it, then renamed.

    Bytes go out as given (no newline translation on Windows, so a file reads the same on
    every OS); a failed write removes its temp file and raises the OSError.
    """
    path = pathlib.Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_dir(path.parent)


def sync_dir(folder: str | os.PathLike[str]) -> None:
    """Makes a rename in ``folder`` durable where the OS lets a directory be opened.

    POSIX needs the directory itself fsync'ed for a rename to survive a power cut.
    Windows refuses to open a directory (PermissionError) and needs no such step (NTFS
    journals the rename); some file systems refuse fsync on one (EINVAL). Either way the
    file itself is already synced, so the save goes on.
    """
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
