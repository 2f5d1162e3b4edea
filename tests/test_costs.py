"""Tests for nn3.engine.costs: each cost against the book's formula in numpy, its gradient, the registry."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nn3.engine import costs, spec


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def one_hot(y, n):
    return np.eye(n)[y]


def cost(name, z, y, act):
    """The cost under jit (one compile instead of one per eager op)."""
    return jax.jit(costs.get(name), static_argnums=2)(jnp.asarray(z), jnp.asarray(y), act)


def grad_z(name, z, y, act):
    return jax.jit(jax.grad(lambda zz, yy: costs.get(name)(zz, yy, act).sum()))(jnp.asarray(z), jnp.asarray(y))


@pytest.fixture
def zy():
    r = np.random.default_rng(3)
    return r.normal(0, 2, (7, 5)).astype(np.float32), r.integers(0, 5, 7)


def test_registry_is_a_dict_of_network2_names():
    assert isinstance(costs.FUNCTIONS, dict)
    assert set(costs.FUNCTIONS) == {"QuadraticCost", "CrossEntropyCost", "LogLikelihoodCost"} == set(spec.COSTS)
    for name, fn in costs.FUNCTIONS.items():
        assert costs.get(name) is fn


@pytest.mark.parametrize("name", ["NoSuchCost", "quadratic", "get", "__name__", "jnp", "quadraticcost"])
def test_unknown_name_is_a_value_error_naming_it(name):
    with pytest.raises(ValueError, match=name) as e:
        costs.get(name)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", [None, 3])
def test_non_string_name_is_a_value_error(name):
    with pytest.raises(ValueError):
        costs.get(name)


def test_quadratic_with_sigmoid(zy):
    z, y = zy
    want = 0.5 * np.sum((sigmoid(z.astype(np.float64)) - one_hot(y, 5)) ** 2, axis=1)
    got = cost("QuadraticCost", z, y, "sigmoid")
    assert got.shape == (7,)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("act, f", [("linear", lambda z: z), ("tanh", np.tanh),
                                    ("ReLU", lambda z: np.maximum(0, z)), ("softmax", softmax)])
def test_quadratic_with_other_outputs(zy, act, f):
    z, y = zy
    want = 0.5 * np.sum((f(z.astype(np.float64)) - one_hot(y, 5)) ** 2, axis=1)
    got = cost("QuadraticCost", z, y, act)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_cross_entropy(zy):
    z, y = zy
    a, t = sigmoid(z.astype(np.float64)), one_hot(y, 5)
    want = np.sum(-t * np.log(a) - (1 - t) * np.log(1 - a), axis=1)
    got = cost("CrossEntropyCost", z, y, "sigmoid")
    assert got.shape == (7,)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_cross_entropy_saturated_is_finite():
    # The book needed nan_to_num here; the cost of a confidently wrong neuron is |z|.
    z = jnp.array([[50.0, -50.0], [-200.0, 200.0]])
    y = jnp.array([1, 1])
    got = np.asarray(cost("CrossEntropyCost", z, y, "sigmoid"))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, [100.0, 0.0], atol=1e-4)


def test_log_likelihood(zy):
    z, y = zy
    want = -np.log(softmax(z.astype(np.float64))[np.arange(7), y])
    got = cost("LogLikelihoodCost", z, y, "softmax")
    assert got.shape == (7,)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_log_likelihood_saturated_is_finite():
    got = np.asarray(cost("LogLikelihoodCost", [[500.0, -500.0]], [1], "softmax"))
    np.testing.assert_allclose(got, [1000.0], rtol=1e-6)


@pytest.mark.parametrize("name, act, out", [("CrossEntropyCost", "sigmoid", sigmoid),
                                            ("LogLikelihoodCost", "softmax", softmax)])
def test_gradient_wrt_z_is_a_minus_y(zy, name, act, out):
    z, y = zy
    g = grad_z(name, z, y, act)
    np.testing.assert_allclose(g, out(z.astype(np.float64)) - one_hot(y, 5), rtol=1e-5, atol=1e-6)


def test_quadratic_gradient_wrt_z_is_book_delta(zy):
    z, y = zy
    a = sigmoid(z.astype(np.float64))
    g = grad_z("QuadraticCost", z, y, "sigmoid")
    np.testing.assert_allclose(g, (a - one_hot(y, 5)) * a * (1 - a), rtol=1e-5, atol=1e-6)


def test_costs_run_eagerly_too(zy):
    z, y = zy
    got = costs.get("LogLikelihoodCost")(jnp.asarray(z), jnp.asarray(y), "softmax")
    np.testing.assert_allclose(got, cost("LogLikelihoodCost", z, y, "softmax"), rtol=1e-6)
