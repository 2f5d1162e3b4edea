"""Reproduce the book's figures for chosen presets and print peak / best-validation accuracies.

    python bench/book_results.py ch1 ch1_100 ch3 --json bench/out/book.json
    python bench/book_results.py basic_conv dbl_conv_relu --epochs 2

Each preset trains through nn3.engine.train.fit with the book's settings (override --epochs),
on the book's data; reports the peak test accuracy (chapters 1 and 3 quote that) and the
test accuracy at the epoch of best validation accuracy (chapter 6 quotes that).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from nn3.store import data
from nn3.engine import layers, settings, train
from nn3.runs import presets


def run(name, epochs=None, seed=0):
    p = presets.get(name)
    sgd = dict(p.sgd, seed=seed)
    if epochs:
        sgd["epochs"] = epochs
    cfg = settings.SGDConfig(**sgd)
    tr, va, te = data.load_data()
    net = layers.build(p.spec, seed=seed, init=p.init)
    t0 = time.time()
    times = []

    def on_epoch(record, loop, trainer):
        times.append(time.time())
        print(f"  {name} epoch {record['epoch']}: validation {record['validation_accuracy']:.2%} "
              f"test {record['test_accuracy']:.2%}", flush=True)

    loop = train.fit_networks([net], [cfg], train.Splits(tr, va, te), on_epoch=on_epoch).loops[0]
    h = loop.history
    best = max(h, key=lambda r: (r["validation_accuracy"], -r["epoch"]))
    out = {"preset": name, "epochs": len(h), "seed": seed, "book": p.book,
           "peak_test": max(r["test_accuracy"] for r in h),
           "best_validation": best["validation_accuracy"], "test_at_best_validation": best["test_accuracy"],
           "per_epoch_test": [r["test_accuracy"] for r in h],
           "wall_s": time.time() - t0,
           "s_per_epoch_after_first": (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else None}
    print(json.dumps({k: v for k, v in out.items() if k != "per_epoch_test"}), flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("presets", nargs="+")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    results = [run(n, a.epochs, a.seed) for n in a.presets]
    if a.json:
        os.makedirs(os.path.dirname(a.json) or ".", exist_ok=True)
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
