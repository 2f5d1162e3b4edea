"""How much the speed of the same training differs between fresh processes (issue 12: ≤ 1.15 max/min).

    python bench/spread.py                           # 10 processes of each variant, interleaved
    python bench/spread.py --variants default pin --processes 10 --n 5000 --json bench/out/spread.json

Each process trains dbl_conv_relu (nn3's default formulation, mini-batch 10) on the first
``--n`` MNIST training images: one epoch that compiles, then ``--rounds`` timed epochs,
the fastest scaled to 50,000 images. Processes run one after another, the variants
interleaved (process i of every variant before process i+1 of any), so that a change in
the machine's load hits them alike. Variants, set in the child before or after JAX starts:

- ``default``: as ``nn3 train`` runs a conv net (XLA's CPU pool on every core);
- ``pin``: after the first epoch, each of XLA's pool threads (``tf_XLAEigen``) pinned to
  a core of its own; the dispatching Python thread left free;
- ``one``: a pool of one thread (``nn3.engine.threads.limit(1)``; the pool's core only);
- ``spin``: the default with the OS's view of each pool thread kept (where it last ran).

Each process also reports how many cores' worth of other processes' work ran beside its
timed epochs (/proc/stat's busy time less its own), and the hypervisor's steal: on two
cores, one core taken by others is enough to halve the speed of a two-thread pool.
And where its CPU time went per epoch (Linux schedstat): the main
(dispatching) thread, XLA's pool, the other threads. Two cores' worth of CPU time in a
fast process and one in a slow one would point at serialised work; more CPU time in the
slow one, at spinning.

The report gives each variant's s/epoch per process, max/min of the wall and of the CPU
time (all threads) per epoch, and the machine's load average before and after: with other
work on the cores the wall-clock spread says more about that work than about nn3.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FULL_EPOCH = 50_000
VARIANTS = ("default", "pin", "one", "spin")


def _threads() -> list[tuple[int, str, int, list[int]]]:
    """(tid, name, last cpu, allowed cpus) of this process's threads (Linux /proc)."""
    out = []
    for t in sorted(os.listdir("/proc/self/task"), key=int):
        try:
            name = Path(f"/proc/self/task/{t}/comm").read_text(encoding="utf-8").strip()
            last = int(Path(f"/proc/self/task/{t}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[36])
            out.append((int(t), name, last, sorted(os.sched_getaffinity(int(t)))))
        except (OSError, ValueError, IndexError):
            continue
    return out


def _on_cpu() -> dict[str, float]:
    """Seconds on a CPU so far: the main thread, each of XLA's pool threads, the rest (/proc schedstat)."""
    out = {"main": 0.0, "other": 0.0}
    pool = 0
    for tid, name, _, _ in _threads():
        try:
            ns = int(Path(f"/proc/self/task/{tid}/schedstat").read_text(encoding="utf-8").split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if name.startswith("tf_XLA"):
            key, pool = f"pool{pool}", pool + 1
        else:
            key = "main" if tid == os.getpid() else "other"
        out[key] = out.get(key, 0.0) + ns / 1e9
    return out


def _machine() -> tuple[float, float]:
    """(busy, steal) seconds of all CPUs so far, from /proc/stat (0, 0 where it is missing)."""
    try:
        f = [int(v) for v in Path("/proc/stat").read_text(encoding="utf-8").splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (f + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / tick, steal / tick


def child(variant: str, n: int, rounds: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from nn3.engine import threads
    if variant == "one":
        threads.limit(1)
    from nn3.store import data
    from nn3.engine import layers, settings
    from nn3.engine.device_data import DeviceData
    from nn3.engine.trainer import Trainer
    from nn3.runs import presets
    (x, y), _, _ = data.load_data()
    p = presets.get("dbl_conv_relu")
    cfg = settings.SGDConfig(**{**p.sgd, "epochs": 1, "chunks": 1})
    tr = Trainer([layers.build(p.spec, seed=0, init=p.init)], [cfg], DeviceData.from_arrays(x[:n], y[:n]))
    tr.run_epoch(0, 0, cfg.eta)  # compiles; the pool's threads exist from here on
    pinned = []
    if variant == "pin" and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        pool = [t for t in _threads() if t[1].startswith("tf_XLA")]
        for i, (tid, _, _, _) in enumerate(pool):
            os.sched_setaffinity(tid, {cores[i % len(cores)]})
            pinned.append((tid, cores[i % len(cores)]))
    walls, cpus = [], []
    before, machine, own, began = _on_cpu(), _machine(), time.process_time(), time.perf_counter()
    for r in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        tr.run_epoch(r + 1, 0, cfg.eta)
        walls.append((time.perf_counter() - wall) * FULL_EPOCH / n)
        cpus.append((time.process_time() - cpu) * FULL_EPOCH / n)
    after, machine_after = _on_cpu(), _machine()
    span, own = time.perf_counter() - began, time.process_time() - own
    per_epoch = FULL_EPOCH / n / rounds
    out = {"s_per_epoch": min(walls), "rounds": walls, "cpu_s_per_epoch": min(cpus), "pinned": pinned,
           "thread_s_per_epoch": {k: (after[k] - before[k]) * per_epoch for k in after},
           # cores' worth of other processes' work (and the hypervisor's steal) while the epochs ran
           "others_cores": max(0.0, (machine_after[0] - machine[0] - own) / span),
           "steal_cores": (machine_after[1] - machine[1]) / span}
    if variant == "spin":
        out["threads"] = [t for t in _threads() if t[1].startswith("tf_XLA") or t[0] == os.getpid()]
    return out


def run_child(variant: str, args) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS", "NN3_CPU_THREADS")}
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run([sys.executable, __file__, "--child", variant, "--n", str(args.n), "--rounds",
                          str(args.rounds)], capture_output=True, text=True, env=env, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"spread: a {variant} process failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variants", nargs="+", default=["default", "pin"], choices=VARIANTS)
    p.add_argument("--processes", type=int, default=10)
    p.add_argument("--n", type=int, default=3000, help="training images per timed epoch (default 3000)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", default=None)
    p.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.n, args.rounds)))
        return {}
    load_before = os.getloadavg()
    print(f"spread: {args.processes} fresh processes per variant, dbl_conv_relu on {args.n} images, "
          f"{args.rounds} timed epochs each; {os.cpu_count()} cores, load {load_before[0]:.2f}", flush=True)
    got = {v: [] for v in args.variants}
    for i in range(args.processes):
        for v in args.variants:
            got[v].append(run_child(v, args))
            r = got[v][-1]
            print(f"  {v:8s} process {i}: {r['s_per_epoch']:.2f} s/epoch (cpu {r['cpu_s_per_epoch']:.2f}: "
                  + ", ".join(f"{k} {t:.2f}" for k, t in r["thread_s_per_epoch"].items())
                  + f"); other processes {r['others_cores']:.2f} cores, steal {r['steal_cores']:.2f}", flush=True)
    load_after = os.getloadavg()
    print(f"\n{'variant':8s} {'min':>6s} {'median':>6s} {'max':>6s} {'max/min':>7s} {'cpu max/min':>11s}"
          f"   s/epoch per process")
    summary = {}
    for v, rows in got.items():
        s = sorted(r["s_per_epoch"] for r in rows)
        c = sorted(r["cpu_s_per_epoch"] for r in rows)
        summary[v] = {"min": s[0], "median": s[len(s) // 2], "max": s[-1], "max_over_min": s[-1] / s[0],
                      "cpu_max_over_min": c[-1] / c[0]}
        print(f"{v:8s} {s[0]:6.2f} {s[len(s) // 2]:6.2f} {s[-1]:6.2f} {s[-1] / s[0]:7.2f} {c[-1] / c[0]:11.2f}   "
              + " ".join(f"{r['s_per_epoch']:.2f}" for r in rows))
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")
    busy = [r["others_cores"] for rows in got.values() for r in rows]
    if max(busy) > 0.2:
        print(f"other processes took {min(busy):.2f}-{max(busy):.2f} cores beside the timed epochs: on "
              f"{os.cpu_count()} cores that alone moves a process between speeds; measure again when quiet")
    out = {"args": {k: v for k, v in vars(args).items() if k != "child"}, "summary": summary, "processes": got,
           "load_before": load_before, "load_after": load_after}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1), encoding="utf-8")
    return out


if __name__ == "__main__":
    main()
