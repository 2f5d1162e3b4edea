"""What checkpointing costs: session.start (a save per epoch) against train.fit (none), and replay's wall time.

    NN3_DATA_DIR=/work/shared/data python bench/bench_checkpoint.py          # ~1 min
    NN3_DATA_DIR=/work/shared/data python bench/bench_checkpoint.py --presets ch1 --limit 10000 --epochs 5

For each preset, on the first ``--limit`` examples of each split: one warm-up epoch
(compiles), then ``train.fit`` for ``--epochs`` epochs with validation and test
evaluated (no files), then ``session.start`` with the same settings (a checkpoint and a
metrics line per epoch). The overhead is (start - fit) / fit; the seconds spent inside
``RunDir.save`` are also summed, as a fraction of the run. Then ``nn3 replay DIR`` is timed
as a whole command from a cold start (a new Python process: imports, data, restore,
evaluation), next to ``python -c "import nn3.cli, jax"`` for scale. Ratios are what to
read: absolute times drift with the machine's load.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nn3.runs import config as run_config, session
from nn3.engine import layers, train  # noqa: E402
from nn3.store.rundir import RunDir  # noqa: E402


def _wall(argv) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def bench(preset: str, limit: int, epochs: int, work: Path, rounds: int = 3) -> dict:
    config = run_config.make_config(preset, epochs=epochs, limit=limit)
    tr, va, te = run_config.load_splits(config)
    cfg = run_config.sgd_of(config)
    warm = dataclasses.replace(cfg, epochs=1)
    train.fit_networks([layers.build(config["spec"], seed=cfg.seed, init=config["init"])], [warm],
                       train.Splits(tr, va, te))

    saved, real_save = [0.0], RunDir.save

    def timed_save(self, *a, **k):
        s = time.perf_counter()
        try:
            return real_save(self, *a, **k)
        finally:
            saved[0] += time.perf_counter() - s

    # Interleaved rounds, the minimum of each: this machine's noise (+-25%) is larger
    # than the overhead being measured.
    fits, starts = [], []
    for r in range(rounds):
        net = layers.build(config["spec"], seed=cfg.seed, init=config["init"])
        t = time.perf_counter()
        train.fit_networks([net], [cfg], train.Splits(tr, va, te))
        fits.append(time.perf_counter() - t)
        RunDir.save = timed_save
        saved[0] = 0.0
        try:
            d = work / f"{preset}-{r}"
            t = time.perf_counter()
            run, _, _ = session.start(config, d)
            run.close()
            starts.append(time.perf_counter() - t)
        finally:
            RunDir.save = real_save
    t_fit, t_start = min(fits), min(starts)
    t_replay = _wall([sys.executable, "-m", "nn3", "replay", str(d)])
    return {"preset": preset, "limit": limit, "epochs": epochs, "fit_s": t_fit, "start_s": t_start,
            "save_s": saved[0], "replay_s": t_replay}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="ch1,dbl_conv_relu")
    ap.add_argument("--limit", type=int, default=None, help="examples per split (default: all 50000 for MLPs, 2000 for conv nets)")
    ap.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args(argv)
    t_import = _wall([sys.executable, "-c", "import nn3.cli, jax, orbax.checkpoint"])
    rows = []
    with tempfile.TemporaryDirectory(prefix="nn3-bench-ckpt-") as work:
        for preset in a.presets.split(","):
            limit = a.limit or (50000 if preset.startswith("ch") else 2000)
            rows.append(bench(preset, limit, a.epochs, Path(work)))
    print(f"{'preset':15s} {'limit':>6s} {'epochs':>6s} {'fit s':>7s} {'start s':>8s} {'overhead':>9s} "
          f"{'in save':>8s} {'per save':>9s} {'replay s':>9s}")
    for r in rows:
        over = (r["start_s"] - r["fit_s"]) / r["fit_s"]
        print(f"{r['preset']:15s} {r['limit']:6d} {r['epochs']:6d} {r['fit_s']:7.2f} {r['start_s']:8.2f} "
              f"{over:9.1%} {r['save_s'] / r['start_s']:8.1%} {r['save_s'] / r['epochs'] * 1000:7.0f}ms "
              f"{r['replay_s']:9.2f}")
    print(f"cold import of nn3.cli + jax + orbax: {t_import:.2f} s; replay = "
          + ", ".join(f"{r['preset']} {r['replay_s'] / t_import:.1f}x" for r in rows) + " of that")
    return 0


if __name__ == "__main__":
    sys.exit(main())
