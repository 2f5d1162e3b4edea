"""The book's activation functions in JAX, keyed by nn3.engine.spec's names for them.

    >>> from nn3.engine.activations import FUNCTIONS
    >>> float(FUNCTIONS["ReLU"](-1.0))
    0.0

``FUNCTIONS`` holds one function for each of ``spec.OUTPUT_ACTIVATIONS``: a layer's
``activation_fn`` and the softmax of network3's output layer. Which names a spec may
use is nn3.engine.spec's to say; tests/test_spec.py checks that every one has a function here.
Each maps an array of weighted inputs ``z`` (any shape, float32) to one of the same
shape and dtype.
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = ["FUNCTIONS", "linear", "relu", "sigmoid", "softmax", "tanh"]


def sigmoid(z: jax.Array) -> jax.Array:
    return jax.nn.sigmoid(z)


def tanh(z: jax.Array) -> jax.Array:
    return jnp.tanh(z)


def relu(z: jax.Array) -> jax.Array:
    # network3's ReLU is T.maximum(0.0, z).
    return jnp.maximum(0.0, z)


def linear(z: jax.Array) -> jax.Array:
    return z


def softmax(z: jax.Array) -> jax.Array:
    """Over the last axis: network3's SoftmaxLayer."""
    return jax.nn.softmax(z)


FUNCTIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": sigmoid, "tanh": tanh, "ReLU": relu, "linear": linear, "softmax": softmax}
