"""How an ensemble runs its members in one program ("vmap" or "loop", nn3.ensemble):
each way gives every member a lone run's numbers bit for bit, and the CPU loops over
the members of a conv net (the speed itself is measured in bench/bench_members.py)."""
from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

from nn3 import backend, ensemble, layers, train

CONV = {"layers": [
    {"type": "ConvPoolLayer", "filter_shape": [3, 1, 5, 5], "image_shape": [10, 1, 12, 12],
     "poolsize": [2, 2], "activation_fn": "ReLU"},
    {"type": "ConvPoolLayer", "filter_shape": [4, 3, 3, 3], "image_shape": [10, 3, 4, 4],
     "poolsize": [1, 1], "activation_fn": "ReLU"},
    {"type": "FullyConnectedLayer", "n_in": 16, "n_out": 12, "activation_fn": "ReLU", "p_dropout": 0.5},
    {"type": "SoftmaxLayer", "n_in": 12, "n_out": 10, "p_dropout": 0.0}], "cost": "LogLikelihoodCost"}
MLP = {"layers": [
    {"type": "FullyConnectedLayer", "n_in": 144, "n_out": 20, "activation_fn": "sigmoid", "p_dropout": 0.2},
    {"type": "SoftmaxLayer", "n_in": 20, "n_out": 10, "p_dropout": 0.0}], "cost": "LogLikelihoodCost"}


def _data(n=80):
    rng = np.random.default_rng(4)
    return rng.random((n, 144), dtype=np.float32), rng.integers(0, 10, n)


def _trainer(spec, cfg, seeds, data, members_how):
    tr = ensemble.EnsembleTrainer([layers.build(spec, seed=s) for s in seeds], cfg, data, seeds)
    if members_how is not None:
        tr.statics["members_how"] = members_how
    return tr


@pytest.mark.parametrize("spec", [CONV, MLP], ids=["conv", "mlp"])
@pytest.mark.parametrize("members_how", ["vmap", "loop"])
def test_each_way_gives_each_member_a_lone_runs_numbers(spec, members_how):
    x, y = _data()
    cfg = train.SGDConfig(epochs=2, eta=0.1, lmbda=0.1, l2="batch", momentum=0.5, shuffle=True,
                          drop_remainder=False, chunks=3)  # 8 full mini-batches and a short one
    seeds, etas = [0, 1, 2], np.array([0.1, 0.05, 0.2])
    tr = _trainer(spec, cfg, seeds, (x, y), members_how)
    losses = [tr.run_epoch(epoch, 0, etas)[0] for epoch in range(cfg.epochs)]
    tr.sync()
    for i, (seed, eta) in enumerate(zip(seeds, etas)):
        alone = layers.build(spec, seed=seed)
        loop = train.fit(alone, dataclasses.replace(cfg, seed=seed, eta=float(eta)), (x, y))
        for p, q in zip(layers.get_params(tr.nets[i]), layers.get_params(alone)):
            np.testing.assert_array_equal(p["w"], q["w"])
            np.testing.assert_array_equal(p["b"], q["b"])
        for epoch, record in enumerate(loop.history):  # the losses too, step by step
            assert float(np.mean(losses[epoch][i].astype(np.float64))) == pytest.approx(record["train_loss"], rel=1e-12)
    assert not np.array_equal(layers.get_params(tr.nets[0])[0]["w"], layers.get_params(tr.nets[1])[0]["w"])


def _batched_dots(spec, members_how=None) -> int:
    x, y = _data()
    cfg = train.SGDConfig(epochs=1, eta=0.1, shuffle=False, drop_remainder=True, chunks=1)
    tr = _trainer(spec, cfg, [0, 1], (x, y), members_how)
    batches = tr.order(0).reshape(2, -1, cfg.mini_batch_size)
    steps = np.arange(batches.shape[1], dtype=np.int32)
    text = ensemble._run_members.lower(tr.state, tr.opt_state, tr.x, tr.y, batches, steps, tr.keys,
                                       **tr.statics).compile().as_text()
    return len(re.findall(r" dot\([^\n]*lhs_batch_dims", text))


@pytest.mark.skipif(backend.choices().backend != "cpu", reason="the CPU's choice")
def test_the_cpu_loops_over_conv_members_and_vmaps_mlp_members():
    """On the CPU a conv net's members run one by one (no member-batched matmul in the
    compiled program); an MLP's are vmapped (its matmuls batched over the members)."""
    assert ensemble.how(nnx.split(layers.build(CONV))[0]) == "loop"
    assert ensemble.how(nnx.split(layers.build(MLP))[0]) == "vmap"
    assert _batched_dots(CONV) == 0
    assert _batched_dots(CONV, "vmap") > 0  # what the loop replaced
    assert _batched_dots(MLP) > 0


def test_an_unknown_way_is_a_one_line_error():
    x, y = _data(20)
    cfg = train.SGDConfig(epochs=1, eta=0.1, drop_remainder=True)
    tr = _trainer(MLP, cfg, [0, 1], (x, y), "threads")
    with pytest.raises(ValueError, match="members: 'threads' is not one of vmap, loop"):
        tr.run_epoch(0, 0, np.array([0.1, 0.1]))


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
