"""Tests for nn3.engine.train: gradients and SGD updates against the book's numpy backprop, resume, stops.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_train.py -q

The numpy reference (tests/references.py) is chapter 2's per-example backprop with column vectors and
network2's ``update_mini_batch``; everything else is checked against it or against itself
(a run that stopped and carried on must equal one that never stopped, bit for bit).
"""
from __future__ import annotations

import dataclasses
import json
import logging

import jax
import numpy as np
import pytest
from flax import nnx

from nn3.engine import augment, costs, evaluation, layers, step, train
from nn3.engine.device_data import DeviceData, compact_codes
from nn3.engine.settings import SGDConfig
from nn3.engine.spec import input_size, mlp_spec
from nn3.engine.train import Loop, RunState, Splits
from nn3.engine.trainer import chunk_length
from nn3.engine.trainer import Trainer as Engine
import references


def Trainer(net, cfg, data, compact=None):  # noqa: N802  (a lone run's trainer, as the tests below build it)
    """The trainer of one network: the engine's Trainer with N = 1."""
    return Engine([net], [cfg], DeviceData.from_arrays(*evaluation.as_arrays(data, net.n_in, net.n_out), compact=compact))


def fit(net, cfg, data, validation=None, test=None, *, trainer=None, loop=None, **kw) -> Loop:
    """A lone run through the one loop (train.fit of one network) for ``cfg.epochs``; its Loop."""
    tr = trainer or Trainer(net, cfg, data)
    run = train.fit(tr, Splits(data, validation, test), RunState.of_one(loop or Loop(eta=float(cfg.eta))),
                    epochs=cfg.epochs, **kw)
    tr.sync()
    return run.loops[0]

DROP_SPEC = {"layers": [
    {"type": "FullyConnectedLayer", "n_in": 8, "n_out": 6, "activation_fn": "sigmoid", "p_dropout": 0.5},
    {"type": "SoftmaxLayer", "n_in": 6, "n_out": 3, "p_dropout": 0.3}], "cost": "LogLikelihoodCost"}
LINEAR_SPEC = {"layers": [
    {"type": "FullyConnectedLayer", "n_in": 8, "n_out": 3, "activation_fn": "linear", "p_dropout": 0.0}],
    "cost": "QuadraticCost"}


# --------------------------------------------------------------------------- helpers


def params64(net):
    return [{k: v.astype(np.float64) for k, v in p.items()} for p in layers.get_params(net)]


def assert_params_close(net, want, rtol=1e-4, atol=1e-5):
    for got, w in zip(layers.get_params(net), want):
        np.testing.assert_allclose(got["w"], w["w"], rtol=rtol, atol=atol)
        np.testing.assert_allclose(got["b"], w["b"], rtol=rtol, atol=atol)


def assert_params_equal(a, b):
    a = a if isinstance(a, list) else layers.get_params(a)
    b = b if isinstance(b, list) else layers.get_params(b)
    for pa, pb in zip(a, b):
        np.testing.assert_array_equal(pa["w"], pb["w"])
        np.testing.assert_array_equal(pa["b"], pb["b"])


def params_differ(a, b):
    return any(not np.array_equal(pa[k], pb[k]) for pa, pb in zip(a, b) for k in ("w", "b"))


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("cost", ["QuadraticCost", "CrossEntropyCost"])
def test_mlp_gradients_match_numpy_backprop(cost, tiny_data):
    x, y = tiny_data[0][:4], tiny_data[1][:4]
    net = layers.build(mlp_spec([8, 5, 4, 3], cost), seed=0, init="normal")
    graphdef, state = nnx.split(net)

    def loss(st):
        return costs.get(cost)(nnx.merge(graphdef, st).logits(x), y, "sigmoid").mean()

    grads = jax.jit(jax.grad(loss))(state)
    shadow = nnx.clone(net)
    nnx.update(shadow, grads)
    nb, nw = references.backprop_sum(params64(net), x, y, cost)
    for got, b, w in zip(layers.get_params(shadow), nb, nw):
        np.testing.assert_allclose(got["w"], w / 4, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(got["b"], b / 4, rtol=1e-4, atol=1e-6)


def test_conv_net_gradients_match_finite_differences(small_conv_spec):
    r = np.random.default_rng(9)
    net = layers.build(small_conv_spec, seed=0)
    params = [{k: r.normal(0, 0.5, v.shape).astype(np.float32) for k, v in p.items()}
              for p in layers.get_params(net)]  # the softmax layer must not start at zero here
    layers.set_params(net, params)
    x, y = r.random((4, 64), dtype=np.float32), r.integers(0, 3, 4)
    graphdef, state = nnx.split(net)
    loss = jax.jit(lambda st: costs.get("LogLikelihoodCost")(nnx.merge(graphdef, st).logits(x), y, "softmax").mean())
    shadow = nnx.clone(net)
    nnx.update(shadow, jax.jit(jax.grad(loss))(state))
    grads = layers.get_params(shadow)

    def loss_at(p):
        layers.set_params(shadow, p)
        return float(loss(nnx.split(shadow)[1]))

    eps, checked = 3e-3, 0
    for i, p in enumerate(params):
        for k in ("w", "b"):
            for flat in r.choice(p[k].size, size=min(3, p[k].size), replace=False):
                idx = np.unravel_index(flat, p[k].shape)
                plus, minus = [dict(q) for q in params], [dict(q) for q in params]
                plus[i][k], minus[i][k] = p[k].copy(), p[k].copy()
                plus[i][k][idx] += eps
                minus[i][k][idx] -= eps
                fd = (loss_at(plus) - loss_at(minus)) / (2 * eps)
                g = grads[i][k][idx]
                assert abs(fd - g) <= 1e-2 * abs(g) + 2e-4, (i, k, idx, fd, g)
                checked += 1
    assert checked == 17  # 3 coordinates of each array, both of the conv biases


def test_one_engine_step_on_a_conv_net_is_p_minus_eta_grad(small_conv_spec):
    r = np.random.default_rng(10)
    net = layers.build(small_conv_spec, seed=1)
    x, y = r.random((4, 64), dtype=np.float32), r.integers(0, 3, 4)
    graphdef, state = nnx.split(net)
    loss = lambda st: costs.get("LogLikelihoodCost")(nnx.merge(graphdef, st).logits(x), y, "softmax").mean()  # noqa: E731
    shadow = nnx.clone(net)
    nnx.update(shadow, jax.jit(jax.grad(loss))(state))
    want = [{k: p[k] - 0.3 * g[k] for k in p} for p, g in zip(layers.get_params(net), layers.get_params(shadow))]
    fit(net, SGDConfig(epochs=1, mini_batch_size=4, eta=0.3, shuffle=False), (x, y))
    assert_params_close(net, want, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- SGD updates


@pytest.mark.parametrize("cost, extra", [
    ("QuadraticCost", {}),
    ("QuadraticCost", {"lmbda": 2.0, "l2": "example"}),
    ("CrossEntropyCost", {"lmbda": 2.0, "l2": "batch"}),
    ("CrossEntropyCost", {"lmbda": 1.0, "momentum": 0.6}),
    ("CrossEntropyCost", {"l1": 0.5}),
], ids=["network1", "network2-l2", "network3-l2", "momentum", "l1"])
def test_sgd_updates_match_numpy(cost, extra, tiny_data):
    x, y = tiny_data[0][:6], tiny_data[1][:6]
    net = layers.build(mlp_spec([8, 4, 3], cost), seed=2, init="normal")
    cfg = SGDConfig(epochs=2, mini_batch_size=3, eta=0.5, shuffle=False, **extra)
    # network2 divides lmbda by the training-set size n; network3 by the number of mini-batches.
    per = {"example": 6, "batch": 2}[cfg.l2]
    want = references.sgd(params64(net), x, y, cost, epochs=2, m=3, eta=0.5, decay=cfg.lmbda / per,
                  l1=cfg.l1 / per, mu=cfg.momentum)
    loop = fit(net, cfg, (x, y))
    assert loop.step == 4 and loop.epoch == 2 and loop.stop_reason == "epochs"
    assert_params_close(net, want)


@pytest.mark.parametrize("drop", [False, True])
def test_remainder_batch_is_trained_or_dropped(drop, tiny_data):
    x, y = tiny_data[0][:23], tiny_data[1][:23]
    net = layers.build(mlp_spec([8, 4, 3], "QuadraticCost"), seed=3, init="normal")
    want = references.sgd(params64(net), x, y, "QuadraticCost", epochs=2, m=5, eta=1.0, drop_remainder=drop)
    cfg = SGDConfig(epochs=2, mini_batch_size=5, eta=1.0, shuffle=False, drop_remainder=drop, chunks=2)
    loop = fit(net, cfg, (x, y))
    per_epoch = 4 if drop else 5
    assert loop.step == 2 * per_epoch and [r["step"] for r in loop.history] == [per_epoch, 2 * per_epoch]
    assert_params_close(net, want)


# --------------------------------------------------------------------------- determinism and resume


def _fit(spec, cfg, data, seed=1, trainer_compact=None, **kw):
    net = layers.build(spec, seed=seed)
    loop = fit(net, cfg, data, trainer=Trainer(net, cfg, data, compact=trainer_compact), **kw)
    return layers.get_params(net), loop


def test_same_seed_same_bits_other_seed_other_bits(tiny_data):
    cfg = SGDConfig(epochs=2, mini_batch_size=10, eta=0.5, momentum=0.5)
    a, _ = _fit(DROP_SPEC, cfg, tiny_data)
    b, _ = _fit(DROP_SPEC, cfg, tiny_data)
    c, _ = _fit(DROP_SPEC, dataclasses.replace(cfg, seed=1), tiny_data)
    assert_params_equal(a, b)
    assert params_differ(a, c)


RESUME_CASES = {
    "plain": (mlp_spec([8, 6, 3]), {"lmbda": 0.1}),
    "momentum": (mlp_spec([8, 6, 3]), {"lmbda": 0.1, "momentum": 0.7}),
    "dropout": (DROP_SPEC, {"momentum": 0.5}),
}


def _resumed(spec, cfg, data, val, *, first_cfg=None, should_stop=None):
    """Train with ``first_cfg`` (or cfg), then carry on in a fresh net and Trainer from JSON + arrays."""
    first_cfg = first_cfg or cfg
    net = layers.build(spec, seed=1)
    tr = Trainer(net, first_cfg, data)
    loop = fit(net, first_cfg, data, val, trainer=tr, should_stop=should_stop)
    saved = json.loads(json.dumps(loop.to_json()))
    arrays = tr.arrays()
    net2 = layers.build(spec, seed=5)  # other values: all must come from the arrays
    tr2 = Trainer(net2, cfg, data)
    tr2.load_arrays(arrays)
    loop2 = fit(net2, cfg, data, val, trainer=tr2, loop=Loop.from_json(saved))
    return net2, tr2, loop, loop2


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_at_an_epoch_boundary_is_bit_identical(case, tiny_data):
    spec, extra = RESUME_CASES[case]
    cfg = SGDConfig(epochs=2, mini_batch_size=10, eta=0.5, **extra)
    val = (tiny_data[0][:20], tiny_data[1][:20])
    straight = layers.build(spec, seed=1)
    tr = Trainer(straight, cfg, tiny_data)
    loop = fit(straight, cfg, tiny_data, val, trainer=tr)
    net2, tr2, first, loop2 = _resumed(spec, cfg, tiny_data, val, first_cfg=dataclasses.replace(cfg, epochs=1))
    assert first.epoch == 1 and first.stop_reason == "epochs"
    assert loop2.epoch == 2 and loop2.step == 12 and loop2.stop_reason == "epochs"
    assert_params_equal(straight, net2)
    if cfg.momentum:
        assert_params_equal(tr.arrays()["velocity"], tr2.arrays()["velocity"])
    assert loop2.to_json() == loop.to_json()


def stop_from_poll(k):
    """A should_stop that turns True at its k-th poll (counted from 0). run_epoch polls before
    each dispatch and, once a chunk is running behind another, after reading that one back."""
    polls = iter(range(10 ** 6))
    return lambda: next(polls) >= k


def test_interrupted_mid_epoch_then_continued_is_bit_identical(tiny_data):
    cfg = SGDConfig(epochs=2, mini_batch_size=10, eta=0.5, momentum=0.5, chunks=3)  # chunks of 2 batches
    straight, _ = _fit(DROP_SPEC, cfg, tiny_data)
    net = layers.build(DROP_SPEC, seed=1)
    start = layers.get_params(net)
    tr = Trainer(net, cfg, tiny_data)
    loop = fit(net, cfg, tiny_data, trainer=tr, should_stop=stop_from_poll(1))  # after chunk 1
    assert loop.stop_reason == "interrupted"
    assert (loop.epoch, loop.batch, loop.step) == (0, 2, 2) and loop.history == []
    assert params_differ(layers.get_params(net), start)  # the synced params are the chunk's
    loop = fit(net, cfg, tiny_data, trainer=tr, loop=loop)  # the same Trainer carries on
    assert loop.stop_reason == "epochs" and loop.step == 12
    assert_params_equal(straight, net)


def test_interrupted_in_a_later_epoch_then_resumed_fresh_is_bit_identical(tiny_data):
    cfg = SGDConfig(epochs=2, mini_batch_size=10, eta=0.5, momentum=0.5, chunks=3)
    straight, _ = _fit(DROP_SPEC, cfg, tiny_data)
    # Epoch 0 polls 5 times (0-4); epoch 1 before chunk 1 (5), before chunk 2 (6), after
    # reading chunk 1 (7), before chunk 3 (8): True there ends it after its 2nd chunk.
    net2, _, first, loop2 = _resumed(DROP_SPEC, cfg, tiny_data, None, should_stop=stop_from_poll(8))
    assert first.stop_reason == "interrupted" and (first.epoch, first.batch) == (1, 4)
    assert loop2.stop_reason == "epochs" and loop2.step == 12
    assert_params_equal(straight, net2)


def test_interrupted_run_records_the_same_history(tiny_data):
    cfg = SGDConfig(epochs=1, mini_batch_size=10, eta=0.5, chunks=3)
    _, loop = _fit(DROP_SPEC, cfg, tiny_data)
    _, _, first, loop2 = _resumed(DROP_SPEC, cfg, tiny_data, None, should_stop=stop_from_poll(1))
    assert first.batch == 2 and loop2.history == loop.history


def test_resume_with_other_chunking_is_bit_identical(tiny_data):
    cfg = SGDConfig(epochs=1, mini_batch_size=5, eta=0.5, chunks=3)  # 12 batches: stops at 4
    straight, _ = _fit(DROP_SPEC, cfg, tiny_data)
    net2, _, first, loop2 = _resumed(DROP_SPEC, dataclasses.replace(cfg, chunks=5), tiny_data, None,
                                     first_cfg=cfg, should_stop=stop_from_poll(1))  # then chunks of 3
    assert first.batch == 4
    assert loop2.step == 12
    assert_params_equal(straight, net2)


def test_a_stop_asked_during_a_chunk_drops_the_one_dispatched_behind_it(tiny_data):
    """Poll 2 comes after chunk 1 is read back, with chunk 2 already dispatched: it must not count."""
    cfg = SGDConfig(epochs=1, mini_batch_size=10, eta=0.5, chunks=3)
    net = layers.build(DROP_SPEC, seed=1)
    tr = Trainer(net, cfg, tiny_data)
    loop = fit(net, cfg, tiny_data, trainer=tr, should_stop=stop_from_poll(2))
    assert (loop.stop_reason, loop.batch) == ("interrupted", 2)
    once = layers.build(DROP_SPEC, seed=1)
    fit(once, cfg, tiny_data, should_stop=stop_from_poll(1))  # stopped before chunk 2 was dispatched
    assert_params_equal(once, net)


def test_a_stop_asked_before_an_epoch_runs_nothing(tiny_data):
    cfg = SGDConfig(epochs=2, mini_batch_size=10, eta=0.5)
    net = layers.build(DROP_SPEC, seed=1)
    start = layers.get_params(net)
    loop = fit(net, cfg, tiny_data, should_stop=lambda: True)
    assert (loop.stop_reason, loop.epoch, loop.step) == ("interrupted", 0, 0)
    assert not params_differ(layers.get_params(net), start)


def test_second_epoch_compiles_nothing(caplog):
    # Shapes used by no other test, so that the first epoch must compile.
    r = np.random.default_rng(11)
    data = (r.random((37, 11), dtype=np.float32), r.integers(0, 3, 37))
    net = layers.build(mlp_spec([11, 4, 3]), seed=0)
    cfg = SGDConfig(epochs=1, mini_batch_size=4, eta=0.5, lmbda=0.1, chunks=3)  # chunks 3, 3, 3 + a remainder
    tr = Trainer(net, cfg, data)
    kw = dict(trainer=tr, monitor=("training_cost", "training_accuracy", "validation_cost"))
    with jax.log_compiles(), caplog.at_level(logging.WARNING):
        loop = fit(net, cfg, data, data, data, **kw)
        first = [rec.getMessage() for rec in caplog.records if "Compiling" in rec.getMessage()]
        size = step.run_members_jit._cache_size()
        caplog.clear()
        loop = fit(net, dataclasses.replace(cfg, epochs=2), data, data, data, loop=loop, **kw)
        second = [rec.getMessage() for rec in caplog.records if "Compiling" in rec.getMessage()]
    assert loop.epoch == 2 and loop.step == 20
    assert any("run_members" in m for m in first)
    assert second == []
    assert step.run_members_jit._cache_size() == size


# --------------------------------------------------------------------------- stops


def test_nan_stops_and_keeps_the_last_good_epoch(tiny_data):
    x, y = tiny_data[0][:40], tiny_data[1][:40]
    net = layers.build(LINEAR_SPEC, seed=0)
    snaps = []
    cfg = SGDConfig(epochs=3, mini_batch_size=4, eta=0.01)
    loop = fit(net, cfg, (x, y), eta_fn=lambda e: [0.01, 1e6, 0.01][e],
                     on_epoch=lambda rec, lp, tr: snaps.append(layers.get_params(net)))
    assert loop.stop_reason == "nan"
    assert (loop.epoch, loop.batch, loop.step) == (1, 0, 10) and len(loop.history) == 1
    assert_params_equal(net, snaps[0])
    assert all(np.all(np.isfinite(p[k])) for p in layers.get_params(net) for k in "wb")


def test_overflow_on_the_last_update_stops_too(tiny_data):
    x, y = tiny_data[0][:8] * 100, tiny_data[1][:8]
    net = layers.build(LINEAR_SPEC, seed=0)
    snaps = []
    loop = fit(net, SGDConfig(epochs=2, mini_batch_size=8, eta=0.01, shuffle=False), (x, y),
                     eta_fn=lambda e: [1e-6, 1e38][e], on_epoch=lambda *a: snaps.append(layers.get_params(net)))
    assert loop.stop_reason == "nan"
    assert_params_equal(net, snaps[0])


def _constant_accuracy_fit(tiny_data, **kw):
    # eta so small that float32 weights do not move: the validation accuracy never improves.
    net = layers.build(mlp_spec([8, 5, 3]), seed=0)
    cfg = SGDConfig(mini_batch_size=20, eta=1e-12, **kw)
    return fit(net, cfg, tiny_data, tiny_data)


def test_plateau_halves_eta_after_patience_and_stops_at_the_floor(tiny_data):
    loop = _constant_accuracy_fit(tiny_data, epochs=50, schedule="plateau", patience=2, eta_min_factor=0.25)
    assert loop.stop_reason == "eta_floor" and loop.epoch == 5
    assert [r["eta"] for r in loop.history] == [1e-12, 1e-12, 1e-12, 5e-13, 5e-13]
    assert loop.eta == 2.5e-13


def test_plateau_resets_on_improvement():
    cfg = SGDConfig(epochs=100, eta=1.0, schedule="plateau", patience=2, eta_min_factor=0.25)
    loop, etas = Loop(eta=1.0), []
    for i, acc in enumerate([0.5, 0.4, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7]):
        assert loop.stop_reason is None
        train._advance(loop, cfg, {"epoch": i, "step": i, "validation_accuracy": acc}, True)
        etas.append(loop.eta)
    assert etas == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]
    assert loop.stop_reason == "eta_floor" and loop.best_epoch == 5 and loop.best_accuracy == 0.7


def test_early_stopping_stops(tiny_data):
    loop = _constant_accuracy_fit(tiny_data, epochs=50, early_stopping=3)
    assert loop.stop_reason == "early_stopping" and loop.epoch == 4
    assert loop.best_epoch == 0 and [r["best"] for r in loop.history] == [True, False, False, False]


def test_early_stopping_needs_data_to_judge(tiny_data):
    net = layers.build(mlp_spec([8, 5, 3]), seed=0)
    loop = fit(net, SGDConfig(epochs=4, mini_batch_size=20, eta=1e-12, early_stopping=1), tiny_data)
    assert loop.stop_reason == "epochs" and loop.epoch == 4


def test_eta_fn_sets_each_epochs_eta(tiny_data):
    cfg = SGDConfig(epochs=2, mini_batch_size=20, eta=9.0, shuffle=False)
    net = layers.build(mlp_spec([8, 5, 3]), seed=0)
    loop = fit(net, cfg, tiny_data, eta_fn=lambda e: [0.3, 0.7][e])
    assert [r["eta"] for r in loop.history] == [0.3, 0.7]
    ref = layers.build(mlp_spec([8, 5, 3]), seed=0)
    tr = Trainer(ref, cfg, tiny_data)
    tr.run_epoch(0, 0, 0.3)
    tr.run_epoch(1, 0, 0.7)
    tr.sync()
    assert_params_equal(net, ref)


# --------------------------------------------------------------------------- augmentation


NP_SHIFTS = [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)]  # unchanged, up, down, left, right


def test_expanded_is_a_one_pixel_shift_with_zeros_shifted_in(mnist_like):
    x = mnist_like[0][:10]
    which = np.arange(10) % 5
    expanded = jax.jit(augment.expanded)
    got = np.asarray(expanded(x, which))
    want = np.stack([references.shift_image(img.reshape(28, 28), *NP_SHIFTS[k]).reshape(784) for img, k in zip(x, which)])
    np.testing.assert_array_equal(got, want)
    dot = np.zeros((10, 784), np.float32)
    dot[:, 10 * 28 + 10] = 1.0  # a pixel at (10, 10) goes to (9, 10), (11, 10), (10, 9), (10, 11)
    moved = np.asarray(expanded(dot, which)).reshape(10, 28, 28)
    assert [tuple(np.argwhere(m)[0]) for m in moved[:5]] == [(10, 10), (9, 10), (11, 10), (10, 9), (10, 11)]


def test_expand_epoch_has_five_times_the_steps_and_trains_on_the_shifts(mnist_like):
    x, y = mnist_like[0][:5], mnist_like[1][:5]
    net = layers.build(mlp_spec([784, 10]), seed=0)
    cfg = SGDConfig(epochs=1, mini_batch_size=5, eta=0.5, shuffle=False, augment="expand")
    # Unshuffled, mini-batch k is image k's five copies (virtual example v is image v // 5).
    xs = np.repeat(x, 5, axis=0)
    ys = np.repeat(y, 5)

    def shift(xb):
        return np.stack([references.shift_image(img.reshape(28, 28), *NP_SHIFTS[i % 5]).reshape(784) for i, img in enumerate(xb)])
    want = references.sgd(params64(net), xs, ys, "CrossEntropyCost", epochs=1, m=5, eta=0.5, shift=shift)
    loop = fit(net, cfg, (x, y))
    assert loop.step == 5
    assert_params_close(net, want)


def test_affine_is_a_function_of_the_key(mnist_like):
    x = mnist_like[0][:6]
    warp = jax.jit(augment.affine)
    k1, k2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
    a, b, c = (np.asarray(warp(x, k)) for k in (k1, k1, k2))
    assert a.shape == x.shape and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, x)
    assert a.min() >= 0.0 and a.max() <= x.max() + 1e-6  # bilinear, zero outside


def test_affine_with_no_range_is_the_identity(mnist_like):
    x = mnist_like[0][:3]
    still = jax.jit(lambda x, k: augment.affine(x, k, max_degrees=0.0, max_skew=0.0, max_shift=0.0))
    got = np.asarray(still(x, jax.random.PRNGKey(0)))
    np.testing.assert_allclose(got, x, atol=1e-6)


def test_affine_training_is_deterministic(mnist_like):
    cfg = SGDConfig(epochs=1, mini_batch_size=20, eta=0.5, augment="affine")
    a, _ = _fit(mlp_spec([784, 10]), cfg, mnist_like)
    b, _ = _fit(mlp_spec([784, 10]), cfg, mnist_like)
    c, _ = _fit(mlp_spec([784, 10]), dataclasses.replace(cfg, augment="none"), mnist_like)
    assert_params_equal(a, b)
    assert params_differ(a, c)


# --------------------------------------------------------------------------- evaluation


@pytest.mark.parametrize("n", [7, evaluation.EVAL_BATCH, 1234])
def test_evaluate_and_predict_match_numpy(n):
    r = np.random.default_rng(12)
    x, y = r.random((n, 8), dtype=np.float32), r.integers(0, 3, n)
    net = layers.build(mlp_spec([8, 5, 3], "QuadraticCost"), seed=0, init="normal")
    z = references.last_z(params64(net), x)
    right, cost, count = evaluation.evaluate(net, (x, y))
    assert count == n and right == int(np.sum(np.argmax(z, 1) == y))
    np.testing.assert_allclose(cost, np.mean(0.5 * np.sum((references.sigmoid(z) - np.eye(3)[y]) ** 2, 1)), rtol=1e-5)
    pred = evaluation.predict(net, x)
    assert pred.shape == (n,)
    np.testing.assert_array_equal(pred, np.argmax(z, 1))


def test_evaluate_uses_dropout_scaling(tiny_data):
    x, y = tiny_data
    net = layers.build(DROP_SPEC, seed=0)
    r = np.random.default_rng(13)
    layers.set_params(net, [{k: r.normal(size=v.shape).astype(np.float32) for k, v in p.items()}
                            for p in layers.get_params(net)])
    z = references.last_z(params64(net), x, drop=(0.5, 0.3))
    logp = z - z.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    right, cost, n = evaluation.evaluate(net, (x, y))
    assert right == int(np.sum(np.argmax(z, 1) == y)) and n == 60
    np.testing.assert_allclose(cost, -np.mean(logp[np.arange(60), y]), rtol=1e-5)


def test_evaluate_takes_the_books_pairs(tiny_data):
    x, y = tiny_data
    net = layers.build(mlp_spec([8, 5, 3]), seed=0)
    pairs = [(xi.reshape(8, 1), int(yi)) for xi, yi in zip(x, y)]
    assert evaluation.evaluate(net, pairs) == evaluation.evaluate(net, (x, y))


# --------------------------------------------------------------------------- data and settings


def test_as_arrays_takes_arrays_and_the_books_pairs(mnist_like):
    x, y = mnist_like[0][:5].astype(np.float64), mnist_like[1][:5]
    for data in [(x, y), (x, np.eye(10)[y]), (x, y.astype(np.float64)),
                 [(xi.reshape(784, 1), np.eye(10)[yi].reshape(10, 1)) for xi, yi in zip(x, y)],
                 [(xi.reshape(784, 1), np.int64(yi)) for xi, yi in zip(x, y)]]:
        gx, gy = evaluation.as_arrays(data, 784)
        assert gx.dtype == np.float32 and gx.shape == (5, 784) and gy.dtype == np.int32
        np.testing.assert_array_equal(gx, x.astype(np.float32))
        np.testing.assert_array_equal(gy, y)


@pytest.mark.parametrize("data, n_in", [
    ((np.zeros((5, 8)), np.zeros(4, int)), None),
    ((np.zeros((5, 8)), np.zeros(5, int)), 9),
    ((np.zeros((5, 8)), np.full(5, 0.5)), None),
    ([], None),
    ([(np.zeros((8, 1)), 1), (np.zeros((8, 1)), 2)], 784),
], ids=["rows", "width", "labels", "empty", "pairs-width"])
def test_as_arrays_rejects_what_does_not_fit(data, n_in):
    with pytest.raises(ValueError) as e:
        evaluation.as_arrays(data, n_in)
    assert "\n" not in str(e.value)


def test_trainer_rejects_data_of_the_wrong_width(tiny_data):
    net = layers.build(mlp_spec([9, 3]), seed=0)
    with pytest.raises(ValueError, match="9"):
        Trainer(net, SGDConfig(epochs=1), tiny_data)


@pytest.mark.parametrize("bad", [
    {"epochs": 0}, {"epochs": 1.5}, {"mini_batch_size": 0}, {"mini_batch_size": 61},
    {"eta": float("nan")}, {"eta": -0.1}, {"eta": 0.0}, {"eta": float("inf")}, {"lmbda": -1.0},
    {"momentum": 1.0}, {"l2": "layer"}, {"augment": "rotate"}, {"schedule": "cosine"}, {"early_stopping": 0},
    {"seed": -1}, {"seed": 2**32}, {"seed": 1.0},
])
def test_bad_settings_are_one_line_value_errors(bad, tiny_data):
    cfg = SGDConfig(**{"epochs": 1, **bad})
    with pytest.raises(ValueError, match="training settings") as e:
        cfg.check(60)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError):
        Trainer(layers.build(mlp_spec([8, 3]), seed=0), cfg, tiny_data)


def test_loop_json_round_trip():
    loop = Loop(epoch=3, batch=2, step=32, eta=0.25, best_accuracy=0.9, best_epoch=1, best_step=20,
                since_best=2, stop_reason="interrupted", history=[{"epoch": 0, "eta": 0.5}])
    assert Loop.from_json(json.loads(json.dumps(loop.to_json()))) == loop


@pytest.mark.parametrize("n", [7, 100, 123])
def test_conv_nets_evaluate_in_their_own_batch_size(small_conv_spec, n):
    """Conv nets evaluate in batches of CONV_EVAL_BATCH; counts agree with one whole forward pass."""
    from nn3.engine import evaluation
    net = layers.build(small_conv_spec, seed=3)
    assert evaluation.eval_batch(net) == evaluation.CONV_EVAL_BATCH
    rng = np.random.default_rng(n)
    x = rng.random((n, input_size(small_conv_spec)), dtype=np.float32)
    y = rng.integers(0, small_conv_spec["layers"][-1]["n_out"], n)
    want = int(np.sum(np.argmax(np.asarray(net(x)), axis=1) == y))
    assert evaluation.evaluate(net, (x, y))[0] == want
    np.testing.assert_array_equal(evaluation.predict(net, x), np.argmax(np.asarray(net(x)), axis=1))


def test_labels_that_do_not_fit_the_network_are_refused(tiny_data):
    """No silent clipping or broadcasting of labels (the one-hot and take_along_axis would)."""
    x, y = tiny_data
    net = layers.build(mlp_spec([x.shape[1], 4, 3], "CrossEntropyCost"))
    cfg = SGDConfig(epochs=1, mini_batch_size=5, eta=0.1)
    with pytest.raises(ValueError, match="labels run from 0 to 7, the network has 3 outputs"):
        fit(net, cfg, (x, np.arange(len(y)) % 8))
    with pytest.raises(ValueError, match="one-hot labels have 10 columns, the network has 3 outputs"):
        evaluation.evaluate(net, (x, np.eye(10)[np.arange(len(y)) % 3]))
    with pytest.raises(ValueError, match="labels run from -1"):
        evaluation.evaluate(net, (x, -np.ones(len(y), int)))


# --------------------------------------------------------------------------- compact images


@pytest.mark.parametrize("augment", ["none", "expand", "affine"])
def test_pixels_of_k_over_256_train_as_uint8_codes_with_the_same_bits(augment):
    r = np.random.default_rng(5)
    x = (r.integers(0, 256, (40, 784)) / 256).astype(np.float32)  # what the book's images hold
    y = r.integers(0, 10, 40)
    cfg = SGDConfig(epochs=2, mini_batch_size=10, eta=0.5, augment=augment)
    spec = mlp_spec([784, 12, 10])
    assert Trainer(layers.build(spec, seed=1), cfg, (x, y), compact=True).data.x.dtype == np.uint8
    compact, _ = _fit(spec, cfg, (x, y), trainer_compact=True)
    assert Trainer(layers.build(spec, seed=1), cfg, (x, y), compact=False).data.x.dtype == np.float32
    plain, _ = _fit(spec, cfg, (x, y), trainer_compact=False)
    assert_params_equal(compact, plain)


@pytest.mark.parametrize("change", ["off the grid", "negative", "one", "nan"])
def test_other_pixels_stay_float32(change):
    x = (np.arange(80, dtype=np.float32).reshape(10, 8) / 256)
    x[3, 4] = {"off the grid": 0.3, "negative": -1 / 256, "one": 1.0, "nan": np.nan}[change]
    assert compact_codes(x) is None
    assert compact_codes(np.arange(80, dtype=np.float32).reshape(10, 8) / 256).dtype == np.uint8


def test_automatic_chunks_are_at_most_ten_and_none_too_short():
    from nn3.runs import presets
    cfg = SGDConfig(epochs=1, mini_batch_size=10)
    assert chunk_length(presets.get("ch1").spec, cfg, 5000) == 5000  # one call: ~0.1 s of work
    assert chunk_length(presets.get("ch1_100").spec, cfg, 5000) == 2519  # two
    assert chunk_length(presets.get("dbl_conv_relu").spec, cfg, 5000) == 500  # ten
    assert chunk_length(presets.get("dbl_conv_relu").spec, cfg, 7) == 7  # too little to cut
    assert chunk_length(presets.get("ch1").spec, dataclasses.replace(cfg, chunks=3), 5000) == 1667
    with pytest.raises(ValueError, match="chunks must be a positive integer"):
        SGDConfig(epochs=1, chunks=0).check(100)

