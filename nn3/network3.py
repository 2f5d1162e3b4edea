"""Chapter 6's network3.py without Theano: conv-pool, fully connected and softmax layers.

    >>> from nn3 import network3
    >>> from nn3.network3 import Network, ConvPoolLayer, FullyConnectedLayer, SoftmaxLayer, ReLU
    >>> training_data, validation_data, test_data = network3.load_data_shared()
    >>> mini_batch_size = 10
    >>> net = Network([
    ...     ConvPoolLayer(image_shape=(mini_batch_size, 1, 28, 28), filter_shape=(20, 1, 5, 5),
    ...                   poolsize=(2, 2), activation_fn=ReLU),
    ...     FullyConnectedLayer(n_in=20*12*12, n_out=100, activation_fn=ReLU),
    ...     SoftmaxLayer(n_in=100, n_out=10)], mini_batch_size)
    >>> net.SGD(training_data, 60, mini_batch_size, 0.03, validation_data, test_data, lmbda=0.1)  # doctest: +SKIP

The book's scripts run with only their import lines changed. Where the book needed a
GPU flag, we run wherever JAX runs. The training data is not reshuffled between
epochs, as in the book (``shuffle=True`` turns that on); a data set whose size is not
a multiple of the mini-batch size loses its last partial batch in training, as the
book's integer division did, and none in evaluation. Without ``seed=``, the seed is
drawn from numpy's global generator, as in nn3.network.
"""
# ruff: noqa: N802, N803
from __future__ import annotations

import numpy as np

from nn3 import data as _data
from nn3 import layers, train
from nn3.facade import Facade, whole_number
from nn3.activations import linear, relu as ReLU, sigmoid, tanh  # noqa: F401  the book's names

_ACTIVATION_NAMES = {sigmoid: "sigmoid", tanh: "tanh", ReLU: "ReLU", linear: "linear"}


def _activation_name(fn):
    if isinstance(fn, str) and fn in ("sigmoid", "tanh", "ReLU", "linear"):
        return fn
    try:
        return _ACTIVATION_NAMES[fn]
    except (KeyError, TypeError):
        raise ValueError(f"unknown activation_fn {fn!r}: use network3's sigmoid, tanh, ReLU or linear") from None


class FullyConnectedLayer:
    """``n_in`` to ``n_out`` neurons; with ``p_dropout`` its inputs are dropped in training."""

    def __init__(self, n_in, n_out, activation_fn=sigmoid, p_dropout=0.0):
        self.n_in, self.n_out, self.activation_fn, self.p_dropout = n_in, n_out, activation_fn, p_dropout

    def spec(self):
        return {"type": "FullyConnectedLayer", "n_in": int(self.n_in), "n_out": int(self.n_out),
                "activation_fn": _activation_name(self.activation_fn), "p_dropout": float(self.p_dropout)}


class ConvPoolLayer:
    """A valid convolution of ``filter_shape`` over ``image_shape``, then max-pooling."""

    def __init__(self, filter_shape, image_shape, poolsize=(2, 2), activation_fn=sigmoid):
        self.filter_shape, self.image_shape = filter_shape, image_shape
        self.poolsize, self.activation_fn = poolsize, activation_fn

    def spec(self):
        return {"type": "ConvPoolLayer", "filter_shape": [int(v) for v in self.filter_shape],
                "image_shape": [int(v) for v in self.image_shape],
                "poolsize": [int(v) for v in self.poolsize],
                "activation_fn": _activation_name(self.activation_fn)}


class SoftmaxLayer:
    """The output layer: softmax over ``n_out`` classes, trained by log-likelihood."""

    def __init__(self, n_in, n_out, p_dropout=0.0):
        self.n_in, self.n_out, self.p_dropout = n_in, n_out, p_dropout

    def spec(self):
        return {"type": "SoftmaxLayer", "n_in": int(self.n_in), "n_out": int(self.n_out),
                "p_dropout": float(self.p_dropout)}


def load_data_shared(filename=None):
    """``[training, validation, test]``, each an ``(x, y)`` pair of numpy arrays.

    With no ``filename``, nn3's usual search (``$NN3_DATA_DIR``, ``./data``, download).
    The book's ``mnist_expanded.pkl.gz`` is read the same way when a script names it.
    """
    return list(_data.load_data(filename, download=filename is None))


def size(data):
    """The number of examples in an ``(x, y)`` data set (the book's helper)."""
    return len(data[0])


class Network(Facade):
    """The book's ``Network(layers, mini_batch_size)``."""

    style = "network3"
    init = "network3"

    def __init__(self, layers_, mini_batch_size, seed=None, cost="LogLikelihoodCost"):
        specs = [l.spec() if hasattr(l, "spec") else dict(l) for l in layers_]
        if not isinstance(mini_batch_size, (int, np.integer)) or mini_batch_size < 1:
            raise ValueError(f"Network: mini_batch_size must be a positive integer, got {mini_batch_size!r}")
        self.layers = list(layers_)
        self.mini_batch_size = int(mini_batch_size)
        self._build({"layers": specs, "cost": cost}, seed)

    @property
    def params(self):
        """Per-layer ``{"w", "b"}`` numpy arrays in nn3's layouts (a copy)."""
        return layers.get_params(self.engine)

    def SGD(self, training_data, epochs, mini_batch_size, eta, validation_data, test_data,
            lmbda=0.0, *, shuffle=False, augment="none", early_stopping=None, eta_fn=None,
            momentum=0.0, verbose=True):
        """Train, printing the book's lines; returns the best validation accuracy.

        ``augment`` is nn3's: ``"expand"`` trains on the book's expanded data made on the
        fly (each image and its four one-pixel shifts), ``"affine"`` on small random
        rotations, skews and shifts. ``eta_fn(epoch)`` sets eta per epoch.
        """
        if mini_batch_size != self.mini_batch_size:
            raise ValueError(f"SGD: mini_batch_size {mini_batch_size} differs from the network's "
                             f"{self.mini_batch_size}")
        epochs = whole_number(epochs, "epochs")
        say = print if verbose else (lambda *a: None)
        training_data = train.as_arrays(training_data)  # once: the trainer takes the arrays as they are
        n_batches = len(training_data[1]) * (5 if augment == "expand" else 1) // self.mini_batch_size
        cfg = train.SGDConfig(epochs=self.loop.epoch + epochs, mini_batch_size=self.mini_batch_size, eta=eta,
                              lmbda=lmbda, l2="batch", shuffle=shuffle, drop_remainder=True, augment=augment,
                              early_stopping=early_stopping, momentum=momentum, seed=self.seed,
                              # a chunk per 1000 mini-batches: the book's progress lines appear on time
                              chunks=max(1, n_batches // 1000))
        done = [self.loop.step]

        def progress(n):
            # The book prints this every 1000 mini-batches; we print after each compiled chunk.
            for it in range((done[0] + 999) // 1000 * 1000, done[0] + n, 1000):
                say(f"Training mini-batch number {it}")
            done[0] += n

        self._fit(cfg, training_data, validation_data, test_data, eta_fn=eta_fn,
                  on_epoch=self._print_epoch(self.loop.epoch, say=say), on_progress=progress)
        best = self.best()
        say("Finished training network.")
        if best:
            say(f"Best validation accuracy of {best['validation_accuracy']:.2%} obtained at iteration "
                f"{best['step'] - 1}")
            if test_data is not None:
                say(f"Corresponding test accuracy of {best['test_accuracy']:.2%}")
        return best["validation_accuracy"] if best else None

    def best(self):
        """The record of the epoch with the best validation accuracy so far, or None."""
        for r in self.loop.history:
            if r["epoch"] == self.loop.best_epoch:
                return r
        return None

    def accuracy(self, data):
        """The fraction of ``data`` classified right (the chapter-6 exercise)."""
        right, _, n = train.evaluate(self.engine, data)
        return right / n

    def predict(self, x):
        """The predicted digit for each row of ``x`` (N, 784)."""
        return train.predict(self.engine, x)
