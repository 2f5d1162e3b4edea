"""Seconds per training epoch of N members in one program against N lone runs, side by side.

Each row trains N networks of one architecture (seeds 0..N-1) for one epoch on the first
``--n`` MNIST training images, scaled to 50,000, as ``nn3.ensemble.EnsembleTrainer``
does it, in each way of running the members (nn3.ensemble: ``vmap``, every op batched
over the members; ``loop``, the lone scan member after member in the one compiled call;
``default`` is the backend's choice for the net). ``N lone`` is N times one lone
``train.Trainer`` epoch: N lone runs one after another. All are compiled first, then
timed in interleaved rounds, so that the machine's load hits them alike; read the ratio
(members' time / N lone runs' time, fastest round of each), not the seconds.

Synopsis::

    python bench/bench_members.py                              # shallow and dbl_conv_relu, N = 1 2 5 10
    python bench/bench_members.py --nets dbl_conv_relu --members 5 --n 500 --rounds 5
    python bench/bench_members.py --json bench/out/members.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import jax  # noqa: E402

from nn3 import data, ensemble, layers, presets, train  # noqa: E402

FULL_EPOCH = 50_000
N_DEFAULT = {"shallow": 5000, "dbl_conv_relu": 200}  # images per timed epoch: ~0.1-0.5 s a call


def _cfg(preset):
    sgd = {k: v for k, v in presets.get(preset).sgd.items() if k in ("mini_batch_size", "eta", "lmbda", "l2")}
    return train.SGDConfig(epochs=1, shuffle=False, drop_remainder=True, chunks=1, **sgd)


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    fn()  # run_epoch returns numpy losses: it has waited for the device
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_net(preset, counts, ways, x, y, rounds):
    spec, cfg = presets.get(preset).spec, _cfg(preset)
    lone = train.Trainer(layers.build(spec, seed=0), cfg, (x, y))
    rows = {("lone", 1): lambda: lone.run_epoch(0, 0, cfg.eta)}
    for n in counts:
        for way in ways:
            tr = ensemble.EnsembleTrainer([layers.build(spec, seed=s) for s in range(n)], cfg, (x, y), range(n))
            if way != "default":
                tr.statics["members_how"] = way
            etas = np.full(n, cfg.eta)
            rows[(way, n)] = (lambda tr, etas: lambda: tr.run_epoch(0, 0, etas))(tr, etas)
    compile_s = {k: _timed(f)[0] for k, f in rows.items()}  # compiles each program
    times = {k: [] for k in rows}
    for _ in range(rounds):
        for k, f in rows.items():
            times[k].append(_timed(f))
    scale = FULL_EPOCH / (len(x) // cfg.mini_batch_size * cfg.mini_batch_size)
    one_wall = min(w for w, _ in times[("lone", 1)]) * scale
    one_cpu = min(c for _, c in times[("lone", 1)]) * scale
    out = {"lone_s_per_epoch": one_wall, "lone_cpu_s_per_epoch": one_cpu, "rows": []}
    for (way, n), ts in times.items():
        if way == "lone":
            continue
        wall, cpu = min(w for w, _ in ts) * scale, min(c for _, c in ts) * scale
        out["rows"].append({"way": way, "members": n, "how": _how(spec, way), "s_per_epoch": wall,
                            "cpu_s_per_epoch": cpu, "ratio": wall / (n * one_wall), "cpu_ratio": cpu / (n * one_cpu),
                            "compile_plus_one_s": compile_s[(way, n)], "rounds_s": [w * scale for w, _ in ts]})
    return out


def _how(spec, way):
    if way != "default":
        return way
    from flax import nnx
    return ensemble.how(nnx.split(layers.build(spec))[0])


def print_net(preset, res, n_images):
    print(f"\n{preset}: s/epoch (50,000 images, from {n_images}); one lone run {res['lone_s_per_epoch']:.2f} s "
          f"(cpu {res['lone_cpu_s_per_epoch']:.2f}); ratio = members / N lone runs (fastest rounds)")
    print(f"  {'N':>3s} {'way':8s} {'members':>8s} {'N lone':>7s} {'ratio':>6s} {'cpu ratio':>9s}")
    for r in res["rows"]:
        way = r["way"] if r["way"] != "default" else f"({r['how']})"
        print(f"  {r['members']:3d} {way:8s} {r['s_per_epoch']:8.2f} {r['members'] * res['lone_s_per_epoch']:7.2f} "
              f"{r['ratio']:6.2f} {r['cpu_ratio']:9.2f}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nets", nargs="+", default=["shallow", "dbl_conv_relu"], help="preset names")
    p.add_argument("--members", nargs="+", type=int, default=[1, 2, 5, 10], help="values of N")
    p.add_argument("--ways", nargs="+", default=["vmap", "loop"], choices=["vmap", "loop", "default"])
    p.add_argument("--n", type=int, default=None, help="training images per timed epoch (default: per net)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--data", default=None, help="mnist.pkl.gz or its folder (default: $NN3_DATA_DIR)")
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    (x_all, y_all), _, _ = data.load_data(a.data)
    print(f"bench_members: jax {jax.__version__} on {jax.default_backend()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}; {a.rounds} rounds; ways {', '.join(a.ways)}")
    results = {}
    for preset in a.nets:
        n = a.n or N_DEFAULT.get(preset, 500)
        x, y = np.asarray(x_all[:n], np.float32), np.asarray(y_all[:n])
        results[preset] = bench_net(preset, a.members, a.ways, x, y, a.rounds)
        print_net(preset, results[preset], n)
    print(f"\nload after: {os.getloadavg()[0]:.2f}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"args": vars(a), "results": results}, indent=1))
    return results


if __name__ == "__main__":
    main()
