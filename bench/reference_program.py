"""The chapter-1 network as network.py runs it: the speed reference (a).

``reference_network.BookNetwork`` is the book's per-example algorithm written lean:
gradients summed in place, parameters updated in place, examples read as rows of one
array. The book's program does the same arithmetic with more memory traffic, and that
traffic is a large part of its time per epoch. ``ProgramNetwork`` keeps the arithmetic
of BookNetwork (same seed and order give the same numbers) and adds what network.py
does around it, as described in BOOK.md and measured in PERF.md:

- the training data is a list of ``(x, y)`` pairs, ``x`` a (784, 1) float32 column and
  ``y`` a (10, 1) float64 one-hot column (``load_data_wrapper``'s form); an epoch
  shuffles that list and cuts it into mini-batches (lists of pairs);
- ``backprop`` sets up zeroed gradient lists for every example before filling them;
- a mini-batch's sum starts from zeroed lists and every example's gradients are added
  into new arrays; the update builds new weight and bias lists.

Synopsis::

    import numpy as np
    from reference_program import ProgramNetwork
    net = ProgramNetwork([784, 30, 10], seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.random((100, 784), dtype=np.float32), rng.integers(0, 10, 100)
    pairs = ProgramNetwork.pairs(x, y)            # once, as the book's loader does
    net.sgd_epoch(pairs, None, mini_batch_size=10, eta=3.0, rng=rng)
    print(net.evaluate(x, y), "/ 100")
"""

from __future__ import annotations

import numpy as np

from reference_network import BookNetwork, one_hot


class ProgramNetwork(BookNetwork):
    """BookNetwork with network.py's data layout and allocations (float64 parameters)."""

    @staticmethod
    def pairs(x, y, n_out: int = 10) -> list:
        """Rows ``x`` (N, n_in) and labels ``y`` (N,) -> the book's list of column pairs."""
        x = np.asarray(x)
        targets = one_hot(y, n_out, np.float64, "ProgramNetwork.pairs")
        return [(row.reshape(-1, 1), t.reshape(-1, 1)) for row, t in zip(x, targets)]

    def _empty_gradients(self):
        """``backprop`` fills zeroed arrays, allocated for every example, as network.py's does."""
        return [np.zeros(b.shape) for b in self.biases], [np.zeros(w.shape) for w in self.weights]

    def mini_batch_gradient(self, batch, y_batch=None):
        """Sum of the per-example gradients of ``batch``, a list of (x, y) column pairs.

        Rows (m, n_in) with one-hot ``y_batch`` (m, n_out) are taken too (for tests).
        """
        if y_batch is not None:
            batch = list(zip((r.reshape(-1, 1) for r in batch), (t.reshape(-1, 1) for t in y_batch)))
        sum_b = [np.zeros(b.shape) for b in self.biases]
        sum_w = [np.zeros(w.shape) for w in self.weights]
        for x, y in batch:
            delta_b, delta_w = self.backprop(x, y)
            sum_b = [s + d for s, d in zip(sum_b, delta_b)]
            sum_w = [s + d for s, d in zip(sum_w, delta_w)]
        return sum_b, sum_w

    def update_mini_batch(self, batch, y_batch=None, eta: float = 3.0) -> None:
        """``p -> p - eta/m * sum``, into new lists of arrays, as network.py writes it."""
        sum_b, sum_w = self.mini_batch_gradient(batch, y_batch)
        scale = eta / len(batch)
        self.weights = [w - scale * g for w, g in zip(self.weights, sum_w)]
        self.biases = [b - scale * g for b, g in zip(self.biases, sum_b)]

    def sgd_epoch(self, pairs, y, mini_batch_size: int, eta: float, rng: np.random.Generator) -> None:
        """One epoch over ``pairs`` (see ``pairs``; or rows ``pairs`` with labels ``y``).

        The list is shuffled by ``rng.permutation`` (the order BookNetwork draws from the
        same generator) and cut into lists of ``mini_batch_size`` pairs.
        """
        if y is not None:
            pairs = self.pairs(pairs, y, self.sizes[-1])
        if mini_batch_size < 1:
            raise ValueError(f"ProgramNetwork.sgd_epoch: mini_batch_size must be >= 1, got {mini_batch_size}")
        shuffled = [pairs[i] for i in rng.permutation(len(pairs))]
        for start in range(0, len(shuffled), mini_batch_size):
            self.update_mini_batch(shuffled[start:start + mini_batch_size], None, eta)
