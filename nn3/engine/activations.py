"""The book's activation functions in JAX, keyed by nn3.spec's names for them.

    >>> from nn3.engine.activations import FUNCTIONS
    >>> float(FUNCTIONS["ReLU"](-1.0))
    0.0

``FUNCTIONS`` holds one function for each of ``spec.OUTPUT_ACTIVATIONS``: a layer's
``activation_fn`` and the softmax of network3's output layer. Which names a spec may
use is nn3.spec's to say; tests/test_spec.py checks that every one has a function here.
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def sigmoid(z):
    return jax.nn.sigmoid(z)


def tanh(z):
    return jnp.tanh(z)


def relu(z):
    # network3's ReLU is T.maximum(0.0, z).
    return jnp.maximum(0.0, z)


def linear(z):
    return z


def softmax(z):
    """Over the last axis: network3's SoftmaxLayer."""
    return jax.nn.softmax(z)


FUNCTIONS: dict[str, Callable] = {"sigmoid": sigmoid, "tanh": tanh, "ReLU": relu, "linear": linear,
                                  "softmax": softmax}
