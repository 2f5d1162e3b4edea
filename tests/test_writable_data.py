"""Tests that the data nn3 hands out is writable, as the book's was, and that a write
never reaches the array cache.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_writable_data.py -q

The book's scripts write into their data (blanking part of an image for a figure, say).
load_data() hands out copy-on-write maps of the cache's files; a façade network copies the
arrays it trains on to the device once.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle

import numpy as np
import pytest

from nn3 import mnist_loader, network3
from nn3.store import data, sources

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
    monkeypatch.setattr(sources, "STANDARD_SIZES", SIZES)
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


def test_a_network_copies_its_training_data_to_the_device_once(book_file, monkeypatch):
    """A façade holds the device copy of the arrays it last trained on, as the book's
    load_data_shared put the data on the GPU once: SGD on the same arrays again copies
    nothing; other arrays (a new copy, a slice) are copied anew."""
    from nn3.book import facade
    made = []
    real = facade.DeviceData.from_arrays
    monkeypatch.setattr(facade.DeviceData, "from_arrays", lambda *a, **k: made.append(1) or real(*a, **k))
    training, validation, test = network3.load_data_shared()
    net = network3.Network([network3.FullyConnectedLayer(784, 10), network3.SoftmaxLayer(10, 10)], 10, seed=0)
    net.SGD(training, 1, 10, 0.1, validation, test, verbose=False)
    first = net.examples(training)
    net.SGD(training, 1, 10, 0.1, validation, test, verbose=False)
    assert made == [1] and net.examples(training) is first
    assert net.examples((training[0], training[1])) is first  # the same two arrays in a new pair
    assert net.examples((np.array(training[0]), training[1])) is not first  # equal values, new arrays
    assert net.examples((training[0][:20], training[1][:20])).n == 20
