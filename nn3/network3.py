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
    >>> nets = network3.train_ensemble(lambda: [FullyConnectedLayer(784, 100), SoftmaxLayer(100, 10)], 5,
    ...     training_data, 40, mini_batch_size, 0.03, validation_data, test_data)  # doctest: +SKIP
    >>> nets.accuracy(test_data), nets.members[0].best()  # doctest: +SKIP

The book's scripts run with only their import lines changed. Where the book needed a
GPU flag, we run wherever JAX runs. The training data is not reshuffled between
epochs, as in the book (``shuffle=True`` turns that on); a data set whose size is not
a multiple of the mini-batch size loses its last partial batch in training, as the
book's integer division did, and none in evaluation. Without ``seed=``, the seed is
drawn from numpy's global generator, as in nn3.network.

``train_ensemble`` trains several such networks in one program, each as it would train
alone, and gives them back voting (the book's ensemble of five, chapter 6).
"""
# ruff: noqa: N802, N803
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nn3.book.facade import Ensemble, Facade, epoch_lines, members_line, whole_number
from nn3.engine import evaluation, layers
from nn3.engine.activations import FUNCTIONS, linear, sigmoid, tanh
from nn3.engine.activations import relu as ReLU  # noqa: N812  the book's name
from nn3.engine.device_data import DeviceData
from nn3.engine.settings import SGDConfig
from nn3.engine.spec import ACTIVATIONS
from nn3.engine.train import RunState, Splits, best_record, fit
from nn3.engine.trainer import Trainer
from nn3.store import data as _data

__all__ = ["ConvPoolLayer", "FullyConnectedLayer", "Network", "ReLU", "SoftmaxLayer", "linear", "load_data_shared",
           "sigmoid", "size", "tanh", "train_ensemble"]

_ACTIVATION_NAMES = {FUNCTIONS[name]: name for name in ACTIVATIONS}


def _activation_name(fn: Any) -> str:
    if isinstance(fn, str) and fn in ACTIVATIONS:
        return fn
    try:
        return _ACTIVATION_NAMES[fn]
    except (KeyError, TypeError):
        raise ValueError(f"unknown activation_fn {fn!r}: use network3's sigmoid, tanh, ReLU or linear") from None


class FullyConnectedLayer:
    """``n_in`` to ``n_out`` neurons; with ``p_dropout`` its inputs are dropped in training."""

    def __init__(self, n_in: int, n_out: int, activation_fn: Callable = sigmoid, p_dropout: float = 0.0):
        self.n_in, self.n_out, self.activation_fn, self.p_dropout = n_in, n_out, activation_fn, p_dropout

    def spec(self) -> dict:
        """The layer as nn3's JSON-able spec dict (nn3.engine.spec)."""
        return {"type": "FullyConnectedLayer", "n_in": int(self.n_in), "n_out": int(self.n_out),
                "activation_fn": _activation_name(self.activation_fn), "p_dropout": float(self.p_dropout)}


class ConvPoolLayer:
    """A valid convolution of ``filter_shape`` over ``image_shape``, then max-pooling."""

    def __init__(self, filter_shape: Sequence[int], image_shape: Sequence[int], poolsize: Sequence[int] = (2, 2),
                 activation_fn: Callable = sigmoid):
        self.filter_shape, self.image_shape = filter_shape, image_shape
        self.poolsize, self.activation_fn = poolsize, activation_fn

    def spec(self) -> dict:
        """The layer as nn3's JSON-able spec dict (nn3.engine.spec)."""
        return {"type": "ConvPoolLayer", "filter_shape": [int(v) for v in self.filter_shape],
                "image_shape": [int(v) for v in self.image_shape],
                "poolsize": [int(v) for v in self.poolsize],
                "activation_fn": _activation_name(self.activation_fn)}


class SoftmaxLayer:
    """The output layer: softmax over ``n_out`` classes, trained by log-likelihood."""

    def __init__(self, n_in: int, n_out: int, p_dropout: float = 0.0):
        self.n_in, self.n_out, self.p_dropout = n_in, n_out, p_dropout

    def spec(self) -> dict:
        """The layer as nn3's JSON-able spec dict (nn3.engine.spec)."""
        return {"type": "SoftmaxLayer", "n_in": int(self.n_in), "n_out": int(self.n_out),
                "p_dropout": float(self.p_dropout)}


def load_data_shared(filename: str | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[training, validation, test]``, each an ``(x, y)`` pair of numpy arrays.

    With no ``filename``, nn3's usual search (``$NN3_DATA_DIR``, ``./data``, download).
    The book's ``mnist_expanded.pkl.gz`` is read the same way when a script names it.
    """
    return list(_data.load_data(filename, download=filename is None))


def size(data: tuple[np.ndarray, np.ndarray]) -> int:
    """The number of examples in an ``(x, y)`` data set (the book's helper)."""
    return len(data[0])


def _config(epochs: int, mini_batch_size: int, eta: float, lmbda: float, n_train: int, **kw: Any) -> SGDConfig:
    """The SGDConfig of ``Network.SGD`` (and of each network of ``train_ensemble``)."""
    n_batches = n_train * (5 if kw.get("augment") == "expand" else 1) // mini_batch_size
    return SGDConfig(epochs=epochs, mini_batch_size=mini_batch_size, eta=eta, lmbda=lmbda, l2="batch",
                     drop_remainder=True, **kw,
                     # a chunk per 1000 mini-batches: the book's progress lines appear on time
                     chunks=max(1, n_batches // 1000))


def _progress(step: int, say: Callable[[str], object]) -> Callable[[int], None]:
    """An ``on_progress`` callback that prints the book's line every 1000 mini-batches."""
    done = [step]

    def progress(n: int) -> None:
        # The book prints this every 1000 mini-batches; we print after each compiled chunk.
        for it in range((done[0] + 999) // 1000 * 1000, done[0] + n, 1000):
            say(f"Training mini-batch number {it}")
        done[0] += n
    return progress


class Network(Facade):
    """The book's ``Network(layers, mini_batch_size)``."""

    style = "network3"
    init = "network3"

    def __init__(self, layers_: Sequence[Any], mini_batch_size: int, seed: int | None = None,
                 cost: str = "LogLikelihoodCost"):
        specs = [layer.spec() if hasattr(layer, "spec") else dict(layer) for layer in layers_]
        if not isinstance(mini_batch_size, (int, np.integer)) or mini_batch_size < 1:
            raise ValueError(f"Network: mini_batch_size must be a positive integer, got {mini_batch_size!r}")
        self.layers = list(layers_)
        self.mini_batch_size = int(mini_batch_size)
        self._build({"layers": specs, "cost": cost}, seed)

    @property
    def params(self) -> list[dict[str, np.ndarray]]:
        """Per-layer ``{"w", "b"}`` numpy arrays in nn3's layouts (a copy)."""
        return layers.get_params(self.engine)

    def SGD(self, training_data: Any, epochs: int, mini_batch_size: int, eta: float, validation_data: Any,
            test_data: Any, lmbda: float = 0.0, *, shuffle: bool = False, augment: str = "none",
            early_stopping: int | None = None, eta_fn: Callable[[int], float] | None = None,
            momentum: float = 0.0, verbose: bool = True) -> float | None:
        """Train, printing the book's lines; returns the best validation accuracy.

        ``augment`` is nn3's: ``"expand"`` trains on the book's expanded data made on the
        fly (each image and its four one-pixel shifts), ``"affine"`` on small random
        rotations, skews and shifts. ``eta_fn(epoch)`` sets eta per epoch.
        """
        if mini_batch_size != self.mini_batch_size:
            raise ValueError(f"SGD: mini_batch_size {mini_batch_size} differs from the network's "
                             f"{self.mini_batch_size}")
        epochs = whole_number(epochs, "epochs")
        say: Callable[[str], object] = print if verbose else (lambda line: None)
        cfg = _config(self.loop.epoch + epochs, self.mini_batch_size, eta, lmbda, self.examples(training_data).n,
                      shuffle=shuffle, augment=augment, early_stopping=early_stopping, momentum=momentum,
                      seed=self.seed)
        self._fit(cfg, training_data, validation_data, test_data, eta_fn=eta_fn,
                  on_epoch=self._print_epoch(self.loop.epoch, say=say), on_progress=_progress(self.loop.step, say))
        best = self.best()
        say("Finished training network.")
        if best:
            say(f"Best validation accuracy of {best['validation_accuracy']:.2%} obtained at iteration "
                f"{best['step'] - 1}")
            if test_data is not None:
                say(f"Corresponding test accuracy of {best['test_accuracy']:.2%}")
        return best["validation_accuracy"] if best else None

    def best(self) -> dict | None:
        """The record of the epoch with the best validation accuracy so far, or None."""
        return best_record(self.loop)

    def accuracy(self, data: Any) -> float:
        """The fraction of ``data`` classified right (the chapter-6 exercise)."""
        right, _, n = evaluation.evaluate(self.engine, data)
        return right / n

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The predicted digit for each row of ``x`` (N, 784): (N,) ints."""
        return evaluation.predict(self.engine, x)


def train_ensemble(layers_fn: Callable[[], Sequence[Any]], n: int, training_data: Any, epochs: int,
                   mini_batch_size: int, eta: float, validation_data: Any, test_data: Any, lmbda: float = 0.0, *,
                   seeds: Sequence[int] | None = None, shuffle: bool = False, augment: str = "none",
                   early_stopping: int | None = None, momentum: float = 0.0, each: bool = True,
                   verbose: bool = True) -> Ensemble:
    """Train ``n`` networks at once, as the book trains its five voting nets one by one;
    returns a ``facade.Ensemble`` (its ``members``, each a ``Network``, and the vote).

    ``layers_fn()`` gives one network's layer list (called ``n`` times, as the book's
    scripts build a ``Network``); the other arguments are ``SGD``'s. ``seeds`` gives each
    network's seed (default: drawn from numpy's global generator, as ``Network`` draws
    one). The networks run in one compiled program (nn3.engine.trainer, as ``nn3 train
    --members``), and network ``i`` ends exactly as ``Network(layers_fn(),
    mini_batch_size, seed=seeds[i]).SGD(...)`` would alone. After each epoch we print
    each network's lines with ``Network i:`` in front (``each=False``: one line of every
    network's accuracy), then the vote's.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"train_ensemble: n must be a positive integer, got {n!r}")
    if seeds is not None and len(seeds) != n:
        raise ValueError(f"train_ensemble: {len(seeds)} seeds for {n} networks")
    nets = [Network(layers_fn(), mini_batch_size, seed=s) for s in (list(seeds) if seeds is not None else [None] * n)]
    for i, net in enumerate(nets[1:], 1):
        if net.engine.spec != nets[0].engine.spec:
            raise ValueError(f"train_ensemble: layers_fn() built network {i} unlike network 0; "
                             "the networks of an ensemble share one architecture")
    epochs = whole_number(epochs, "epochs")
    say: Callable[[str], object] = print if verbose else (lambda line: None)
    examples = DeviceData.from_arrays(*evaluation.as_arrays(training_data, nets[0].engine.n_in, nets[0].engine.n_out))
    cfgs = [_config(epochs, mini_batch_size, eta, lmbda, examples.n, shuffle=shuffle, augment=augment,
                    early_stopping=early_stopping, momentum=momentum, seed=net.seed) for net in nets]
    trainer = Trainer([net.engine for net in nets], cfgs, examples)

    def report(record: dict, loop: Any, tr: Any) -> None:
        if each:
            for i, r in enumerate(record["members"]):
                for line in epoch_lines(r, "network3") if r is not None else ():
                    say(f"Network {i}: {line}")
        else:
            say(members_line(record))
        for line in epoch_lines(record, "network3"):
            say(f"Vote: {line}")

    run = fit(trainer, Splits(training_data, validation_data, test_data), RunState.fresh(cfgs), vote=True,
              on_epoch=report, on_progress=_progress(0, say))
    for net, loop, cfg in zip(nets, run.loops, cfgs):
        net.loop, net.last_config = loop, cfg
    out = Ensemble(nets, run)
    say(f"Finished training {n} networks.")
    best = out.best()
    if best:
        say(f"Best validation accuracy of the vote {best['validation_accuracy']:.2%} at epoch {best['epoch']}")
        if test_data is not None:
            say(f"Corresponding test accuracy of the vote {best['test_accuracy']:.2%}")
    return out
