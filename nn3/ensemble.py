"""Ensembles: N networks of one architecture trained in one compiled program, voting by plurality.

    >>> from nn3 import ensemble, presets, train
    >>> spec = presets.get("shallow").spec
    >>> cfg = train.SGDConfig(epochs=1, eta=0.1, l2="batch", shuffle=False, drop_remainder=True)
    >>> nets = ensemble.fit(spec, cfg, seeds=[0, 1, 2], train_data=training_data)  # doctest: +SKIP
    >>> ensemble.vote(nets, test_x)  # doctest: +SKIP

The book trains its five dropout nets one after another and lets them vote. Here the
members' parameters, optimiser states and keys are stacked and the epoch's scan runs
over them in one compiled call: member ``i`` sees exactly what a lone run with seed
``seeds[i]`` would see. The hyperparameters live in the optimiser's state, so each member
may have its own (``run_epoch`` takes one eta per member).

Two ways to run the members, the backend's choice (``backend.choices().conv_members``):

- ``"vmap"``: the scan ``vmap``-ed over the member axis, every op batched. What a GPU
  wants, and on the CPU what an MLP wants (one op for all members: 0.84x the time of
  five lone runs for ``shallow``, bench/bench_members.py).
- ``"loop"``: the lone scan, member after member, inside the one compiled call
  (``lax.map``); for conv nets on the CPU. There the batched conv ops of "vmap" hold
  five members' patches at once, outgrow the caches, and ran every op 1.3-4x slower
  than five lone ones (profiled: the layer-2 patch matmuls, its col2im, the ReLU masks):
  5 dbl_conv_relu members took 1.15-1.5x the time of five lone runs, "loop" ~1.0x.

Either way each member's arithmetic is a lone run's, bit for bit (tests/test_ensemble.py).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nn3 import backend, layers, train

HOW = ("vmap", "loop")


def how(graphdef) -> str:
    """"loop" or "vmap" (see the module's docstring) for members of the network ``graphdef``."""
    has_conv = any(getattr(n, "type", None) is layers.ConvPoolLayer for n in graphdef.nodes)
    return backend.choices().conv_members if has_conv else "vmap"


def _members(state, opt_state, x, y, batches, steps, keys, *, members_how=None, **statics):
    """``train.scan_batches`` for every member in one call: a leading axis on the parameters,
    the optimiser's state (its hyperparameters too), the order and the keys.

    ``members_how``: "vmap" or "loop"; None: ``how(graphdef)``, the backend's choice.
    """
    one = partial(train.scan_batches, **statics)
    members_how = members_how or how(statics["graphdef"])
    if members_how == "loop":
        return jax.lax.map(lambda m: one(m[0], m[1], x, y, m[2], steps, m[3]), (state, opt_state, batches, keys))
    if members_how != "vmap":
        raise ValueError(f"members: {members_how!r} is not one of {', '.join(HOW)}")
    return jax.vmap(one, in_axes=(0, 0, None, None, 0, None, 0))(
        state, opt_state, x, y, batches, steps, keys)


_run_members = jax.jit(_members, static_argnames=train.STATICS + ("members_how",))


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
