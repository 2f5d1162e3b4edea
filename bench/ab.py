"""bench_mlp, bench_conv, bench_eval and bench_members of two checkouts of nn3, in alternating fresh processes.

    git worktree add /tmp/nn3-old <commit>
    python bench/ab.py --old /tmp/nn3-old --rounds 4
    python bench/ab.py --old /tmp/nn3-old --rounds 6 --only eval

Each round runs, for each bench, one process per checkout (the order flips every round,
so that a change in the machine's load hits both alike), each with that checkout's own
bench script and package; bench_eval.py, which an older checkout may lack, is this
checkout's script run against each checkout's package, and its counts must agree. The
report gives every round and new/old of the fastest and of the medians: speed is
compared as ratios in one run, never against a number from another day.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

NEW = Path(__file__).resolve().parent.parent
BENCHES = {
    "mlp [784,30,10]": (["bench/bench_mlp.py", "--sizes", "784,30,10", "--epochs", "5", "--rounds", "1",
                         "--ref-subset", "300"], lambda r: r["results"][0]["nn3"]["s_per_epoch"]),
    "conv dbl_conv_relu (fused)": (["bench/bench_conv.py", "--nets", "dbl", "--forms", "fused", "--n", "2000",
                                    "--rounds", "3"], lambda r: r["results"]["dbl"]["fused"]["s_per_epoch_min"]),
    "eval dbl_conv_relu 20,000": ([str(NEW / "bench/bench_eval.py"), "--rounds", "3"], lambda r: r["wall_s_min"]),
    "members 5 dbl_conv_relu": (["bench/bench_members.py", "--nets", "dbl_conv_relu", "--members", "5", "--ways",
                                 "shard", "--n", "200", "--rounds", "2", "--no-sweep"],
                                lambda r: r["results"]["dbl_conv_relu"]["rows"][0]["s_per_epoch"]),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="the other checkout (e.g. a git worktree of the previous commit)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--only", default="", help="only the benches whose name contains this (mlp, conv, eval)")
    a = ap.parse_args(argv)
    benches = {b: v for b, v in BENCHES.items() if a.only in b}
    trees = {"old": Path(a.old).resolve(), "new": NEW}
    got = {(b, t): [] for b in benches for t in trees}
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            order = ("old", "new") if r % 2 == 0 else ("new", "old")
            for b, (args, pick) in benches.items():
                for t in order:
                    out = Path(tmp) / f"{r}-{t}.json"
                    env = {**os.environ, "PYTHONPATH": str(trees[t])}
                    subprocess.run([sys.executable, *args, "--json", str(out)], cwd=trees[t], env=env, check=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    result = json.loads(out.read_text(encoding="utf-8"))
                    got[(b, t)].append(pick(result))
                    if "correct" in result:  # bench_eval: both checkouts must count the same
                        counts.setdefault(b, set()).add(tuple(result["correct"]))
                    print(f"round {r} {b:28s} {t}: {got[(b, t)][-1]:.4f} s", flush=True)
    print()
    for b in benches:
        o, n = got[(b, "old")], got[(b, "new")]
        print(f"{b}: new/old fastest {min(n) / min(o):.3f}, median {statistics.median(n) / statistics.median(o):.3f}; "
              f"old {[round(x, 4) for x in o]}, new {[round(x, 4) for x in n]}")
        if b in counts:
            print(f"  counts {'the same in both' if len(counts[b]) == 1 else 'DIFFER'}: {sorted(counts[b])}")


if __name__ == "__main__":
    main()
