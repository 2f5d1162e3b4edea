"""The chapter-1 network with each mini-batch as one matrix, in numpy: the speed reference (b).

The same network, initialisation, cost and update as reference_network.BookNetwork
(same seed -> same numbers), but a mini-batch of m examples goes through backprop as
an (m, n_in) matrix, so the per-example sum becomes a matrix product.

Synopsis::

    import numpy as np
    from reference_vectorised import VectorisedNetwork
    net = VectorisedNetwork([784, 30, 10], seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.random((100, 784)), rng.integers(0, 10, 100)
    net.sgd_epoch(x, y, mini_batch_size=10, eta=3.0, rng=rng)
    print(net.evaluate(x, y), "/ 100")
"""

from __future__ import annotations

import numpy as np

from reference_network import BookNetwork, check_xy, sigmoid, sigmoid_prime


class VectorisedNetwork(BookNetwork):
    """BookNetwork whose backprop runs on whole mini-batches, one example per row.

    Parameters keep the book's layout, weights ``(out, in)`` and biases ``(out, 1)``,
    so a layer computes ``a @ w.T + b.T`` on rows. ``feedforward`` takes rows
    (batch, n_in), not columns.
    """

    def feedforward(self, a: np.ndarray) -> np.ndarray:
        """Output activations for rows ``a`` of shape (batch, n_in) -> (batch, n_out)."""
        for w, b in zip(self.weights, self.biases):
            a = sigmoid(a @ w.T + b.T)
        return a

    def backprop(self, x: np.ndarray, y: np.ndarray):
        """Gradients of the quadratic cost summed over a batch of rows.

        Args:
            x: (m, n_in) inputs, one example per row.
            y: (m, n_out) one-hot targets.

        Returns:
            ``(nabla_b, nabla_w)``: lists shaped like ``biases`` and ``weights``,
            each the sum of the m per-example gradients.
        """
        activation = x
        activations = [x]
        zs = []
        for w, b in zip(self.weights, self.biases):
            z = activation @ w.T + b.T  # (m, out)
            zs.append(z)
            activation = sigmoid(z)
            activations.append(activation)
        nabla_b = [None] * len(self.biases)
        nabla_w = [None] * len(self.weights)
        delta = (activations[-1] - y) * sigmoid_prime(zs[-1])  # (m, n_out)
        nabla_b[-1] = delta.sum(axis=0)[:, None]
        nabla_w[-1] = delta.T @ activations[-2]
        for layer in range(2, self.num_layers):
            delta = (delta @ self.weights[-layer + 1]) * sigmoid_prime(zs[-layer])
            nabla_b[-layer] = delta.sum(axis=0)[:, None]
            nabla_w[-layer] = delta.T @ activations[-layer - 1]
        return nabla_b, nabla_w

    def mini_batch_gradient(self, x_batch: np.ndarray, y_batch: np.ndarray):
        """Sum over a mini-batch (m, n_in) / (m, n_out) of the per-example gradients."""
        return self.backprop(x_batch, y_batch)

    def evaluate(self, x, y) -> int:
        """Number of rows of ``x`` (N, n_in) whose argmax output equals the label ``y`` (N,)."""
        x = check_xy(x, y, self.sizes[0], "VectorisedNetwork.evaluate")
        return int(np.sum(np.argmax(self.feedforward(x), axis=1) == np.asarray(y)))

