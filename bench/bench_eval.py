"""Seconds to evaluate MNIST's validation and test sets (20,000 images), as nn3's training does after each epoch.

The network is the ``--preset``'s (default dbl_conv_relu), trained for one epoch on the
first ``--train`` images so that its outputs look like a real run's. Each round times
``evaluate(net, validation)`` then ``evaluate(net, test)`` (after one untimed
evaluation that compiles), wall clock and the process's CPU time (all threads); the
rows keep the fastest round and the median. It prints the counts, so that two checkouts
can be seen to agree.

The script imports ``nn3`` from the environment (``PYTHONPATH``), not from beside it:
``bench/ab.py`` runs this one file against two checkouts.

    PYTHONPATH=. python bench/bench_eval.py --rounds 5
    PYTHONPATH=/tmp/nn3-old python bench/bench_eval.py --json out.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="dbl_conv_relu")
    ap.add_argument("--train", type=int, default=1000, help="training images of the one epoch before (default 1000)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--data", default=None, help="mnist.pkl.gz (default: where nn3 finds it)")
    ap.add_argument("--json", default=None, help="also write the results here")
    a = ap.parse_args(argv)

    from nn3.store import data
    from nn3.engine import evaluation, layers, settings, train
    from nn3.runs import presets
    p = presets.get(a.preset)
    (tx, ty), validation, test = data.load_data(a.data)
    cfg = settings.SGDConfig(**{**p.sgd, "epochs": 1})
    net = layers.build(p.spec, seed=0, init=p.init)
    train.fit_networks([net], [cfg], train.Splits((tx[:a.train], ty[:a.train])))
    counts = [evaluation.evaluate(net, d)[:1] for d in (validation, test)]  # compiles
    wall, cpu = [], []
    for _ in range(a.rounds):
        c0, t0 = time.process_time(), time.perf_counter()
        for d in (validation, test):
            evaluation.evaluate(net, d)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    out = {"preset": a.preset, "images": len(validation[1]) + len(test[1]), "correct": [c[0] for c in counts],
           "wall_s": wall, "cpu_s": cpu, "wall_s_min": min(wall), "wall_s_median": statistics.median(wall),
           "cpu_s_min": min(cpu)}
    print(f"{a.preset}: evaluating {out['images']} images, wall {min(wall):.3f} s fastest "
          f"({statistics.median(wall):.3f} median), CPU {min(cpu):.3f} s; correct {out['correct']}")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
