"""Member runs sharded over devices: the same numbers as on one device, and checkpoints
that move between device counts.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_shard.py -q

With more than one device nn3.engine.trainer shards the member axis over them (a mesh with a
"members" axis; the members padded to a multiple of the devices used). Each device runs
the very step of one device for its members, so a run is bit for bit the run on one
device, parameters and metrics. The runs here are ``nn3`` child processes started with
``XLA_FLAGS=--xla_force_host_platform_device_count=K`` (the count is fixed when JAX
starts): 4 host devices against 1, on the synthetic set. Stops are made at the
pause the tests inject (tests/children.py): no sleeps, no timing.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import children
from nets import CONV, MLP
from nn3.runs import config as run_config, inspect
from nn3.engine import layers, step, threads, train
from nn3.engine.device_data import DeviceData
from nn3.engine.settings import SGDConfig
from nn3.engine.trainer import Trainer

SGD = dict(epochs=2, eta=0.5, lmbda=0.1, momentum=0.5, mini_batch_size=10, chunks=3)
N_BATCHES = 100      # 1000 synthetic examples in mini-batches of 10; calls of 34, 34 and 32
DEVICES = "--xla_force_host_platform_device_count"


def config(data, spec=MLP, members=(3, 0, 7, 1), **sgd):
    return run_config.make_config("shallow", spec=spec, data_path=data.path, members=list(members), **{**SGD, **sgd})


def env_with(devices: int) -> dict:
    """This process's environment with JAX's CPU devices set to ``devices`` (the user's way)."""
    return {**os.environ, "PYTHONPATH": str(children.ROOT), "XLA_FLAGS": f"{DEVICES}={devices}"}


def nn3(argv, devices: int):
    out = subprocess.run([sys.executable, "-m", "nn3", *map(str, argv)], env=env_with(devices),
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def train_run(tmp_path, name, cfg, devices: int):
    """``nn3 train --config`` of ``cfg`` under ``devices`` CPU devices; the run directory."""
    recorded = tmp_path / f"{name}.json"
    recorded.write_text(json.dumps(cfg), encoding="utf-8")
    d = tmp_path / name
    nn3(["train", "--config", recorded, "--run", d, "--quiet"], devices)
    return d


def lines(run_dir):
    return [json.loads(t) for t in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if t.strip()]


def params(run_dir):
    return [layers.get_params(n) for n in inspect.load(run_dir)]


def assert_same_run(a, b):
    """Two member runs' parameters (every member, every layer) and metrics, bit for bit."""
    pa, pb = params(a), params(b)
    assert len(pa) == len(pb)
    for x, y in zip(pa, pb):
        for p, q in zip(x, y):
            np.testing.assert_array_equal(p["w"], q["w"])
            np.testing.assert_array_equal(p["b"], q["b"])
    assert lines(a) == lines(b)


def placement(run_dir) -> dict:
    return json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["backend"]


@pytest.fixture(scope="module")
def one_device(synthetic_mnist, tmp_path_factory):
    """The 4-member MLP run trained on one device: the reference."""
    return train_run(tmp_path_factory.mktemp("one"), "run", config(synthetic_mnist), devices=1)


def test_four_members_on_four_devices_equal_one_device(synthetic_mnist, one_device, tmp_path):
    d = train_run(tmp_path, "run", config(synthetic_mnist), devices=4)
    assert placement(d)["devices"] == 4  # the user's XLA_FLAGS kept, though this machine may have fewer cores
    assert (placement(d)["member_devices"], placement(d)["members_padded"]) == (4, 4)
    assert (placement(one_device)["member_devices"], placement(one_device)["members_padded"]) == (1, 4)
    assert_same_run(d, one_device)


@pytest.mark.parametrize("spec, seeds, padded", [(MLP, (5, 2, 0, 9, 4), (3, 6)), (CONV, (1, 0, 2, 4, 3), (3, 6)),
                                                 (MLP, (1, 0, 2), (3, 3))], ids=["mlp-5", "conv-5", "mlp-3"])
def test_members_that_do_not_fill_the_devices_equal_one_device(synthetic_mnist, tmp_path, spec, seeds, padded):
    """5 members on 4 devices run 2 a device on 3, padded to 6 (the padding is never saved
    nor recorded; the conv net's looped padding member is skipped, the MLP's vmapped one
    computed); 3 members take 3 of the 4 devices, each the lone scan."""
    cfg = config(synthetic_mnist, spec=spec, members=seeds, epochs=1)
    sharded = train_run(tmp_path, "four", cfg, devices=4)
    alone = train_run(tmp_path, "one", cfg, devices=1)
    assert (placement(sharded)["member_devices"], placement(sharded)["members_padded"]) == padded
    assert_same_run(sharded, alone)
    assert all(len(r["members"]) == len(seeds) for r in lines(sharded))
    assert [len(p) for p in params(sharded)] == [len(spec["layers"])] * len(seeds)


def test_a_checkpoint_moves_from_four_devices_to_one_and_back(synthetic_mnist, one_device, tmp_path, monkeypatch):
    """Stopped mid-epoch under 4 devices, carried on under 1 and stopped again, finished
    under 4: the run that never stopped, bit for bit."""
    recorded = tmp_path / "config.json"
    recorded.write_text(json.dumps(config(synthetic_mnist)), encoding="utf-8")
    d = tmp_path / "run"
    first, second = N_BATCHES + 34, N_BATCHES + 68   # the ends of epoch 1's first and second calls
    stops = [(["train", "--config", recorded, "--run", d, "--quiet"], 4, first),
             (["resume", d, "--quiet"], 1, second)]
    for argv, devices, at in stops:
        monkeypatch.setenv("XLA_FLAGS", f"{DEVICES}={devices}")  # the child's
        code, _, err, paused = children.signalled(argv, at, children.STOP, tmp_path / f"paused{at}")
        assert (code, paused) == (children.EXIT[children.STOP], str(at)), (children.HOW[children.STOP], err)
        assert max(int(p.name) for p in d.iterdir() if p.name.isdigit()) == at
    nn3(["resume", d, "--quiet"], devices=4)
    assert_same_run(d, one_device)


def test_the_layout_uses_as_few_devices_as_the_busiest_needs():
    assert step.layout(4, 4) == (4, 4)
    assert step.layout(3, 4) == (3, 3)
    assert step.layout(5, 4) == (3, 6)     # 2 a device either way; 3 devices waste one member, 4 would waste 3
    assert step.layout(5, 2) == (2, 6)
    assert step.layout(10, 4) == (4, 12)
    assert step.layout(7, 1) == (1, 7)
    assert step.layout(1, 4) == (1, 1)


PADDING_CHILD = """
import json, sys
import jax, numpy as np
sys.path.insert(0, "tests")
from nets import MLP
from nn3.engine import layers, step
from nn3.engine.device_data import DeviceData
from nn3.engine.settings import SGDConfig
from nn3.engine.trainer import Trainer
seen = []
real_run = step.run_members_jit
def watched(*args, **kw):
    seen.append(np.asarray(args[7]).tolist())
    return real_run(*args, **kw)
step.run_members_jit = watched
rng = np.random.default_rng(4)
x, y = rng.random((60, 784), dtype=np.float32), rng.integers(0, 10, 60)
out = {}
for how in ("loop", "vmap"):
    cfgs = [SGDConfig(epochs=1, eta=0.1, seed=s, chunks=2) for s in (0, 1, 2)]
    tr = Trainer([layers.build(MLP, seed=s) for s in (0, 1, 2)], cfgs, DeviceData.from_arrays(x, y), how=how)
    before = [np.asarray(a) for a in jax.tree.leaves(tr.state)]
    seen.clear()
    tr.run_epoch(0, 0, 0.1)
    after = [np.asarray(a) for a in jax.tree.leaves(tr.state)]
    out[how] = dict(width=tr.width, live=seen,
                    padding_kept=all(np.array_equal(a[3], b[3]) for a, b in zip(after, before)),
                    last_trained=any(not np.array_equal(a[2], b[2]) for a, b in zip(after, before)))
print(json.dumps(out))
"""


def test_the_padding_members_are_never_live():
    """3 members on 2 devices are padded to 4 with a copy of the last; the copy is never
    live, so "loop" skips it (a device with fewer real members leaves its core to the
    other) and "vmap" keeps its state."""
    out = subprocess.run([sys.executable, "-c", PADDING_CHILD], cwd=children.ROOT, env=env_with(2),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.splitlines()[-1])
    for how in ("loop", "vmap"):
        assert got[how]["width"] == 4
        assert got[how]["live"] == [[True, True, True, False]] * 2  # both calls of the epoch
        assert got[how]["padding_kept"] and got[how]["last_trained"]


def test_one_member_in_one_program_equals_its_lone_run():
    """A vmap over a single member rounded differently from the lone scan (``--members 1``,
    or one member a device): it now runs the lone scan."""
    rng = np.random.default_rng(4)
    x, y = rng.random((80, 784), dtype=np.float32), rng.integers(0, 10, 80)
    cfg = SGDConfig(epochs=2, eta=0.1, lmbda=0.1, l2="batch", momentum=0.5, chunks=3, seed=3)
    tr = Trainer([layers.build(MLP, seed=3)], [cfg], DeviceData.from_arrays(x, y), how="vmap")
    for epoch in range(2):
        tr.run_epoch(epoch, 0, cfg.eta)
    tr.sync()
    alone = layers.build(MLP, seed=3)
    train.fit_networks([alone], [cfg], train.Splits((x, y)))
    for p, q in zip(layers.get_params(tr.nets[0]), layers.get_params(alone)):
        np.testing.assert_array_equal(p["w"], q["w"])
        np.testing.assert_array_equal(p["b"], q["b"])


def test_a_member_run_gets_a_device_per_core_unless_the_user_chose(synthetic_mnist, tmp_path, monkeypatch):
    """``nn3 train --members`` starts JAX with one CPU device per core (no more than members);
    XLA_FLAGS' count, when given, is kept."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env.update(PYTHONPATH=str(children.ROOT), JAX_PLATFORMS="cpu")
    d = tmp_path / "run"
    out = subprocess.run([sys.executable, "-m", "nn3", "train", "shallow", "--members", "2", "--epochs", "1",
                          "--limit", "100", "--quiet", "--data", str(synthetic_mnist.path), "--run", str(d)],
                         env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert placement(d)["devices"] == min(2, threads.cores())
    assert placement(d)["member_devices"] == min(2, threads.cores())
    monkeypatch.setenv("XLA_FLAGS", f"--xla_dump_to=/nowhere {DEVICES}=3")
    assert threads.user_chose_devices() and not threads.host_devices(2)
    monkeypatch.setenv("XLA_FLAGS", "")
    assert not threads.user_chose_devices()
    import jax
    jax.devices()  # start JAX here, whichever tests ran before (alone, this test would start it)
    assert not threads.host_devices(2)  # JAX has started in this process: too late, nothing changes
