"""Ensembles: N networks of one architecture trained in one compiled program, voting by plurality.

    >>> from nn3 import ensemble, presets, train
    >>> spec = presets.get("shallow").spec
    >>> cfg = train.SGDConfig(epochs=1, eta=0.1, l2="batch", shuffle=False, drop_remainder=True)
    >>> nets = ensemble.fit(spec, cfg, seeds=[0, 1, 2], train_data=training_data)  # doctest: +SKIP
    >>> ensemble.vote(nets, test_x)  # doctest: +SKIP

The book trains its five dropout nets one after another and lets them vote. Here the
members' parameters, optimiser states and keys are stacked and the epoch's scan is
``vmap``-ed over them: member ``i`` sees exactly what a lone run with seed ``seeds[i]``
would see. The hyperparameters live in the optimiser's state, so each member may have
its own (``run_epoch`` takes one eta per member).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nn3 import layers, train


def _members(state, opt_state, x, y, batches, steps, keys, **statics):
    """``train.scan_batches`` for every member at once: a leading axis on the parameters,
    the optimiser's state (its hyperparameters too), the order and the keys."""
    one = partial(train.scan_batches, **statics)
    return jax.vmap(one, in_axes=(0, 0, None, None, 0, None, 0))(
        state, opt_state, x, y, batches, steps, keys)


_run_members = jax.jit(_members, static_argnames=train.STATICS)


class EnsembleTrainer(train.Trainer):
    """A Trainer whose state, optimiser state, keys and epoch order carry a leading member axis."""

    _run = staticmethod(_run_members)

    def __init__(self, nets, cfg, train_data, seeds):
        super().__init__(nets[0], cfg, train_data)  # the data goes to the device once, for all
        self.nets, self.seeds = list(nets), list(seeds)
        stack = lambda *xs: jnp.stack(xs)  # noqa: E731
        states = [nnx.split(n)[1] for n in self.nets]
        self.state = jax.tree_util.tree_map(stack, *states)
        self.opt_state = jax.tree_util.tree_map(stack, *[self.rule.init(s) for s in states])
        self.keys = jnp.stack([train.step_keys(s) for s in self.seeds])

    def order(self, epoch):
        # (members, n_examples): member i's order is a lone run's with seed seeds[i]
        return np.stack([train.epoch_order(s, epoch, self.n_examples, self.cfg.shuffle) for s in self.seeds])

    def sync(self):
        for i, net in enumerate(self.nets):
            nnx.update(net, jax.tree_util.tree_map(lambda a: a[i], self.state))


def fit(spec, cfg: train.SGDConfig, seeds, train_data, *, init=None, on_epoch=None):
    """Train one network per seed, all in one program; returns the trained layers.Networks."""
    nets = [layers.build(spec, seed=s, init=init) for s in seeds]
    tr = EnsembleTrainer(nets, cfg, train_data, seeds)
    for epoch in range(cfg.epochs):
        losses, _ = tr.run_epoch(epoch, 0, cfg.eta)
        if on_epoch:
            tr.sync()
            on_epoch(epoch, nets)
    tr.sync()
    return nets


def vote(nets, x) -> np.ndarray:
    """The plurality vote of the members' predictions (N,); ties go to the smaller digit."""
    preds = np.stack([train.predict(n, x) for n in nets])  # (members, N)
    n_classes = nets[0].spec["layers"][-1]["n_out"]
    counts = np.apply_along_axis(np.bincount, 0, preds, minlength=n_classes)  # (classes, N)
    return np.argmax(counts, axis=0)


def accuracy(nets, data) -> float:
    x, y = train.as_arrays(data)
    return float(np.mean(vote(nets, x) == y))


__all__ = ["EnsembleTrainer", "fit", "vote", "accuracy"]
