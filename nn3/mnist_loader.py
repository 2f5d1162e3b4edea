"""The book's mnist_loader: load_data() and load_data_wrapper(), on top of nn3.store.data.

    >>> from nn3 import mnist_loader
    >>> training_data, validation_data, test_data = mnist_loader.load_data_wrapper()
    >>> x, y = training_data[0]            # (784, 1) float32 input, (10, 1) one-hot output
    >>> x, label = test_data[-1]           # (784, 1) input, int label
    >>> xs, ys = training_data.arrays()    # (50000, 784) float32, (50000,) int64

The book returned lists (Python 2) or zip objects (Python 3) of pairs. We return a
PairSequence instead: it holds the two arrays, builds each pair when it is asked for,
and can be iterated any number of times, so 50,000 small arrays never sit in memory
and the trainers can take the arrays as they are.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np

from nn3.store import data

__all__ = ["PairSequence", "load_data", "load_data_wrapper", "vectorized_result"]


class PairSequence(Sequence[tuple[np.ndarray, Any]]):
    """The book's list of ``(x, y)`` pairs, backed by arrays.

    Args:
      x: float32 (N, 784) images.
      y: int (N,) labels.
      one_hot: hand out ``y`` as a (10, 1) one-hot column (training data in the book)
        rather than as an int (validation and test data).
    """

    __slots__ = ("x", "y", "one_hot")

    def __init__(self, x: np.ndarray, y: np.ndarray, one_hot: bool = False):
        x, y = np.asarray(x, np.float32), np.asarray(y)
        if x.ndim != 2 or x.shape[1] != 784 or y.shape != (len(x),):
            raise ValueError(f"PairSequence: x {x.shape} and y {y.shape} are not (N, 784) and (N,)")
        self.x, self.y, self.one_hot = x, y, bool(one_hot)

    def __len__(self) -> int:
        return len(self.x)

    @overload
    def __getitem__(self, i: int) -> tuple[np.ndarray, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> PairSequence: ...

    def __getitem__(self, i: int | slice) -> tuple[np.ndarray, Any] | PairSequence:
        if isinstance(i, slice):
            return PairSequence(self.x[i], self.y[i], self.one_hot)
        x, y = self.x[i].reshape(784, 1), self.y[i]   # numpy handles negative i, IndexError
        return x, vectorized_result(y) if self.one_hot else int(y)

    def __iter__(self) -> Iterator[tuple[np.ndarray, Any]]:
        for i in range(len(self.x)):
            yield self[i]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Returns (x float32 (N, 784), y int (N,)): the labels, never one-hot."""
        return self.x, self.y

    def __repr__(self) -> str:
        return f"PairSequence({len(self)} pairs, one_hot={self.one_hot})"


def vectorized_result(j: int) -> np.ndarray:
    """A (10, 1) float32 column with 1.0 in row ``j``: the network's desired output for digit j."""
    e = np.zeros((10, 1), np.float32)
    e[j] = 1.0
    return e


def load_data(filename: str | os.PathLike[str] | None = None, *, dataset: str = "mnist",
              download: bool = True) -> data.SplitArrays:
    """The book's raw data: ``(training_data, validation_data, test_data)``.

    Each is a tuple ``(x, y)``: x float32 (N, 784) with pixels k/256, y int64 (N,);
    N = 50,000, 10,000, 10,000. ``filename`` is a pickle or a folder (see
    nn3.store.data.load_data); by default $NN3_DATA_DIR or ./data is searched and, as in the
    book where the file simply came with the code, the data is downloaded into ./data
    when it is in neither place (``download=False`` turns that off).
    """
    return data.load_data(filename, dataset, download=download)


def load_data_wrapper(filename: str | os.PathLike[str] | None = None, *, dataset: str = "mnist",
                      download: bool = True) -> tuple[PairSequence, PairSequence, PairSequence]:
    """The book's convenient form: ``(training_data, validation_data, test_data)``.

    Training pairs are ``(x, y)`` with x a (784, 1) column and y its one-hot (10, 1)
    column; validation and test pairs carry the int label instead. Each is a
    PairSequence, so ``.arrays()`` gives the (N, 784) and (N,) arrays back.
    """
    (tx, ty), (vx, vy), (ex, ey) = load_data(filename, dataset=dataset, download=download)
    return PairSequence(tx, ty, one_hot=True), PairSequence(vx, vy), PairSequence(ex, ey)
