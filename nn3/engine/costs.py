"""The book's three cost functions, by the names its JSON files use.

    >>> import jax.numpy as jnp
    >>> from nn3.engine import costs
    >>> z = jnp.zeros((2, 10)); y = jnp.array([3, 7])
    >>> costs.get("LogLikelihoodCost")(z, y, "softmax").shape
    (2,)

Each cost maps the output layer's weighted input ``z`` (batch, classes) and integer
labels ``y`` (batch,) to a per-example cost (batch,); the quadratic and cross-entropy
costs also take desired outputs ``y`` (batch, classes) in place of the labels. Working
from ``z`` rather than from the activations lets cross-entropy and log-likelihood use
stable log-sigmoid and log-softmax forms; their gradients with respect to ``z`` are the
book's ``a - y``. The names, and which output activations each cost fits, are
nn3.engine.spec's (``spec.COST_OUTPUTS``); ``FUNCTIONS`` holds one function per name,
looked up in that registry, never as a module attribute.
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from nn3.engine import activations

__all__ = ["FUNCTIONS", "CostFn", "cross_entropy", "get", "log_likelihood", "quadratic"]

CostFn = Callable[[jax.Array, jax.Array, str], jax.Array]


def _one_hot(y: jax.Array, n: int) -> jax.Array:
    # (batch, n) targets pass as they are: the book's backprop(x, y) takes any desired output.
    return y.astype(jnp.float32) if y.ndim == 2 else jax.nn.one_hot(y, n, dtype=jnp.float32)


def quadratic(z: jax.Array, y: jax.Array, activation: str) -> jax.Array:
    """``0.5 * ||a - y||^2`` with ``a`` the output activations (chapter 1).

    Args:
      z: (batch, classes) float32 weighted inputs of the output layer.
      y: (batch,) int labels, or (batch, classes) float32 desired outputs.
      activation: the output layer's activation (a key of activations.FUNCTIONS).

    Returns:
      (batch,) float32 costs.
    """
    a = activations.FUNCTIONS[activation](z)
    return 0.5 * jnp.sum((a - _one_hot(y, z.shape[-1])) ** 2, axis=-1)


def cross_entropy(z: jax.Array, y: jax.Array, activation: str) -> jax.Array:
    """``sum(-y ln a - (1-y) ln(1-a))`` for sigmoid outputs (chapter 3).

    Written with log-sigmoid so that a saturated neuron gives a finite cost where the
    book needed ``np.nan_to_num``.

    Args:
      z: (batch, classes) float32 weighted inputs of the output layer.
      y: (batch,) int labels, or (batch, classes) float32 desired outputs.
      activation: "sigmoid" (checked when the network is built; not read here).

    Returns:
      (batch,) float32 costs.
    """
    del activation  # validated as sigmoid when the network is built
    t = _one_hot(y, z.shape[-1])
    return -jnp.sum(t * jax.nn.log_sigmoid(z) + (1 - t) * jax.nn.log_sigmoid(-z), axis=-1)


def log_likelihood(z: jax.Array, y: jax.Array, activation: str) -> jax.Array:
    """``-log a[y]`` for softmax outputs (chapter 6), via log-softmax.

    Args:
      z: (batch, classes) float32 weighted inputs of the output layer.
      y: (batch,) int labels.
      activation: "softmax" (checked when the network is built; not read here).

    Returns:
      (batch,) float32 costs.
    """
    del activation
    logp = jax.nn.log_softmax(z)
    return -jnp.take_along_axis(logp, y[:, None], axis=-1)[:, 0]


FUNCTIONS: dict[str, CostFn] = {
    "QuadraticCost": quadratic,
    "CrossEntropyCost": cross_entropy,
    "LogLikelihoodCost": log_likelihood,
}


def get(name: str) -> CostFn:
    """The cost called ``name``; a ValueError names the unknown one."""
    try:
        return FUNCTIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown cost {name!r} (known: {', '.join(FUNCTIONS)})") from None
