"""Ensembles: members trained in one vmapped program equal members trained one by one."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nn3.engine import ensemble, layers, train

SPEC = {"layers": [
    {"type": "ConvPoolLayer", "filter_shape": [3, 1, 5, 5], "image_shape": [10, 1, 12, 12],
     "poolsize": [2, 2], "activation_fn": "ReLU"},
    {"type": "FullyConnectedLayer", "n_in": 48, "n_out": 12, "activation_fn": "ReLU", "p_dropout": 0.5},
    {"type": "SoftmaxLayer", "n_in": 12, "n_out": 10, "p_dropout": 0.0}], "cost": "LogLikelihoodCost"}


def _data(n=80):
    rng = np.random.default_rng(0)
    return rng.random((n, 144), dtype=np.float32), rng.integers(0, 10, n)


@pytest.mark.parametrize("chunks", [None, 3])  # 3: calls of 3, 3 and 2 mini-batches
def test_three_members_in_one_program_equal_three_lone_runs(chunks):
    """Chunks of unequal length once crashed an ensemble (shallow on the full training set)."""
    x, y = _data()
    cfg = train.SGDConfig(epochs=2, eta=0.1, lmbda=0.1, l2="batch", momentum=0.5, shuffle=True,
                          drop_remainder=True, chunks=chunks)
    seeds = [0, 1, 2]
    members = ensemble.fit(SPEC, cfg, seeds, (x, y))
    for seed, member in zip(seeds, members):
        alone = layers.build(SPEC, seed=seed)
        train.fit(alone, dataclasses.replace(cfg, seed=seed), (x, y))
        for p, q in zip(layers.get_params(member), layers.get_params(alone)):
            np.testing.assert_array_equal(p["w"], q["w"])
            np.testing.assert_array_equal(p["b"], q["b"])
    a, b = layers.get_params(members[0]), layers.get_params(members[1])
    assert not np.array_equal(a[0]["w"], b[0]["w"])  # the members differ


def test_vote_is_a_plurality_with_ties_to_the_smaller_digit():
    x, y = _data(30)
    nets = [layers.build(SPEC, seed=s) for s in range(3)]
    preds = np.stack([train.predict(n, x) for n in nets])
    got = ensemble.vote(nets, x)
    for i in range(len(x)):
        counts = np.bincount(preds[:, i], minlength=10)
        assert got[i] == int(np.flatnonzero(counts == counts.max())[0])
    assert ensemble.accuracy(nets, (x, y)) == float(np.mean(got == y))
