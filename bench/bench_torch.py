"""dbl_conv_relu per epoch, nn3 against PyTorch eager on the same CPU, in one run.

Each round starts a fresh process for nn3 and one for PyTorch (``torch_reference.py``,
run by ``--torch-python``, an environment with torch: never a dependency of nn3), in
turn, so that load on the machine hits both alike. Both time training on the first
``--n`` images scaled to 50,000, and the evaluation network3 does after each epoch
(20,000 images: validation and test, evaluated one after the other as nn3's training
does). Rows keep each side's fastest round; every round is listed.

``--threads N`` gives both sides N threads (torch's ``set_num_threads``, nn3's
``threads.limit``): on a machine that other work loads, torch's two OpenMP threads wait
on each other for seconds, and one thread each is the comparison that still means
something. ``--old PATH`` adds a row for the nn3 of another checkout (its package, this
script's timing), interleaved with the others.

    python bench/bench_torch.py --torch-python /tmp/tv/bin/python --n 2000 --rounds 3
    python bench/bench_torch.py --torch-python /tmp/tv/bin/python --threads 1 --old /tmp/nn3-old
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


def nn3_part(data_path, n, tree, n_threads=None):
    """nn3's side, in this process: the dbl_conv_relu preset's network and settings."""
    sys.path.insert(0, str(tree))
    from nn3.store import data
    from nn3.engine import evaluation, layers, threads
    from nn3.engine.device_data import DeviceData
    from nn3.engine.settings import SGDConfig
    from nn3.engine.trainer import Trainer
    from nn3.runs import presets
    threads.limit(n_threads)
    p = presets.get("dbl_conv_relu")
    (tx, ty), (vx, vy), (ex, ey) = data.load_data(data_path)
    cfg = SGDConfig(**{**p.sgd, "epochs": 1})
    net = layers.build(p.spec, seed=0, init=p.init)
    tr = Trainer([net], [cfg], DeviceData.from_arrays(tx[:n], ty[:n]))
    tr.run_epoch(0, 0, cfg.eta)  # compiles (and trains once)
    c0, t0 = time.process_time(), time.perf_counter()
    tr.run_epoch(1, 0, cfg.eta)
    train_s = (time.perf_counter() - t0) * FULL_EPOCH / n
    train_cpu_s = (time.process_time() - c0) * FULL_EPOCH / n
    tr.sync()
    evaluation.evaluate(net, (vx[:1000], vy[:1000]))  # compiles
    c0, t0 = time.process_time(), time.perf_counter()
    right = sum(evaluation.evaluate(net, d)[0] for d in ((vx, vy), (ex, ey)))  # as training does, one set after the other
    return {"train_s": train_s, "eval_s": time.perf_counter() - t0, "eval_correct": right,
            "train_cpu_s": train_cpu_s, "eval_cpu_s": time.process_time() - c0}


def _child(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--torch-python", help="a Python that has torch (required unless --nn3-part)")
    ap.add_argument("--data", default=None, help="mnist.pkl.gz (default: where nn3 finds it)")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="threads for each side (default: each one's default)")
    ap.add_argument("--old", default=None, help="also time the nn3 of this checkout")
    ap.add_argument("--nn3-part", default=None, help=argparse.SUPPRESS)  # the checkout whose nn3 to time
    a = ap.parse_args(argv)
    if a.nn3_part:
        print(json.dumps(nn3_part(a.data, a.n, a.nn3_part, a.threads or None)))
        return
    if not a.torch_python:
        ap.error("--torch-python is required")
    sys.path.insert(0, str(HERE.parent))
    from nn3.store import data
    path = a.data or str(data.find_source().files[0])
    common = ["--data", path, "--n", str(a.n)] + (["--threads", str(a.threads)] if a.threads else [])
    cmds = {"nn3": [sys.executable, __file__, "--nn3-part", str(HERE.parent), *common]}
    if a.old:
        cmds["nn3 old"] = [sys.executable, __file__, "--nn3-part", str(Path(a.old).resolve()), *common]
    cmds["torch"] = [a.torch_python, str(HERE / "torch_reference.py"), *common]
    rows = {k: [] for k in cmds}
    for r in range(a.rounds):
        order = list(cmds) if r % 2 == 0 else list(cmds)[::-1]  # load that drifts hits every side alike
        for k in order:
            rows[k].append(_child(cmds[k]))
        print(f"round {r}: " + ", ".join(f"{k} {rows[k][-1]['train_s']:.2f} + {rows[k][-1]['eval_s']:.2f} s"
                                         for k in cmds), flush=True)
    best = {k: min(v, key=lambda d: d["train_s"] + d["eval_s"]) for k, v in rows.items()}
    fastest = {(k, part): min(d[part] for d in v) for k, v in rows.items() for part in ("train_s", "eval_s")}
    threads = f"{a.threads} thread(s) each" if a.threads else "default threads"
    print(f"\ndbl_conv_relu, s/epoch at mini-batch 10 ({os.cpu_count()} CPUs, {threads}; fastest of {a.rounds} "
          f"rounds by total, and each part's fastest round in brackets)")
    print(f"{'':8s}{'train':>15s}{'eval 20k':>15s}{'total':>9s}  correct")
    for k, d in best.items():
        print(f"{k:8s}{d['train_s']:8.2f} ({fastest[k, 'train_s']:4.2f}){d['eval_s']:8.2f} ({fastest[k, 'eval_s']:4.2f})"
              f"{d['train_s'] + d['eval_s']:9.2f}  {d['eval_correct']}")
    if all("train_cpu_s" in d for v in rows.values() for d in v):  # CPU time: what load on the machine moves least
        cpu = {(k, part): min(d[part] for d in v) for k, v in rows.items() for part in ("train_cpu_s", "eval_cpu_s")}
        print("CPU seconds (all threads; fastest round of each part): " + ", ".join(
            f"{k} {cpu[k, 'train_cpu_s']:.2f} + {cpu[k, 'eval_cpu_s']:.2f}" for k in cmds))
        for k in [k for k in cmds if k != "torch"]:
            print(f"  torch / {k} in CPU time: training {cpu['torch', 'train_cpu_s'] / cpu[k, 'train_cpu_s']:.2f}x, "
                  f"evaluation {cpu['torch', 'eval_cpu_s'] / cpu[k, 'eval_cpu_s']:.2f}x, train + eval "
                  f"{(cpu['torch', 'train_cpu_s'] + cpu['torch', 'eval_cpu_s']) / (cpu[k, 'train_cpu_s'] + cpu[k, 'eval_cpu_s']):.2f}x")
    tot = {k: d["train_s"] + d["eval_s"] for k, d in best.items()}
    for k in [k for k in cmds if k != "torch"]:
        print(f"torch / {k}: training {best['torch']['train_s'] / best[k]['train_s']:.2f}x, "
              f"evaluation {best['torch']['eval_s'] / best[k]['eval_s']:.2f}x, "
              f"train + eval {tot['torch'] / tot[k]:.2f}x")


if __name__ == "__main__":
    main()
