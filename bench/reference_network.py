"""The chapter-1 network, one example at a time, in plain numpy: the speed reference (a).

This re-implements the algorithm of the book's network.py (written from its description,
not from its code): every example of a mini-batch is back-propagated on its own as a
column vector, the per-example gradients are summed, and then ``w -= eta/m * sum``.

Synopsis::

    import numpy as np
    from reference_network import BookNetwork
    net = BookNetwork([784, 30, 10], seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.random((100, 784)), rng.integers(0, 10, 100)
    net.sgd_epoch(x, y, mini_batch_size=10, eta=3.0, rng=rng)
    print(net.evaluate(x, y), "/ 100")
"""

from __future__ import annotations

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function, elementwise."""
    return 1.0 / (1.0 + np.exp(-z))


def sigmoid_prime(z: np.ndarray) -> np.ndarray:
    """Derivative of the logistic function, computed from ``z`` as the book does."""
    s = sigmoid(z)
    return s * (1.0 - s)


def check_sizes(sizes, where: str) -> list[int]:
    """Returns ``sizes`` as a list of ints, or raises ValueError naming ``where``."""
    sizes = [int(n) for n in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"{where}: sizes must be >= 2 positive layer widths, got {sizes}")
    return sizes


def one_hot(y: np.ndarray, n_out: int, dtype, where: str) -> np.ndarray:
    """Integer labels (N,) -> one-hot rows (N, n_out); one-hot input passes through.

    Args:
        y: (N,) integer labels or (N, n_out) one-hot targets.
        n_out: width of the output layer.
        dtype: dtype of the result.
        where: name used in error messages.

    Returns:
        (N, n_out) array of ``dtype``.
    """
    y = np.asarray(y)
    if y.ndim == 1:
        if y.size and (y.min() < 0 or y.max() >= n_out):
            raise ValueError(f"{where}: labels must lie in [0, {n_out}), got {y.min()}..{y.max()}")
        out = np.zeros((y.shape[0], n_out), dtype=dtype)
        out[np.arange(y.shape[0]), y.astype(np.int64)] = 1.0
        return out
    if y.ndim == 2 and y.shape[1] == n_out:
        return y.astype(dtype, copy=False)
    raise ValueError(f"{where}: y must be (N,) labels or (N, {n_out}) one-hot, got {y.shape}")


def check_xy(x: np.ndarray, y: np.ndarray, n_in: int, where: str) -> np.ndarray:
    """Checks that ``x`` is (N, n_in) and ``y`` has N rows; returns ``x`` as an array."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != n_in:
        raise ValueError(f"{where}: x must be (N, {n_in}), got {x.shape}")
    if np.shape(y)[0] != x.shape[0]:
        raise ValueError(f"{where}: x has {x.shape[0]} rows but y has {np.shape(y)[0]}")
    return x


class BookNetwork:
    """A sigmoid MLP trained by per-example backprop, as in chapter 1.

    Weights are stored ``(out, in)`` and biases ``(out, 1)``, all drawn from N(0, 1),
    the biases first. Inputs to ``feedforward`` and ``backprop`` are column vectors.
    """

    def __init__(self, sizes, seed: int = 0, dtype=np.float64):
        self.sizes = check_sizes(sizes, type(self).__name__)
        self.num_layers = len(self.sizes)
        self.dtype = np.dtype(dtype)
        # Departure from the book: a seeded Generator instead of numpy's global state,
        # so that both references start from the very same numbers.
        rng = np.random.default_rng(seed)
        self.biases = [rng.standard_normal((n, 1)).astype(self.dtype) for n in self.sizes[1:]]
        self.weights = [
            rng.standard_normal((n_out, n_in)).astype(self.dtype)
            for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:])
        ]

    def feedforward(self, a: np.ndarray) -> np.ndarray:
        """Output activations for input column(s) ``a`` of shape (n_in, k) -> (n_out, k)."""
        for w, b in zip(self.weights, self.biases):
            a = sigmoid(w @ a + b)
        return a

    def backprop(self, x: np.ndarray, y: np.ndarray):
        """Gradient of the quadratic cost ``0.5*||a - y||^2`` for one example.

        Args:
            x: (n_in, 1) input column.
            y: (n_out, 1) one-hot target column.

        Returns:
            ``(nabla_b, nabla_w)``: lists shaped like ``biases`` and ``weights``.
        """
        activation = x
        activations = [x]  # a^0, a^1, ..., a^L
        zs = []  # z^1, ..., z^L
        for w, b in zip(self.weights, self.biases):
            z = w @ activation + b
            zs.append(z)
            activation = sigmoid(z)
            activations.append(activation)
        nabla_b, nabla_w = self._empty_gradients()
        # Output error, then walk it back one layer at a time.
        delta = (activations[-1] - y) * sigmoid_prime(zs[-1])
        nabla_b[-1] = delta
        nabla_w[-1] = delta @ activations[-2].T
        for layer in range(2, self.num_layers):
            delta = (self.weights[-layer + 1].T @ delta) * sigmoid_prime(zs[-layer])
            nabla_b[-layer] = delta
            nabla_w[-layer] = delta @ activations[-layer - 1].T
        return nabla_b, nabla_w

    def _empty_gradients(self):
        """The lists ``backprop`` fills, one slot per layer."""
        return [None] * len(self.biases), [None] * len(self.weights)

    def mini_batch_gradient(self, x_batch: np.ndarray, y_batch: np.ndarray):
        """Sum over a mini-batch of the per-example gradients.

        Args:
            x_batch: (m, n_in) inputs, one example per row.
            y_batch: (m, n_out) one-hot targets.

        Returns:
            ``(nabla_b, nabla_w)`` summed over the m examples.
        """
        sum_b = [np.zeros_like(b) for b in self.biases]
        sum_w = [np.zeros_like(w) for w in self.weights]
        for x_row, y_row in zip(x_batch, y_batch):
            delta_b, delta_w = self.backprop(x_row.reshape(-1, 1), y_row.reshape(-1, 1))
            for total, d in zip(sum_b, delta_b):
                total += d
            for total, d in zip(sum_w, delta_w):
                total += d
        return sum_b, sum_w

    def update_mini_batch(self, x_batch: np.ndarray, y_batch: np.ndarray, eta: float) -> None:
        """One gradient step on a mini-batch: ``p -= eta/m * sum of per-example grads``.

        Args:
            x_batch: (m, n_in) inputs.
            y_batch: (m, n_out) one-hot targets.
            eta: learning rate.
        """
        sum_b, sum_w = self.mini_batch_gradient(x_batch, y_batch)
        scale = eta / len(x_batch)
        for b, g in zip(self.biases, sum_b):
            b -= scale * g
        for w, g in zip(self.weights, sum_w):
            w -= scale * g

    def sgd_epoch(self, x, y, mini_batch_size: int, eta: float, rng: np.random.Generator) -> None:
        """One epoch of SGD: shuffle with ``rng``, cut into mini-batches, update on each.

        Args:
            x: (N, n_in) inputs.
            y: (N,) integer labels or (N, n_out) one-hot targets.
            mini_batch_size: m; the last mini-batch may be smaller, as in the book.
            eta: learning rate.
            rng: numpy Generator that draws the permutation.
        """
        where = f"{type(self).__name__}.sgd_epoch"
        x = check_xy(x, y, self.sizes[0], where)
        targets = one_hot(y, self.sizes[-1], self.dtype, where)
        if mini_batch_size < 1:
            raise ValueError(f"{where}: mini_batch_size must be >= 1, got {mini_batch_size}")
        order = rng.permutation(x.shape[0])
        for start in range(0, x.shape[0], mini_batch_size):
            idx = order[start:start + mini_batch_size]
            self.update_mini_batch(x[idx], targets[idx], eta)

    def evaluate(self, x, y) -> int:
        """Number of rows of ``x`` (N, n_in) whose argmax output equals the label ``y`` (N,)."""
        x = check_xy(x, y, self.sizes[0], "BookNetwork.evaluate")
        # All test columns at once: the same arithmetic as one column at a time.
        out = self.feedforward(x.T)  # (n_out, N)
        return int(np.sum(np.argmax(out, axis=0) == np.asarray(y)))
