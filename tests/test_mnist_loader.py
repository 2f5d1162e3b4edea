"""Tests for nn3.mnist_loader: the book's pairs, as a reusable sequence over arrays.

    python -m pytest tests/test_mnist_loader.py -q
"""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest

from nn3 import mnist_loader
from nn3.store import data, sources
from nn3.mnist_loader import PairSequence



SIZES = (50, 20, 10)


@pytest.fixture
def book_file(tmp_path, monkeypatch):
    """A small mnist.pkl.gz in ./data, taken as the standard size for the test."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NN3_DATA_DIR", raising=False)
    monkeypatch.setattr(sources, "STANDARD_SIZES", SIZES)
    data.clear_cache()
    rng = np.random.default_rng(0)
    splits = [(rng.integers(0, 256, (n, 784)).astype(np.float32) / 256,
               np.arange(n, dtype=np.int64) % 10) for n in SIZES]
    Path("data").mkdir()
    with gzip.open("data/mnist.pkl.gz", "wb", compresslevel=1) as f:
        pickle.dump(tuple(splits), f, protocol=4)
    return splits


def test_load_data_returns_the_raw_tuples(book_file):
    for (x, y), (bx, by) in zip(mnist_loader.load_data(download=False), book_file):
        assert x.dtype == np.float32 and y.dtype == np.int64
        np.testing.assert_array_equal(x, bx)
        np.testing.assert_array_equal(y, by)


def test_wrapper_shapes_and_pairs(book_file):
    training, validation, test = mnist_loader.load_data_wrapper(download=False)
    assert (len(training), len(validation), len(test)) == SIZES
    x, y = training[3]
    assert x.shape == (784, 1) and x.dtype == np.float32
    assert y.shape == (10, 1) and y.dtype == np.float32 and y[3, 0] == 1.0 and y.sum() == 1.0
    np.testing.assert_array_equal(x[:, 0], book_file[0][0][3])
    x, label = validation[-1]
    assert x.shape == (784, 1) and isinstance(label, int) and label == (20 - 1) % 10
    assert test[-10][1] == 0
    with pytest.raises(IndexError):
        test[10]
    xs, ys = training.arrays()
    assert xs.shape == (50, 784) and ys.shape == (50,)   # labels, not one-hot
    assert xs.flags.writeable                            # as the book's; a copy-on-write map
    assert xs is training.arrays()[0] and np.array_equal(xs, data.load_data()[0][0])  # held, not copied per call


def test_iterating_twice_gives_the_same_pairs():
    rng = np.random.default_rng(1)
    seq = PairSequence(rng.random((7, 784), dtype=np.float32), rng.integers(0, 10, 7), one_hot=True)
    first, second = list(seq), list(seq)
    assert len(first) == len(second) == 7
    for (x1, y1), (x2, y2) in zip(first, second):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    sub = seq[2:5]
    assert isinstance(sub, PairSequence) and len(sub) == 3 and sub.one_hot
    np.testing.assert_array_equal(sub[0][0], seq[2][0])
    assert [int(np.argmax(y)) for _, y in seq] == seq.arrays()[1].tolist()


def test_pair_sequence_rejects_bad_shapes():
    with pytest.raises(ValueError, match="not \\(N, 784\\) and \\(N,\\)"):
        PairSequence(np.zeros((3, 10)), np.zeros(3, int))
    with pytest.raises(ValueError):
        PairSequence(np.zeros((3, 784)), np.zeros(4, int))


def test_vectorized_result():
    e = mnist_loader.vectorized_result(7)
    assert e.shape == (10, 1) and e[7, 0] == 1.0 and e.sum() == 1.0


def test_real_wrapper(monkeypatch, real_mnist):
    monkeypatch.setenv("NN3_DATA_DIR", str(real_mnist))
    training, validation, test = mnist_loader.load_data_wrapper(download=False)
    assert (len(training), len(validation), len(test)) == (50_000, 10_000, 10_000)
    x, y = training[0]
    assert x.shape == (784, 1) and y.shape == (10, 1)
    assert int(np.argmax(y)) == 5 and test[0][1] == 7      # the first digits: a 5, and a 7
