"""How often chapter 1's network reaches the book's accuracy, over seeds: nn3 and numpy.

The book reports one run of ``[784, 100, 10]`` (eta 3.0, 30 epochs, N(0, 1) weights) at
96.59% and says in a footnote that readers saw runs quite a bit worse. This script
trains that network for several seeds through nn3 (float32, JAX) and through the
float64 numpy reference in bench/ (reference_vectorised.VectorisedNetwork: the book's
arithmetic with each mini-batch as a matrix, its own initialisation per seed) and prints
each run's peak test accuracy, so that a stall can be told apart from a port's bug.

Synopsis::

    python bench/seed_sweep.py                                  # [784,100,10], seeds 0-9, both
    python bench/seed_sweep.py --sizes 784,30,10 --seeds 0 1 2 --impl nn3
    python bench/seed_sweep.py --json bench/out/sweep.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_vectorised import VectorisedNetwork  # noqa: E402


def peak_nn3(sizes, seed, epochs, eta, m, data):
    """Peak test accuracy (fraction) of nn3's network.py façade over ``epochs`` epochs."""
    from nn3.engine import layers, settings, train
    from nn3.engine.spec import mlp_spec
    (x, y), (xt, yt) = data
    net = layers.build(mlp_spec(sizes, "QuadraticCost"), seed=seed, init="normal")
    cfg = settings.SGDConfig(epochs=epochs, mini_batch_size=m, eta=eta, seed=seed)
    loop = train.fit_networks([net], [cfg], train.Splits((x, y), test=(xt, yt))).loops[0]
    return [r["test_accuracy"] for r in loop.history]


def peak_numpy(sizes, seed, epochs, eta, m, data):
    """The same for the float64 numpy reference, shuffled by a generator seeded ``seed``."""
    (x, y), (xt, yt) = data
    net = VectorisedNetwork(sizes, seed=seed)
    rng = np.random.default_rng(seed)
    accs = []
    for _ in range(epochs):
        net.sgd_epoch(x, y, m, eta, rng)
        accs.append(net.evaluate(xt, yt) / len(yt))
    return accs


IMPLS = {"nn3": peak_nn3, "numpy64": peak_numpy}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="784,100,10")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--eta", type=float, default=3.0)
    ap.add_argument("--mini-batch-size", type=int, default=10)
    ap.add_argument("--impl", nargs="+", choices=sorted(IMPLS), default=["nn3", "numpy64"])
    ap.add_argument("--target", type=float, default=0.96, help="peak accuracy counted as reached")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    sizes = [int(s) for s in a.sizes.split(",")]
    from nn3.store import data
    tr, _, te = data.load_data()
    splits = ((np.asarray(tr[0]), np.asarray(tr[1])), (np.asarray(te[0]), np.asarray(te[1])))
    runs = []
    for impl in a.impl:
        for seed in a.seeds:
            start = time.perf_counter()
            accs = IMPLS[impl](sizes, seed, a.epochs, a.eta, a.mini_batch_size, splits)
            runs.append({"impl": impl, "seed": seed, "peak": max(accs), "final": accs[-1],
                         "peak_epoch": int(np.argmax(accs)), "wall_s": time.perf_counter() - start})
            r = runs[-1]
            print(f"{impl:8s} seed {seed:3d}: peak {r['peak']:.2%} (epoch {r['peak_epoch']}), "
                  f"final {r['final']:.2%}, {r['wall_s']:.0f} s", flush=True)
    print(f"\n{sizes}, eta {a.eta}, {a.epochs} epochs, mini-batch {a.mini_batch_size}:")
    for impl in a.impl:
        peaks = [r["peak"] for r in runs if r["impl"] == impl]
        hit = sum(p >= a.target for p in peaks)
        print(f"  {impl:8s} {hit}/{len(peaks)} seeds reach {a.target:.1%}; peaks "
              + " ".join(f"{p:.2%}" for p in peaks))
    if a.json:
        os.makedirs(os.path.dirname(a.json) or ".", exist_ok=True)
        Path(a.json).write_text(json.dumps({"sizes": sizes, "eta": a.eta, "epochs": a.epochs,
                                            "runs": runs}, indent=1), encoding="utf-8")
    return runs


if __name__ == "__main__":
    main()
