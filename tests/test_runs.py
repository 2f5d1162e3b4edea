"""Runs that stop and carry on: a hard kill, a stop and Ctrl-C, then resume, bit for bit.

    .venv/bin/python -m pytest tests/test_runs.py -q

Each test trains the chapter-1 MLP on the tests' synthetic MNIST-shaped set, once
straight through in this process (the reference) and once in a real ``nn3 train``
subprocess that is stopped, then resumed here; the final parameters and the metrics
history must be those of the reference exactly. No test races its child: the child
pauses at a known point (a hook the test injects, tests/children.py) and says so in a file, and
only then is it signalled.
"""
from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest

import children
from nn3 import cli
from nn3.runs import config as run_config, inspect, saver, session
from nn3.engine import evaluation, layers, spec
from nn3.store import rundir

EPOCHS = 3
N_BATCHES = 100  # the synthetic training split's 1000 examples in mini-batches of 10
MID = N_BATCHES + 40  # a step inside the second epoch, at the end of a call of 10 mini-batches


@pytest.fixture(scope="module")
def one_call(synthetic_mnist):
    """Flags for an epoch that is one compiled call (what chapter 1 gets by default)."""
    return ["--data", str(synthetic_mnist.path), "--seed", "3", "--quiet"]


@pytest.fixture(scope="module")
def work(one_call):
    """Flags for an epoch in 10 compiled calls, so that a signal can land mid-epoch."""
    return one_call + ["--chunks", "10"]


def params_of(run_dir):
    return layers.get_params(inspect.load(run_dir))


def same_params(a, b) -> bool:
    return len(a) == len(b) and all(
        d.keys() == e.keys() and all(np.array_equal(np.asarray(d[k]), np.asarray(e[k])) for k in d)
        for d, e in zip(a, b))


def history(run_dir):
    lines = (Path(run_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def step_dirs(run_dir):
    p = Path(run_dir)
    return sorted(int(d.name) for d in p.iterdir() if d.is_dir() and d.name.isdigit()) if p.is_dir() else []


def train_argv(run_dir, work):
    return ["train", "ch1", "--epochs", EPOCHS, "--run", run_dir, *work]


def pause_flag(run_dir):
    return Path(run_dir).parent / f"{Path(run_dir).name}.paused"


def signalled(run_dir, pause_at, how, work):
    """Train in a child, pause it at ``pause_at``, stop it by ``how`` (children.CTRL_C, STOP):
    (exit code, stdout, stderr, pause word)."""
    return children.signalled(train_argv(run_dir, work), pause_at, how, pause_flag(run_dir))


def reference_run(tmp_path_factory, name, work):
    d = tmp_path_factory.mktemp(name) / "run"
    assert cli.main(["train", "ch1", "--epochs", str(EPOCHS), "--run", str(d), *work]) == 0
    return d, params_of(d), history(d)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, work):
    """A run trained straight through, in this process, 10 compiled calls per epoch."""
    return reference_run(tmp_path_factory, "ref", work)


@pytest.fixture(scope="module")
def reference_one_call(tmp_path_factory, one_call):
    """The same, with each epoch one compiled call."""
    return reference_run(tmp_path_factory, "ref1", one_call)


def assert_resumes_to(run_dir, ref):
    _, ref_params, ref_hist = ref
    assert cli.main(["resume", str(run_dir), "--quiet"]) == 0
    assert same_params(params_of(run_dir), ref_params)
    got = history(run_dir)
    assert [r["epoch"] for r in got] == list(range(EPOCHS))
    assert got == ref_hist  # train_loss of an interrupted epoch included


def test_a_hard_kill_then_resume_is_bit_identical(tmp_path, reference, work):
    """kill -9 (POSIX) or TerminateProcess (Windows, also what SIGTERM and taskkill /F do
    there): nothing runs in the child, and the work since the last checkpoint is lost."""
    d = tmp_path / "killed"
    code, _, _, at = signalled(d, MID, children.HARD_KILL, work)  # paused in the second epoch, the first saved
    assert (code, at) == (children.EXIT[children.HARD_KILL], str(MID))
    assert len(history(d)) == 1 and max(step_dirs(d)) == N_BATCHES  # the second epoch's work is lost
    assert_resumes_to(d, reference)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory, work):
    """A run paused mid-epoch and stopped (SIGTERM; Ctrl-Break on Windows): (dir, exit code,
    stderr, latest step)."""
    d = tmp_path_factory.mktemp("stop") / "run"
    code, _, err, _ = signalled(d, MID, children.STOP, work)
    return d, code, err, max(step_dirs(d))


def test_a_stop_checkpoints_mid_epoch_and_resume_matches(stopped, reference):
    d, code, err, latest = stopped
    assert code == children.EXIT[children.STOP], (children.HOW[children.STOP], err)
    assert f"interrupted in epoch 1, after mini-batch {MID - N_BATCHES}; checkpoint saved at step {MID}" in err
    assert f"carry on with: nn3 resume {d}" in err
    # The stop lands at the end of the running call: the one dispatched behind it is dropped.
    assert latest == MID
    assert_resumes_to(d, reference)


def test_replay_of_a_mid_epoch_checkpoint_is_no_false_alarm(stopped, capsys):
    """Ctrl-C's mid-epoch checkpoint has no accuracy of its own: replay must not call it DIFFERENT."""
    d = stopped[0]
    capsys.readouterr()
    assert cli.main(["replay", str(d), "--step", str(MID)]) == 0
    out = capsys.readouterr().out
    assert "DIFFERENT" not in out and "no accuracy was recorded for this step" in out
    assert f"step {MID} (in epoch 1, after mini-batch {MID - N_BATCHES})" in out


def test_sigint_stops_a_run_whose_epoch_is_one_compiled_call(tmp_path, reference_one_call, one_call):
    """ch1's epoch is a single call: Ctrl-C used to be polled only between calls of an epoch."""
    d = tmp_path / "run"
    code, out, err, at = signalled(d, N_BATCHES, children.CTRL_C, one_call)
    assert at == str(N_BATCHES)  # the end of the first epoch's only call
    assert code == 130, (children.HOW[children.CTRL_C], err)
    assert "Epoch 0:" in out and "Epoch 1:" not in out
    assert f"interrupted after epoch 0; checkpoint saved at step {N_BATCHES}" in err
    assert f"carry on with: nn3 resume {d}" in err
    assert step_dirs(d) == [N_BATCHES]
    assert_resumes_to(d, reference_one_call)


@pytest.mark.parametrize("how", [children.CTRL_C, children.STOP])
def test_a_signal_during_start_up_ends_the_command_in_one_line(tmp_path, how, work):
    d = tmp_path / "run"
    code, out, err, at = signalled(d, "loaded", how, work)
    assert at == "loaded" and code == children.EXIT[how], (children.HOW[how], err)
    assert err.strip().splitlines() == [
        f"nn3: interrupted ({children.SIGNAL[how]}) before training began; nothing was written"]
    assert not d.exists()  # nothing half-written


def test_a_swallowed_interrupt_still_stops_training(tmp_path, synthetic_mnist):
    """A KeyboardInterrupt that a library callback swallowed during start-up still counts."""
    from nn3.runs import stop
    cfg = run_config.make_config("ch1", epochs=2, limit=300, data_path=synthetic_mnist.path)
    with stop.handlers(raising=True):
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass  # as JAX does with an exception raised inside its callbacks
    try:
        with pytest.raises(KeyboardInterrupt):  # before the directory: nothing written
            session.start(cfg, tmp_path / "a")
        assert not (tmp_path / "a").exists()
        # Once training has begun, the request stops it at its first stopping point.
        run = rundir.RunDir.create(tmp_path / "b", cfg)
        splits = run_config.load_splits(cfg)
        trainer, state = session._trainer(cfg, splits)
        loop = session._train(run, cfg, trainer, state, splits, session.Watch())
        run.close()
        assert loop.stop_reason == "interrupted" and loop.step == 0 and step_dirs(tmp_path / "b") == [0]
    finally:
        stop.clear()


def test_library_resume_and_replay(tmp_path, synthetic_mnist):
    """session.start / resume / replay without the command line."""
    cfg = run_config.make_config("ch1", epochs=1, limit=300, data_path=synthetic_mnist.path)
    run, (net,), loop = session.start(cfg, tmp_path / "r")
    run.close()
    assert loop.stop_reason == "epochs" and loop.epoch == 1
    run, (net2,), loop = session.resume(tmp_path / "r", epochs=2)
    run.close()
    assert loop.epoch == 2 and [r["epoch"] for r in loop.history] == [0, 1]
    res = inspect.replay(tmp_path / "r")
    assert res["equal"] and res["step"] == 60 and res["n"] == 200
    assert same_params(layers.get_params(res["net"]), layers.get_params(net2))
    res = inspect.replay(tmp_path / "r", data_name="validation", best=True)
    assert res["equal"]


def test_a_new_best_epoch_is_saved_even_when_saves_are_spaced(tmp_path, monkeypatch, synthetic_mnist):
    """dbl_conv_relu's 60 epochs once kept no checkpoint of their best epoch: saves were spaced."""
    monkeypatch.setattr(saver.Saver, "SPACING", 10 ** 9)  # nothing is due but what must be saved
    cfg = run_config.make_config("ch1", epochs=8, limit=300, eta=10.0, data_path=synthetic_mnist.path)
    run, (net,), loop = session.start(cfg, tmp_path / "r")
    run.close()
    best = [r for r in loop.history if r["best"]]
    assert len(best) >= 2 and loop.best_epoch == best[-1]["epoch"] < 7  # the last epoch is no best
    res = inspect.replay(tmp_path / "r", data_name="validation", best=True)
    assert res["step"] == loop.best_step and res["equal"]
    assert {r["step"] for r in best} >= set(step_dirs(tmp_path / "r")) - {loop.step}  # spaced: only these and the last


def test_one_epoch_count_everywhere(tmp_path, capsys, one_call):
    """Training prints epochs from 0 (the book's lines); replay and metrics count the same way."""
    d = tmp_path / "r"
    assert cli.main(["train", "ch1", "--epochs", "3", "--limit", "300", "--run", str(d), "--eta", "0.5", *one_call]) == 0
    out = capsys.readouterr().out
    printed = [int(line.split()[1].rstrip(":")) for line in out.splitlines() if line.startswith("Epoch ")]
    assert printed == [0, 1, 2] == [r["epoch"] for r in history(d)]
    best = int(out.split("at epoch ")[1].split()[0])
    assert cli.main(["replay", str(d)]) == 0
    assert "(after epoch 2)" in capsys.readouterr().out
    assert cli.main(["replay", str(d), "--best", "--data", "validation"]) == 0
    assert f"(after epoch {best})" in capsys.readouterr().out
    assert inspect.replay(d, best=True)["epoch"] == best


def test_a_run_trains_in_a_worker_thread(tmp_path, synthetic_mnist):
    """Signal handlers can only be installed on the main thread (a server's worker trains too)."""
    import concurrent.futures
    cfg = run_config.make_config("ch1", epochs=1, limit=100, data_path=synthetic_mnist.path)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        run, _, loop = pool.submit(session.start, cfg, tmp_path / "r").result()
    run.close()
    assert loop.stop_reason == "epochs"


# ------------------------------------------------- what the commands ask of runs (no CLI)

def _json_net(path, spec, mini_batch_size=None):
    from nn3.store import export
    export.save_json(path, spec, layers.get_params(layers.build(spec, seed=5)), mini_batch_size)
    return path


def test_train_config_from_a_preset_or_a_recorded_config(tmp_path):
    cfg = run_config.train_config("ch3", epochs=2, eta=None, limit=100, monitor=["training_cost", "training_cost"])
    assert cfg["preset"] == "ch3" and cfg["sgd"]["epochs"] == 2 and cfg["sgd"]["eta"] == 0.5
    assert cfg["monitor"] == ["training_cost"] and cfg["dataset"] == "mnist" and cfg["limit"] == 100
    (tmp_path / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    recorded = run_config.read_recorded(tmp_path)  # the run directory, or its config.json
    assert recorded == run_config.read_recorded(tmp_path / "config.json")
    again = run_config.train_config("ch1", recorded=recorded, lmbda=1.0, dataset="fashion")
    assert again["preset"] == "ch3" and again["spec"] == cfg["spec"]  # the recorded net, not ch1's
    assert again["sgd"] == {**cfg["sgd"], "lmbda": 1.0}
    assert (again["dataset"], again["limit"], again["monitor"]) == ("fashion", 100, ["training_cost"])
    with pytest.raises(ValueError, match="give a preset name or a recorded config"):
        run_config.train_config()


@pytest.mark.parametrize("text, says", [(None, "a directory without config.json"),
                                         ("{oops", "not a usable nn3 config"),
                                         ('{"preset": "ch1"}', "expected an object with preset, spec and sgd")])
def test_read_recorded_refuses_in_one_line(tmp_path, text, says):
    where = tmp_path
    if text is not None:
        where = tmp_path / "c.json"
        where.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=says) as e:
        run_config.read_recorded(where)
    assert str(where) in str(e.value) and "\n" not in str(e.value)


def test_default_run_dir_names_the_preset_and_the_time():
    import re
    assert re.fullmatch(r"checkpoints/ch1-\d{8}-\d{6}", run_config.default_run_dir("ch1"))


def test_import_config_takes_the_matching_presets_settings(tmp_path):
    src = _json_net(tmp_path / "ch1.json", spec.mlp_spec([784, 30, 10], "QuadraticCost"))
    config, params, why = run_config.import_config(src, epochs=1, seed=None)
    assert config["preset"] == "ch1" and "preset ch1" in why and config["imported_from"] == str(src)
    assert config["sgd"]["eta"] == 3.0 and config["sgd"]["epochs"] == 1
    assert run_config.describe_settings(config).startswith("epochs 1, mini-batch 10, eta 3, lmbda 0,")
    assert all(np.array_equal(p["w"], q["w"]) for p, q in zip(params, layers.get_params(layers.build(
        config["spec"], seed=5))))
    plain, _, why = run_config.import_config(_json_net(tmp_path / "n.json", spec.mlp_spec([784, 20, 10],
                                                                                      "CrossEntropyCost")))
    assert "a network no preset has" in why and (plain["sgd"]["eta"], plain["sgd"]["lmbda"]) == (0.5, 0.0)


def test_import_config_keeps_a_network3_jsons_mini_batch(tmp_path):
    from nn3.runs import presets
    spec = presets.with_mini_batch(presets.get("basic_conv").spec, 7)
    config, _, _ = run_config.import_config(_json_net(tmp_path / "c.json", spec, 7), limit=20)
    assert config["sgd"]["mini_batch_size"] == 7 and config["sgd"]["eta"] == 0.1
    assert "the first 20 of each split" in run_config.describe_settings(config)


def test_import_and_evaluate_refuse_a_net_that_does_not_take_mnist(tmp_path):
    src = _json_net(tmp_path / "small.json", spec.mlp_spec([4, 3, 2], "QuadraticCost"))
    for call in (run_config.import_config, inspect.evaluate_json):
        with pytest.raises(ValueError, match="small.json: the network takes 4 inputs; MNIST images have 784"):
            call(src)


def test_export_json_refuses_before_loading_anything(tmp_path):
    (tmp_path / "there.json").write_text("{}", encoding="utf-8")
    for out, says in ((tmp_path, "is a directory"), (tmp_path / "there.json", "exists; pass --force"),
                      (tmp_path / "no" / "net.json", "does not exist")):
        with pytest.raises(ValueError, match=says):
            inspect.export_json(tmp_path / "no-such-run", out)


def test_replay_predicts_and_export_and_evaluate_agree(tmp_path, synthetic_mnist, synthetic_as_default):
    cfg = run_config.make_config("ch1", epochs=1, limit=300, data_path=synthetic_mnist.path)
    run, (net,), _ = session.start(cfg, tmp_path / "r")
    run.close()
    res = inspect.replay(tmp_path / "r", data_name="validation", predict=12)
    x, y = run_config.load_splits(cfg)[1]
    assert res["labels"] == [int(v) for v in y[:12]]
    assert res["predicted"] == [int(v) for v in evaluation.predict(net, x[:12])]
    assert inspect.replay(tmp_path / "r")["predicted"] == []
    inspect.export_json(tmp_path / "r", tmp_path / "net.json")
    with pytest.raises(ValueError, match="exists"):
        inspect.export_json(tmp_path / "r", tmp_path / "net.json")
    inspect.export_json(tmp_path / "r", tmp_path / "net.json", force=True)
    res = inspect.evaluate_json(tmp_path / "net.json")  # the default data: the synthetic set, whole
    assert (res["name"], res["correct"]) == ("test", evaluation.evaluate(net, run_config.load_splits({**cfg, "limit": None})[2])[0])
