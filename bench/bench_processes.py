"""Members across processes: 4 dbl_conv_relu members on P processes x T threads, s/epoch, and the bytes shared.

    python bench/bench_processes.py --n 1000 --epochs 3 --rounds 2 --json bench/out/processes.json

Each row trains the same member run (``nn3 train dbl_conv_relu --members 4`` on the first
``--n`` training images, scaled to 50,000) as P processes on this machine, each with one
CPU device per thread it is given (JAX_NUM_CPU_DEVICES, NN3_CPU_THREADS), and times the
epochs after the first (which compiles) from inside the processes (a Watch on the
session, as tests/paused_nn3.py adds one). The rows run in alternating order, round after
round, so that the machine's load hits them alike: read the ratio, not the seconds.

Every process also counts what it hands to JAX's collectives (nn3.engine.processes):
the payload of each call (the whole gathered array, as every process receives it) per
epoch. On paper, from the measured seconds per member-epoch: the book's vote (5 dropout
nets, the expanded data, 40 epochs) and a 10-net vote, on 5 and 10 machines like this one.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FULL_EPOCH = 50_000
ROWS = {"1 process x 2 threads": (1, 2), "2 processes x 1 thread": (2, 1)}


def worker(argv: list[str]) -> int:
    """One process of a row: nn3's command line with a clock and a byte counter around it."""
    out, rest = Path(argv[0]), argv[1:]
    sys.path.insert(0, str(ROOT))
    import dataclasses

    import numpy as np

    from nn3 import cli
    from nn3.engine import processes
    from nn3.runs import session
    moved, epochs = [0], []

    def counted(fn):
        def run(tree, *a, **k):
            got = fn(tree, *a, **k)
            import jax
            moved[0] += sum(np.asarray(x).nbytes for x in jax.tree.leaves(got))
            return got
        return run

    for name in ("gather", "to_host", "from_primary"):
        setattr(processes, name, counted(getattr(processes, name)))
    start = session.start

    def timed(*a, watch=session.Watch(), **k):
        inner = watch.on_epoch

        def on_epoch(record, state):
            epochs.append((time.perf_counter(), moved[0]))
            if inner:
                inner(record, state)
        return start(*a, watch=dataclasses.replace(watch, on_epoch=on_epoch), **k)

    session.start = timed
    code = cli.main(rest)
    out.write_text(json.dumps({"epochs": epochs, "code": code}))
    return code


def run_row(procs: int, threads: int, args, tmp: Path, tag: str) -> dict:
    """Seconds per epoch (after the first) and bytes shared per epoch of one row, once."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_NUM_CPU_DEVICES": str(threads if procs == 1 else 1),
           "NN3_CPU_THREADS": str(threads), "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    base = ["train", "dbl_conv_relu", "--members", "4", "--epochs", str(args.epochs), "--limit", str(args.n),
            "--quiet", "--run", str(tmp / f"run-{tag}")]
    if args.data:
        base += ["--data", args.data]
    port = 25000 + (os.getpid() + hash(tag)) % 20000
    children = []
    for i in range(procs):
        more = [] if procs == 1 else ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(procs),
                                      "--process-id", str(i)]
        children.append(subprocess.Popen([sys.executable, __file__, "--worker", str(tmp / f"{tag}-{i}.json"),
                                          *base, *more], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         text=True))
    for c in children:
        _, err = c.communicate(timeout=3600)
        if c.returncode != 0:
            raise SystemExit(f"{tag}: exit {c.returncode}\n{err[-2000:]}")
    first = json.loads((tmp / f"{tag}-0.json").read_text())["epochs"]
    times, counts = [t for t, _ in first], [b for _, b in first]
    per_epoch = [(b - a) * FULL_EPOCH / args.n for a, b in zip(times[1:], times[2:])] or [float("nan")]
    bytes_per_epoch = [b - a for a, b in zip(counts[1:], counts[2:])] or [0]
    return {"s_per_epoch": statistics.median(per_epoch), "bytes_per_epoch": statistics.median(bytes_per_epoch),
            "epochs_timed": len(per_epoch)}


def projection(one_member_s: float) -> dict:
    """The book's vote and a 10-net vote on 5 and 10 machines like this one (2 cores: two
    processes of one thread each), from the seconds of one member-epoch on one thread."""
    sys.path.insert(0, str(ROOT))
    from nn3.engine.spec import forward_macs
    from nn3.runs import presets
    scale = forward_macs(presets.get("dropout").spec) / forward_macs(presets.get("dbl_conv_relu").spec)
    member_epoch = one_member_s * scale * 5  # the expanded set: five times the images
    out = {"dropout_over_dbl_conv_relu_work": scale, "one_dropout_member_epoch_expanded_s": member_epoch}
    for nets, epochs in ((5, 40), (10, 40)):
        for machines in (1, 5, 10):
            devices = 2 * machines
            per_device = -(-nets // devices)
            out[f"{nets} nets x {epochs} epochs on {machines} machine(s), hours"] = \
                per_device * member_epoch * epochs / 3600
    return out


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--worker":
        return worker(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="training images per epoch (scaled to 50,000)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is not timed")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--data", default=None, help="mnist.pkl.gz or its folder (default: nn3's search)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    got = {name: [] for name in ROWS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            order = list(ROWS) if r % 2 == 0 else list(reversed(ROWS))
            for name in order:
                procs, threads = ROWS[name]
                got[name].append(run_row(procs, threads, a, Path(tmp), f"{r}-{procs}"))
                print(f"round {r} {name:24s} {got[name][-1]['s_per_epoch']:.2f} s/epoch, "
                      f"{got[name][-1]['bytes_per_epoch'] / 1e6:.2f} MB shared/epoch", flush=True)
    rows = {name: {"s_per_epoch_min": min(x["s_per_epoch"] for x in v), "rounds": v} for name, v in got.items()}
    one, two = rows["1 process x 2 threads"], rows["2 processes x 1 thread"]
    ratio = two["s_per_epoch_min"] / one["s_per_epoch_min"]
    # 2 processes of one thread: each runs 2 of the 4 members one after the other.
    one_member_s = two["s_per_epoch_min"] / 2
    out = {"rows": rows, "ratio_2x1_over_1x2": ratio, "one_member_epoch_one_thread_s": one_member_s,
           "bytes_per_epoch_2_processes": two["rounds"][-1]["bytes_per_epoch"], "projection": projection(one_member_s)}
    print(f"2 processes x 1 thread / 1 process x 2 threads: {ratio:.2f}")
    for k, v in out["projection"].items():
        print(f"  {k}: {v:.2f}" if isinstance(v, float) else f"  {k}: {v}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
