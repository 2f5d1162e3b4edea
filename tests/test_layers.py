"""Tests for nn3.engine.layers: the book's shapes, a numpy convolution, flatten order, init, dropout.

The spec's own rules (validation, shapes, names) are tested in test_spec.py.
"""
from __future__ import annotations

import copy
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nn3.engine import layers
import references
from nn3.engine.spec import input_size, mlp_spec, output_shape
from test_spec import DBL_CONV as DBL_CONV_SPEC  # chapter 6's double conv net, as network3 writes it


@functools.lru_cache(maxsize=None)
def _jitted(graphdef, method):
    def f(state, x, key):
        m = nnx.merge(graphdef, state)
        return (getattr(m, method) if method else m)(x, key)
    return jax.jit(f)


def run(module, x, key=None, method=None):
    """``module(x, key)`` (or ``module.method(x, key)``) under one jit, compiled once per graph."""
    g, s = nnx.split(module)
    return np.asarray(_jitted(g, method)(s, jnp.asarray(x), key))


def fc_spec(n_in, n_out, act="linear", p=0.0, cost="QuadraticCost"):
    return {"layers": [{"type": "FullyConnectedLayer", "n_in": n_in, "n_out": n_out,
                        "activation_fn": act, "p_dropout": p}], "cost": cost}


# --------------------------------------------------------------------------- shapes


def abstract(spec):
    """The network for ``spec`` with shapes and no values (nothing is compiled)."""
    return nnx.eval_shape(lambda: layers.build(spec, seed=0))


def shape_of(module, *shape):
    g, s = nnx.split(module)
    return jax.eval_shape(lambda s, x: nnx.merge(g, s)(x), s, jax.ShapeDtypeStruct(shape, jnp.float32)).shape


def test_double_conv_shapes_follow_the_book():
    spec = DBL_CONV_SPEC
    assert output_shape(spec["layers"][0]) == (20, 12, 12)  # network3's (maps, H, W); NHWC inside
    assert output_shape(spec["layers"][1]) == (40, 4, 4)
    assert input_size(spec) == 784
    net = abstract(spec)
    assert [l.w.shape for l in net.layers] == [(20, 1, 5, 5), (40, 20, 5, 5), (100, 640), (10, 100)]
    assert [l.b.shape for l in net.layers] == [(20,), (40,), (100,), (10,)]
    assert shape_of(net.layers[0], 2, 784) == (2, 12, 12, 20)  # 28 -> 24 -> 12, NHWC between convs
    assert shape_of(net.layers[1], 2, 12, 12, 20) == (2, 4, 4, 40)  # 12 -> 8 -> 4
    assert shape_of(net.layers[2], 2, 4, 4, 40) == (2, 100)  # flattened to 640
    assert shape_of(net, 2, 784) == (2, 10)


def test_small_conv_net_forward_is_a_distribution(small_conv_spec):
    net = layers.build(small_conv_spec, seed=0)
    out = run(net, np.random.default_rng(0).random((3, 64), dtype=np.float32))
    assert out.shape == (3, 3)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_double_conv_with_wrong_fc_width_is_not_built():
    spec = copy.deepcopy(DBL_CONV_SPEC)
    spec["layers"][2]["n_in"] = 2880
    with pytest.raises(ValueError, match="640"):
        layers.build(spec)


# --------------------------------------------------------------------------- conv


def test_numpy_reference_is_a_true_convolution():
    # A single tap at w[0, 0] of a 2x2 kernel reads the input at (i+1, j+1).
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    w = np.zeros((1, 1, 2, 2))
    w[0, 0, 0, 0] = 1.0
    np.testing.assert_array_equal(references.true_conv(x, w)[0, 0], x[0, 0, 1:, 1:])


@pytest.mark.parametrize("formulation", ["fused", "im2col", "xla"])  # "xla": the path off CPU, checked here
def test_convpool_forward_matches_numpy(formulation):
    r = np.random.default_rng(4)
    # 7x8 image, 3x2 filter -> 5x7 -> pool (2, 3) -> 2x2, dropping a row and a column.
    layer = layers.ConvPoolLayer((3, 2, 3, 2), (4, 2, 7, 8), poolsize=(2, 3), activation_fn="tanh",
                                 rng=np.random.default_rng(0), init="normal", formulation=formulation)
    assert layer.formulation == formulation
    w = r.normal(size=(3, 2, 3, 2)).astype(np.float32)
    b = r.normal(size=3).astype(np.float32)
    layer.w[...], layer.b[...] = jnp.asarray(w), jnp.asarray(b)
    x = r.random((4, 2 * 7 * 8), dtype=np.float32)  # rows in network3's (C, H, W) order
    want = np.tanh(references.max_pool(references.true_conv(x.reshape(4, 2, 7, 8).astype(np.float64), w), 2, 3)
                   + b[None, :, None, None])
    got = run(layer, x)
    assert got.shape == (4, 2, 2, 3)
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), want, rtol=1e-5, atol=1e-5)


def test_bias_is_added_once_per_pooled_unit():
    # The book's activations are monotone, so pool-then-activate is only visible through
    # the numbers: one bias per pooled unit, the max of the raw convolution under it.
    layer = layers.ConvPoolLayer((1, 1, 1, 1), (1, 1, 2, 2), poolsize=(2, 2), activation_fn="linear",
                                 rng=np.random.default_rng(0), init="normal")
    layer.w[...] = jnp.ones((1, 1, 1, 1))
    layer.b[...] = jnp.array([10.0])
    got = run(layer, np.array([[1.0, 4.0, 2.0, 3.0]], np.float32))
    np.testing.assert_allclose(got.reshape(-1), [14.0])


def test_flatten_before_fc_is_network3_chw_order():
    spec = {"layers": [
        {"type": "ConvPoolLayer", "filter_shape": [3, 1, 2, 2], "image_shape": [2, 1, 5, 5],
         "poolsize": [2, 2], "activation_fn": "tanh"},
        {"type": "FullyConnectedLayer", "n_in": 12, "n_out": 1, "activation_fn": "linear", "p_dropout": 0.0}],
        "cost": "QuadraticCost"}
    net = layers.build(spec, seed=0, init="normal")
    x = np.random.default_rng(5).random((2, 25), dtype=np.float32)
    maps = run(net.layers[0], x)  # (2, 2, 2, 3) NHWC
    params = layers.get_params(net)
    for c, h, w in [(0, 0, 1), (1, 1, 0), (2, 0, 0), (2, 1, 1)]:
        pick = np.zeros((1, 12), np.float32)
        pick[0, c * 4 + h * 2 + w] = 1.0
        params[1] = {"w": pick, "b": np.zeros(1, np.float32)}
        layers.set_params(net, params)
        np.testing.assert_allclose(run(net, x)[:, 0], maps[:, h, w, c], rtol=1e-6)


# --------------------------------------------------------------------------- initialisation


def stats(a):
    a = np.asarray(a, np.float64).ravel()
    return a.mean(), a.std()


@pytest.mark.parametrize("init", ["network3", "normal", "scaled"])
def test_fc_init_statistics(init):
    std = {"network3": math.sqrt(1 / 2000), "normal": 1.0, "scaled": 1 / math.sqrt(30)}[init]
    layer = layers.FullyConnectedLayer(30, 2000, rng=np.random.default_rng(1), init=init)
    m, s = stats(layer.w[...])
    assert abs(s / std - 1) < 0.05 and abs(m) < 0.05 * std
    m, s = stats(layer.b[...])  # biases N(0, 1) whatever the weights
    assert abs(s - 1) < 0.1 and abs(m) < 0.1


@pytest.mark.parametrize("init", ["network3", "normal", "scaled"])
def test_conv_init_statistics(init):
    filter_shape, pool = (64, 3, 5, 5), (1, 2)  # n_out = 64*5*5/2 (input maps do not count)
    nf, c, h, w = filter_shape
    std = {"network3": math.sqrt(1 / (nf * h * w / math.prod(pool))), "normal": 1.0,
           "scaled": 1 / math.sqrt(c * h * w)}[init]
    layer = layers.ConvPoolLayer(filter_shape, (1, c, 12, 12), pool, rng=np.random.default_rng(2), init=init)
    m, s = stats(layer.w[...])
    assert abs(s / std - 1) < 0.1 and abs(m) < 0.1 * std
    m, s = stats(layer.b[...])
    assert abs(s - 1) < 0.4 and abs(m) < 0.4


def test_softmax_layer_starts_at_zero(small_conv_spec):
    net = layers.build(small_conv_spec, seed=3)
    last = layers.get_params(net)[-1]
    assert not last["w"].any() and not last["b"].any()


def test_default_init_is_scaled_for_mlps_and_network3_otherwise():
    mlp = layers.build(mlp_spec([100, 900, 2]), seed=0)
    assert abs(np.std(layers.get_params(mlp)[0]["w"]) / 0.1 - 1) < 0.05
    fc = {"layers": [{"type": "FullyConnectedLayer", "n_in": 100, "n_out": 900, "activation_fn": "ReLU",
                      "p_dropout": 0.0}, {"type": "SoftmaxLayer", "n_in": 900, "n_out": 2, "p_dropout": 0.0}],
          "cost": "LogLikelihoodCost"}
    n3 = layers.build(fc, seed=0)
    assert abs(np.std(layers.get_params(n3)[0]["w"]) / math.sqrt(1 / 900) - 1) < 0.05


def test_unknown_init_is_a_value_error():
    with pytest.raises(ValueError, match="xavier"):
        layers.build(mlp_spec([4, 3]), init="xavier")


def test_init_is_a_function_of_the_seed():
    a, b, c = (layers.get_params(layers.build(mlp_spec([6, 6, 6, 6]), seed=s)) for s in (7, 7, 8))
    for pa, pb, pc in zip(a, b, c):
        np.testing.assert_array_equal(pa["w"], pb["w"])
        assert not np.array_equal(pa["w"], pc["w"])
    assert not np.array_equal(a[1]["w"], a[2]["w"])  # same-shaped layers draw different weights


# --------------------------------------------------------------------------- dropout


def test_dropout_at_evaluation_scales_by_one_minus_p():
    r = np.random.default_rng(6)
    net = layers.build(fc_spec(6, 4, p=0.4), seed=0)
    w, b = r.normal(size=(4, 6)).astype(np.float32), r.normal(size=4).astype(np.float32)
    layers.set_params(net, [{"w": w, "b": b}])
    x = r.random((5, 6), dtype=np.float32)
    np.testing.assert_allclose(run(net, x), 0.6 * (x @ w.T) + b, rtol=1e-5, atol=1e-6)


def test_dropout_in_training_keeps_about_one_minus_p_and_does_not_rescale():
    n, p = 500, 0.3
    net = layers.build(fc_spec(n, n, p=p), seed=0)
    layers.set_params(net, [{"w": np.eye(n, dtype=np.float32), "b": np.zeros(n, np.float32)}])
    x = np.ones((8, n), np.float32)
    k1, k2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
    z1 = run(net, x, k1, method="logits")
    assert set(np.unique(z1)) <= {0.0, 1.0}  # kept inputs pass unscaled
    assert abs(z1.mean() - (1 - p)) < 0.03
    assert not np.array_equal(z1[0], z1[1])  # a mask per example
    np.testing.assert_array_equal(z1, run(net, x, k1, method="logits"))
    assert not np.array_equal(z1, run(net, x, k2, method="logits"))


def test_no_dropout_without_p_even_with_a_key():
    net = layers.build(fc_spec(5, 3), seed=0)
    x = np.random.default_rng(7).random((4, 5), dtype=np.float32)
    np.testing.assert_array_equal(run(net, x, jax.random.PRNGKey(0), method="logits"), run(net, x, method="logits"))


def test_softmax_layer_input_is_dropped_too():
    spec = {"layers": [{"type": "SoftmaxLayer", "n_in": 200, "n_out": 200, "p_dropout": 0.5}],
            "cost": "LogLikelihoodCost"}
    net = layers.build(spec, seed=0)
    layers.set_params(net, [{"w": np.eye(200, dtype=np.float32), "b": np.zeros(200, np.float32)}])
    x = np.ones((3, 200), np.float32)
    np.testing.assert_allclose(run(net, x, method="logits"), 0.5)
    z = run(net, x, jax.random.PRNGKey(0), method="logits")
    assert set(np.unique(z)) == {0.0, 1.0}


# --------------------------------------------------------------------------- specs


@pytest.mark.parametrize("spec", [
    {"layers": [{"type": "FullyConnectedLayer", "n_in": 4, "n_out": 3, "activation_fn": "sigmoid"}],
     "cost": "QuadraticCost"},
    {"layers": [{"type": "ConvPoolLayer", "filter_shape": [2, 1, 3, 3], "image_shape": [1, 1, 6, 6],
                 "activation_fn": "sigmoid"}, {"type": "SoftmaxLayer", "n_in": 8, "n_out": 2}],
     "cost": "LogLikelihoodCost"},
], ids=["fc-without-p_dropout", "conv-without-poolsize"])
def test_spec_without_a_defaulted_key_builds_or_is_a_value_error(spec):
    try:
        layers.build(spec)
    except ValueError:
        pass


def test_spec_survives_the_network():
    net = abstract(DBL_CONV_SPEC)
    assert net.spec == DBL_CONV_SPEC
    assert net.n_in == 784 and net.output_activation == "softmax"


@pytest.mark.parametrize("shape", [(2, 7), (2, 9), (8,), (2, 2, 4)])
def test_wrong_input_width_is_a_value_error_at_call(shape):
    net = layers.build(mlp_spec([8, 3]), seed=0)
    with pytest.raises(ValueError, match="8") as e:
        net(jnp.zeros(shape))
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- params


def test_get_set_params_round_trip(small_conv_spec):
    a = layers.build(small_conv_spec, seed=0)
    b = layers.build(small_conv_spec, seed=1)
    pa = layers.get_params(a)
    assert all(p[k].dtype == np.float32 for p in pa for k in "wb")
    layers.set_params(b, [{k: v.astype(np.float64) for k, v in p.items()} for p in pa])
    for p, q in zip(pa, layers.get_params(b)):
        np.testing.assert_array_equal(p["w"], q["w"])
        np.testing.assert_array_equal(p["b"], q["b"])
        assert q["w"].dtype == np.float32
    x = np.random.default_rng(8).random((2, 64), dtype=np.float32)
    np.testing.assert_array_equal(run(a, x), run(b, x))


def test_set_params_shape_mismatch_is_a_value_error():
    net = layers.build(mlp_spec([6, 5, 3]), seed=0)
    params = layers.get_params(net)
    before = [p["w"].copy() for p in params]
    bad = copy.deepcopy(params)
    bad[1]["w"] = bad[1]["w"].T
    with pytest.raises(ValueError, match=r"layers\[1\]\.w") as e:
        layers.set_params(net, bad)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="2"):
        layers.set_params(net, params[:1])
    bad = copy.deepcopy(params)
    bad[0]["b"] = bad[0]["b"][:, None]
    with pytest.raises(ValueError):
        layers.set_params(net, bad)
    np.testing.assert_array_equal(layers.get_params(net)[0]["w"], before[0])


# --------------------------------------------------------------------------- strictness


@pytest.mark.parametrize("which", ["fc", "fc-dropout", "conv"])
def test_forward_obeys_rank_promotion_raise(which, small_conv_spec):
    # conftest sets "raise" for the session; this says so where the biases are added.
    with jax.numpy_rank_promotion("raise"):
        if which == "conv":
            net = layers.build(small_conv_spec, seed=0)
            run(net.layers[0], np.zeros((2, 64), np.float32))
        else:
            net = layers.build(fc_spec(4, 3, p=0.5 if which == "fc-dropout" else 0.0), seed=0)
            run(net, np.zeros((2, 4), np.float32), jax.random.PRNGKey(0), method="logits")
