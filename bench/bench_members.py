"""Seconds per training epoch of N members in one program against N lone runs, side by side.

Each row trains N networks of one architecture (seeds 0..N-1) for one epoch on the first
``--n`` MNIST training images, scaled to 50,000, as ``nn3.engine.trainer.Trainer``
does it, in each way of running the members (nn3.engine.trainer): ``vmap``, every op batched
over the members, and ``loop``, the lone scan member after member in the one compiled
call, both on one device; ``shard``, the members sharded over every device (the
backend's way inside each), which is what ``nn3 train --members`` does on the CPU, with
one host device per core (the bench starts JAX so unless XLA_FLAGS or --devices say
otherwise); ``default``, the backend's way on one device. ``N lone`` is N lone
``Trainer`` epochs (on one device, every core in XLA's pool) one after another,
timed as one block of about the members' length (on a loaded machine a short call is
scheduled more kindly than a long one: 40 ms calls ran at a full core, 0.5 s ones at a
third). Then a sweep, as ``nn3 train dbl_conv_relu --sweep lmbda=0,0.01,0.1,1 --seeds
0,1``: its 8 members in one program (sharded, and on one device) against the 8 lone runs.
All are compiled first, then timed in interleaved rounds, so that the machine's load
hits them alike; read the ratio (members' time / N lone runs' time, fastest round of
each), not the seconds.

Synopsis::

    python bench/bench_members.py                              # shallow and dbl_conv_relu, N = 1 2 5 10, the sweep
    python bench/bench_members.py --nets dbl_conv_relu --members 5 --n 500 --rounds 5 --no-sweep
    python bench/bench_members.py --json bench/out/members.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import jax  # noqa: E402

from nn3.store import data
from nn3.engine import layers, settings, step, threads  # noqa: E402
from nn3.engine.device_data import DeviceData  # noqa: E402
from nn3.engine.trainer import Trainer  # noqa: E402
from nn3.runs import presets  # noqa: E402

FULL_EPOCH = 50_000
N_DEFAULT = {"shallow": 5000, "dbl_conv_relu": 200}  # images per timed epoch: ~0.1-0.5 s a call
SWEEP = {"net": "dbl_conv_relu", "lmbda": [0.0, 0.01, 0.1, 1.0], "seeds": [0, 1]}


def load():
    """The 1-minute load average, rounded; None on Windows, which has none."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _cfg(preset, **over):
    sgd = {k: v for k, v in presets.get(preset).sgd.items() if k in ("mini_batch_size", "eta", "lmbda", "l2")}
    return settings.SGDConfig(epochs=1, shuffle=False, drop_remainder=True, chunks=1, **{**sgd, **over})


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    fn()  # run_epoch returns numpy losses: it has waited for the device
    return time.perf_counter() - wall, time.process_time() - cpu


def _members(spec, cfg, x, y, seeds, way, cfgs=None):
    """A timed epoch of ``seeds``' members run ``way`` (see the module's docstring)."""
    one = jax.devices()[:1]
    cfgs = cfgs or [dataclasses.replace(cfg, seed=s) for s in seeds]
    tr = Trainer([layers.build(spec, seed=s) for s in seeds], cfgs, DeviceData.from_arrays(x, y),
                 devices=None if way == "shard" else one, how=way if way in step.HOW else None)
    etas = [c.eta for c in cfgs]
    return tr, lambda: tr.run_epoch(0, 0, etas)


def _rounds(rows, rounds):
    """Compile every row, then time them in ``rounds`` interleaved rounds: {key: [(wall, cpu)]}, compile s."""
    compile_s = {k: _timed(f)[0] for k, f in rows.items()}
    times = {k: [] for k in rows}
    for _ in range(rounds):
        for k, f in rows.items():
            times[k].append(_timed(f))
    return times, compile_s


def _fastest(ts, scale):
    return min(w for w, _ in ts) * scale, min(c for _, c in ts) * scale


def _one_after_another(fns):
    def run():
        for f in fns:
            f()
    return run


def bench_net(preset, counts, ways, x, y, rounds):
    spec, cfg = presets.get(preset).spec, _cfg(preset)
    lone = Trainer([layers.build(spec, seed=0)], [cfg], DeviceData.from_arrays(x, y))
    epoch = lambda: lone.run_epoch(0, 0, cfg.eta)  # noqa: E731
    rows, placed = {}, {}
    for n in counts:  # N lone epochs timed as one block: as long as the members' call, so that load hits both alike
        rows[("lone", n)] = _one_after_another([epoch] * n)
        for way in ways:
            tr, rows[(way, n)] = _members(spec, cfg, x, y, list(range(n)), way)
            placed[(way, n)] = _placed(tr)
    times, compile_s = _rounds(rows, rounds)
    scale = FULL_EPOCH / (len(x) // cfg.mini_batch_size * cfg.mini_batch_size)
    one_wall, one_cpu = min(_fastest(times[("lone", n)], scale)[0] / n for n in counts), \
        min(_fastest(times[("lone", n)], scale)[1] / n for n in counts)
    out = {"lone_s_per_epoch": one_wall, "lone_cpu_s_per_epoch": one_cpu, "rows": []}
    for (way, n), ts in times.items():
        if way == "lone":
            continue
        wall, cpu = _fastest(ts, scale)
        lone_wall, lone_cpu = _fastest(times[("lone", n)], scale)
        # process_time can read 0 for a short lone epoch: Windows counts CPU time in 15.6 ms
        # ticks, and under Wine it read 0 here; the cpu ratio is then nan, not a crash
        out["rows"].append({"way": way, "members": n, **placed[(way, n)], "s_per_epoch": wall,
                            "cpu_s_per_epoch": cpu, "lone_s": lone_wall, "lone_cpu_s": lone_cpu,
                            "ratio": wall / lone_wall, "cpu_ratio": cpu / lone_cpu if lone_cpu else float("nan"),
                            "compile_plus_one_s": compile_s[(way, n)], "rounds_s": [w * scale for w, _ in ts]})
    return out


def _placed(tr):
    """How a trainer runs its members: the way inside a device, the devices, the padded count."""
    devices = 1 if tr.mesh is None else tr.mesh.size
    return {"how": "loop" if tr.width == devices else tr.statics["how"], "devices": devices, "padded": tr.width}  # one a device: the lone scan


def bench_sweep(preset, lmbdas, seeds, x, y, rounds):
    """The sweep ``lmbda`` x ``seeds`` as one program (sharded, and on one device) against its
    lone runs, one after another."""
    spec, cfg = presets.get(preset).spec, _cfg(preset)
    members = [(lm, s) for lm in lmbdas for s in seeds]  # as run_config.sweep_members orders them
    cfgs = [dataclasses.replace(cfg, lmbda=lm, seed=s) for lm, s in members]
    lone = []
    for c in cfgs:  # each its own trainer: lmbda 0 compiles without the decay term, as a lone run does
        tr = Trainer([layers.build(spec, seed=c.seed)], [c], DeviceData.from_arrays(x, y))
        lone.append((lambda tr, eta: lambda: tr.run_epoch(0, 0, eta))(tr, c.eta))
    rows, placed = {("lone", len(cfgs)): _one_after_another(lone)}, {}
    for way in ("shard", "default"):
        tr, rows[(way, len(cfgs))] = _members(spec, cfg, x, y, [s for _, s in members], way, cfgs)
        placed[way] = _placed(tr)
    times, _ = _rounds(rows, rounds)
    scale = FULL_EPOCH / (len(x) // cfg.mini_batch_size * cfg.mini_batch_size)
    lone_wall, lone_cpu = _fastest(times[("lone", len(cfgs))], scale)
    out = {"net": preset, "lmbda": lmbdas, "seeds": seeds, "lone_s": lone_wall, "lone_cpu_s": lone_cpu, "rows": []}
    for way in ("shard", "default"):
        wall, cpu = _fastest(times[(way, len(cfgs))], scale)
        out["rows"].append({"way": way, "members": len(cfgs), **placed[way], "s_per_epoch": wall,
                            "cpu_s_per_epoch": cpu, "ratio": wall / lone_wall, "cpu_ratio": cpu / lone_cpu if lone_cpu else float("nan")})
    return out


def print_net(preset, res, n_images):
    print(f"\n{preset}: s/epoch (50,000 images, from {n_images}); one lone run {res['lone_s_per_epoch']:.2f} s "
          f"(cpu {res['lone_cpu_s_per_epoch']:.2f}); ratio = members / N lone runs one after another "
          f"(fastest rounds)")
    print(f"  {'N':>3s} {'way':8s} {'how':5s} {'dev':>3s} {'pad':>3s} {'members':>8s} {'N lone':>7s} {'ratio':>6s}"
          f" {'cpu ratio':>9s}")
    for r in res["rows"]:
        print(f"  {r['members']:3d} {r['way']:8s} {r['how']:5s} {r['devices']:3d} {r['padded']:3d} "
              f"{r['s_per_epoch']:8.2f} {r['lone_s']:7.2f} {r['ratio']:6.2f} "
              f"{r['cpu_ratio']:9.2f}")


def print_sweep(res, n_images):
    print(f"\nsweep {res['net']} lmbda {','.join(f'{v:g}' for v in res['lmbda'])} x seeds "
          f"{','.join(map(str, res['seeds']))}: s/epoch (50,000 images, from {n_images}); "
          f"{len(res['lmbda']) * len(res['seeds'])} lone runs {res['lone_s']:.2f} s (cpu {res['lone_cpu_s']:.2f})")
    for r in res["rows"]:
        print(f"  one program, {r['way']:8s} ({r['how']}, {r['devices']} device(s), {r['padded']} with padding): "
              f"{r['s_per_epoch']:.2f} s, ratio {r['ratio']:.2f}, cpu ratio {r['cpu_ratio']:.2f}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nets", nargs="+", default=["shallow", "dbl_conv_relu"], help="preset names")
    p.add_argument("--members", nargs="+", type=int, default=[1, 2, 5, 10], help="values of N")
    p.add_argument("--ways", nargs="+", default=["loop", "vmap", "shard"], choices=["vmap", "loop", "shard", "default"])
    p.add_argument("--n", type=int, default=None, help="training images per timed epoch (default: per net)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--devices", type=int, default=None,
                   help="CPU devices to start JAX with (default: one per core, unless XLA_FLAGS says)")
    p.add_argument("--sweep-net", default=SWEEP["net"], help=f"the sweep's preset (default: {SWEEP['net']})")
    p.add_argument("--no-sweep", action="store_true", help="leave out the lmbda sweep")
    p.add_argument("--data", default=None, help="mnist.pkl.gz or its folder (default: $NN3_DATA_DIR)")
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    threads.host_devices(a.devices or threads.cores())  # before JAX starts; a no-op if the user chose
    (x_all, y_all), _, _ = data.load_data(a.data)
    print(f"bench_members: jax {jax.__version__} on {jax.default_backend()}, {jax.device_count()} device(s), "
          f"{os.cpu_count()} cores, load {load()}; {a.rounds} rounds; ways {', '.join(a.ways)}")
    results = {"load_before": load(), "devices": jax.device_count()}
    for preset in a.nets:
        n = a.n or N_DEFAULT.get(preset, 500)
        x, y = np.asarray(x_all[:n], np.float32), np.asarray(y_all[:n])
        results[preset] = bench_net(preset, a.members, a.ways, x, y, a.rounds)
        print_net(preset, results[preset], n)
    if not a.no_sweep:
        n = a.n or N_DEFAULT.get(a.sweep_net, 500)
        x, y = np.asarray(x_all[:n], np.float32), np.asarray(y_all[:n])
        results["sweep"] = bench_sweep(a.sweep_net, SWEEP["lmbda"], SWEEP["seeds"], x, y, a.rounds)
        print_sweep(results["sweep"], n)
    results["load_after"] = load()
    print(f"\nload after: {results['load_after']}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"args": vars(a), "results": results}, indent=1), encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
