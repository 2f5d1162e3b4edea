"""Tests for nn3.engine.optim: the book's rule as an optax chain equals the hand-written step it replaced.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_optim.py -q

The reference below is the engine's update as it was written by hand before nn3.engine.optim
(c921cb6's train.scan_batches): ``d = eta*(g + lam*p + lam1*sign(p))`` on weights,
``eta*g`` on biases, then ``v = mu*v - d; p = p + v`` or ``p = p - d``. The chain must
give the same bits, and a checkpoint of that engine's layout must carry on exactly.
"""
from __future__ import annotations

import dataclasses
import json
import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from nn3 import cli
from nn3.runs import inspect
from nn3.engine import costs, evaluation, layers, optim, spec, step, train
from nn3.engine.device_data import DeviceData
from nn3.engine.settings import SGDConfig
from nn3.engine.trainer import Trainer as Engine
from nn3.engine.trainer import checkpoint_arrays, member, stack
from nn3.store import rundir

DROP_SPEC = {"layers": [
    {"type": "FullyConnectedLayer", "n_in": 8, "n_out": 6, "activation_fn": "sigmoid", "p_dropout": 0.5},
    {"type": "SoftmaxLayer", "n_in": 6, "n_out": 3, "p_dropout": 0.3}], "cost": "LogLikelihoodCost"}


def params_equal(a, b):
    return all(np.array_equal(p[k], q[k]) for p, q in zip(a, b) for k in ("w", "b"))


class Trainer:
    """The engine's trainer of one network, seen as the lone trainer the reference below was
    written against: its state, keys, order and arrays without the member axis."""

    def __init__(self, net, cfg, data):
        self.engine = Engine([net], [cfg], DeviceData.from_arrays(*evaluation.as_arrays(data, net.n_in, net.n_out)))
        self.net, self.cfg, self.rule, self.graphdef = net, cfg, self.engine.rule, self.engine.graphdef
        self.statics, self.n_batches = self.engine.statics, self.engine.n_batches
        self.x, self.y, self.keys = self.engine.data.x, self.engine.data.y, self.engine.keys[0]
        self.decay, self.l1 = (float(self.engine.hyper[k][0]) for k in ("weight_decay", "l1"))

    @property
    def state(self):
        return member(self.engine.state, 0)

    @property
    def opt_state(self):
        return member(self.engine.opt_state, 0)

    def order(self, epoch):
        return self.engine.order(epoch)[0]

    def run_epoch(self, epoch, start, eta):
        return self.engine.run_epoch(epoch, start, eta)

    def sync(self):
        self.engine.sync()

    def arrays(self):
        return member(self.engine.arrays(), 0)

    def load_arrays(self, arrays):
        self.engine.load_arrays(stack([arrays]))


def fit(net, cfg, data, *, trainer=None, loop=None, **kw):
    """A lone run through the one loop; its Loop."""
    tr = trainer.engine if trainer is not None else Trainer(net, cfg, data).engine
    run = train.fit(tr, train.Splits(data), train.RunState.of_one(loop or train.Loop(eta=float(cfg.eta))),
                    epochs=cfg.epochs, **kw)
    tr.sync()
    return run.loops[0]


def per_layer(state):
    """An nnx State's parameters as the per-layer ``{"w", "b"}`` lists a checkpoint holds."""
    per = state["layers"]
    return [{"w": np.asarray(per[i]["w"][...]), "b": np.asarray(per[i]["b"][...])} for i in sorted(per.keys())]


# --------------------------------------------------------------------------- the hand-written step


def _hand_written(tr):
    """The scan of c921cb6's scan_batches (no augmentation), for ``tr``'s network: a jitted
    ``run(state, velocity, batches, steps, hyper (eta, decay, l1, mu))``."""
    cost_fn, out_act, graphdef = costs.get(tr.net.spec["cost"]), tr.net.output_activation, tr.graphdef
    decay, l1, momentum, dropout = tr.rule.decay, tr.rule.l1, tr.rule.momentum, tr.statics["dropout"]

    def is_w(path):
        return any(getattr(k, "key", None) == "w" for k in path)

    def run(state, velocity, batches, steps, hyper):
        eta, lam, lam1, mu = hyper[0], hyper[1], hyper[2], hyper[3]

        def step(carry, inp):
            st, vel = carry
            idx, s = inp
            key = jax.random.fold_in(tr.keys[0], s) if dropout else None
            loss, grads = jax.value_and_grad(
                lambda p: cost_fn(nnx.merge(graphdef, p).logits(tr.x[idx], key), tr.y[idx], out_act).mean())(st)

            def delta(path, p, g):
                if decay and is_w(path):
                    g = g + lam * p
                if l1 and is_w(path):
                    g = g + lam1 * jnp.sign(p)
                return eta * g

            d = jax.tree_util.tree_map_with_path(delta, st, grads)
            if momentum:
                vel = jax.tree_util.tree_map(lambda v, dd: mu * v - dd, vel, d)
                st = jax.tree_util.tree_map(lambda p, v: p + v, st, vel)
            else:
                st = jax.tree_util.tree_map(lambda p, dd: p - dd, st, d)
            return (st, vel), loss

        (state, velocity), losses = jax.lax.scan(step, (state, velocity), (batches, steps))
        return state, velocity, losses

    return jax.jit(run)


FLAGS = {"plain": {}, "l2": dict(lmbda=3.0), "l1": dict(l1=2.0), "momentum": dict(momentum=0.7),
         "all": dict(lmbda=3.0, l1=2.0, momentum=0.9), "l2_batch_momentum": dict(lmbda=0.5, l2="batch", momentum=0.5)}


@pytest.mark.parametrize("case", list(FLAGS))
def test_the_chain_equals_the_hand_written_step_bit_for_bit(case, tiny_data):
    """With optax.trace for the momentum (t = u + mu*t) this failed by an ulp after two steps."""
    cfg = SGDConfig(epochs=1, mini_batch_size=6, eta=0.8, seed=2, **FLAGS[case])
    tr = Trainer(layers.build(DROP_SPEC, seed=2), cfg, tiny_data)
    ref = _hand_written(tr)
    state, vel = tr.state, jax.tree.map(jnp.zeros_like, tr.state)
    for epoch, eta in enumerate((0.8, 0.3)):  # eta changes between calls, as a schedule does
        tr.run_epoch(epoch, 0, eta)
        batches = tr.order(epoch).reshape(tr.n_batches, -1)
        steps = np.arange(epoch * tr.n_batches, (epoch + 1) * tr.n_batches, dtype=np.int32)
        hyper = jnp.array([eta, tr.decay, tr.l1, cfg.momentum], jnp.float32)
        state, vel, _ = ref(state, vel, batches, steps, hyper)
    tr.sync()
    assert params_equal(layers.get_params(tr.net), layers.get_params(nnx.merge(tr.graphdef, state)))
    if cfg.momentum:
        assert params_equal(tr.arrays()["velocity"], per_layer(vel))


def test_a_checkpoint_of_the_hand_written_engine_carries_on_exactly(tiny_data):
    """Its arrays were {"params", "velocity"} (per-layer lists): the book's rule keeps that layout."""
    cfg = SGDConfig(epochs=2, mini_batch_size=6, eta=0.8, lmbda=3.0, momentum=0.6, seed=4)
    straight = layers.build(DROP_SPEC, seed=4)
    fit(straight, cfg, tiny_data)
    old = Trainer(layers.build(DROP_SPEC, seed=4), cfg, tiny_data)  # epoch 0 by the hand-written step
    batches = old.order(0).reshape(old.n_batches, -1)
    hyper = jnp.array([cfg.eta, old.decay, 0.0, cfg.momentum], jnp.float32)
    state, vel, _ = _hand_written(old)(old.state, jax.tree.map(jnp.zeros_like, old.state), batches,
                                       np.arange(old.n_batches, dtype=np.int32), hyper)
    arrays = {"params": per_layer(state), "velocity": per_layer(vel)}
    assert set(checkpoint_arrays(old.net, old.rule)) == set(arrays)  # the restore target's layout
    net = layers.build(DROP_SPEC, seed=9)  # other values: all must come from the arrays
    tr = Trainer(net, cfg, tiny_data)
    tr.load_arrays(arrays)
    fit(net, cfg, tiny_data, trainer=tr, loop=train.Loop(epoch=1, step=old.n_batches, eta=cfg.eta))
    assert params_equal(layers.get_params(net), layers.get_params(straight))


# --------------------------------------------------------------------------- values as state


def test_an_off_term_costs_no_operations():
    params = {"w": jnp.ones((3, 2)), "b": jnp.ones(3)}

    def ops(rule):
        state = rule.init(params)
        jaxpr = jax.make_jaxpr(lambda g, s: rule.transform().update(g, s, params))(params, state)
        return [e.primitive.name for e in jaxpr.jaxpr.eqns]

    def more(rule):  # the operations a term adds to the plain rule's
        got, base = ops(rule), ops(optim.Rule())
        return {op: got.count(op) - base.count(op) for op in set(got + base) if got.count(op) != base.count(op)}

    plain = ops(optim.Rule())
    assert plain.count("mul") == 3 and "sub" not in plain and "sign" not in plain  # -1 * eta; w and b scaled
    assert more(optim.Rule(decay=True)) == {"mul": 1, "add": 1}  # the weights' decay only
    assert more(optim.Rule(l1=True)) == {"sign": 1, "mul": 1, "add": 1}
    assert more(optim.Rule(momentum=True)) == {"mul": 1, "sub": 2}  # mu*v for w and b, no -1*eta; mu*v - d


@pytest.mark.parametrize("optimizer,extra", [("sgd", dict(momentum=0.5, lmbda=1.0)), ("adam", {})])
def test_eta_changed_by_the_schedule_compiles_nothing(caplog, optimizer, extra):
    r = np.random.default_rng(12)
    data = (r.random((41, 13), dtype=np.float32), r.integers(0, 3, 41))  # shapes of no other test
    net = layers.build(spec.mlp_spec([13, 5, 3]), seed=0)
    cfg = SGDConfig(epochs=1, mini_batch_size=4, eta=0.5, optimizer=optimizer, **extra)
    tr = Trainer(net, cfg, data)
    with jax.log_compiles(), caplog.at_level(logging.WARNING):
        loop = fit(net, cfg, data, trainer=tr)
        first = [m for m in (rec.getMessage() for rec in caplog.records) if "Compiling" in m]
        caplog.clear()
        loop = fit(net, dataclasses.replace(cfg, epochs=4), data, trainer=tr, loop=loop,
                         eta_fn=lambda epoch: 0.5 / (epoch + 1))
        second = [m for m in (rec.getMessage() for rec in caplog.records) if "Compiling" in m]
    assert [r["eta"] for r in loop.history] == [0.5, 0.25, 0.5 / 3, 0.125]
    assert any("run_members" in m for m in first) and second == []
    assert float(tr.opt_state.hyperparams["learning_rate"]) == np.float32(0.125)


@pytest.mark.parametrize("optimizer,extra", [("sgd", dict(momentum=0.5, lmbda=1.0)), ("adam", dict(l1=0.5))])
def test_members_each_with_their_own_eta_equal_lone_runs(tiny_data, optimizer, extra):
    """Hyperparameters are state: one per member, in one compiled program.

    The book's rule: bit for bit. Adam: to float rounding, because XLA simplifies its
    bias-corrected ``mu / (1 - b1**count) / (sqrt(...) + eps)`` one way for a lone run's
    scalar count (``mu / (bc * (...))``) and another for the members' vector of counts
    (``mu * (1 / bc) / (...)``); seen in the optimised HLO, an ulp after one step.
    """
    cfg = SGDConfig(epochs=2, mini_batch_size=6, eta=0.1, optimizer=optimizer, **extra)
    seeds, etas = [0, 1], np.array([0.05, 0.4])
    nets = [layers.build(DROP_SPEC, seed=s) for s in seeds]
    tr = Engine(nets, [dataclasses.replace(cfg, seed=s) for s in seeds], DeviceData.from_arrays(*tiny_data))
    for epoch in range(cfg.epochs):
        tr.run_epoch(epoch, 0, etas)
    tr.sync()
    for seed, eta, member in zip(seeds, etas, nets):
        alone = layers.build(DROP_SPEC, seed=seed)
        fit(alone, dataclasses.replace(cfg, seed=seed, eta=float(eta)), tiny_data)
        if optimizer == "sgd":
            assert params_equal(layers.get_params(member), layers.get_params(alone))
        for p, q in zip(layers.get_params(member), layers.get_params(alone)):
            np.testing.assert_allclose(p["w"], q["w"], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(p["b"], q["b"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(layers.get_params(nets[0])[0]["w"], layers.get_params(nets[1])[0]["w"])


# --------------------------------------------------------------------------- optax's others


def test_adam_is_optax_adam_on_the_mean_gradient(tiny_data):
    cfg = SGDConfig(epochs=1, mini_batch_size=20, eta=0.01, optimizer="adam", shuffle=False, chunks=1)
    net = layers.build(DROP_SPEC, seed=3)
    graphdef, state = nnx.split(layers.build(DROP_SPEC, seed=3))
    fit(net, cfg, tiny_data)
    x, y = tiny_data
    tx, keys = optax.adam(0.01), step.step_keys(cfg.seed)
    opt = tx.init(state)
    for s in range(3):
        sl = slice(20 * s, 20 * s + 20)
        loss = lambda p: costs.get("LogLikelihoodCost")(  # noqa: E731
            nnx.merge(graphdef, p).logits(jnp.asarray(x[sl]), jax.random.fold_in(keys[0], s)),
            jnp.asarray(y[sl]), "softmax").mean()
        updates, opt = tx.update(jax.grad(loss)(state), opt, state)
        state = optax.apply_updates(state, updates)
    for p, q in zip(layers.get_params(net), layers.get_params(nnx.merge(graphdef, state))):
        np.testing.assert_allclose(p["w"], q["w"], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(p["b"], q["b"], rtol=1e-5, atol=1e-7)


def test_bad_optimizer_settings_are_one_line_errors():
    with pytest.raises(ValueError, match=r"^training settings: optimizer must be one of sgd, adam, .*'getattr'$"):
        SGDConfig(epochs=1, optimizer="getattr").check(100)
    with pytest.raises(ValueError, match=r"^training settings: momentum applies to the optimizers sgd and rmsprop, "
                                         r"not adam$"):
        SGDConfig(epochs=1, optimizer="adam", momentum=0.5).check(100)
    SGDConfig(epochs=1, optimizer="rmsprop", momentum=0.5).check(100)


def test_the_cli_refuses_an_unknown_optimizer_and_makes_no_run(tmp_path, capsys, synthetic_mnist):
    d = tmp_path / "r"
    code = cli.main(["train", "ch1", "--optimizer", "__class__", "--run", str(d), "--data",
                     str(synthetic_mnist.path), "--limit", "100", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and err[-1].startswith("nn3: error: training settings: optimizer must be one of sgd, adam")
    assert not d.exists()


def test_an_adam_run_records_its_optimizer_and_resumes_and_replays_exactly(tmp_path, capsys, synthetic_mnist):
    work = ["--data", str(synthetic_mnist.path), "--limit", "300", "--quiet", "--optimizer", "adam",
            "--eta", "0.003", "--lmbda", "1"]
    assert cli.main(["train", "ch1", "--epochs", "2", "--run", str(tmp_path / "straight"), *work]) == 0
    assert cli.main(["train", "ch1", "--epochs", "1", "--run", str(tmp_path / "paused"), *work]) == 0
    assert cli.main(["resume", str(tmp_path / "paused"), "--epochs", "2", "--quiet"]) == 0
    config = json.loads((tmp_path / "paused" / "config.json").read_text(encoding="utf-8"))
    assert config["sgd"]["optimizer"] == "adam" and config["sgd"]["eta"] == 0.003
    a, b = inspect.load(tmp_path / "straight"), inspect.load(tmp_path / "paused")
    assert params_equal(layers.get_params(a), layers.get_params(b))
    run = rundir.RunDir.open(tmp_path / "paused")
    try:
        _, arrays, _ = run.restore(checkpoint_arrays(a, optim.Rule("adam", decay=True)))
    finally:
        run.close()
    assert set(arrays) == {"params", "opt_state"} and len(arrays["opt_state"]) == 1 + 2 * 4  # count, mu, nu
    res = inspect.replay(tmp_path / "paused")
    assert res["equal"] and res["epoch"] == 1
    straight = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    paused = [json.loads(line) for line in (tmp_path / "paused" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["train_loss"] for r in straight] == [r["train_loss"] for r in paused]
