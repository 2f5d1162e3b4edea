"""Chapter 1's network.py on nn3's engine: a sigmoid MLP trained by plain SGD.

    >>> from nn3 import mnist_loader, network
    >>> training_data, validation_data, test_data = mnist_loader.load_data_wrapper()
    >>> net = network.Network([784, 30, 10])
    >>> net.SGD(training_data, 30, 10, 3.0, test_data=test_data)  # doctest: +SKIP
    Epoch 0: 9129 / 10000
    ...

We keep the book's names, argument order and printed lines; the arithmetic is the
engine's (nn3.train), which does the whole epoch as one compiled call instead of a
Python loop over examples. The cost is the quadratic cost and the weights start as
N(0, 1), as in the book. Randomness comes from ``seed``: two networks made with the
same seed and trained on the same data end bit-for-bit equal on a CPU.
"""
# ruff: noqa: N802, N803  (the book's names)
from __future__ import annotations

import numpy as np

from nn3 import layers, train


class Network:
    """The book's ``Network(sizes)``: sigmoid layers, quadratic cost, N(0, 1) weights."""

    cost_name = "QuadraticCost"
    init = "normal"

    def __init__(self, sizes, seed=0):
        if len(sizes) < 2 or any(not isinstance(s, (int, np.integer)) or s < 1 for s in sizes):
            raise ValueError(f"Network: sizes must be at least two positive integers, got {sizes!r}")
        self.sizes = [int(s) for s in sizes]
        self.num_layers = len(self.sizes)
        self.seed = seed
        self.net = layers.build(layers.mlp_spec(self.sizes, self.cost_name), seed=seed, init=self.init)
        # Epochs already trained: a second SGD call goes on with fresh shuffles, as the book's would.
        self.loop = train.Loop()

    # The book exposes its parameters as lists of arrays; so do we (copies).
    @property
    def weights(self):
        return [p["w"] for p in layers.get_params(self.net)]

    @property
    def biases(self):
        return [p["b"].reshape(-1, 1) for p in layers.get_params(self.net)]

    def feedforward(self, a):
        """The output for input ``a``: a (784, 1) column gives a (10, 1) column.

        A batch of rows (N, 784) gives (N, 10).
        """
        a = np.asarray(a, np.float32)
        column = a.ndim == 2 and a.shape[1] == 1 and a.shape[0] == self.sizes[0]
        out = np.asarray(self.net(a.reshape(1, -1) if column else a))
        return out.reshape(-1, 1) if column else out

    def evaluate(self, test_data):
        """How many of ``test_data`` the network classifies right (argmax of the output)."""
        return train.evaluate(self.net, test_data)[0]

    def _config(self, epochs, mini_batch_size, eta, **kw):
        # One compiled call per epoch: the book's programs show no progress within one.
        return train.SGDConfig(epochs=self.loop.epoch + epochs, mini_batch_size=mini_batch_size, eta=eta,
                               seed=self.seed, chunks=1, **kw)

    def _fit(self, cfg, training_data, test_data=None, validation_data=None, **kw):
        start = self.loop.epoch
        self.last_config = cfg
        self.loop.stop_reason = None
        self.loop.eta = cfg.eta
        self.loop = train.fit(self.net, cfg, training_data, validation_data, test_data, loop=self.loop, **kw)
        return start

    def SGD(self, training_data, epochs, mini_batch_size, eta, test_data=None):
        """Train with mini-batch stochastic gradient descent, printing one line per epoch.

        ``training_data`` is the book's list of ``(x, y)`` pairs (as ``load_data_wrapper``
        gives it) or an ``(x, y)`` pair of arrays; so is ``test_data``.
        """
        start = self.loop.epoch

        def report(record, loop, trainer):
            j = record["epoch"] - start
            if test_data is not None:
                print(f"Epoch {j}: {record['test_correct']} / {record['test_n']}")
            else:
                print(f"Epoch {j} complete")

        self._fit(self._config(epochs, mini_batch_size, eta), training_data, test_data, on_epoch=report)

    def update_mini_batch(self, mini_batch, eta):
        """One gradient step on ``mini_batch`` (a list of pairs), as the book's method."""
        x, y = train.as_arrays(mini_batch, self.sizes[0])
        cfg = train.SGDConfig(epochs=1, mini_batch_size=len(y), eta=eta, shuffle=False, seed=self.seed)
        train.fit(self.net, cfg, (x, y))

    def save(self, run_dir):
        """Save as a run directory (parameters, settings, history); ``nn3.load`` reads it back."""
        from nn3 import saved
        saved.save(self, run_dir)

    def save_json(self, path):
        """Save as JSON (network2's format for this network)."""
        from nn3 import saved
        saved.save_json(self, path)

    def accuracy_history(self):
        """Per-epoch records of every SGD call so far (nn3's addition)."""
        return list(self.loop.history)
