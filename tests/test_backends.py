"""Tests of the accelerator's code path on the CPU: conv formulations, per-backend choices, device layouts.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_backends.py -q

Off CPU nn3 trains with XLA's convolution (``"xla"``); here every formulation trains the
same small net, with gradients equal to float rounding and programs that really differ.
A run saved in a process with two CPU devices replays in one with one, and the other
way round; bench/device_check.py runs in its CI mode. Both on conftest's synthetic MNIST.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nn3.engine import backend, conv, costs, evaluation, layers, step, threads, train
from nn3.engine.device_data import DeviceData
from nn3.engine.settings import SGDConfig
from nn3.engine.trainer import Trainer
from nn3.engine.spec import mlp_spec

ROOT = Path(__file__).resolve().parents[1]
FORMS = conv.FORMULATIONS


def codes(n, width, seed):
    """(x (n, width) float32 pixels k/256, y (n,) int in 0..2): what MNIST's pixels look like."""
    r = np.random.default_rng(seed)
    return (r.integers(0, 256, (n, width)) / 256).astype(np.float32), r.integers(0, 3, n)


# --------------------------------------------------------------------------- formulations


def test_the_formulation_is_part_of_the_graph_jit_keys_on(small_conv_spec):
    graphs = {f: nnx.split(layers.build(small_conv_spec, seed=0, formulation=f))[0] for f in FORMS}
    assert len(set(graphs.values())) == 3
    assert graphs[backend.choices().conv] == nnx.split(layers.build(small_conv_spec, seed=0))[0]
    with pytest.raises(ValueError, match="winograd"):
        layers.build(small_conv_spec, formulation="winograd")


def test_network_gradients_agree_across_formulations(small_conv_spec):
    x, y = codes(8, 64, 0)

    def grads(form):
        net = layers.build(small_conv_spec, seed=1, formulation=form)
        g, state = nnx.split(net)
        loss = lambda st: costs.get("LogLikelihoodCost")(nnx.merge(g, st).logits(jnp.asarray(x)),  # noqa: E731
                                                          jnp.asarray(y), "softmax").mean()
        return [np.asarray(a) for a in jax.tree_util.tree_leaves(jax.jit(jax.grad(loss))(state))]

    got = {f: grads(f) for f in FORMS}
    assert any(np.abs(a).max() > 1e-3 for a in got["fused"])  # gradients that say something
    for f in ("im2col", "xla"):
        for a, b in zip(got["fused"], got[f]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def _trainer(spec, form, data, **sgd):
    net = layers.build(spec, seed=2, formulation=form)
    cfg = SGDConfig(**{"epochs": 2, "mini_batch_size": 4, "eta": 0.1, **sgd})
    return net, cfg, Trainer([net], [cfg], DeviceData.from_arrays(*data))


def test_short_training_agrees_across_formulations(small_conv_spec):
    data = codes(80, 64, 3)
    out = {}
    for form in FORMS:
        net, cfg, tr = _trainer(small_conv_spec, form, data, momentum=0.5, lmbda=0.1)
        loop = train.fit(tr, train.Splits(data, test=data), train.RunState.fresh([cfg])).loops[0]
        out[form] = (layers.get_params(net), [r["train_loss"] for r in loop.history])
    start = layers.get_params(layers.build(small_conv_spec, seed=2))
    assert not np.allclose(out["fused"][0][0]["w"], start[0]["w"])  # the conv weights did train
    for form in ("im2col", "xla"):
        for p, q in zip(out["fused"][0], out[form][0]):
            np.testing.assert_allclose(p["w"], q["w"], rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(p["b"], q["b"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out["fused"][1], out[form][1], rtol=1e-5)


def test_each_formulation_compiles_a_different_training_step(small_conv_spec):
    data = codes(16, 64, 4)
    text = {}
    for form in FORMS:
        _, _, tr = _trainer(small_conv_spec, form, data)
        batches = np.arange(16, dtype=np.int32).reshape(1, 4, 4)
        args = (tr.state, tr.opt_state, tr.data.x, tr.data.y, batches, np.arange(4, dtype=np.int32), tr.keys,
                np.ones(1, bool))
        text[form] = step.run_members_jit.lower(*args, **tr.statics).as_text()
    assert len(set(text.values())) == 3
    assert "convolution" in text["xla"]  # XLA's conv, forward and backward
    assert "convolution" not in text["fused"] and "convolution" not in text["im2col"]


# --------------------------------------------------------------------------- per-backend choices


def test_backend_synopsis_runs():
    import doctest
    assert doctest.testmod(backend).failed == 0


def test_choices_differ_by_backend_and_are_recorded():
    cpu, gpu = backend.choices("cpu"), backend.choices("gpu")
    assert (cpu.conv, gpu.conv) == ("fused", "xla")
    assert cpu.compact and gpu.compact
    assert cpu.conv_eval_batch == 100 and gpu.conv_eval_batch > cpu.conv_eval_batch
    assert cpu.pin_threads and not gpu.pin_threads
    assert cpu.dense_transposed_grad and not gpu.dense_transposed_grad
    rec = backend.choices().record()
    assert json.loads(json.dumps(rec)) == rec and rec["backend"] == jax.default_backend()
    assert rec["device"].startswith(jax.default_backend())
    assert backend.differences(cpu.record(), cpu.record()) == []
    assert "conv fused -> xla" in backend.differences(cpu.record(), gpu.record())
    assert backend.differences(None) == [] and backend.differences({"old_key": 1}) == []
    assert f"on {jax.default_backend()}" in backend.describe()


def test_an_accelerator_evaluates_in_its_own_batch_size(monkeypatch, small_conv_spec):
    x, y = codes(250, 64, 5)
    net = layers.build(small_conv_spec, seed=0, formulation="xla")
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    on_cpu = evaluation.evaluate(net, (x, y))
    assert evaluation.eval_batch(net) == 100
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert evaluation.eval_batch(net) == backend.ACCELERATOR_EVAL_BATCH
    assert evaluation.eval_batch(layers.build(mlp_spec([4, 3]))) == backend.ACCELERATOR_EVAL_BATCH
    on_gpu = evaluation.evaluate(net, (x, y))  # one padded batch of 10,000 instead of three of 100
    assert on_gpu[0] == on_cpu[0] and on_gpu[2] == 250
    np.testing.assert_allclose(on_gpu[1], on_cpu[1], rtol=1e-5)


def test_compact_codes_follow_the_backend_unless_overridden(monkeypatch):
    x, y = codes(4, 8, 6)
    assert DeviceData.from_arrays(x, y).x.dtype == np.uint8  # every backend's choice
    assert DeviceData.from_arrays(x, y, compact=False).x.dtype == np.float32
    real = backend._choices
    monkeypatch.setattr(backend, "_choices", lambda name: dataclasses.replace(real(name), compact=False))
    assert DeviceData.from_arrays(x, y).x.dtype == np.float32


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs sched_setaffinity and two usable cores")
def test_threads_are_pinned_with_a_plugin_only_when_jax_platforms_is_cpu(monkeypatch):
    # An installed CUDA plugin means JAX may start on the GPU: no pinning, unless JAX_PLATFORMS=cpu.
    monkeypatch.setattr(threads, "_started", lambda: False)
    real = threads.importlib.util.find_spec
    monkeypatch.setattr(threads.importlib.util, "find_spec",
                        lambda name: object() if name == "jax_cuda12_plugin" else real(name))
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    assert threads.limit(1) is False
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    cores = os.sched_getaffinity(0)
    assert threads.limit(1) is True  # JAX has started already: nothing changes but the answer
    assert os.sched_getaffinity(0) == cores


# --------------------------------------------------------------------------- device layouts

SAVE = """
import json, sys, jax
from nn3.runs import config as run_config, inspect, session
if jax.device_count() > 1:
    jax.config.update("jax_default_device", jax.devices()[1])  # not jax.devices()[0]
cfg = run_config.make_config("ch1", epochs=1, limit=300, data_path=sys.argv[2])
run, (net,), loop = session.start(cfg, sys.argv[1])
run.close()
w = net.layers[0].w[...]
print(json.dumps({"accuracy": loop.history[-1]["test_accuracy"], "devices": jax.device_count(),
                  "device": next(iter(w.devices())).id}))
"""

REPLAY = """
import json, sys, jax
from nn3.runs import config as run_config, inspect, session
if jax.device_count() > 1:
    jax.config.update("jax_default_device", jax.devices()[1])
from nn3.engine import layers
from nn3.store.rundir import RunDir
res = inspect.replay(sys.argv[1])
w = res["net"].layers[0].w[...]
run = RunDir.open(sys.argv[1], read_only=True)
_, state, _ = run.restore({"params": layers.get_params(res["net"])})  # the checkpoint's own arrays
run.close()
print(json.dumps({"accuracy": res["accuracy"], "equal": res["equal"], "differs": res["differs"],
                  "devices": jax.device_count(), "device": next(iter(w.devices())).id,
                  "restored": sorted({next(iter(a.devices())).id for a in jax.tree_util.tree_leaves(state)})}))
"""


def _in_process(script, run_dir, devices, *extra):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    out = subprocess.run([sys.executable, "-c", script, str(run_dir), *map(str, extra)], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("saved, replayed", [(2, 1), (1, 2)])
def test_a_run_replays_under_another_device_layout(tmp_path, saved, replayed, synthetic_mnist):
    d = tmp_path / "run"
    made = _in_process(SAVE, d, saved, synthetic_mnist.path)
    got = _in_process(REPLAY, d, replayed)
    assert (made["devices"], got["devices"]) == (saved, replayed)
    # Arrays land on the default device (cpu:1 where two exist and it is chosen), not devices()[0].
    assert made["device"] == (1 if saved > 1 else 0)
    assert got["device"] == (1 if replayed > 1 else 0)
    assert got["restored"] == [1 if replayed > 1 else 0]
    assert got["accuracy"] == made["accuracy"] and got["equal"]
    recorded = json.loads((d / "config.json").read_text(encoding="utf-8"))["backend"]
    assert recorded["backend"] == "cpu" and recorded["device"] == f"cpu:{1 if saved > 1 else 0}"
    assert got["differs"] == [f"device cpu:{1 if saved > 1 else 0} -> cpu:{1 if replayed > 1 else 0}"]


# --------------------------------------------------------------------------- the device check


def test_device_check_runs_in_its_cpu_quick_mode(tmp_path, synthetic_mnist):
    # CI's guard that bench/device_check.py cannot rot before a session with a GPU needs it.
    # Its test step is left out here (it would run pytest inside pytest); the rest runs as on a GPU.
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    argv = ["--cpu", "--quick", "--tests", "none", "--data", synthetic_mnist.path, "--json", tmp_path / "check.json"]
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "device_check.py"), *map(str, argv)],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads((tmp_path / "check.json").read_text(encoding="utf-8"))
    assert not [k for k, v in got.items() if isinstance(v, dict) and "error" in v], out.stdout
    assert set(got["speed"]) == {"ch1", *(f"dbl_conv_relu[{f}]" for f in FORMS), "ensemble5[vmapped]",
                                 "ensemble5[one net]"}
    assert all(row["s_per_epoch"] > 0 for row in got["speed"].values())
    assert got["replay"]["equal"] and got["replay"]["replayed_accuracy"] == got["replay"]["cpu_test_accuracy"]
    assert got["versions"]["backend"] == "cpu" and "dbl_conv_relu[xla]" in out.stdout


def _dot_precisions(text):
    return [line.split("precision = ")[1].split("]")[0] + "]" for line in text.splitlines()
            if "dot_general" in line and "precision = " in line]


def test_an_accelerator_traces_every_matmul_at_full_float32(monkeypatch, small_conv_spec):
    # JAX's default on a GPU is TF32; nn3 asks for HIGHEST there, in the custom backward passes too.
    data = codes(16, 64, 7)
    for name, want in (("gpu", "[HIGHEST, HIGHEST]"), ("cpu", "[DEFAULT, DEFAULT]")):
        monkeypatch.setattr(jax, "default_backend", lambda: name)
        _, _, tr = _trainer(small_conv_spec, "fused", data)
        args = (tr.state, tr.opt_state, tr.data.x, tr.data.y, np.arange(16, dtype=np.int32).reshape(1, 4, 4),
                np.arange(4, dtype=np.int32), tr.keys, np.ones(1, bool))
        # A jit of its own each time, so that nothing traced before is reused (in a real
        # process the backend never changes, and step.run_members_jit traces once).
        once = jax.jit(functools.partial(step.run_members), static_argnames=step.STATICS + ("how", "mesh"))
        got = _dot_precisions(once.lower(*args, **tr.statics).as_text())
        assert len(got) >= 6 and set(got) == {want}, (name, got)
