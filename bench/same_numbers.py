"""Two checkouts of nn3, the same runs, the same numbers: metrics.jsonl line for line, exported networks byte for byte.

    git worktree add /tmp/nn3-old <commit>
    python bench/same_numbers.py --old /tmp/nn3-old            # every case, real MNIST
    python bench/same_numbers.py --old /tmp/nn3-old --only ch1

Each case is a list of ``nn3`` commands run by each checkout's own package (PYTHONPATH),
one checkout after the other in the same folder (a bundle names its run directory), each
result then moved aside; then every metrics.jsonl is compared line for line and every
exported file byte for byte. What a refactoring must not change is every number: this
says in one table whether it did. Data: $NN3_DATA_DIR (the book's mnist.pkl.gz).
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NEW = Path(__file__).resolve().parent.parent
Q = ["--quiet"]
# name: the commands, each an argv of nn3 (RUN is the case's run directory, OUT its export)
CASES = {
    "ch1": [["train", "ch1", "--epochs", "2", "--seed", "0", "--run", "RUN", *Q], ["export", "RUN", "OUT"]],
    "ch3_10000": [["train", "ch3", "--epochs", "2", "--limit", "10000", "--run", "RUN", *Q], ["export", "RUN", "OUT"]],
    "ch3_monitors": [["train", "ch3", "--epochs", "2", "--limit", "10000", "--monitor", "training_cost",
                      "--monitor", "training_accuracy", "--monitor", "validation_cost", "--run", "RUN", *Q],
                     ["export", "RUN", "OUT"]],
    "shallow_monitors": [["train", "shallow", "--epochs", "2", "--limit", "5000", "--lmbda", "0.1", "--monitor",
                          "validation_cost", "--monitor", "training_cost", "--run", "RUN", *Q], ["export", "RUN", "OUT"]],
    "dbl_conv_relu_2000": [["train", "dbl_conv_relu", "--epochs", "1", "--limit", "2000", "--run", "RUN", *Q],
                           ["export", "RUN", "OUT"]],
    "shallow_3_members": [["train", "shallow", "--members", "3", "--epochs", "2", "--limit", "5000", "--run", "RUN",
                           *Q], ["export", "RUN", "OUT"]],
    "lmbda_sweep": [["train", "shallow", "--sweep", "lmbda=0,0.5", "--seeds", "0,1", "--epochs", "2", "--limit",
                     "5000", "--run", "RUN", *Q], ["export", "RUN", "OUT"]],
    "adam": [["train", "ch1", "--optimizer", "adam", "--eta", "0.003", "--lmbda", "1", "--epochs", "2", "--run", "RUN",
              *Q], ["export", "RUN", "OUT"]],
    "stop_and_resume": [["train", "ch1", "--epochs", "1", "--run", "RUN", *Q], ["resume", "RUN", "--epochs", "3", *Q],
                        ["export", "RUN", "OUT"]],
}


def run_case(tree: Path, commands: list, folder: Path) -> tuple[float, list[str]]:
    """Run ``commands`` with ``tree``'s nn3 in ``folder``; (seconds, each command's exit status and last line)."""
    folder.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    said, began = [], time.perf_counter()
    for argv in commands:
        argv = [str(folder / "run") if a == "RUN" else str(folder / "out.json") if a == "OUT" else a for a in argv]
        out = subprocess.run([sys.executable, "-m", "nn3", *argv], cwd=folder, env=env, capture_output=True,
                             text=True, timeout=3600)
        said.append(f"{argv[0]}: {out.returncode} {(out.stdout.strip().splitlines() or [''])[-1][:80]}")
        if out.returncode != 0:
            raise SystemExit(f"{tree} {argv}: exit {out.returncode}\n{out.stderr[-2000:]}")
    return time.perf_counter() - began, said


def compare(old: Path, new: Path) -> dict:
    a = (old / "run" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    b = (new / "run" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    differing = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    return {"metrics_lines": [len(a), len(b)], "metrics_equal": a == b, "first_differing_line": differing[:1],
            "export_equal": filecmp.cmp(old / "out.json", new / "out.json", shallow=False),
            "export_bytes": (new / "out.json").stat().st_size}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="the other checkout (e.g. a git worktree of the commit before)")
    ap.add_argument("--only", default="", help="only the cases whose name contains this")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args(argv)
    if not os.environ.get("NN3_DATA_DIR"):
        raise SystemExit("same_numbers: set NN3_DATA_DIR to the folder of the book's mnist.pkl.gz")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, commands in CASES.items():
            if a.only not in name:
                continue
            work = Path(tmp) / name / "work"
            t_old, _ = run_case(Path(a.old).resolve(), commands, work)
            work.rename(Path(tmp) / name / "old")
            t_new, said = run_case(NEW, commands, work)
            work.rename(Path(tmp) / name / "new")
            results[name] = {**compare(Path(tmp) / name / "old", Path(tmp) / name / "new"),
                             "seconds_old": round(t_old, 1), "seconds_new": round(t_new, 1), "commands": said}
            r = results[name]
            print(f"{name:20s} metrics.jsonl {r['metrics_lines'][1]:3d} lines "
                  f"{'equal' if r['metrics_equal'] else 'DIFFERENT'}; export {r['export_bytes']:>9,d} bytes "
                  f"{'equal' if r['export_equal'] else 'DIFFERENT'}  ({t_old:.0f} s old, {t_new:.0f} s new)",
                  flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0 if all(r["metrics_equal"] and r["export_equal"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
