"""Tests that the data nn3 hands out is writable, as the book's was, and that a write
never reaches the array cache.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_writable_data.py -q

The book's scripts write into their data (blanking part of an image for a figure, say).
load_data() hands out copy-on-write maps of the cache's files; the trainers still reuse
the device copy of data that nobody changed.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle

import numpy as np
import pytest

from nn3 import mnist_loader, network3
from nn3.store import data
from nn3.engine import train

SIZES = (50, 10, 10)


@pytest.fixture
def book_file(tmp_path, monkeypatch):
    """A small mnist.pkl.gz in $NN3_DATA_DIR, taken for the standard sizes; a fresh array cache."""
    rng = np.random.default_rng(3)
    n = sum(SIZES)
    x = rng.integers(0, 256, (n, 784)).astype(np.float32) / 256
    y = rng.integers(0, 10, n).astype(np.int64)
    splits = ((x[:50], y[:50]), (x[50:60], y[50:60]), (x[60:], y[60:]))
    (tmp_path / "data").mkdir()
    with gzip.open(tmp_path / "data" / "mnist.pkl.gz", "wb", compresslevel=1) as f:
        pickle.dump(splits, f, protocol=2)
    monkeypatch.setattr(data, "STANDARD_SIZES", SIZES)
    monkeypatch.setenv("NN3_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NN3_DATA_CACHE", str(tmp_path / "arrays"))
    data.clear_cache()
    yield splits
    data.clear_cache()


def cache_bytes(tmp_path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "arrays").rglob("*.npy")}


@pytest.mark.parametrize("process", ["first", "later"])  # decoded now, or mapped from the cache
def test_load_data_is_writable_and_the_cache_is_unchanged(tmp_path, book_file, process):
    if process == "later":
        data.load_data()
        data.clear_cache()
    (tx, ty), (vx, vy), (ex, ey) = data.load_data()
    before = cache_bytes(tmp_path)
    assert len(before) == 6
    for a in (tx, ty, vx, vy, ex, ey):
        assert a.flags.writeable and type(a) is np.ndarray
    tx[0, :392] = 0.0  # the book's kind of write: blank half an image
    ty[:] = 7
    ex *= 0.5
    assert tx[0, :392].max() == 0.0 and (ty == 7).all()
    assert cache_bytes(tmp_path) == before
    (tx2, ty2), _, (ex2, _) = data.load_data()  # the next caller gets the data as it was
    np.testing.assert_array_equal(tx2, book_file[0][0])
    np.testing.assert_array_equal(ty2, book_file[0][1])
    np.testing.assert_array_equal(ex2, book_file[2][0])
    del tx, ty, ex
    data.clear_cache()
    assert cache_bytes(tmp_path) == before
    np.testing.assert_array_equal(data.load_data()[0][0], book_file[0][0])


def test_handed_out_arrays_pickle_as_plain_arrays(book_file):
    (tx, ty), _, _ = data.load_data()
    raw = pickle.dumps((tx, ty), protocol=2)
    x, y = data.NumpyUnpickler(io.BytesIO(raw)).load()  # nn3's own reader takes them back
    np.testing.assert_array_equal(x, book_file[0][0])


def test_the_book_loaders_hand_out_writable_data(tmp_path, book_file):
    training_data, validation_data, test_data = mnist_loader.load_data_wrapper()
    x, y = training_data[0]
    x[:14] = 1.0  # a (784, 1) column of the first image
    assert training_data.x[0, :14].min() == 1.0
    validation_data.x[1] = 0.0
    (sx, sy), (svx, svy), (sex, sey) = network3.load_data_shared()
    sx[2] = 0.0
    sey[0] = 3
    before = cache_bytes(tmp_path)
    (rx, _), (rvx, _), _ = mnist_loader.load_data()
    rx[3, 0] = 0.5
    assert cache_bytes(tmp_path) == before
    np.testing.assert_array_equal(rvx, book_file[1][0])


def test_unchanged_copies_share_one_device_copy(book_file):
    (a, _), _, _ = data.load_data()
    (b, _), _, _ = data.load_data()
    assert a is not b and a.flags.writeable
    first = train._on_device(a, compact=True)
    assert train._on_device(b, compact=True) is first  # a second SGD call: no new copy
    b[0, 0] = 0.5 if b[0, 0] != 0.5 else 0.25
    changed = train._on_device(b, compact=True)
    assert changed is not first
    assert float(train._pixels(changed)[0, 0]) == float(b[0, 0])
    b[0, 0] = a[0, 0]  # written back as it was: the same bits again
    assert train._on_device(b, compact=True) is first
    mine = np.array(a)
    assert data.shared_original(mine) is mine  # an array load_data did not hand out is itself
    # A script's reshape of unchanged loaded data (bench_mlp's x.reshape(len(x), -1)) shares it too;
    # a part of it does not.
    assert train._on_device(b.reshape(len(b), -1), compact=True) is first
    assert data.shared_original(b[:10]) is not None and train._on_device(b[:10], compact=True) is not first
