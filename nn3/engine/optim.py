"""Update rules as optax chains: the book's SGD (L2, L1, momentum) and optax's other optimisers.

    >>> import jax.numpy as jnp
    >>> from nn3.engine import optim
    >>> rule = optim.Rule("sgd", decay=True, momentum=True)
    >>> params = {"w": jnp.ones(2), "b": jnp.ones(2)}
    >>> state = rule.init(params, learning_rate=0.5, weight_decay=0.25, momentum=0.9)
    >>> updates, state = rule.transform().update(params, state, params)
    >>> updates["w"].tolist(), updates["b"].tolist()  # -0.5 * (1 + 0.25 * 1) and -0.5 * 1
    ([-0.625, -0.625], [-0.5, -0.5])

The book's step is ``v = mu*v - eta*(grad + decay*w + l1*sign(w))``, ``p += v`` (no decay
or L1 on biases). As a chain: ``add_decayed_weights`` (masked to the weights; network2
and network3 differ only in the value, lmbda/n or lmbda/num_batches), ``add_l1`` (ours:
optax has no L1 term), then ``scale_by_learning_rate``, or with momentum ``scale`` and
``book_momentum`` (ours: see there why not ``optax.trace``), whose state is the book's
velocity, the array a checkpoint stores for it.

What is static (which terms are on, the optimiser) is a ``Rule``, a hashable value that
jit keys on: an off term costs no operations. The values (eta, the decay, the L1
strength, mu) live in the state through ``optax.inject_hyperparams``, so one compiled
program serves any of them: the plateau schedule changes eta between epochs without
recompiling, and members of an ensemble may each have their own.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

# The hyperparameters every rule's state holds (those a rule does not use cost nothing).
HYPERPARAMS = ("learning_rate", "weight_decay", "l1", "momentum")

# Past the book: optax's optimisers by name, eta as their learning rate. An allow-list,
# never a getattr on what a user typed. lmbda and L1 stay terms of the gradient (L2 in
# the cost, as the book has it), so lion's own decoupled decay is off.
OTHERS = {
    "adam": optax.adam,
    "adamax": optax.adamax,
    "amsgrad": optax.amsgrad,
    "nadam": optax.nadam,
    "adabelief": optax.adabelief,
    "adagrad": optax.adagrad,
    "rmsprop": optax.rmsprop,
    "lion": lambda learning_rate: optax.lion(learning_rate, weight_decay=0.0),
}
OPTIMIZERS = ("sgd",) + tuple(OTHERS)  # "sgd": the book's rule
TAKES_MOMENTUM = ("sgd", "rmsprop")


def is_weight(path: tuple[Any, ...]) -> bool:
    """Whether a leaf's key path names a weight (``w``); biases get no decay or L1."""
    return any(getattr(k, "key", None) == "w" for k in path)


def weights(params: optax.Params) -> Any:
    """The mask of ``params``' weights, for ``optax.masked``: ``params``' structure with a
    bool per leaf."""
    return jax.tree_util.tree_map_with_path(lambda path, _: is_weight(path), params)


class MomentumState(NamedTuple):
    """The book's velocity ``v``, shaped like the parameters."""
    velocity: Any


def book_momentum(mu: float | jax.Array) -> optax.GradientTransformation:
    """Turn steps ``d`` (``eta * grad``, the sign not yet flipped) into ``v = mu*v - d``.

    ``optax.trace`` after ``scale_by_learning_rate`` gives the same float32 numbers on
    paper (``t = -d + mu*t``; a negation is exact, a sum commutes), yet XLA:CPU may
    contract the loop's multiply-adds differently for that form, and a run with momentum
    then drifts from the book's by an ulp within a few steps (the optimised HLO of both
    is two multiplies and an add or a subtract: the difference lies below it). This
    writes the book's expression itself, so that runs match the book's arithmetic.
    """
    def init(params):
        return MomentumState(velocity=jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        v = jax.tree.map(lambda v, d: mu * v - d, state.velocity, updates)
        return v, MomentumState(velocity=v)

    return optax.GradientTransformation(init, update)


def add_l1(strength: float | jax.Array) -> optax.GradientTransformation:
    """Add ``strength * sign(p)`` to the updates: the gradient of ``strength * |p|``.

    Written here because optax has the L2 term (``add_decayed_weights``) but no L1.
    """
    def update(updates, state, params=None):
        if params is None:
            raise ValueError("add_l1 needs the parameters")
        return jax.tree.map(lambda g, p: g + strength * jnp.sign(p), updates, params), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


@dataclasses.dataclass(frozen=True)
class Rule:
    """The static part of an update rule: the optimiser, and which terms are on.

    ``optimizer`` is ``"sgd"`` (the book's rule) or a name in ``OTHERS``; ``momentum``
    applies to the rules in ``TAKES_MOMENTUM``.
    """
    optimizer: str = "sgd"
    decay: bool = False
    l1: bool = False
    momentum: bool = False

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.momentum and self.optimizer not in TAKES_MOMENTUM:
            raise ValueError(f"momentum applies to the optimizers {' and '.join(TAKES_MOMENTUM)}, "
                             f"not {self.optimizer}")

    def chain(self, learning_rate: float | jax.Array, weight_decay: float | jax.Array, l1: float | jax.Array,
              momentum: float | jax.Array) -> optax.GradientTransformation:
        """The chain for given hyperparameter values (numbers or traced scalars)."""
        parts = []
        if self.decay:
            parts.append(optax.add_decayed_weights(weight_decay, mask=weights))
        if self.l1:
            parts.append(optax.masked(add_l1(l1), weights))
        if self.optimizer == "sgd" and self.momentum:
            parts += [optax.scale(learning_rate), book_momentum(momentum)]  # last: see velocity()
        elif self.optimizer == "sgd":
            parts.append(optax.scale_by_learning_rate(learning_rate))  # p + (-(eta*g)) is p - eta*g exactly
        elif self.optimizer == "rmsprop":
            parts.append(optax.rmsprop(learning_rate, momentum=momentum if self.momentum else None))
        else:
            parts.append(OTHERS[self.optimizer](learning_rate))
        return optax.chain(*parts)

    def transform(self, **values: float) -> optax.GradientTransformation:
        """The chain with its hyperparameters in its state (``values``: their first values,
        0 where not given; the update reads them from the state)."""
        return optax.inject_hyperparams(self.chain)(**{k: float(values.get(k, 0.0)) for k in HYPERPARAMS})

    def init(self, params: optax.Params, **values: float) -> optax.OptState:
        """The state for ``params``, with the hyperparameters ``values`` (see ``set_hyperparams``);
        an unknown name is a ValueError."""
        unknown = set(values) - set(HYPERPARAMS)
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {', '.join(sorted(unknown))}")
        return self.transform(**values).init(params)

    @property
    def book(self) -> bool:
        """Whether this is the book's rule, whose checkpoints hold ``velocity`` (or nothing)."""
        return self.optimizer == "sgd"


def set_hyperparams(state: optax.OptState, **values: float | np.ndarray | jax.Array) -> optax.OptState:
    """``state`` with the hyperparameters ``values`` (scalars, or one per member) in it.

    The stored dtype and shape are kept (float32; (members,) in an ensemble), so that the
    compiled step sees the same types whatever the values: no recompilation.
    """
    hp = dict(state.hyperparams)
    for k, v in values.items():
        if k not in hp:
            raise ValueError(f"unknown hyperparameter {k!r}")
        hp[k] = jnp.broadcast_to(jnp.asarray(v, hp[k].dtype), hp[k].shape)
    return state._replace(hyperparams=hp)


def velocity(state: optax.OptState) -> Any:
    """The book's momentum velocity ``v`` (shaped like the parameters) in a ``Rule("sgd",
    momentum=True)`` state: ``book_momentum``'s, the chain's last."""
    return state.inner_state[-1].velocity


def with_velocity(state: optax.OptState, v: Any) -> optax.OptState:
    """``state`` with the book's velocity replaced by ``v``."""
    inner = state.inner_state
    return state._replace(inner_state=inner[:-1] + (MomentumState(velocity=v),))


def inner_leaves(state: optax.OptState) -> list[jax.Array]:
    """The arrays an optimiser carries between steps (moments, counts), in a fixed order.

    The hyperparameters and inject_hyperparams' own step count are left out: the run's
    config and loop give them back (no rule here uses that count).
    """
    return jax.tree.leaves(state.inner_state)


def with_inner_leaves(state: optax.OptState, leaves: Sequence[np.ndarray | jax.Array]) -> optax.OptState:
    """``state`` with the arrays of ``inner_leaves`` replaced by ``leaves``; a ValueError
    when their number differs."""
    held, treedef = jax.tree.flatten(state.inner_state)
    if len(held) != len(leaves):
        raise ValueError(f"optimizer state: {len(leaves)} arrays given, the rule holds {len(held)}")
    return state._replace(inner_state=jax.tree.unflatten(treedef, [jnp.asarray(a) for a in leaves]))


__all__ = ["HYPERPARAMS", "OPTIMIZERS", "OTHERS", "TAKES_MOMENTUM", "MomentumState", "Rule", "add_l1",
           "book_momentum", "inner_leaves", "is_weight", "set_hyperparams", "velocity", "weights",
           "with_inner_leaves", "with_velocity"]
