"""Chapter 3's network2.py on nn3's engine: cross-entropy, L2, better initialisation, monitors.

    >>> from nn3 import mnist_loader, network2
    >>> training_data, validation_data, test_data = mnist_loader.load_data_wrapper()
    >>> net = network2.Network([784, 30, 10], cost=network2.CrossEntropyCost)
    >>> net.SGD(training_data, 30, 10, 0.5, lmbda=5.0, evaluation_data=validation_data,
    ...         monitor_evaluation_accuracy=True)  # doctest: +SKIP
    Epoch 0 training complete
    Accuracy on evaluation data: 9392 / 10000
    ...

Beyond the book we answer its chapter-3 exercises here: ``momentum``, ``l1``, early
stopping (``early_stopping_n``, as in the book's later network2.py) and the
"halve eta after 10 epochs without improvement, stop at eta/128" schedule
(``schedule="plateau"``). ``save(filename)`` writes network2's JSON to whatever name
it is given, as the book's does (plus a ``"seed"`` key, which the book's ``load``
ignores); ``save_run(dir)`` writes a run directory instead. ``load`` reads the book's
files and ours, accepting only the two known cost names. Seeds, ``backprop``,
``update_mini_batch`` and assignable ``weights`` work as in nn3.network.
"""
# ruff: noqa: N802, N803
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from nn3 import network as _network
from nn3.engine import evaluation, layers
from nn3.engine.spec import is_mlp, mlp_sizes, mlp_spec
from nn3.engine.train import Loop
from nn3.network import sigmoid, sigmoid_prime  # the book's module functions
from nn3.store import export

__all__ = ["COSTS", "CrossEntropyCost", "Network", "QuadraticCost", "load", "sigmoid", "sigmoid_prime"]


class QuadraticCost:
    """``0.5 * ||a - y||^2``; its output error is ``(a - y) * sigmoid'(z)``."""
    name = "QuadraticCost"

    @staticmethod
    def fn(a: np.ndarray, y: np.ndarray) -> float:
        return float(0.5 * np.linalg.norm(a - y) ** 2)

    @staticmethod
    def delta(z: np.ndarray, a: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (a - y) * sigmoid_prime(z)


class CrossEntropyCost:
    """``sum(-y ln a - (1-y) ln(1-a))``; its output error is just ``a - y``."""
    name = "CrossEntropyCost"

    @staticmethod
    def fn(a: np.ndarray, y: np.ndarray) -> float:
        return float(np.sum(np.nan_to_num(-y * np.log(a) - (1 - y) * np.log(1 - a))))

    @staticmethod
    def delta(z: np.ndarray, a: np.ndarray, y: np.ndarray) -> np.ndarray:
        return a - y


COSTS = {c.name: c for c in (QuadraticCost, CrossEntropyCost)}


class Network(_network.Network):
    """The book's ``Network(sizes, cost)``: weights N(0, 1/sqrt(n_in)) by default."""

    style = "network2"
    init = "scaled"

    def __init__(self, sizes: list[int], cost: type | str = CrossEntropyCost, seed: int | None = None):
        name = getattr(cost, "name", cost)
        if name not in COSTS:
            raise ValueError(f"Network: unknown cost {cost!r} (known: {', '.join(COSTS)})")
        self.cost = COSTS[name]
        self.cost_name = name
        super().__init__(sizes, seed=seed)

    def default_weight_initializer(self) -> None:
        """Weights N(0, 1/sqrt(n_in)), biases N(0, 1): neurons start unsaturated."""
        self._reinit("scaled")

    def large_weight_initializer(self) -> None:
        """Chapter 1's N(0, 1) for weights and biases, kept for comparison."""
        self._reinit("normal")

    def _reinit(self, init: str) -> None:
        # From the network's own seed (the book drew afresh from np.random): net.seed
        # stays the one seed that, recorded, remakes the run.
        self.init = init
        self.engine = layers.build(mlp_spec(self.sizes, self.cost_name), seed=self.seed, init=init)
        self.loop = Loop()

    # network2's SGD and update_mini_batch take more than network.py's (lmbda, n, the
    # monitors), as in the book: a network2.Network does not stand in for a network.Network.
    def SGD(self, training_data: Any, epochs: int, mini_batch_size: int, eta: float,  # type: ignore[override]
            lmbda: float = 0.0, evaluation_data: Any = None, monitor_evaluation_cost: bool = False,
            monitor_evaluation_accuracy: bool = False, monitor_training_cost: bool = False,
            monitor_training_accuracy: bool = False, early_stopping_n: int = 0, *, momentum: float = 0.0,
            l1: float = 0.0, schedule: str = "constant",
            eta_fn: Callable[[int], float] | None = None) -> tuple[list[float], list[int], list[float], list[int]]:
        """Train, printing the monitored quantities; returns the book's four lists.

        Returns ``(evaluation_cost, evaluation_accuracy, training_cost,
        training_accuracy)``, one entry per epoch for each monitor that is on
        (accuracies as counts, as the book's). The costs include the L2 term with
        ``n`` the size of the data set measured, as network2's ``total_cost`` does.
        """
        ec: list[float] = []
        ea: list[int] = []
        tc: list[float] = []
        ta: list[int] = []
        # (on?, the monitor's name, the record's key, the list it feeds), in the book's order
        monitors: list[tuple[bool, str, str, list[Any]]] = [
            (monitor_training_cost, "training_cost", "training_cost", tc),
            (monitor_training_accuracy, "training_accuracy", "training_correct", ta),
            (monitor_evaluation_cost, "validation_cost", "validation_cost", ec),
            (monitor_evaluation_accuracy, "validation_accuracy", "validation_correct", ea)]
        shown = tuple(name for on, name, _, _ in monitors if on)
        print_lines = self._print_epoch(self.loop.epoch, shown)

        def report(record: dict, loop: Any, trainer: Any) -> None:
            print_lines(record, loop, trainer)
            for on, _, key, values in monitors:
                if on:
                    values.append(record[key])

        cfg = self._config(epochs, mini_batch_size, eta, lmbda=lmbda, momentum=momentum, l1=l1,
                           schedule=schedule, early_stopping=early_stopping_n or None)
        self._fit(cfg, training_data, validation_data=evaluation_data,
                  monitor=tuple(m for m in shown if m != "validation_accuracy"),
                  eta_fn=eta_fn, on_epoch=report)
        if self.loop.stop_reason == "early_stopping":
            print(f"Early-stopping: no accuracy change in last epochs: {early_stopping_n}")
        return ec, ea, tc, ta

    def update_mini_batch(self, mini_batch: Any, eta: float, lmbda: float, n: int) -> None:  # type: ignore[override]
        """One gradient step on ``mini_batch`` (a list of ``(x, y)`` pairs) with L2:
        the book's ``w = (1 - eta*lmbda/n) w - eta/m * sum``, ``n`` the training set's size."""
        self._step(mini_batch, eta, lmbda, n)

    def accuracy(self, data: Any, convert: bool = False) -> int:
        """How many of ``data`` are classified right; ``convert`` is accepted for the book's calls."""
        del convert  # labels may be one-hot or integers: as_arrays tells them apart
        return evaluation.evaluate(self.engine, data)[0]

    def total_cost(self, data: Any, lmbda: float, convert: bool = False) -> float:
        """Mean cost over ``data`` plus ``0.5*(lmbda/len(data))*sum ||w||^2``."""
        del convert
        _, cost, n = evaluation.evaluate(self.engine, data)
        return cost + 0.5 * (lmbda / n) * evaluation.l2_norm_sq(self.engine)

    def save(self, filename: str | os.PathLike[str]) -> None:
        """Write the network to ``filename`` in network2's JSON format, whatever its name.

        A run directory (settings, history, ``nn3 resume``) is ``save_run(dir)``.
        """
        if os.path.isdir(filename):
            raise export.ExportError(f"{os.fspath(filename)}: is a directory; save writes a JSON file "
                                     f"(save_run writes a run directory)")
        self.save_json(filename)


def load(filename: str | os.PathLike[str]) -> Network:
    """A network2 Network from a JSON file written by ``save`` (ours or the book's).

    The seed comes from the file when it records one; else, as for a new network,
    from numpy's global generator.
    """
    spec, params, _, meta = export.load_json(filename)
    if not is_mlp(spec):
        raise export.ExportError(f"{filename}: not a network2 network (use nn3.load)")
    net = Network(mlp_sizes(spec), cost=COSTS[spec["cost"]], seed=meta.get("seed"))
    layers.set_params(net.engine, params)
    return net
