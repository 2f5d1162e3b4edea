"""Runs that stop and carry on: kill -9 and SIGTERM mid-run, then resume, bit for bit.

    NN3_DATA_DIR=/work/shared/data .venv/bin/python -m pytest tests/test_runs.py -q

Each test trains the chapter-1 MLP on the first few thousand MNIST examples, once
straight through in this process (the reference) and once in a real ``nn3 train``
subprocess that is killed, then resumed here; the final parameters and the metrics
history must be those of the reference exactly.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nn3 import cli, layers, runs

DATA_DIR = os.environ.get("NN3_DATA_DIR", "")
pytestmark = [
    pytest.mark.mnist,
    pytest.mark.skipif(not (Path(DATA_DIR) / "mnist.pkl.gz").is_file(),
                       reason="needs NN3_DATA_DIR/mnist.pkl.gz"),
]
ROOT = Path(__file__).resolve().parents[1]
# Long enough epochs (500 mini-batches in 50 chunks) for a signal to land mid-epoch.
WORK = ["--limit", "5000", "--chunks", "50", "--seed", "3", "--quiet"]
EPOCHS = 3
N_BATCHES = 500


def params_of(run_dir):
    return layers.get_params(runs.load(run_dir))


def same_params(a, b) -> bool:
    return len(a) == len(b) and all(
        d.keys() == e.keys() and all(np.array_equal(np.asarray(d[k]), np.asarray(e[k])) for k in d)
        for d, e in zip(a, b))


def history(run_dir):
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def step_dirs(run_dir):
    p = Path(run_dir)
    return sorted(int(d.name) for d in p.iterdir() if d.is_dir() and d.name.isdigit()) if p.is_dir() else []


def start_training(run_dir, *extra):
    env = {**os.environ, "NN3_DATA_DIR": DATA_DIR, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "nn3", "train", "ch1", "--epochs", str(EPOCHS),
                             "--run", str(run_dir), *WORK, *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(proc, run_dir, timeout=120.0):
    """Polls until the first epoch's checkpoint and metrics line are on disk."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            pytest.fail(f"training ended early: {proc.returncode} {proc.stderr.read()[-500:]}")
        if N_BATCHES in step_dirs(run_dir) and len(history(run_dir) if (Path(run_dir) / "metrics.jsonl").exists()
                                                    else []) >= 1:
            return
        time.sleep(0.01)
    proc.kill()
    pytest.fail("no checkpoint appeared")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A run trained straight through, in this process."""
    d = tmp_path_factory.mktemp("ref") / "run"
    assert cli.main(["train", "ch1", "--epochs", str(EPOCHS), "--run", str(d), *WORK]) == 0
    return d, params_of(d), history(d)


def test_kill9_then_resume_is_bit_identical(tmp_path, reference):
    ref_dir, ref_params, ref_hist = reference
    d = tmp_path / "killed"
    proc = start_training(d)
    wait_for_checkpoint(proc, d)
    time.sleep(0.05)  # into the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close(), proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert len(history(d)) < EPOCHS, "the run finished before the kill; make epochs longer"
    assert cli.main(["resume", str(d), "--epochs", str(EPOCHS), "--quiet"]) == 0
    assert same_params(params_of(d), ref_params)
    got = history(d)
    assert [r["epoch"] for r in got] == list(range(EPOCHS))
    assert [(r["validation_accuracy"], r["test_accuracy"]) for r in got] == \
           [(r["validation_accuracy"], r["test_accuracy"]) for r in ref_hist]
    assert got == ref_hist


@pytest.fixture(scope="module")
def termed(tmp_path_factory):
    """A run stopped by SIGTERM after its first epoch: (dir, exit code, stderr, latest step), then resumed."""
    d = tmp_path_factory.mktemp("term") / "run"
    proc = start_training(d)
    wait_for_checkpoint(proc, d)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    latest = max(step_dirs(d))
    resumed = cli.main(["resume", str(d), "--quiet"])
    return d, proc.returncode, err, latest, resumed


def test_sigterm_checkpoints_mid_epoch_and_resume_matches(termed, reference):
    _, ref_params, ref_hist = reference
    d, code, err, latest, resumed = termed
    assert code == cli.EXIT_INTERRUPTED, err
    assert "interrupted in epoch" in err and f"nn3 resume {d}" in err
    assert latest % N_BATCHES != 0, f"checkpoint step {latest} is not mid-epoch"
    assert resumed == 0
    assert same_params(params_of(d), ref_params)
    assert history(d) == ref_hist  # train_loss of the interrupted epoch included


def test_library_resume_and_replay(tmp_path):
    """runs.start / resume / replay without the command line."""
    cfg = runs.make_config("ch1", epochs=1, limit=300)
    run, net, loop = runs.start(cfg, tmp_path / "r")
    run.close()
    assert loop.stop_reason == "epochs" and loop.epoch == 1
    run, net2, loop = runs.resume(tmp_path / "r", epochs=2)
    run.close()
    assert loop.epoch == 2 and [r["epoch"] for r in loop.history] == [0, 1]
    res = runs.replay(tmp_path / "r")
    assert res["equal"] and res["step"] == 60 and res["n"] == 300
    assert same_params(layers.get_params(res["net"]), layers.get_params(net2))
    res = runs.replay(tmp_path / "r", data_name="validation", best=True)
    assert res["equal"]


def test_a_new_best_epoch_is_saved_even_when_saves_are_spaced(tmp_path, monkeypatch):
    """dbl_conv_relu's 60 epochs once kept no checkpoint of their best epoch: saves were spaced."""
    monkeypatch.setattr(runs._Saver, "SPACING", 10 ** 9)  # nothing is due but what must be saved
    cfg = runs.make_config("ch1", epochs=6, limit=300, eta=0.5)
    run, net, loop = runs.start(cfg, tmp_path / "r")
    run.close()
    best = [r for r in loop.history if r["best"]]
    assert len(best) >= 2 and loop.best_epoch == best[-1]["epoch"] < 5
    res = runs.replay(tmp_path / "r", data_name="validation", best=True)
    assert res["step"] == loop.best_step and res["equal"]
    assert {r["step"] for r in best} >= set(step_dirs(tmp_path / "r")) - {loop.step}  # spaced: only these and the last
