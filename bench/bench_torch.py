"""dbl_conv_relu per epoch, nn3 against PyTorch eager on the same CPU, in one run.

Each round starts a fresh process for nn3 and one for PyTorch (``torch_reference.py``,
run by ``--torch-python``, an environment with torch: never a dependency of nn3), in
turn, so that load on the machine hits both alike. Both time training on the first
``--n`` images scaled to 50,000, and the evaluation network3 does after each epoch
(20,000 images: validation and test). Rows keep each side's fastest round; every round
is listed.

    python bench/bench_torch.py --torch-python /tmp/tv/bin/python --n 2000 --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FULL_EPOCH, EVAL_N = 50_000, 20_000


def nn3_part(data_path, n):
    """nn3's side, in this process: the dbl_conv_relu preset's network and settings."""
    sys.path.insert(0, str(HERE.parent))
    import numpy as np

    from nn3 import data, layers, presets, train
    p = presets.get("dbl_conv_relu")
    (tx, ty), (vx, vy), (ex, ey) = data.load_data(data_path)
    cfg = train.SGDConfig(**{**p.sgd, "epochs": 1})
    net = layers.build(p.spec, seed=0, init=p.init)
    tr = train.Trainer(net, cfg, (tx[:n], ty[:n]))
    tr.run_epoch(0, 0, cfg.eta)  # compiles (and trains once)
    t0 = time.perf_counter()
    tr.run_epoch(1, 0, cfg.eta)
    train_s = (time.perf_counter() - t0) * FULL_EPOCH / n
    tr.sync()
    evx, evy = np.concatenate([vx, ex])[:EVAL_N], np.concatenate([vy, ey])[:EVAL_N]
    train.evaluate(net, (evx[:1000], evy[:1000]))  # compiles
    t0 = time.perf_counter()
    right, _, _ = train.evaluate(net, (evx, evy))
    return {"train_s": train_s, "eval_s": time.perf_counter() - t0, "eval_correct": right}


def _child(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--torch-python", help="a Python that has torch (required unless --nn3-part)")
    ap.add_argument("--data", default=None, help="mnist.pkl.gz (default: where nn3 finds it)")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--nn3-part", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.nn3_part:
        print(json.dumps(nn3_part(a.data, a.n)))
        return
    if not a.torch_python:
        ap.error("--torch-python is required")
    sys.path.insert(0, str(HERE.parent))
    from nn3 import data
    path = a.data or str(data.find_source().files[0])
    rows = {"nn3": [], "torch": []}
    for r in range(a.rounds):
        rows["nn3"].append(_child([sys.executable, __file__, "--nn3-part", "--data", path, "--n", str(a.n)]))
        rows["torch"].append(_child([a.torch_python, str(HERE / "torch_reference.py"), "--data", path,
                                     "--n", str(a.n)]))
        print(f"round {r}: nn3 {rows['nn3'][-1]['train_s']:.2f} + {rows['nn3'][-1]['eval_s']:.2f} s, "
              f"torch {rows['torch'][-1]['train_s']:.2f} + {rows['torch'][-1]['eval_s']:.2f} s", flush=True)
    best = {k: min(v, key=lambda d: d["train_s"] + d["eval_s"]) for k, v in rows.items()}
    print(f"\ndbl_conv_relu, s/epoch at mini-batch 10 ({os.cpu_count()} CPUs; fastest of {a.rounds} rounds)")
    print(f"{'':8s}{'train':>9s}{'eval 20k':>10s}{'total':>9s}")
    for k, d in best.items():
        print(f"{k:8s}{d['train_s']:9.2f}{d['eval_s']:10.2f}{d['train_s'] + d['eval_s']:9.2f}")
    tot = {k: d["train_s"] + d["eval_s"] for k, d in best.items()}
    print(f"torch / nn3: training {best['torch']['train_s'] / best['nn3']['train_s']:.2f}x, "
          f"evaluation {best['torch']['eval_s'] / best['nn3']['eval_s']:.2f}x, "
          f"train + eval {tot['torch'] / tot['nn3']:.2f}x")


if __name__ == "__main__":
    main()
