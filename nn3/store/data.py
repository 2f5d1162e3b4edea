"""MNIST and Fashion-MNIST as numpy arrays: the book's mnist.pkl.gz or the IDX files, checked.

    >>> from nn3.store import data
    >>> (tx, ty), (vx, vy), (ex, ey) = data.load_data()      # $NN3_DATA_DIR, ./data
    >>> tx.shape, tx.dtype, ty.shape, ty.dtype
    ((50000, 784), dtype('float32'), (50000,), dtype('int64'))
    >>> data.write_expanded("data/mnist_expanded.pkl.gz")     # the book's 250,000 set  # doctest: +SKIP

The way in to the data, and ``nn3 data``. Files from outside are untrusted: pickles go
through an unpickler that admits only numpy arrays (nn3.store.readers), every split is
checked, a download is kept only when its hash matches (nn3.store.download), and an
expanded set, which has no published hash, is verified by its derivation from the
verified original (nn3.store.expanded). Arrays are float32 (N, 784) and int64 (N,), and
each call's are the caller's own, writable as the book's were (its scripts write into
them): from the array cache (nn3.store.cache) they are copy-on-write maps of its files,
which a write never reaches, so that a load maps rather than copies. The names a caller
needs from the modules beside this one are here too.
"""
from __future__ import annotations

import gzip
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nn3.store import readers
from nn3.store.cache import clear_cache as clear_cache
from nn3.store.cache import load_cached, private
from nn3.store.download import fetch as fetch
from nn3.store.download import temp_beside
from nn3.store.expanded import check_expanded as check_expanded
from nn3.store.expanded import check_hashes as check_hashes
from nn3.store.expanded import expand as expand
from nn3.store.readers import NumpyUnpickler as NumpyUnpickler
from nn3.store.sources import ALGO_NAMES, SPLITS
from nn3.store.sources import HASHES as HASHES
from nn3.store.sources import PICKLE_NAME as PICKLE_NAME
from nn3.store.sources import DataError as DataError
from nn3.store.sources import HashMismatch as HashMismatch
from nn3.store.sources import NotFound as NotFound
from nn3.store.sources import Source as Source
from nn3.store.sources import SplitArrays as SplitArrays
from nn3.store.sources import file_digest as file_digest
from nn3.store.sources import find_source as find_source

__all__ = ["HASHES", "PICKLE_NAME", "DataError", "HashMismatch", "NotFound", "NumpyUnpickler", "Source",
           "SplitArrays", "check_expanded", "check_hashes", "clear_cache", "describe", "expand", "fetch",
           "file_digest", "find_source", "load_data", "write_expanded"]


def load_data(path: str | os.PathLike[str] | None = None, dataset: str = "mnist", *, download: bool = False,
              sizes: Sequence[int | None] | None = None, verify: bool = False,
              base_urls: dict[str, str] | None = None, cache: bool = True) -> SplitArrays:
    """Loads (training, validation, test), each (x float32 (N, 784), y int64 (N,)).

    Args:
      path: a pickle (mnist.pkl.gz, mnist_expanded.pkl.gz), or a folder with one or with
        the four IDX files; None searches $NN3_DATA_DIR then ./data (see find_source).
      dataset: "mnist" or "fashion" (IDX files only).
      download: when nothing is found (and ``path`` is None), fetch into ./data. Off by
        default, so that the library never touches the network unasked; the book's
        mnist_loader and `nn3 data --fetch` turn it on.
      sizes: expected (training, validation, test) sizes; None means the standard
        (50000, 10000, 10000), with 250000 training examples also accepted from a pickle
        (the expanded set); a pickle named by ``path`` may have splits of any size but
        0 (a subset, a made-up set). From IDX files, validation is the
        last sizes[1] of the training file.
      verify: also require the files' hashes to match HASHES (an expanded set: its
        derivation from the verified original, see check_expanded).
      base_urls: overrides for BASE_URLS when downloading.
      cache: keep the last two loads in memory and the decoded arrays on disk
        ($NN3_DATA_CACHE), keyed by path and mtime. Either way each call's arrays are
        its own and writable; a write never reaches the cache.
    Returns:
      ((train_x, train_y), (val_x, val_y), (test_x, test_y)).

    Raises:
      DataError: no data found (NotFound), a hash that does not match (HashMismatch),
        or a file that is not what it claims; the message names the file.
    """
    source = _resolve(path, dataset, download, base_urls)
    if verify:
        check_hashes(source, dataset, sizes=sizes)
    wanted = tuple(sizes) if sizes is not None else None
    if wanted is None and path is not None and source.kind == "pickle":
        wanted = (None, None, None)   # the caller chose this file: its splits say how big they are
    if not cache:
        return readers.load_source(source, wanted)
    stamp = tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in source.files)
    shared = load_cached(Source(source.kind, tuple(p.resolve() for p in source.files)), wanted, stamp)
    return tuple((private(x), private(y)) for x, y in shared)


def _resolve(path: str | os.PathLike[str] | None, dataset: str, download: bool,
             base_urls: dict[str, str] | None) -> Source:
    try:
        return find_source(path, dataset)
    except NotFound as missing:
        if path is not None or not download:
            raise
        try:
            return find_source(fetch(dataset, base_urls=base_urls), dataset)
        except HashMismatch:
            raise
        except DataError as e:
            raise NotFound(missing.looked, dataset, str(e)) from None


def write_expanded(out_path: str | os.PathLike[str], source: str | os.PathLike[str] | None = None, *,
                   dataset: str = "mnist", seed: int = 0, sizes: Sequence[int | None] | None = None,
                   compresslevel: int = 4) -> Path:
    """Writes the book's mnist_expanded.pkl.gz: (expanded training, validation, test) as
    a gzip'd pickle (protocol 5) of plain arrays, through a temp file. ``source`` and
    ``sizes`` go to load_data(). The folder must exist. Needs about 1 GB of memory for
    MNIST."""
    out_path = Path(out_path)
    if out_path.is_dir():
        raise DataError(f"{out_path}: is a folder; give the file to write, e.g. {out_path / 'mnist_expanded.pkl.gz'}")
    if not out_path.parent.is_dir():
        raise DataError(f"{out_path.parent}: no such folder (to write {out_path.name} in)")
    training, validation, test = load_data(source, dataset, sizes=sizes)
    # Cached splits are memory maps; pickled as they are, they would name numpy.memmap,
    # which our own unpickler (rightly) refuses. Plain arrays pickle as arrays.
    validation, test = ((np.asarray(x), np.asarray(y)) for x, y in (validation, test))
    train_x, train_y = training
    expanded = expand(train_x, train_y, seed=seed)
    fd, tmp = temp_beside(out_path)
    try:
        with os.fdopen(fd, "wb") as raw, \
                gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=compresslevel) as f:
            pickle.dump((expanded, validation, test), f, protocol=5)
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out_path


def describe(path: str | os.PathLike[str] | None = None, dataset: str = "mnist", fetch: bool = False, *,
             sizes: Sequence[int | None] | None = None) -> list[str]:
    """The lines `nn3 data` prints: where the data is, whether its hash is the known
    one, and each split's size and ranges. Fetches first when ``fetch``; raises DataError."""
    source = _resolve(path, dataset, fetch, None)
    try:
        note = check_hashes(source, dataset, sizes=sizes)
    except HashMismatch:
        algo = "sha256" if source.kind == "pickle" else "md5"
        digest = file_digest(source.files[0], algo)[:16]
        note = (f"{ALGO_NAMES[algo]} {digest}... is not the published file's; checked by structure"
                + (", loaded with the numpy-only unpickler" if source.kind == "pickle" else ""))
    where = source.files[0] if source.kind == "pickle" else source.files[0].parent
    size = sum(p.stat().st_size for p in source.files)
    lines = [f"{dataset}: {where} ({source.kind}, {size:,} bytes; {note})"]
    splits = load_data(source.files[0], dataset, sizes=sizes)
    for name, (x, y) in zip(SPLITS, splits):
        lines.append(f"  {name:<10} {len(x):>7,} x {x.shape[1]} {x.dtype}, pixels "
                     f"[{x.min():.4g}, {x.max():.4g}], labels {y.min()}-{y.max()}, "
                     f"counts {np.bincount(y, minlength=10).tolist()}")
    return lines
