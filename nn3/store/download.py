"""Fetching the data: the book's pickle, or the IDX files from a mirror, kept only when its hash is the known one.

    >>> from nn3.store import download
    >>> download.fetch("mnist", "data")        # doctest: +SKIP
    PosixPath('data/mnist.pkl.gz')

The library never touches the network unasked: ``load_data(download=True)``, the book's
mnist_loader and ``nn3 data --fetch`` call this. A file is streamed into a temporary
file beside its destination, hashed on the way, and moved into place only when the hash
matches; a mismatch deletes it and says so in one line.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

from nn3.store.sources import (
    ALGO_NAMES,
    BASE_URLS,
    HASHES,
    IDX_NAMES,
    PICKLE_NAME,
    DataError,
    HashMismatch,
    check_dataset,
    file_digest,
)

__all__ = ["fetch", "temp_beside"]


def temp_beside(dest: Path) -> tuple[int, str]:
    """A temp file in dest's folder (so os.replace is atomic), readable like any other file:
    its open descriptor and its path. The folder is made if missing."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.chmod(tmp, 0o644)
    return fd, tmp


def _fetch_file(url: str, dest: Path, want: str | None, progress: bool, timeout: float) -> None:
    """Streams ``url`` into a temp file beside ``dest``; moves it there if its hash is ``want``."""
    from tqdm import tqdm
    algo, hexd = want.split(":") if want else ("sha256", None)
    if dest.is_file() and hexd and file_digest(dest, algo) == hexd:
        return
    fd, tmp = temp_beside(dest)
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


def fetch(dataset: str = "mnist", dest: str | os.PathLike[str] | None = None, *,
          base_urls: dict[str, str] | None = None, progress: bool = True, timeout: float = 30.0) -> Path:
    """Downloads a dataset (hash-checked) into ``dest`` (default ./data, or
    ./data/fashion-mnist); returns the path to give load_data(). For MNIST it tries the
    book's pickle first, then the IDX files from the mirror.

    ``base_urls`` overrides entries of BASE_URLS; a failed download is a DataError, a
    file whose hash is not the known one a HashMismatch (the file is deleted)."""
    check_dataset(dataset)
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
