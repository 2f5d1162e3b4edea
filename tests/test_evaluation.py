"""nn3.engine.evaluation's batched path gives, bit for bit, the counts and costs of the per-batch path it replaced.

The reference below is how evaluation ran before (issue 12's speed work): one compiled
call per batch of ``eval_batch(net)`` rows, the last one padded and masked, each call's
cost summed in float32, the calls' sums added in order in float64; the conv layers' patches
built from slices. Accuracies and costs recorded by older runs must come out the same.
"""
from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nn3.engine import backend, conv, costs, evaluation, layers
from nn3.engine.spec import mlp_spec

# Two conv-pool layers, the second with several input maps: the layer whose patches
# evaluation now gathers (dbl_conv_relu's shape, small).
TWO_CONV = {"layers": [
    {"type": "ConvPoolLayer", "filter_shape": [3, 1, 3, 3], "image_shape": [4, 1, 12, 12], "poolsize": [2, 2],
     "activation_fn": "ReLU"},
    {"type": "ConvPoolLayer", "filter_shape": [4, 3, 2, 2], "image_shape": [4, 3, 5, 5], "poolsize": [2, 2],
     "activation_fn": "ReLU"},
    {"type": "FullyConnectedLayer", "n_in": 16, "n_out": 6, "activation_fn": "ReLU", "p_dropout": 0.0},
    {"type": "SoftmaxLayer", "n_in": 6, "n_out": 3, "p_dropout": 0.0}],
    "cost": "LogLikelihoodCost"}


def per_batch_reference(net, x, y):
    """``(correct, mean cost, n)`` as evaluation computed them before: see the module's docstring."""
    graphdef, state = nnx.split(net)
    cost, out_act = net.spec["cost"], net.output_activation

    @partial(jax.jit, static_argnames=())
    def one(state, xb, yb, mask):
        z = nnx.merge(graphdef, state).logits(xb)
        right = (jnp.argmax(z, axis=-1) == yb) & mask
        return jnp.sum(right), jnp.sum(jnp.where(mask, costs.get(cost)(z, yb, out_act), 0.0))

    size = evaluation.eval_batch(net)
    got = []
    sliced = conv._gathered_patches
    conv._gathered_patches = conv._patches  # the patches as they were built before
    try:
        for i in range(0, len(y), size):
            xb, yb = x[i:i + size], y[i:i + size]
            pad = size - len(yb)
            got.append(one(state, np.pad(xb, ((0, pad), (0, 0))), np.pad(yb, (0, pad)), np.arange(size) < len(yb)))
    finally:
        conv._gathered_patches = sliced
    got = jax.device_get(got)
    return sum(int(r) for r, _ in got), sum(float(c) for _, c in got) / len(y), len(y)


def trained_like(spec, seed):
    """A net with every parameter drawn at random (the softmax layer starts at zero otherwise)."""
    net = layers.build(spec, seed=seed)
    r = np.random.default_rng(seed)
    layers.set_params(net, [{k: (0.5 * r.normal(size=v.shape)).astype(np.float32) for k, v in p.items()}
                            for p in layers.get_params(net)])
    return net


def pixels(n, width, seed, classes=3):
    """MNIST-like inputs (codes k/256) and labels."""
    r = np.random.default_rng(seed)
    return (r.integers(0, 256, (n, width)) / 256).astype(np.float32), r.integers(0, classes, n)


def with_forward_batch(monkeypatch, size):
    c = dataclasses.replace(backend.choices(), conv_forward_batch=size)
    monkeypatch.setattr(backend, "_choices", lambda name: c)


@pytest.mark.parametrize("forward", [100, 25, 10, 30])
@pytest.mark.parametrize("n", [7, 250, 401])
def test_conv_net_counts_and_costs_equal_the_per_batch_path(monkeypatch, forward, n):
    net = trained_like(TWO_CONV, seed=n)
    x, y = pixels(n, 144, seed=forward + n)
    want = per_batch_reference(net, x, y)
    with_forward_batch(monkeypatch, forward)
    monkeypatch.setattr(evaluation, "CALL_ROWS", 200)  # several calls, the last padded
    got = evaluation.evaluate(net, (x, y))
    assert got == want  # counts, and the mean cost to its last bit
    assert evaluation.forward_batch(net) == (forward if forward != 30 else 100)  # 30 does not divide 100
    np.testing.assert_array_equal(evaluation.predict(net, x), np.argmax(np.asarray(net(x)), axis=1))


@pytest.mark.parametrize("cost", ["QuadraticCost", "CrossEntropyCost"])
@pytest.mark.parametrize("n", [7, 1000, 2345])
def test_mlp_counts_and_costs_equal_the_per_batch_path(monkeypatch, cost, n):
    net = trained_like(mlp_spec([20, 7, 3], cost), seed=n)
    x, y = pixels(n, 20, seed=n)
    want = per_batch_reference(net, x, y)
    monkeypatch.setattr(evaluation, "CALL_ROWS", 2000)
    assert evaluation.evaluate(net, (x, y)) == want


def test_one_compiled_call_per_call_rows(monkeypatch):
    """10,000 images are one call (each was a call per 100 images); 250 with CALL_ROWS 100 are three."""
    net = trained_like(TWO_CONV, seed=0)
    calls = []
    real = evaluation._eval_units
    monkeypatch.setattr(evaluation, "_eval_units", lambda *a, **k: calls.append(1) or real(*a, **k))
    evaluation.evaluate(net, pixels(10_000, 144, seed=1))
    assert len(calls) == 1
    monkeypatch.setattr(evaluation, "CALL_ROWS", 100)
    evaluation.evaluate(net, pixels(250, 144, seed=1))
    assert len(calls) == 4


def test_one_program_for_every_size(monkeypatch):
    """Every call has one shape (CALL_ROWS images, padded): one compile per network, as before."""
    net = trained_like(TWO_CONV, seed=0)
    shapes = []
    real = evaluation._eval_units
    monkeypatch.setattr(evaluation, "_eval_units", lambda *a, **k: shapes.append(a[1].shape) or real(*a, **k))
    for n in (1, 100, 101, 10_001):
        evaluation.evaluate(net, pixels(n, 144, seed=n))
    assert set(shapes) == {(100, 100, 144)} and len(shapes) == 5


@pytest.mark.parametrize("n", [1, 99, 250])
def test_predict_is_the_argmax_of_the_logits(n):
    net = trained_like(TWO_CONV, seed=n)
    x, _ = pixels(n, 144, seed=n)
    got = evaluation.predict(net, x)
    assert got.shape == (n,)
    np.testing.assert_array_equal(got, np.argmax(np.asarray(net(x)), axis=1))
    assert evaluation.predict(net, x[:0]).shape == (0,)


def test_padding_units_are_not_computed():
    """Units past the data read (0, 0): the loop stops at the last unit with a real row."""
    net = trained_like(TWO_CONV, seed=0)
    graphdef, state = nnx.split(net)
    x, y = pixels(400, 144, seed=2)
    x[300:] = np.nan  # a computed unit would give NaN costs
    mask = (np.arange(400) < 250).reshape(4, 100)
    right, total, _ = evaluation._eval_units(state, x.reshape(4, 100, -1), y.reshape(4, 100), mask, 3,
                                          graphdef=graphdef, cost=net.spec["cost"], out_act=net.output_activation,
                                          size=50)
    assert np.all(np.isfinite(np.asarray(total))) and np.asarray(total)[3] == 0 and np.asarray(right)[3] == 0
    assert np.asarray(total)[2] > 0


def test_vote_is_a_plurality_with_ties_to_the_smaller_digit():
    from nn3.engine import layers
    from nn3.engine.spec import mlp_spec
    rng = np.random.default_rng(0)
    x, y = rng.random((30, 12), dtype=np.float32), rng.integers(0, 4, 30)
    nets = [layers.build(mlp_spec([12, 5, 4]), seed=s) for s in range(3)]
    preds = np.stack([evaluation.predict(n, x) for n in nets])
    got = evaluation.vote(nets, x)
    for i in range(len(x)):
        counts = np.bincount(preds[:, i], minlength=4)
        assert got[i] == int(np.flatnonzero(counts == counts.max())[0])
    assert evaluation.vote_accuracy(nets, (x, y)) == float(np.mean(got == y))
