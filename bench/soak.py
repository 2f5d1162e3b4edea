"""Soak test: kill -9 a real ``nn3 train`` at many random moments, resume each time, compare.

    NN3_DATA_DIR=/work/shared/data python bench/soak.py                 # 20 kills, ~2-4 min
    NN3_DATA_DIR=/work/shared/data python bench/soak.py --kills 5 --epochs 10 --keep /tmp/soak

A run of the chapter-1 MLP (``ch1 --limit 5000 --chunks 20``) is started as a subprocess
and SIGKILLed at a moment drawn from a seeded RNG, in one of four ways: after a random
delay from the process start (loading, compiling, training, evaluating, saving: anywhere),
mid-epoch (a random delay after a new checkpoint appears), right after a save (as soon as
a new step directory appears) and during a save (as soon as orbax's temporary step
directory appears). Each time ``nn3 resume DIR`` carries on (``nn3 train`` again when the
kill came before config.json was written). At the end the run is resumed to completion
and compared with an uninterrupted run of the same seed: parameters bit for bit, the
metrics history record for record. Prints one line per kill, the tally and the time.
Exit status 0 when every kill was survived and the results are identical.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cmd(*args):
    return [sys.executable, "-m", "nn3", *map(str, args)]


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def steps(run: Path) -> list[int]:
    return sorted(int(p.name) for p in run.iterdir() if p.is_dir() and p.name.isdigit()) if run.is_dir() else []


def saving(run: Path) -> bool:
    return run.is_dir() and any(".orbax-checkpoint-tmp" in p.name for p in run.iterdir())


def history(run: Path) -> list[dict]:
    f = run / "metrics.jsonl"
    return [json.loads(x) for x in f.read_text(encoding="utf-8").splitlines() if x.strip()] if f.exists() else []


def launch(run: Path, train_args: list[str]) -> subprocess.Popen:
    if not (run / "config.json").exists():  # killed before the run existed: start it again
        shutil.rmtree(run, ignore_errors=True)
        argv = _cmd("train", *train_args, "--run", run)
    else:
        argv = _cmd("resume", run, "--quiet")
    return subprocess.Popen(argv, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_until(proc, cond, timeout) -> bool:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            return False
        if cond():
            return True
        time.sleep(0.002)
    return False


def one_kill(proc, run: Path, mode: str, rng: random.Random) -> str:
    """Waits for the chosen moment and SIGKILLs; returns what the moment turned out to be."""
    before = max(steps(run), default=-1)
    new_step = lambda: max(steps(run), default=-1) > before  # noqa: E731
    if mode == "random":
        time.sleep(rng.uniform(0.0, 6.0))
        what = "random"
    elif mode == "during-save":
        if wait_until(proc, lambda: saving(run), 120):
            what = "during a save"
        else:
            what = "after a save (missed the save)"
    elif mode == "after-save":
        wait_until(proc, new_step, 120)
        what = "right after a save"
    else:  # mid-epoch
        wait_until(proc, new_step, 120)
        time.sleep(rng.uniform(0.01, 0.25))
        what = "mid-epoch"
    if proc.poll() is not None:
        return f"{what}: too late, the process had exited ({proc.returncode})"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return what


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=200)  # enough for 20 kills at ~0.07 s per epoch
    ap.add_argument("--limit", type=int, default=5000)
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0, help="the moments' RNG (the run's seed is 1)")
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temp folder, removed)")
    a = ap.parse_args(argv)
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="nn3-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    ref, run = work / "reference", work / "killed"
    for d in (ref, run):
        shutil.rmtree(d, ignore_errors=True)
    train_args = ["ch1", "--limit", a.limit, "--chunks", a.chunks, "--epochs", a.epochs, "--seed", 1, "--quiet"]
    rng = random.Random(a.seed)
    t0 = time.time()
    subprocess.run(_cmd("train", *train_args, "--run", ref), env=_env(), check=True, stdout=subprocess.DEVNULL)
    t_ref = time.time() - t0
    print(f"uninterrupted run: {a.epochs} epochs in {t_ref:.1f} s")

    survived, t1 = 0, time.time()
    modes = ["random", "mid-epoch", "after-save", "during-save"]
    for i in range(a.kills):
        proc = launch(run, train_args)
        mode = rng.choice(modes)
        what = one_kill(proc, run, mode, rng)
        err = proc.stderr.read().strip() if proc.stderr else ""
        proc.stderr.close()
        killed = proc.returncode == -signal.SIGKILL
        survived += killed
        print(f"kill {i + 1:2d}: {what:34s} steps on disk {steps(run)[-3:]} "
              f"metrics lines {len(history(run))}" + ("" if killed else f"  NOT KILLED rc={proc.returncode} {err[-200:]}"))
        if not killed and proc.returncode == 0:
            print("  the run completed before enough kills: raise --epochs")
            break
    done = subprocess.run(_cmd("resume", run, "--quiet"), env=_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        print(f"final resume failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        return 1
    elapsed = time.time() - t1

    import numpy as np
    from nn3.runs import inspect
    from nn3.engine import layers
    pa, pb = (layers.get_params(inspect.load(d)) for d in (ref, run))
    same = all(np.array_equal(np.asarray(x[k]), np.asarray(y[k])) for x, y in zip(pa, pb) for k in x)
    ha, hb = history(ref), history(run)
    print(f"parameters bit-identical: {same}; metrics history identical: {ha == hb} ({len(hb)} epochs)")
    print(f"tally: {survived}/{a.kills} kills survived; killed-and-resumed run took {elapsed:.1f} s "
          f"(uninterrupted {t_ref:.1f} s); total {time.time() - t0:.1f} s")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if same and ha == hb and survived == a.kills else 1


if __name__ == "__main__":
    sys.exit(main())
