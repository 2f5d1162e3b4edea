"""MNIST and Fashion-MNIST as numpy arrays: the book's mnist.pkl.gz or the IDX files, checked.

    >>> from nn3.store import data
    >>> (tx, ty), (vx, vy), (ex, ey) = data.load_data()      # $NN3_DATA_DIR, ./data
    >>> tx.shape, tx.dtype, ty.shape, ty.dtype
    ((50000, 784), dtype('float32'), (50000,), dtype('int64'))
    >>> data.write_expanded("data/mnist_expanded.pkl.gz")     # the book's 250,000 set  # doctest: +SKIP

Files from outside are untrusted: pickles go through an unpickler that admits only
numpy arrays (and the lists and tuples holding them), every split is checked (shape,
pixels in [0, 1], labels 0-9), and a download is kept only when its hash matches. An
expanded set, which has no published hash, is verified by its derivation from the
verified original. Arrays are float32 (N, 784) and int64 (N,),
and each call's are the caller's own, writable as the book's were (its scripts write into
them): from the array cache they are copy-on-write maps of its files, which a write never
reaches, so that a load still takes milliseconds.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import importlib
import os
import pickle
import struct
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PICKLE_NAME = "mnist.pkl.gz"
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
STANDARD_SIZES = (50_000, 10_000, 10_000)   # training, validation, test
DATASETS = ("mnist", "fashion")
SPLITS = ("training", "validation", "test")
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
# Where fetch() downloads from; override per call with ``base_urls=``.
BASE_URLS = {
    "mnist": "https://raw.githubusercontent.com/mnielsen/neural-networks-and-deep-learning/master/data/",
    "mnist-idx": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion": "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
}
# "algo:hex". The pickle's SHA-256 is the book's file; the IDX files' MD5s are the sums
# published with the data (torchvision, Zalando). IDX bytes never run code: MD5 is
# there to catch damage, and their structure is checked on every load anyway.
ALGO_NAMES = {"sha256": "SHA-256", "md5": "MD5"}
HASHES = {
    "mnist": {
        PICKLE_NAME: "sha256:f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416",
        "train-images-idx3-ubyte.gz": "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "md5:d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "md5:9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "md5:ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion": {
        "train-images-idx3-ubyte.gz": "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "md5:25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "md5:bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "md5:bb300cfdad3c16e7a12a480ee83cd310",
    },
}


class DataError(ValueError):
    """A data file is missing or bad; the message is one line naming the file and the fault."""

    def __init__(self, message):
        super().__init__(" ".join(str(message).split()))


class NotFound(DataError):
    """No data in any of the places searched; the message says how to provide it."""

    def __init__(self, looked: str, dataset: str, download_error: str = ""):
        self.looked, self.dataset = looked, dataset
        folder = "./data/fashion-mnist/" if dataset == "fashion" else "./data/"
        how = "fetch it with `nn3 data --fetch` or load_data(download=True)"
        if download_error:
            how = f"download failed: {download_error}"
        sub = "/fashion-mnist/" if dataset == "fashion" else ""
        super().__init__(f"{looked}; put {_what(dataset)} in {folder} "
                         f"or in $NN3_DATA_DIR{sub}; {how}")


class HashMismatch(DataError):
    """A file's hash is not the known one."""


@dataclass(frozen=True)
class Source:
    """Where a dataset was found: one pickle, or the four IDX files (in IDX_NAMES order)."""
    kind: str               # "pickle" | "idx"
    files: tuple[Path, ...]


# ---------------------------------------------------------------- finding the files

def _check_dataset(dataset):
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}: expected one of {', '.join(DATASETS)}")


def _in_dir(folder: Path, dataset: str) -> tuple[Source | None, str]:
    if dataset == "mnist" and (folder / PICKLE_NAME).is_file():
        return Source("pickle", (folder / PICKLE_NAME,)), ""
    found, missing = [], []
    for name in IDX_NAMES:
        hit = next((p for p in (folder / f"{name}.gz", folder / name) if p.is_file()), None)
        (found if hit else missing).append(hit or f"{name}.gz")
    if not missing:
        return Source("idx", tuple(found)), ""
    return None, f"{folder} (missing {', '.join(missing)})" if found else str(folder)


def _places(dataset: str) -> list[Path]:
    env = os.environ.get("NN3_DATA_DIR")
    bases = ([Path(env)] if env else []) + [Path("data")]
    if dataset == "mnist":
        return [b.absolute() for b in bases]
    return [(b / "fashion-mnist").absolute() for b in bases] + [DEBIAN_FASHION_DIR]


def find_source(path=None, dataset="mnist") -> Source:
    """Finds the files: ``path`` (a pickle, an IDX file's folder, or a folder); else
    $NN3_DATA_DIR, ./data (for fashion: their fashion-mnist/ folders, then Debian's
    /usr/share/datasets/fashion-mnist). Raises DataError listing where it looked."""
    _check_dataset(dataset)
    if path is not None:
        path = Path(path)
        if path.is_file():
            if path.name.removesuffix(".gz") in IDX_NAMES:
                path = path.parent
            else:
                return Source("pickle", (path,))
        if not path.is_dir():
            raise DataError(f"{path}: no such file or folder")
        source, note = _in_dir(path, dataset)
        if source is None:
            raise DataError(f"{note}: no {_what(dataset)} there")
        return source
    looked = [] if os.environ.get("NN3_DATA_DIR") else ["$NN3_DATA_DIR (unset)"]
    for folder in _places(dataset):
        source, note = _in_dir(folder, dataset)
        if source:
            return source
        looked.append(note)
    raise NotFound(f"{dataset}: no data found (looked in {'; '.join(looked)})", dataset)


def _what(dataset):
    return (f"{PICKLE_NAME} or the four MNIST IDX files" if dataset == "mnist"
            else "the four Fashion-MNIST IDX files")


# ---------------------------------------------------------------- reading and checking

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

    def find_class(self, module, name):
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


def _stacked(where, name, x, y):
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


def _check_split(where, name, x, y, n=None):
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


def _load_source(source: Source, sizes) -> tuple:
    if source.kind == "pickle":
        where = source.files[0]
        splits = _load_pickle(where)
        n_train = sizes[0] if sizes else (STANDARD_SIZES[0], 5 * STANDARD_SIZES[0])  # 5x: expanded
        wanted = [n_train, *(sizes or STANDARD_SIZES)[1:]]
        checked = tuple(_check_split(where, name, *_stacked(where, name, x, y), n)
                        for name, (x, y), n in zip(SPLITS, splits, wanted))
        empty = [name for name, (x, _) in zip(SPLITS, checked) if not len(x)]
        if empty:
            raise DataError(f"{where}: the {empty[0]} split is empty")
        return checked
    n_train, n_val, n_test = sizes or STANDARD_SIZES
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


ARRAY_NAMES = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")


def _array_cache_dir() -> Path | None:
    """Where decoded arrays are kept between processes ($NN3_DATA_CACHE; empty: nowhere)."""
    where = os.environ.get("NN3_DATA_CACHE", str(Path.home() / ".cache" / "nn3" / "arrays"))
    return Path(where) if where else None


def _from_disk(folder: Path):
    """The six arrays decoded earlier, memory-mapped read-only; None when absent or unusable.

    These are shared (``_load_cached``); callers get copy-on-write maps (``_private``)."""
    try:
        arrays = [np.load(folder / f"{n}.npy", mmap_mode="r", allow_pickle=False) for n in ARRAY_NAMES]
    except (OSError, ValueError):
        return None
    return tuple((arrays[i], arrays[i + 1]) for i in (0, 2, 4))


def _to_disk(folder: Path, splits) -> None:
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
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)


@functools.lru_cache(maxsize=2)
def _load_cached(source: Source, sizes, _stamp) -> tuple:
    """Decoded splits, read-only: from memory, else from the array cache, else decoded.

    Decoding the book's pickle takes ~0.7 s (gzip + unpickling 220 MB); a process that
    finds the arrays already decoded maps them in a few ms. The cache is keyed by the
    files' paths, sizes and modification times, so a changed file is decoded (and checked)
    again.
    """
    root = _array_cache_dir()
    folder = None
    if root is not None:
        key = repr((source.kind, [str(p) for p in source.files], sizes, _stamp, 1))
        folder = root / hashlib.sha256(key.encode()).hexdigest()[:32]
        hit = _from_disk(folder)
        if hit is not None:
            return hit
    splits = _load_source(source, sizes)
    for arr in (a for split in splits for a in split):
        arr.setflags(write=False)
    if folder is not None:
        _to_disk(folder, splits)
        splits = _from_disk(folder) or splits  # mapped: private copies are then maps too
    return splits


def _private(a: np.ndarray) -> np.ndarray:
    """A writable array of its own with ``a``'s contents, for one caller of load_data.

    From the array cache: a copy-on-write map of ``a``'s file (mode "c"): a few ms,
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


def clear_cache():
    """Drops the arrays cached by load_data() in this process."""
    _load_cached.cache_clear()


def file_digest(path, algo="sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_hashes(source: Source, dataset="mnist", *, sizes=None) -> str:
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


def load_data(path=None, dataset="mnist", *, download=False, sizes=None, verify=False,
              base_urls=None, cache=True):
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
    """
    source = _resolve(path, dataset, download, base_urls)
    if verify:
        check_hashes(source, dataset, sizes=sizes)
    sizes = tuple(sizes) if sizes is not None else None
    if sizes is None and path is not None and source.kind == "pickle":
        sizes = (None, None, None)   # the caller chose this file: its splits say how big they are
    if not cache:
        return _load_source(source, sizes)
    stamp = tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in source.files)
    shared = _load_cached(Source(source.kind, tuple(p.resolve() for p in source.files)), sizes, stamp)
    return tuple((_private(x), _private(y)) for x, y in shared)


def _resolve(path, dataset, download, base_urls) -> Source:
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


# ---------------------------------------------------------------- downloading

def _temp_beside(dest: Path):
    """A temp file in dest's folder (so os.replace is atomic), readable like any other file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.chmod(tmp, 0o644)
    return fd, tmp


def _fetch_file(url: str, dest: Path, want: str | None, progress: bool, timeout: float):
    """Streams ``url`` into a temp file beside ``dest``; moves it there if its hash is ``want``."""
    from tqdm import tqdm
    algo, hexd = want.split(":") if want else ("sha256", None)
    if dest.is_file() and hexd and file_digest(dest, algo) == hexd:
        return
    fd, tmp = _temp_beside(dest)
    try:
        h = hashlib.new(algo)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as r:
            total = int(r.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name,
                      disable=not progress) as bar:
                for chunk in iter(lambda: r.read(1 << 20), b""):
                    out.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
        if hexd and h.hexdigest() != hexd:
            raise HashMismatch(f"{url}: {ALGO_NAMES[algo]} {h.hexdigest()} is not the known "
                               f"{hexd}; the file was refused and deleted")
        os.replace(tmp, dest)
    except OSError as e:   # URLError, HTTPError, timeouts, disk
        raise DataError(f"{url}: {getattr(e, 'reason', None) or e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fetch(dataset="mnist", dest=None, *, base_urls=None, progress=True, timeout=30.0) -> Path:
    """Downloads a dataset (hash-checked) into ``dest`` (default ./data, or
    ./data/fashion-mnist); returns the path to give load_data(). For MNIST it tries the
    book's pickle first, then the IDX files from the mirror."""
    _check_dataset(dataset)
    urls = {**BASE_URLS, **(base_urls or {})}
    dest = Path(dest) if dest else Path("data") / ("fashion-mnist" if dataset == "fashion" else "")
    known, errors = HASHES[dataset], []
    if dataset == "mnist":
        try:
            _fetch_file(urls["mnist"] + PICKLE_NAME, dest / PICKLE_NAME, known[PICKLE_NAME],
                        progress, timeout)
            return dest / PICKLE_NAME
        except HashMismatch:
            raise
        except DataError as e:
            errors.append(str(e))
    try:
        for name in IDX_NAMES:
            url = urls["mnist-idx" if dataset == "mnist" else "fashion"] + name + ".gz"
            _fetch_file(url, dest / f"{name}.gz", known.get(f"{name}.gz"), progress, timeout)
        return dest
    except HashMismatch:
        raise
    except DataError as e:
        raise DataError("; ".join(errors + [str(e)])) from None


# ---------------------------------------------------------------- the expanded set (chapter 6)

SHIFTS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))   # (rows down, columns right): the image, up, down, left, right


def _shift(imgs, dr, dc, out):
    """out = imgs moved dr rows down and dc columns right, zeros shifted in."""
    h, w = imgs.shape[1:]
    out.fill(0)
    out[:, max(dr, 0):h + min(dr, 0), max(dc, 0):w + min(dc, 0)] = \
        imgs[:, max(-dr, 0):h + min(-dr, 0), max(-dc, 0):w + min(-dc, 0)]


def expand(x, y, seed=0):
    """The book's expanded training set: each image, then shifted one pixel up, down,
    left and right; shuffled by ``seed``.

    Args:
      x: float (N, 784) images; y: int (N,) labels.
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


def write_expanded(out_path, source=None, *, dataset="mnist", seed=0, sizes=None,
                   compresslevel=4) -> Path:
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
    validation, test = (tuple(np.asarray(a) for a in split) for split in (validation, test))
    expanded = expand(*training, seed=seed)
    fd, tmp = _temp_beside(out_path)
    try:
        with os.fdopen(fd, "wb") as raw, \
                gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=compresslevel) as f:
            pickle.dump((expanded, validation, test), f, protocol=5)
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out_path


def _digests(x, y) -> list[bytes]:
    """The examples as a sorted list of digests of (image bits, label): a multiset, order-free."""
    return sorted(hashlib.blake2b(row.tobytes() + bytes([label]), digest_size=16).digest()
                  for row, label in zip(x, y.tolist()))


def _expanded_digests(x, y, chunk=10_000) -> list[bytes]:
    """``_digests(*expand(x, y))``, without the 5N array."""
    out = []
    for a in range(0, len(x), chunk):
        imgs = x[a:a + chunk].reshape(-1, 28, 28)
        moved = np.empty_like(imgs)
        for dr, dc in SHIFTS:
            _shift(imgs, dr, dc, moved)
            out += _digests(moved.reshape(-1, 784), y[a:a + chunk])
    return sorted(out)


def check_expanded(path, dataset="mnist", *, sizes=None) -> str:
    """Verifies an expanded set (write_expanded's, or the book's expand_mnist.py's) by
    its derivation, since no hash of it is published.

    The original is the mnist.pkl.gz beside ``path``, else the one load_data finds; it
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
    orig_sizes = None if sizes is None else (sizes[0] // 5, *sizes[1:])
    (tx, ty), *rest = load_data(path, dataset, sizes=sizes)
    (ox, oy), *orest = load_data(original.files[0], dataset, sizes=orig_sizes)
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


# ---------------------------------------------------------------- `nn3 data`

def describe(path=None, dataset="mnist", fetch=False, *, sizes=None) -> list[str]:
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
