"""Tests for nn3.store.rundir: run directories, orbax steps, damage fallback."""
from __future__ import annotations

import errno
import re
import json
import os
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest
from etils import epath

from nn3.store.integrity import state_hash
from nn3.store.rundir import RunDir, RunDirError


def make_state(epoch: int) -> dict:
    """A small optimiser-shaped pytree whose values depend on ``epoch``."""
    rng = np.random.default_rng(epoch)
    return {
        "params": [
            {"w": rng.standard_normal((64, 64)).astype(np.float32),  # 16 KiB: the biggest file
             "b": np.full((64,), epoch, np.float32)},
            {"w": rng.standard_normal((64, 10)).astype(np.float32), "b": np.zeros(10, np.float32)},
        ],
        "opt": [],
        "key": np.array([0, epoch], np.uint32),
    }


def info(epoch: int, acc: float | None) -> dict:
    return {"epoch": epoch, "step": 10 * (epoch + 1), "history": [[epoch, acc]],
            "validation_accuracy": acc}


def saved_run(path, accs, keep_latest=3) -> RunDir:
    run = RunDir.create(path, {"sizes": [784, 30, 10], "eta": 0.1}, keep_latest=keep_latest)
    for e, acc in enumerate(accs):
        run.save(e, make_state(e), info(e, acc))
    return run


def assert_tree_equal(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def data_file(run: RunDir, step: int):
    """The largest file of a step's state item: the one holding the 64x64 array."""
    files = [f for f in (run.path / str(step) / "state").rglob("*") if f.is_file()]
    return max(files, key=lambda f: f.stat().st_size)


# --- run directories ----------------------------------------------------------------

def test_create_open_round_trip(tmp_path):
    run = RunDir.create(tmp_path / "a" / "run", {"sizes": [2, 3], "cost": "CrossEntropyCost"})
    assert run.config == {"sizes": [2, 3], "cost": "CrossEntropyCost", "format": "nn3-run", "version": 1}
    assert json.loads((run.path / "config.json").read_text(encoding="utf-8")) == run.config
    assert run.steps() == [] and run.best_step() is None
    run.close()
    run.close()  # idempotent
    with pytest.raises(RunDirError, match="closed"):
        run.steps()
    again = RunDir.open(tmp_path / "a" / "run")
    assert again.config == run.config and again.steps() == []
    again.close()
    (tmp_path / "empty").mkdir()
    RunDir.create(tmp_path / "empty", {}).close()  # an empty directory is fine


def test_create_refuses_file_and_foreign_dir(tmp_path):
    (tmp_path / "f").write_text("x", encoding="utf-8")
    with pytest.raises(RunDirError, match="f: exists and is not a directory"):
        RunDir.create(tmp_path / "f", {})
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(RunDirError, match="d: directory is not empty"):
        RunDir.create(tmp_path / "d", {})
    assert os.listdir(tmp_path / "d") == ["notes.txt"]
    with pytest.raises(RunDirError, match="not JSON"):
        RunDir.create(tmp_path / "g", {"f": object()})
    with pytest.raises(RunDirError, match="keep_latest must be"):
        RunDir.create(tmp_path / "h", {}, keep_latest=0)
    assert not (tmp_path / "h").exists()


def test_open_refuses_missing_foreign_and_corrupt(tmp_path):
    with pytest.raises(RunDirError, match="nope: no such run directory"):
        RunDir.open(tmp_path / "nope")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "x.txt").write_text("x", encoding="utf-8")
    with pytest.raises(RunDirError, match=r"not an nn3 run directory \(no config.json\)"):
        RunDir.open(tmp_path / "foreign")
    (tmp_path / "foreign" / "config.json").write_text('{"lr": 1}', encoding="utf-8")
    with pytest.raises(RunDirError, match="not an nn3 run directory"):
        RunDir.open(tmp_path / "foreign")
    RunDir.create(tmp_path / "r", {"a": 1}).close()
    (tmp_path / "r" / "config.json").write_text('{"a": 1, "form', encoding="utf-8")
    with pytest.raises(RunDirError, match=re.escape(f"{Path('r') / 'config.json'}: corrupt")):  # r\config.json on Windows
        RunDir.open(tmp_path / "r")


# --- save, restore, retention -------------------------------------------------------

def test_save_restore_latest_explicit_best(tmp_path):
    run = saved_run(tmp_path / "r", [0.5, 0.9, 0.7])
    assert run.steps() == [0, 1, 2] and run.best_step() == 1
    step, state, inf = run.restore(make_state(0))
    assert step == 2 and inf == {**info(2, 0.7), "state_sha256": state_hash(make_state(2))}
    assert_tree_equal(state, make_state(2))
    device = jax.devices()[0]
    for leaf in jax.tree_util.tree_leaves(state):
        assert isinstance(leaf, jax.Array)
        assert leaf.sharding == jax.sharding.SingleDeviceSharding(device)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), make_state(0))
    step, state, inf = run.restore(abstract, 0)
    assert step == 0 and inf["validation_accuracy"] == 0.5
    assert_tree_equal(state, make_state(0))
    step, state, _ = run.restore(abstract, best=True)
    assert step == 1
    assert_tree_equal(state, make_state(1))
    assert run.read_info(1)["history"] == [[1, 0.9]]
    with pytest.raises(RunDirError, match="no checkpoint at step 7"):
        run.restore(abstract, 7)
    run.close()


def test_jax_arrays_round_trip(tmp_path):
    state = jax.device_put(make_state(5), jax.devices()[0])
    run = RunDir.create(tmp_path / "r", {})
    run.save(0, state, info(0, None))
    step, restored, inf = run.restore(jax.eval_shape(lambda: state))
    assert inf["state_sha256"] == state_hash(make_state(5))
    assert_tree_equal(restored, make_state(5))
    run.close()


def test_retention_keeps_latest_and_best(tmp_path):
    run = saved_run(tmp_path / "r", [0.95, 0.1, 0.2, 0.3, None, 0.05], keep_latest=2)
    assert run.steps() == [0, 4, 5]  # best (0) + latest two, the newest though worst
    run.close()
    run = RunDir.open(tmp_path / "r", keep_latest=2)  # the best survives reopening
    run.save(6, make_state(6), info(6, 0.5))
    assert run.steps() == [0, 5, 6] and run.best_step() == 0
    run.save(7, make_state(7), info(7, 0.99))
    assert run.steps() == [6, 7] and run.best_step() == 7
    run.save(8, make_state(8), info(8, None))
    assert run.steps() == [7, 8]
    run.close()


def test_nan_accuracy_is_unranked(tmp_path):
    run = saved_run(tmp_path / "r", [0.3, float("nan"), float("nan"), float("nan")], keep_latest=2)
    assert run.steps() == [0, 2, 3] and run.best_step() == 0
    assert np.isnan(run.read_info(3)["validation_accuracy"])
    run.close()


def test_resumed_save_rewinds_later_steps(tmp_path):
    run = saved_run(tmp_path / "r", [0.1, 0.2, 0.3])
    run.save(1, make_state(9), info(1, 0.25))
    assert run.steps() == [0, 1]
    step, state, _ = run.restore(make_state(0))
    assert step == 1
    assert_tree_equal(state, make_state(9))
    run.close()


def test_structure_mismatch_is_an_error(tmp_path):
    run = saved_run(tmp_path / "r", [0.1])
    other = make_state(0)
    other["params"].append({"w": np.zeros((10, 10), np.float32)})
    with pytest.raises(RunDirError, match="step 0 has a different state structure"):
        run.restore(other)
    other = make_state(0)
    other["params"][1]["w"] = np.zeros((64, 11), np.float32)
    with pytest.raises(RunDirError, match=r"another architecture.*\['params'\]\[1\]\['w'\]"):
        run.restore(other)
    run.close()


def test_half_written_step_is_ignored(tmp_path):
    run = saved_run(tmp_path / "r", [0.1, 0.2])
    run.close()
    tmp = tmp_path / "r" / "2.orbax-checkpoint-tmp-1234567"
    (tmp / "state").mkdir(parents=True)
    (tmp / "state" / "_METADATA").write_text("{", encoding="utf-8")
    run = RunDir.open(tmp_path / "r")
    assert run.steps() == [0, 1]
    assert run.restore(make_state(0))[0] == 1
    run.close()


# --- damage -------------------------------------------------------------------------

def _delete(run, n):
    for f in (run.path / str(n) / "state").rglob("*"):
        if f.is_file():
            f.unlink()


def _truncate(run, n):
    f = data_file(run, n)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _flip(run, n):
    f = data_file(run, n)
    b = bytearray(f.read_bytes())
    b[len(b) // 2] ^= 0x08  # inside the (incompressible, so stored) float32 values
    f.write_bytes(bytes(b))


@pytest.mark.parametrize("damage", [_delete, _truncate, _flip], ids=["delete", "truncate", "flip"])
def test_damaged_newest_falls_back(tmp_path, damage):
    run = saved_run(tmp_path / "r", [0.1, 0.2, 0.3])
    damage(run, 2)
    with pytest.warns(UserWarning, match=r"r: checkpoint step 2 is damaged \(.+\); using step 1"):
        step, state, inf = run.restore(make_state(0))
    assert step == 1 and inf["epoch"] == 1
    assert_tree_equal(state, make_state(1))
    with pytest.raises(RunDirError, match="checkpoint step 2 is damaged"):
        run.restore(make_state(0), 2)
    run.close()


def test_flipped_bit_is_a_hash_mismatch(tmp_path):
    run = saved_run(tmp_path / "r", [0.1, 0.2])
    _flip(run, 1)
    with pytest.warns(UserWarning, match=r"step 1 is damaged \(state hash mismatch\); using step 0"):
        assert run.restore(make_state(0))[0] == 0
    run.close()


def test_damaged_best_falls_back_to_next_best(tmp_path):
    run = saved_run(tmp_path / "r", [0.8, 0.9, 0.7, 0.6], keep_latest=4)
    _truncate(run, 1)
    with pytest.warns(UserWarning, match="step 1 is damaged .*; using step 0"):
        assert run.restore(make_state(0), best=True)[0] == 0
    run.close()


def test_all_damaged_is_an_error(tmp_path):
    run = saved_run(tmp_path / "r", [0.1, 0.2, 0.3])
    _delete(run, 2)
    _truncate(run, 1)
    _flip(run, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RunDirError, match=r"r: no intact checkpoint \(tried steps 2, 1, 0"):
            run.restore(make_state(0))
    run.close()


def test_corrupt_orbax_metrics_does_not_block_open(tmp_path):
    saved_run(tmp_path / "r", [0.1, 0.2]).close()
    (tmp_path / "r" / "1" / "metrics" / "metrics").write_text("{garb", encoding="utf-8")
    run = RunDir.open(tmp_path / "r")
    assert run.steps() == [0, 1] and run.restore(make_state(0))[0] == 1
    run.close()


def test_write_error_names_run_and_step(tmp_path, monkeypatch):
    run = saved_run(tmp_path / "r", [0.1, 0.2])

    def disk_full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(epath.Path(tmp_path)), "write_text", disk_full)
    with pytest.raises(RunDirError, match=r"r: saving checkpoint step 2 failed .*No space left"):
        run.save(2, make_state(2), info(2, 0.3))
    monkeypatch.undo()
    assert run.steps() == [0, 1]
    assert sorted(p.name for p in run.path.iterdir()) == ["0", "1", "config.json"]
    step, state, _ = run.restore(make_state(0))
    assert step == 1
    assert_tree_equal(state, make_state(1))
    run.save(2, make_state(2), info(2, 0.3))  # the run still works once there is room
    assert run.steps() == [0, 1, 2]
    run.close()


def test_state_hash():
    s = make_state(3)
    assert state_hash(s) == state_hash(jax.tree.map(np.copy, s))
    assert state_hash(s) != state_hash(make_state(4))
    a = np.zeros(4, np.float32)
    assert state_hash([a]) != state_hash([a.view(np.int32)])  # same bytes, other dtype
    assert state_hash([a]) != state_hash([a.reshape(2, 2)])
    assert state_hash({"x": jax.numpy.ones(3)}) == state_hash({"x": np.ones(3, np.float32)})


def test_read_only_open_leaves_a_save_in_flight_alone(tmp_path):
    """A replay beside a training run must not clean up the trainer's temporary step."""
    run = saved_run(tmp_path / "run", [0.5, 0.6])
    run.close()
    in_flight = tmp_path / "run" / "2.orbax-checkpoint-tmp-1234"
    in_flight.mkdir()
    (in_flight / "part").write_bytes(b"x")
    reader = RunDir.open(tmp_path / "run", read_only=True)
    step, state, _ = reader.restore(make_state(0))
    reader.close()
    assert step == 1 and in_flight.is_dir()
    assert_tree_equal(state, make_state(1))
    writer = RunDir.open(tmp_path / "run")
    writer.save(2, make_state(2), info(2, 0.7))  # a writer does clean up, before its own save
    writer.close()
    assert not in_flight.exists()
