"""Chapter 6's expanded training set, and how a file that claims to be one is verified.

    >>> import numpy as np
    >>> from nn3.store import expanded
    >>> x, y = expanded.expand(np.zeros((2, 784), np.float32), np.array([3, 7]))
    >>> x.shape, sorted(y.tolist())
    ((10, 784), [3, 3, 3, 3, 3, 7, 7, 7, 7, 7])

Each image, then shifted one pixel up, down, left and right (zeros shifted in), shuffled.
No hash of such a file is published, so ``check_expanded`` verifies one by its derivation
from the verified original; ``check_hashes`` verifies any data file, sending a pickle that
is not the book's to it.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nn3.store import readers
from nn3.store.sources import (
    ALGO_NAMES,
    HASHES,
    PICKLE_NAME,
    SPLITS,
    DataError,
    HashMismatch,
    Source,
    SplitArrays,
    file_digest,
    find_source,
)

__all__ = ["SHIFTS", "check_expanded", "check_hashes", "expand"]

SHIFTS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))   # (rows down, columns right): the image, up, down, left, right


def _shift(imgs: np.ndarray, dr: int, dc: int, out: np.ndarray) -> None:
    """out = imgs moved dr rows down and dc columns right, zeros shifted in."""
    h, w = imgs.shape[1:]
    out.fill(0)
    out[:, max(dr, 0):h + min(dr, 0), max(dc, 0):w + min(dc, 0)] = \
        imgs[:, max(-dr, 0):h + min(-dr, 0), max(-dc, 0):w + min(-dc, 0)]


def expand(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The book's expanded training set: each image, then shifted one pixel up, down,
    left and right; shuffled by ``seed``.

    Args:
      x: float (N, 784) images.
      y: int (N,) labels.
      seed: seeds numpy's generator for the shuffle.

    Returns:
      (x float32 (5N, 784), y int64 (5N,)).
    """
    x, y = np.asarray(x, np.float32), np.asarray(y, np.int64)
    n = len(x)
    imgs = x.reshape(n, 28, 28)
    perm = np.random.default_rng(seed).permutation(5 * n)
    out_x, out_y = np.empty((5 * n, 784), np.float32), np.empty(5 * n, np.int64)
    moved = np.empty_like(imgs)
    # Scatter each copy straight to its shuffled rows: no second 5N array.
    for k, (dr, dc) in enumerate(SHIFTS):
        _shift(imgs, dr, dc, moved)
        rows = perm[k * n:(k + 1) * n]
        out_x[rows], out_y[rows] = moved.reshape(n, 784), y
    return out_x, out_y


def check_hashes(source: Source, dataset: str = "mnist", *, sizes: Sequence[int | None] | None = None) -> str:
    """Checks each file against HASHES; returns a note, or raises DataError on a mismatch.

    A pickle under another name than mnist.pkl.gz that is not the published file (an
    expanded set has no published hash) is checked by check_expanded instead; ``sizes``
    are its sizes, as for load_data.
    """
    known = HASHES[dataset]
    for p in source.files:
        want = known.get(PICKLE_NAME if source.kind == "pickle" else p.name)
        if want is None:
            raise HashMismatch(f"{p}: no known hash for this {dataset} file (only for "
                               f"{', '.join(known)})")
        algo, hexd = want.split(":")
        got = file_digest(p, algo)
        if got != hexd and source.kind == "pickle" and p.name != PICKLE_NAME:
            return check_expanded(p, dataset, sizes=sizes)
        if got != hexd:
            raise HashMismatch(f"{p}: {ALGO_NAMES[algo]} {got} does not match the known {hexd}")
    if len(source.files) == 1:
        return f"{ALGO_NAMES[algo]} {got} verified"
    return f"{ALGO_NAMES[algo]} of each file matches the published one"


def _read(source: Source, sizes: Sequence[int | None] | None) -> SplitArrays:
    """The splits of a file the caller named (its splits say how big they are, unless ``sizes`` does)."""
    if sizes is None and source.kind == "pickle":
        sizes = (None, None, None)
    return readers.load_source(source, tuple(sizes) if sizes is not None else None)


def _digests(x: np.ndarray, y: np.ndarray) -> list[bytes]:
    """The examples as a sorted list of digests of (image bits, label): a multiset, order-free."""
    return sorted(hashlib.blake2b(row.tobytes() + bytes([label]), digest_size=16).digest()
                  for row, label in zip(x, y.tolist()))


def _expanded_digests(x: np.ndarray, y: np.ndarray, chunk: int = 10_000) -> list[bytes]:
    """``_digests(*expand(x, y))``, without the 5N array."""
    out = []
    for a in range(0, len(x), chunk):
        imgs = x[a:a + chunk].reshape(-1, 28, 28)
        moved = np.empty_like(imgs)
        for dr, dc in SHIFTS:
            _shift(imgs, dr, dc, moved)
            out += _digests(moved.reshape(-1, 784), y[a:a + chunk])
    return sorted(out)


def check_expanded(path: str | os.PathLike[str], dataset: str = "mnist", *,
                   sizes: Sequence[int | None] | None = None) -> str:
    """Verifies an expanded set (write_expanded's, or the book's expand_mnist.py's) by
    its derivation, since no hash of it is published.

    The original is the mnist.pkl.gz beside ``path``, else the one nn3 finds; it
    must pass its own hash check. Then the expanded validation and test splits must be
    the original's, and its training split, in any order, exactly each original image
    with its label, and the image shifted one pixel up, down, left and right.

    Returns a note; raises HashMismatch naming what does not hold.
    """
    path = Path(path)
    beside = path.parent / PICKLE_NAME
    try:
        original = find_source(beside if beside.is_file() else None, dataset)
    except DataError as e:
        raise HashMismatch(f"{path}: no published hash for this file, and no original to check its "
                           f"derivation against ({e})") from None
    note = check_hashes(original, dataset)
    where = original.files[0] if original.kind == "pickle" else original.files[0].parent
    orig_sizes = None if sizes is None else (None if sizes[0] is None else sizes[0] // 5, *sizes[1:])
    (tx, ty), *rest = _read(find_source(path, dataset), sizes)
    (ox, oy), *orest = _read(original, orig_sizes)
    if len(tx) != 5 * len(ox):
        raise HashMismatch(f"{path}: no published hash for this file, and it is not the expanded set of "
                           f"{where} ({len(tx)} training examples, not 5 x {len(ox)})")
    for name, (x, y), (x0, y0) in zip(SPLITS[1:], rest, orest):
        if not (np.array_equal(x, x0) and np.array_equal(y, y0)):
            raise HashMismatch(f"{path}: its {name} split is not that of {where}")
    if _digests(tx, ty) != _expanded_digests(ox, oy):
        raise HashMismatch(f"{path}: its training examples are not exactly those of {where} "
                           f"and their one-pixel shifts up, down, left and right")
    return (f"no published hash; the expanded set of {where} ({note}): validation and test "
            f"identical, training = its {len(ox):,} examples and their four one-pixel shifts")
