"""Shared test setup: strict rank promotion (STYLE.md) and tiny synthetic data sets.

    PYTHONPATH=. .venv/bin/python -m pytest tests -q

``jax_numpy_rank_promotion="raise"`` is switched on at import, before any test traces
anything: an implicit broadcast of a lower-rank array anywhere in the engine fails a test.
"""
from __future__ import annotations

import os

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
# The CLI's compile cache is opt-in; tests run without it (test_cli checks it on its own).
os.environ.pop("NN3_CACHE_DIR", None)


import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def tiny_data():
    """60 examples of 8 features in [0, 1), labels 0..2: (x (60, 8) float32, y (60,) int)."""
    r = np.random.default_rng(1)
    return r.random((60, 8), dtype=np.float32), r.integers(0, 3, 60)


@pytest.fixture
def mnist_like():
    """60 MNIST-shaped examples: (x (60, 784) float32 in [0, 1), y (60,) int in 0..9)."""
    r = np.random.default_rng(2)
    return r.random((60, 784), dtype=np.float32), r.integers(0, 10, 60)


@pytest.fixture
def small_conv_spec():
    """A network3-shaped net small enough for unit tests: 8x8 image -> 6x6 -> 3x3 x 2 maps."""
    return {"layers": [
        {"type": "ConvPoolLayer", "filter_shape": [2, 1, 3, 3], "image_shape": [4, 1, 8, 8],
         "poolsize": [2, 2], "activation_fn": "tanh"},
        {"type": "FullyConnectedLayer", "n_in": 18, "n_out": 5, "activation_fn": "tanh", "p_dropout": 0.0},
        {"type": "SoftmaxLayer", "n_in": 5, "n_out": 3, "p_dropout": 0.0}],
        "cost": "LogLikelihoodCost"}


@pytest.fixture(scope="session", autouse=True)
def _array_cache(tmp_path_factory):
    """Decoded data sets go to a throwaway folder, not the user's ~/.cache."""
    os.environ["NN3_DATA_CACHE"] = str(tmp_path_factory.mktemp("arrays"))
