"""The book's activation functions, by the names network3.py gives them.

    >>> from nn3.activations import ACTIVATIONS
    >>> float(ACTIVATIONS["ReLU"](-1.0))
    0.0
"""
from __future__ import annotations

from typing import Callable

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


ACTIVATIONS: dict[str, Callable] = {"sigmoid": sigmoid, "tanh": tanh, "ReLU": relu, "linear": linear}
