"""Where the data is: the datasets' file names and known hashes, the faults, and the search for the files.

    >>> from nn3.store import sources
    >>> sources.PICKLE_NAME, sources.STANDARD_SIZES
    ('mnist.pkl.gz', (50000, 10000, 10000))
    >>> sources.find_source("nowhere.pkl.gz")
    Traceback (most recent call last):
    ...
    nn3.store.sources.DataError: nowhere.pkl.gz: no such file or folder

The book's MNIST is one gzip'd pickle; the same split can be built from the four
canonical IDX files, which Fashion-MNIST also comes as. A path given by the user is taken
as it is; otherwise $NN3_DATA_DIR is searched, then ./data (Fashion-MNIST: their
fashion-mnist/ folders, then Debian's). Every fault is one ``DataError`` line naming the
file and what is wrong.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["ALGO_NAMES", "BASE_URLS", "DATASETS", "DEBIAN_FASHION_DIR", "HASHES", "IDX_NAMES", "PICKLE_NAME", "SPLITS",
           "STANDARD_SIZES", "DataError", "HashMismatch", "NotFound", "Source", "SplitArrays", "check_dataset",
           "file_digest", "find_source", "what"]

PICKLE_NAME = "mnist.pkl.gz"
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
STANDARD_SIZES = (50_000, 10_000, 10_000)   # training, validation, test
DATASETS = ("mnist", "fashion")
SPLITS = ("training", "validation", "test")
# What a load gives: (training, validation, test), each (x float32 (N, 784), y int64 (N,)).
SplitArrays = tuple[tuple[np.ndarray, np.ndarray], ...]
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

    def __init__(self, message: object):
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
        super().__init__(f"{looked}; put {what(dataset)} in {folder} "
                         f"or in $NN3_DATA_DIR{sub}; {how}")


class HashMismatch(DataError):
    """A file's hash is not the known one."""


@dataclass(frozen=True)
class Source:
    """Where a dataset was found: one pickle, or the four IDX files (in IDX_NAMES order)."""
    kind: str               # "pickle" | "idx"
    files: tuple[Path, ...]


def check_dataset(dataset: str) -> None:
    """A DataError unless ``dataset`` is one of DATASETS."""
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}: expected one of {', '.join(DATASETS)}")


def _in_dir(folder: Path, dataset: str) -> tuple[Source | None, str]:
    if dataset == "mnist" and (folder / PICKLE_NAME).is_file():
        return Source("pickle", (folder / PICKLE_NAME,)), ""
    found: list[Path] = []
    missing: list[str] = []
    for name in IDX_NAMES:
        hit = next((p for p in (folder / f"{name}.gz", folder / name) if p.is_file()), None)
        if hit is None:
            missing.append(f"{name}.gz")
        else:
            found.append(hit)
    if not missing:
        return Source("idx", tuple(found)), ""
    return None, f"{folder} (missing {', '.join(missing)})" if found else str(folder)


def _places(dataset: str) -> list[Path]:
    env = os.environ.get("NN3_DATA_DIR")
    bases = ([Path(env)] if env else []) + [Path("data")]
    if dataset == "mnist":
        return [b.absolute() for b in bases]
    return [(b / "fashion-mnist").absolute() for b in bases] + [DEBIAN_FASHION_DIR]


def find_source(path: str | os.PathLike[str] | None = None, dataset: str = "mnist") -> Source:
    """Finds the files: ``path`` (a pickle, an IDX file's folder, or a folder); else
    $NN3_DATA_DIR, ./data (for fashion: their fashion-mnist/ folders, then Debian's
    /usr/share/datasets/fashion-mnist). Raises DataError listing where it looked."""
    check_dataset(dataset)
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
            raise DataError(f"{note}: no {what(dataset)} there")
        return source
    looked = [] if os.environ.get("NN3_DATA_DIR") else ["$NN3_DATA_DIR (unset)"]
    for folder in _places(dataset):
        source, note = _in_dir(folder, dataset)
        if source:
            return source
        looked.append(note)
    raise NotFound(f"{dataset}: no data found (looked in {'; '.join(looked)})", dataset)


def what(dataset: str) -> str:
    """The files of ``dataset`` in words, for messages."""
    return (f"{PICKLE_NAME} or the four MNIST IDX files" if dataset == "mnist"
            else "the four Fashion-MNIST IDX files")


def file_digest(path: str | os.PathLike[str], algo: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
