"""Decoded data kept for the next load: in this process (the last two), and on disk between processes.

    >>> from nn3.store import cache
    >>> cache.clear_cache()          # forget what this process decoded

Decoding the book's pickle (gzip and unpickling 220 MB) costs far more than mapping
arrays already decoded (bench/README.md has the numbers), so a process that finds them
decoded maps them. The disk cache lives in $NN3_DATA_CACHE (default
~/.cache/nn3/arrays; empty: none), keyed by the files' paths, sizes and modification
times, so a changed file is decoded and checked again. Every caller gets arrays of its
own, writable, which a write never carries back.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from nn3.store import readers
from nn3.store.sources import Source, SplitArrays

__all__ = ["ARRAY_NAMES", "clear_cache", "load_cached", "private"]

ARRAY_NAMES = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")


def _array_cache_dir() -> Path | None:
    """Where decoded arrays are kept between processes ($NN3_DATA_CACHE; empty: nowhere)."""
    where = os.environ.get("NN3_DATA_CACHE", str(Path.home() / ".cache" / "nn3" / "arrays"))
    return Path(where) if where else None


def _from_disk(folder: Path) -> SplitArrays | None:
    """The six arrays decoded earlier, memory-mapped read-only; None when absent or unusable.

    These are shared (``load_cached``); callers get copy-on-write maps (``private``)."""
    try:
        arrays = [np.load(folder / f"{n}.npy", mmap_mode="r", allow_pickle=False) for n in ARRAY_NAMES]
    except (OSError, ValueError):
        return None
    return tuple((arrays[i], arrays[i + 1]) for i in (0, 2, 4))


def _to_disk(folder: Path, splits: SplitArrays) -> None:
    """Keep decoded arrays for the next process; any failure just means no cache."""
    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        for name, arr in zip(ARRAY_NAMES, (a for split in splits for a in split)):
            np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
        os.replace(tmp, folder)
    except OSError:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


@functools.lru_cache(maxsize=2)
def load_cached(source: Source, sizes: tuple[int | None, ...] | None, _stamp: tuple) -> SplitArrays:
    """Decoded splits, read-only: from memory, else from the array cache, else decoded.

    Args:
      source: the files, their paths resolved (the key of both caches).
      sizes: the expected split sizes, as for ``readers.load_source``.
      _stamp: the files' (mtime_ns, size) pairs: a changed file misses both caches
        and is decoded (and checked) again.

    Returns:
      (training, validation, test), each (x float32 (N, 784), y int64 (N,)), shared
      and read-only: give callers ``private`` copies.
    """
    root = _array_cache_dir()
    folder = None
    if root is not None:
        key = repr((source.kind, [str(p) for p in source.files], sizes, _stamp, 1))
        folder = root / hashlib.sha256(key.encode()).hexdigest()[:32]
        hit = _from_disk(folder)
        if hit is not None:
            return hit
    splits = readers.load_source(source, sizes)
    for arr in (a for split in splits for a in split):
        arr.setflags(write=False)
    if folder is not None:
        _to_disk(folder, splits)
        splits = _from_disk(folder) or splits  # mapped: private copies are then maps too
    return splits


def private(a: np.ndarray) -> np.ndarray:
    """A writable array of its own with ``a``'s contents, for one caller of load_data.

    From the array cache: a copy-on-write map of ``a``'s file (mode "c"), no copy made,
    pages shared until written, a write kept in this process's memory and never carried
    to the file. Otherwise a copy.
    """
    path = getattr(a, "filename", None)
    b = None
    if path:
        try:
            b = np.asarray(np.load(path, mmap_mode="c", allow_pickle=False))  # a plain ndarray: pickles as one
        except (OSError, ValueError):  # the cache folder was removed under us
            b = None
    if b is None or b.shape != a.shape or b.dtype != a.dtype:
        b = np.array(a)
    return b


def clear_cache() -> None:
    """Drops the arrays cached by load_data() in this process."""
    load_cached.cache_clear()
