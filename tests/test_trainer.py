"""One trainer for N >= 1 networks: in one compiled program, each network computes what its
lone run computes, bit for bit, whichever way the members run ("vmap" or "loop",
nn3.engine.step); a network that stops or diverges freezes while the others go on; and the
CPU loops over the members of a conv net (the speed itself is measured in bench/bench_members.py)."""
from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nn3.engine import backend, evaluation, layers, step, train
from nn3.engine.device_data import DeviceData
from nn3.engine.settings import SGDConfig
from nn3.engine.trainer import Trainer

CONV = {"layers": [
    {"type": "ConvPoolLayer", "filter_shape": [3, 1, 5, 5], "image_shape": [10, 1, 12, 12],
     "poolsize": [2, 2], "activation_fn": "ReLU"},
    {"type": "ConvPoolLayer", "filter_shape": [4, 3, 3, 3], "image_shape": [10, 3, 4, 4],
     "poolsize": [1, 1], "activation_fn": "ReLU"},
    {"type": "FullyConnectedLayer", "n_in": 16, "n_out": 12, "activation_fn": "ReLU", "p_dropout": 0.5},
    {"type": "SoftmaxLayer", "n_in": 12, "n_out": 10, "p_dropout": 0.0}], "cost": "LogLikelihoodCost"}
ONE_CONV = {"layers": [
    {"type": "ConvPoolLayer", "filter_shape": [3, 1, 5, 5], "image_shape": [10, 1, 12, 12],
     "poolsize": [2, 2], "activation_fn": "ReLU"},
    {"type": "FullyConnectedLayer", "n_in": 48, "n_out": 12, "activation_fn": "ReLU", "p_dropout": 0.5},
    {"type": "SoftmaxLayer", "n_in": 12, "n_out": 10, "p_dropout": 0.0}], "cost": "LogLikelihoodCost"}
MLP = {"layers": [
    {"type": "FullyConnectedLayer", "n_in": 144, "n_out": 20, "activation_fn": "sigmoid", "p_dropout": 0.2},
    {"type": "SoftmaxLayer", "n_in": 20, "n_out": 10, "p_dropout": 0.0}], "cost": "LogLikelihoodCost"}


def _data(n=80):
    rng = np.random.default_rng(4)
    return rng.random((n, 144), dtype=np.float32), rng.integers(0, 10, n)


def _trainer(spec, cfgs, data, how=None):
    return Trainer([layers.build(spec, seed=c.seed) for c in cfgs], cfgs, DeviceData.from_arrays(*data), how=how)


def _lone(spec, cfg, data, test=None):
    """``cfg``'s lone run: (its network, its Loop)."""
    net = layers.build(spec, seed=cfg.seed)
    run = train.fit_networks([net], [cfg], train.Splits(data, test=test))
    return net, run.loops[0]


def _equal(a, b):
    for p, q in zip(layers.get_params(a), layers.get_params(b)):
        np.testing.assert_array_equal(p["w"], q["w"])
        np.testing.assert_array_equal(p["b"], q["b"])


@pytest.mark.parametrize("spec", [CONV, MLP], ids=["conv", "mlp"])
@pytest.mark.parametrize("how", ["vmap", "loop"])
def test_each_way_gives_each_member_a_lone_runs_numbers(spec, how):
    x, y = _data()
    cfg = SGDConfig(epochs=2, eta=0.1, lmbda=0.1, l2="batch", momentum=0.5, shuffle=True,
                    drop_remainder=False, chunks=3)  # 8 full mini-batches and a short one
    cfgs = [dataclasses.replace(cfg, seed=s, eta=e) for s, e in ((0, 0.1), (1, 0.05), (2, 0.2))]
    tr = _trainer(spec, cfgs, (x, y), how)
    losses = [tr.run_epoch(epoch, 0, [c.eta for c in cfgs]).losses for epoch in range(cfg.epochs)]
    tr.sync()
    for i, c in enumerate(cfgs):
        alone, loop = _lone(spec, c, (x, y))
        _equal(tr.nets[i], alone)
        for epoch, record in enumerate(loop.history):  # the losses too, step by step
            assert float(np.mean(losses[epoch][i].astype(np.float64))) == pytest.approx(record["train_loss"], rel=1e-12)
    assert not np.array_equal(layers.get_params(tr.nets[0])[0]["w"], layers.get_params(tr.nets[1])[0]["w"])


@pytest.mark.parametrize("chunks", [None, 3])  # 3: calls of 3, 3 and 2 mini-batches
def test_three_members_through_the_loop_equal_three_lone_runs(chunks):
    """Calls of unequal length once crashed a member run (shallow on the full training set)."""
    x, y = _data()
    cfg = SGDConfig(epochs=2, eta=0.1, lmbda=0.1, l2="batch", momentum=0.5, drop_remainder=True, chunks=chunks)
    cfgs = [dataclasses.replace(cfg, seed=s) for s in (0, 1, 2)]
    nets = [layers.build(ONE_CONV, seed=c.seed) for c in cfgs]
    run = train.fit_networks(nets, cfgs, train.Splits((x, y), test=(x, y)))
    assert run.stop_reason == "epochs" and [r["epoch"] for r in run.history] == [0, 1]
    assert run.history[-1]["test_accuracy"] == evaluation.vote_accuracy(nets, (x, y))
    for c, net in zip(cfgs, nets):
        alone, loop = _lone(ONE_CONV, c, (x, y), test=(x, y))
        _equal(net, alone)
        assert run.loops[cfgs.index(c)].history == loop.history
    assert not np.array_equal(layers.get_params(nets[0])[0]["w"], layers.get_params(nets[1])[0]["w"])


@pytest.mark.parametrize("how", ["vmap", "loop"])
def test_a_network_that_is_not_live_keeps_its_state_bit_for_bit(how):
    x, y = _data()
    cfgs = [SGDConfig(epochs=1, eta=0.1, seed=s, chunks=2) for s in (0, 1, 2)]
    tr = _trainer(MLP, cfgs, (x, y), how)
    before = [layers.get_params(n) for n in tr.nets]
    ran = tr.run_epoch(0, 0, 0.1, live=[True, False, True])
    tr.sync()
    assert ran.done == tr.n_batches and ran.diverged == []
    for i, b in enumerate(before[1:2], 1):
        for p, q in zip(layers.get_params(tr.nets[i]), b):
            np.testing.assert_array_equal(p["w"], q["w"])
    alone, _ = _lone(MLP, cfgs[2], (x, y))
    _equal(tr.nets[2], alone)


def test_a_member_that_is_not_live_is_skipped_by_loop_and_computed_by_vmap():
    """In the compiled call itself: "loop" takes the skip branch for a member that is not
    live (its losses come back as zeros, no work done), "vmap" computes it and keeps its
    old state."""
    x, y = _data()
    cfgs = [SGDConfig(epochs=1, eta=0.1, seed=s) for s in (0, 1, 2)]
    for how in ("loop", "vmap"):
        tr = _trainer(MLP, cfgs, (x, y), how)
        batches = tr.order(0)[:, :40].reshape(3, 4, 10)  # each member's first 4 mini-batches
        _, _, losses, finite = step.run_members_jit(
            tr.state, tr.opt_state, tr.data.x, tr.data.y, batches, np.arange(4, dtype=np.int32), tr.keys,
            np.array([True, False, True]), **tr.statics)  # tr.statics holds how
        losses = np.asarray(losses)
        assert np.asarray(finite).all() and (losses[[0, 2]] > 0).all()
        assert (losses[1] == 0).all() if how == "loop" else (losses[1] > 0).all()


@pytest.mark.parametrize("how", ["vmap", "loop"])
def test_a_diverging_network_is_reported_and_put_back_while_the_others_train_on(how):
    """A NaN is a value the call returns (``Ran.diverged``), not a sentinel in the losses."""
    x, y = _data()
    cfgs = [SGDConfig(epochs=1, eta=e, seed=s, chunks=3) for s, e in ((0, 0.1), (1, 1e30), (2, 0.2))]
    tr = _trainer(MLP, cfgs, (x, y), how)
    before = layers.get_params(tr.nets[1])
    ran = tr.run_epoch(0, 0, [c.eta for c in cfgs])
    tr.sync()
    assert ran.diverged == [1] and ran.done == tr.n_batches
    for p, q in zip(layers.get_params(tr.nets[1]), before):  # back where the epoch began
        np.testing.assert_array_equal(p["w"], q["w"])
    for i in (0, 2):
        alone, _ = _lone(MLP, cfgs[i], (x, y))
        _equal(tr.nets[i], alone)


def _batched_dots(spec, how=None) -> int:
    x, y = _data()
    cfg = SGDConfig(epochs=1, eta=0.1, shuffle=False, drop_remainder=True, chunks=1)
    tr = _trainer(spec, [dataclasses.replace(cfg, seed=s) for s in (0, 1)], (x, y), how)
    batches = tr.order(0).reshape(2, -1, cfg.mini_batch_size)
    steps = np.arange(batches.shape[1], dtype=np.int32)
    text = step.run_members_jit.lower(tr.state, tr.opt_state, tr.data.x, tr.data.y, batches, steps, tr.keys,
                                      np.ones(2, bool), **tr.statics).compile().as_text()
    return len(re.findall(r" dot\([^\n]*lhs_batch_dims", text))


@pytest.mark.skipif(backend.choices().backend != "cpu", reason="the CPU's choice")
def test_the_cpu_loops_over_conv_members_and_vmaps_mlp_members():
    """On the CPU a conv net's members run one by one (no member-batched matmul in the
    compiled program); an MLP's are vmapped (its matmuls batched over the members)."""
    x, y = _data()
    two = [SGDConfig(epochs=1, seed=s) for s in (0, 1)]
    assert _trainer(CONV, two, (x, y)).statics["how"] == "loop"
    assert _trainer(MLP, two, (x, y)).statics["how"] == "vmap"
    assert _batched_dots(CONV) == 0
    assert _batched_dots(CONV, "vmap") > 0  # what the loop replaced
    assert _batched_dots(MLP) > 0


def test_an_unknown_way_is_a_one_line_error():
    x, y = _data(20)
    cfgs = [SGDConfig(epochs=1, eta=0.1, drop_remainder=True, seed=s) for s in (0, 1)]
    with pytest.raises(ValueError, match="members: 'threads' is not one of vmap, loop"):
        _trainer(MLP, cfgs, (x, y), "threads").run_epoch(0, 0, 0.1)


def test_the_bench_runs(tmp_path, synthetic_mnist):
    """bench/bench_members.py cannot rot unnoticed (its numbers are read, not asserted)."""
    root = Path(__file__).resolve().parent.parent
    argv = ["--nets", "shallow", "--members", "1", "2", "--n", "100", "--rounds", "1", "--sweep-net", "shallow",
            "--data", synthetic_mnist.path, "--json", tmp_path / "members.json"]
    out = subprocess.run([sys.executable, str(root / "bench" / "bench_members.py"), *map(str, argv)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "members.json").read_text(encoding="utf-8"))["results"]
    rows = results["shallow"]["rows"]
    assert [(r["way"], r["members"]) for r in rows] == [(w, n) for n in (1, 2) for w in ("loop", "vmap", "shard")]
    assert [(r["way"], r["members"]) for r in results["sweep"]["rows"]] == [("shard", 8), ("default", 8)]
    assert all(r["s_per_epoch"] > 0 and r["ratio"] > 0 for r in rows + results["sweep"]["rows"])
