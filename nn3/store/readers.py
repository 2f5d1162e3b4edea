"""Reading the files and checking what they hold: the book's pickle (numpy arrays only) and IDX files.

    >>> import io, pickle, numpy as np
    >>> from nn3.store import readers
    >>> readers.NumpyUnpickler(io.BytesIO(pickle.dumps(np.arange(3)))).load()
    array([0, 1, 2])
    >>> readers.NumpyUnpickler(io.BytesIO(pickle.dumps(print))).load()
    Traceback (most recent call last):
    ...
    _pickle.UnpicklingError: refused global builtins.print

A pickle can run code when it is loaded: ours admits numpy arrays and the lists and
tuples holding them, nothing else. Every split is checked (shape, pixels in [0, 1],
labels 0-9) and comes out as float32 (N, 784) images and int64 (N,) labels.
"""
from __future__ import annotations

import gzip
import importlib
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

from nn3.store import sources
from nn3.store.sources import SPLITS, DataError, Source, SplitArrays

__all__ = ["NumpyUnpickler", "load_source"]


def _open(path: Path):
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _fault(path, e: Exception) -> DataError:
    if isinstance(e, DataError):
        return e
    gz = isinstance(e, (gzip.BadGzipFile, EOFError)) and "Ran out of input" not in str(e)
    gz = gz or type(e).__module__ == "zlib"
    what = "truncated or corrupt gzip data" if gz else "not a valid pickle"
    return DataError(f"{path}: {what} ({type(e).__name__}: {e})")


def _latin1_encode(text, encoding="latin1"):
    # Protocol-2 pickles written by Python 3 spell bytes as _codecs.encode(str, "latin1").
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _numpy_globals() -> dict:
    def pick(attr, *modules):
        for m in modules:
            try:
                return getattr(importlib.import_module(m), attr)
            except (ImportError, AttributeError):
                pass
        raise ImportError(attr)
    ma = ("numpy._core.multiarray", "numpy.core.multiarray")   # numpy 2 and numpy 1 spellings
    nu = ("numpy._core.numeric", "numpy.core.numeric")
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("_codecs", "encode"): _latin1_encode}
    for modules, names in ((ma, ("_reconstruct", "scalar")), (nu, ("_frombuffer",))):
        for name in names:
            fn = pick(name, *modules)
            allowed.update({(m, name): fn for m in modules})
    return allowed


class NumpyUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays, tuples, lists and nothing else."""
    allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        """The allowed global ``module.name``; any other is an UnpicklingError."""
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None


class _Chunked:
    """A file whose readinto fills big buffers a chunk at a time: a protocol-5 array
    then lands in its buffer directly, without a second full-size bytes object."""

    def __init__(self, f):
        self.f, self.read, self.readline = f, f.read, f.readline

    def readinto(self, buf):
        view, n = memoryview(buf).cast("B"), 0
        while n < len(view):
            got = self.f.readinto(view[n:n + (1 << 24)])
            if not got:
                break
            n += got
        return n


def _load_pickle(path: Path):
    try:
        with _open(path) as f:
            obj = NumpyUnpickler(_Chunked(f), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        if str(e).startswith("refused global"):
            raise DataError(f"{path}: {e}: only numpy arrays may be unpickled") from None
        raise _fault(path, e) from None
    except Exception as e:  # gzip, zlib, EOF, and whatever a malformed stream raises
        raise _fault(path, e) from None
    if not (isinstance(obj, (tuple, list)) and len(obj) == 3
            and all(isinstance(s, (tuple, list)) and len(s) == 2 for s in obj)):
        raise DataError(f"{path}: expected (training, validation, test), each (x, y); "
                        f"got {type(obj).__name__}")
    return [tuple(s) for s in obj]


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    try:
        with _open(path) as f:
            raw = f.read()
    except Exception as e:
        raise _fault(path, e) from None
    head = 4 + 4 * ndim
    if len(raw) < head or raw[:3] != b"\0\0\x08" or raw[3] != ndim:
        magic = raw[:4].hex() or "missing"
        raise DataError(f"{path}: bad IDX magic number 0x{magic}: expected 0x0000080{ndim} "
                        f"(unsigned bytes, {ndim}-D)")
    dims = struct.unpack(f">{ndim}I", raw[4:head])
    if ndim == 3 and dims[1:] != (28, 28):
        raise DataError(f"{path}: images are {dims[1]}x{dims[2]}, expected 28x28")
    if len(raw) != head + int(np.prod(dims)):
        raise DataError(f"{path}: {len(raw)} bytes but the header {dims} needs "
                        f"{head + int(np.prod(dims))} (truncated or padded)")
    return np.frombuffer(raw, np.uint8, offset=head).reshape(dims)


def _stacked(where: Path, name: str, x: Any, y: Any) -> tuple[Any, Any]:
    """``(x, y)`` with lists turned into arrays, checking every item.

    The book's expand_mnist.py pickles its training split as two lists, 250,000 images
    of shape (784,) and their numpy integer labels, not as arrays. We stack the images
    into one (N, 784) float32 array, dropping each list entry once copied, so that the
    peak stays near one copy of the images.
    """
    if isinstance(x, (list, tuple)):
        out = np.empty((len(x), 784), np.float32)
        for i, img in enumerate(x):
            if not (isinstance(img, np.ndarray) and img.shape in ((784,), (784, 1))
                    and np.issubdtype(img.dtype, np.floating)):
                what = f"{img.shape} {img.dtype} array" if isinstance(img, np.ndarray) else type(img).__name__
                raise DataError(f"{where}: {name} images[{i}] is a {what}, expected a float array of shape (784,)")
            out[i] = img.reshape(784)
            if isinstance(x, list):
                x[i] = None
        x = out
    if isinstance(y, (list, tuple)):
        for i, label in enumerate(y):
            if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)) or not 0 <= label <= 9:
                raise DataError(f"{where}: {name} labels[{i}] is {label!r}, expected an int 0-9")
        y = np.array(y, np.int64).reshape(len(y))
    return x, y


def _check_split(where: Path, name: str, x: Any, y: Any,
                 n: int | tuple[int | None, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Returns (x float32 (N, 784), y int64 (N,)) or raises DataError naming ``where``."""
    if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)):
        raise DataError(f"{where}: {name} split is not a pair of numpy arrays")
    if x.ndim != 2 or x.shape[1] != 784 or not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{where}: {name} images have shape {x.shape} {x.dtype}, "
                        f"expected (N, 784) float")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: {name} labels have shape {y.shape} {y.dtype}, expected (N,) int")
    if len(x) != len(y):
        raise DataError(f"{where}: {name} split has {len(x)} images but {len(y)} labels")
    n = (n,) if isinstance(n, int) else n
    if n is not None and len(x) not in n:
        raise DataError(f"{where}: {name} split has {len(x)} examples, "
                        f"expected {' or '.join(map(str, n))}")
    if len(x) and not (x.min() >= 0 and x.max() <= 1):   # False for NaN too
        raise DataError(f"{where}: {name} images have NaN or pixels outside [0, 1]")
    if len(y) and not (y.min() >= 0 and y.max() <= 9):
        raise DataError(f"{where}: {name} labels outside 0-9 (min {y.min()}, max {y.max()})")
    return np.asarray(x, np.float32), np.asarray(y, np.int64)


def _scale(imgs):
    x = imgs.reshape(len(imgs), 784).astype(np.float32)
    x *= np.float32(1 / 256)   # pixel/256 (not /255), exactly the book's pickle
    return x


def load_source(source: Source, sizes: tuple[int | None, ...] | None) -> SplitArrays:
    """The checked splits of ``source``, each (x float32 (N, 784), y int64 (N,)).

    ``sizes`` are the (training, validation, test) sizes expected; None: the standard
    ones (a pickle's training split may also be the expanded 5 x 50,000); a None entry
    takes any size but 0. From IDX files the validation split is the last ``sizes[1]``
    of the training file. Every fault is a DataError naming the file.
    """
    if source.kind == "pickle":
        where = source.files[0]
        splits = _load_pickle(where)
        n_train = sizes[0] if sizes else (sources.STANDARD_SIZES[0], 5 * sources.STANDARD_SIZES[0])  # 5x: expanded
        wanted = [n_train, *(sizes or sources.STANDARD_SIZES)[1:]]
        checked = tuple(_check_split(where, name, *_stacked(where, name, x, y), n)
                        for name, (x, y), n in zip(SPLITS, splits, wanted))
        empty = [name for name, (x, _) in zip(SPLITS, checked) if not len(x)]
        if empty:
            raise DataError(f"{where}: the {empty[0]} split is empty")
        return checked
    n_train, n_val, n_test = _idx_sizes(source.files[0].parent, sizes)
    ti, tl, ei, el = (_read_idx(p, 3 if "images" in p.name else 1) for p in source.files)
    files = source.files
    for imgs, labels, n, (pi, pl) in ((ti, tl, n_train + n_val, files[:2]),
                                      (ei, el, n_test, files[2:])):
        if len(imgs) != len(labels):
            raise DataError(f"{pi}: {len(imgs)} images but {len(labels)} labels in {pl.name}")
        if len(imgs) != n:
            raise DataError(f"{pi}: {len(imgs)} images, expected {n}")
        if len(labels) and labels.max() > 9:
            raise DataError(f"{pl}: labels outside 0-9 (max {labels.max()})")
    tx, ex = (_scale(i) for i in (ti, ei))
    tl, el = tl.astype(np.int64), el.astype(np.int64)
    return (_check_split(files[0], "training", tx[:n_train], tl[:n_train]),
            _check_split(files[0], "validation", tx[n_train:], tl[n_train:]),
            _check_split(files[2], "test", ex, el))


def _idx_sizes(where: Path, sizes: tuple[int | None, ...] | None) -> tuple[int, int, int]:
    """The (training, validation, test) sizes for IDX files: all three given, or the standard ones."""
    if sizes is None:
        return sources.STANDARD_SIZES
    n_train, n_val, n_test = sizes
    if n_train is None or n_val is None or n_test is None:
        raise DataError(f"{where}: IDX files need all three split sizes, got {sizes}")
    return n_train, n_val, n_test
