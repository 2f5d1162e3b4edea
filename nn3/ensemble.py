"""Ensembles: N networks of one architecture trained in one compiled program, voting by plurality.

    >>> from nn3 import ensemble, presets, train
    >>> spec = presets.get("shallow").spec
    >>> cfg = train.SGDConfig(epochs=1, eta=0.1, l2="batch", shuffle=False, drop_remainder=True)
    >>> nets = ensemble.fit(spec, cfg, seeds=[0, 1, 2], train_data=training_data)  # doctest: +SKIP
    >>> ensemble.vote(nets, test_x)  # doctest: +SKIP

The book trains its five dropout nets one after another and lets them vote. Here the
members' parameters and keys are stacked and the epoch's scan is ``vmap``-ed over them:
member ``i`` sees exactly what a lone run with seed ``seeds[i]`` would see.
"""
from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from nn3 import layers, train

def _members(state, velocity, x, y, batches, steps, keys, hyper, **statics):
    """``train.scan_batches`` for every member at once: a leading axis on state, order and keys."""
    one = partial(train.scan_batches, **statics)
    return jax.vmap(one, in_axes=(0, 0, None, None, 0, None, 0, None))(
        state, velocity, x, y, batches, steps, keys, hyper)


_run_members = jax.jit(_members, static_argnames=train.STATICS)


class EnsembleTrainer(train.Trainer):
    """A Trainer whose state, velocity, keys and epoch order carry a leading member axis."""

    _run = staticmethod(_run_members)

    def __init__(self, nets, cfg, train_data, seeds):
        self.members = [train.Trainer(n, dataclasses.replace(cfg, seed=s), train_data) for n, s in zip(nets, seeds)]
        super().__init__(nets[0], cfg, train_data)
        stack = lambda *xs: jnp.stack(xs)  # noqa: E731
        self.state = jax.tree_util.tree_map(stack, *[m.state for m in self.members])
        self.velocity = (None if self.velocity is None else
                         jax.tree_util.tree_map(stack, *[m.velocity for m in self.members]))
        self.keys = jnp.stack([m.keys for m in self.members])

    def order(self, epoch):
        return jnp.stack([m.order(epoch) for m in self.members])  # (members, n_examples)

    def sync(self):
        for i, m in enumerate(self.members):
            m.state = jax.tree_util.tree_map(lambda a: a[i], self.state)
            m.sync()


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
