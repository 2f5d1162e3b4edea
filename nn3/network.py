"""Chapter 1's network.py on nn3's engine: a sigmoid MLP trained by plain SGD.

    >>> from nn3 import mnist_loader, network
    >>> training_data, validation_data, test_data = mnist_loader.load_data_wrapper()
    >>> net = network.Network([784, 30, 10])
    >>> net.SGD(training_data, 30, 10, 3.0, test_data=test_data)  # doctest: +SKIP
    Epoch 0: 9129 / 10000
    ...

We keep the book's names, argument order and printed lines; the arithmetic is the
engine's (nn3.engine.train), which does the whole epoch as one compiled call instead of a
Python loop over examples. The cost is the quadratic cost and the weights start as
N(0, 1), as in the book. The parts of the book's class that its other scripts call
are here too: ``backprop(x, y)`` (from ``jax.grad``), ``update_mini_batch``,
assignable ``weights`` and ``biases``, and the module's ``sigmoid`` and ``sigmoid_prime``.

Randomness comes from ``seed``: two networks made with the same seed and trained on
the same data end bit-for-bit equal on a CPU. Without ``seed=`` we draw one from
numpy's global generator, where the book drew its weights: ``np.random.seed(n)`` at
the top of a script then makes it repeat, and two networks in one script start
differently. ``net.seed`` is the seed used; saved runs and JSON files record it.
"""
# ruff: noqa: N802, N803  (the book's names)
from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nn3.book.facade import Facade, whole_number
from nn3.engine import costs, evaluation, layers
from nn3.engine.device_data import DeviceData
from nn3.engine.settings import SGDConfig
from nn3.engine.spec import mlp_spec
from nn3.engine.trainer import Trainer

__all__ = ["Network", "sigmoid", "sigmoid_prime"]


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The sigmoid function, elementwise on numpy arrays (the book's module function)."""
    return 1.0 / (1.0 + np.exp(-z))


def sigmoid_prime(z: np.ndarray) -> np.ndarray:
    """The derivative of the sigmoid function."""
    return sigmoid(z) * (1 - sigmoid(z))


@partial(jax.jit, static_argnames=("graphdef", "cost"))
def _gradient(state: nnx.State, x: jax.Array, target: jax.Array, *, graphdef: nnx.GraphDef, cost: str) -> nnx.State:
    """The gradient of one example's cost: ``x`` (1, n_in), ``target`` (1, n_out) float32."""
    def one_cost(st: nnx.State) -> jax.Array:
        model = nnx.merge(graphdef, st)
        return costs.get(cost)(model.logits(x), target, model.output_activation)[0]
    return jax.grad(one_cost)(state)


class Network(Facade):
    """The book's ``Network(sizes)``: sigmoid layers, quadratic cost, N(0, 1) weights."""

    style = "network"
    cost_name = "QuadraticCost"
    init = "normal"

    def __init__(self, sizes: list[int], seed: int | None = None):
        if len(sizes) < 2 or any(not isinstance(s, (int, np.integer)) or s < 1 for s in sizes):
            raise ValueError(f"Network: sizes must be at least two positive integers, got {sizes!r}")
        self.sizes = [int(s) for s in sizes]
        self.num_layers = len(self.sizes)
        self._build(mlp_spec(self.sizes, self.cost_name), seed)

    # The book exposes its parameters as lists of arrays; so do we. They are copies:
    # to change the network, assign a whole list (``net.weights = [...]``), as the book's
    # scripts do.
    @property
    def weights(self) -> list[np.ndarray]:
        """One (out, in) array per layer after the input."""
        return [p["w"] for p in layers.get_params(self.engine)]

    @weights.setter
    def weights(self, arrays: Iterable[np.ndarray]) -> None:
        self._assign("weights", "w", arrays, [(b, a) for a, b in zip(self.sizes, self.sizes[1:])])

    @property
    def biases(self) -> list[np.ndarray]:
        """One (n, 1) column per layer after the input."""
        return [p["b"].reshape(-1, 1) for p in layers.get_params(self.engine)]

    @biases.setter
    def biases(self, arrays: Iterable[np.ndarray]) -> None:
        self._assign("biases", "b", arrays, [(b, 1) for b in self.sizes[1:]])

    def _assign(self, name: str, key: str, arrays: Iterable[np.ndarray], shapes: list[tuple[int, int]]) -> None:
        arrays = list(arrays)
        if len(arrays) != len(shapes):
            raise ValueError(f"Network.{name}: {len(arrays)} arrays given, the network has {len(shapes)} layers")
        params = layers.get_params(self.engine)
        for i, (a, shape) in enumerate(zip(arrays, shapes)):
            a = np.asarray(a, np.float32)
            if a.shape != shape:
                raise ValueError(f"Network.{name}: {name}[{i}] has shape {a.shape}, expected {shape}")
            params[i][key] = a.reshape(params[i][key].shape)
        layers.set_params(self.engine, params)

    def feedforward(self, a: np.ndarray) -> np.ndarray:
        """The output for input ``a``: a (784, 1) column gives a (10, 1) column.

        A batch of rows (N, 784) gives (N, 10).
        """
        a = np.asarray(a, np.float32)
        column = a.ndim == 2 and a.shape[1] == 1 and a.shape[0] == self.sizes[0]
        out = np.asarray(self.engine(a.reshape(1, -1) if column else a))
        return out.reshape(-1, 1) if column else out

    def evaluate(self, test_data: Any) -> int:
        """How many of ``test_data`` the network classifies right (argmax of the output)."""
        return evaluation.evaluate(self.engine, test_data)[0]

    def _config(self, epochs: int, mini_batch_size: int, eta: float, **kw: Any) -> SGDConfig:
        # One compiled call per epoch: the book's programs show no progress within one.
        epochs, mini_batch_size = whole_number(epochs, "epochs"), whole_number(mini_batch_size, "mini_batch_size")
        return SGDConfig(epochs=self.loop.epoch + epochs, mini_batch_size=mini_batch_size, eta=eta,
                         seed=self.seed, chunks=1, **kw)

    def SGD(self, training_data: Any, epochs: int, mini_batch_size: int, eta: float, test_data: Any = None) -> None:
        """Train with mini-batch stochastic gradient descent, printing one line per epoch.

        ``training_data`` is the book's list of ``(x, y)`` pairs (as ``load_data_wrapper``
        gives it) or an ``(x, y)`` pair of arrays; so is ``test_data``.
        """
        self._fit(self._config(epochs, mini_batch_size, eta), training_data, test_data=test_data,
                  on_epoch=self._print_epoch(self.loop.epoch))

    def update_mini_batch(self, mini_batch: Any, eta: float) -> None:
        """One gradient step on ``mini_batch``, a list of ``(x, y)`` pairs: the book's
        ``w -= eta/m * sum of the examples' gradients``."""
        self._step(mini_batch, eta)

    def _step(self, mini_batch: Any, eta: float, lmbda: float = 0.0, n: int | None = None) -> None:
        if lmbda and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
            raise ValueError(f"update_mini_batch: n (the training set's size) must be a positive integer, "
                             f"got {n!r}")
        x, y = evaluation.as_arrays(mini_batch, self.sizes[0], self.sizes[-1])
        cfg = SGDConfig(epochs=1, mini_batch_size=len(y), eta=eta, lmbda=lmbda, shuffle=False, seed=self.seed, chunks=1)
        # The book's (1 - eta*lmbda/n): n is the whole training set's size, not the mini-batch's.
        trainer = Trainer([self.engine], [cfg], DeviceData.from_arrays(x, y), decay_over=n if lmbda else None)
        trainer.run_epoch(0, 0, eta)
        trainer.sync()

    def backprop(self, x: np.ndarray, y: np.ndarray | int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The gradient of the cost for one example, as ``(nabla_b, nabla_w)``.

        ``x`` is a (784, 1) column and ``y`` the desired output, a (10, 1) column (an
        int label also does). Like the book's, the result is two lists shaped like
        ``biases`` ((n, 1) columns) and ``weights`` ((out, in)); we get it from
        ``jax.grad`` of the network's cost rather than from chapter 2's equations.
        """
        n_in, n_out = self.sizes[0], self.sizes[-1]
        x = np.asarray(x, np.float32)
        if x.size != n_in:
            raise ValueError(f"backprop: x has shape {x.shape}, expected ({n_in}, 1)")
        if isinstance(y, (int, np.integer)) and not isinstance(y, bool):
            if not 0 <= y < n_out:
                raise ValueError(f"backprop: label {y} is not in 0..{n_out - 1}")
            target = np.eye(n_out, dtype=np.float32)[y]
        else:
            target = np.asarray(y, np.float32)
            if target.size != n_out:
                raise ValueError(f"backprop: y has shape {target.shape}, expected ({n_out}, 1) or an int label")
        graphdef, state = nnx.split(self.engine)
        grads = _gradient(state, jnp.asarray(x.reshape(1, n_in)), jnp.asarray(target.reshape(1, n_out)),
                          graphdef=graphdef, cost=self.cost_name)
        per_layer = layers.get_params(nnx.merge(graphdef, grads))
        return [g["b"].reshape(-1, 1) for g in per_layer], [g["w"] for g in per_layer]
