"""Member runs: N networks as one run (nn3 train --members), each member a lone run exactly.

Member i of a run with seeds S trains, is measured and is saved exactly as a lone run with
seed S[i] (bit for bit on one CPU device), with shuffling and dropout; the vote's accuracy
is recorded per epoch; resume after a hard kill (kill -9, TerminateProcess) or a stop (SIGTERM,
Ctrl-Break on Windows) carries a member run on as never stopping.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import children
from nn3 import cli
from nn3.runs import config as run_config, inspect, session
from nn3.engine import evaluation, layers
from nn3.engine.train import RunState

SPEC = {"layers": [
    {"type": "FullyConnectedLayer", "n_in": 784, "n_out": 20, "activation_fn": "sigmoid", "p_dropout": 0.3},
    {"type": "SoftmaxLayer", "n_in": 20, "n_out": 10, "p_dropout": 0.0}], "cost": "LogLikelihoodCost"}
SEEDS = [3, 0, 7, 1]
SGD = dict(epochs=2, eta=0.5, lmbda=0.1, momentum=0.5, mini_batch_size=10, chunks=3)


def config(data, members=SEEDS, **sgd):
    return run_config.make_config("shallow", spec=SPEC, data_path=data.path, members=members, **{**SGD, **sgd})


def lines(run_dir):
    return [json.loads(t) for t in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if t.strip()]


@pytest.fixture(scope="module")
def lone(synthetic_mnist, tmp_path_factory):
    """Lone runs, one per seed: {seed: (params, loop)}."""
    out = {}
    for s in SEEDS:
        d = tmp_path_factory.mktemp(f"lone{s}") / "run"
        run, (net,), state = session.start(config(synthetic_mnist, members=None, seed=s), d)
        run.close()
        out[s] = (layers.get_params(net), state.loops[0], lines(d), d)
    return out


@pytest.fixture(scope="module")
def member_run(synthetic_mnist, tmp_path_factory):
    d = tmp_path_factory.mktemp("members") / "run"
    run, nets, loop = session.start(config(synthetic_mnist), d)
    run.close()
    return d, nets, loop


def assert_params_equal(a, b):
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p["w"], q["w"])
        np.testing.assert_array_equal(p["b"], q["b"])


def test_each_member_equals_a_lone_run_with_its_seed(lone, member_run):
    d, nets, loop = member_run
    assert isinstance(loop, RunState) and loop.stop_reason == "epochs" and loop.epoch == 2
    for i, s in enumerate(SEEDS):
        params, alone, alone_lines, _ = lone[s]
        assert_params_equal(layers.get_params(nets[i]), params)
        assert loop.loops[i].history == alone.history   # losses, accuracies, best flags: exactly
        assert (loop.loops[i].best_epoch, loop.loops[i].best_accuracy) == (alone.best_epoch, alone.best_accuracy)
        assert [r["members"][i] for r in lines(d)] == alone_lines
    assert not np.array_equal(layers.get_params(nets[0])[0]["w"], layers.get_params(nets[1])[0]["w"])


def test_metrics_record_the_vote_per_epoch(synthetic_mnist, member_run):
    d, nets, loop = member_run
    recorded = lines(d)
    assert [r["epoch"] for r in recorded] == [0, 1]
    _, validation, test = run_config.load_splits(json.loads((d / "config.json").read_text(encoding="utf-8")))
    x, y = test
    assert recorded[-1]["test_accuracy"] == float(np.mean(evaluation.vote(nets, x) == y))
    assert recorded[-1]["validation_correct"] == int(np.sum(evaluation.vote(nets, validation[0]) == validation[1]))
    assert json.loads((d / "config.json").read_text(encoding="utf-8"))["members"] == [{"seed": s} for s in SEEDS]


def test_resume_carries_a_member_run_on_as_never_stopping(synthetic_mnist, member_run, tmp_path):
    d0, nets0, loop0 = member_run
    d = tmp_path / "run"
    run, _, _ = session.start(config(synthetic_mnist, epochs=1), d)
    run.close()
    run, nets, loop = session.resume(d, epochs=2)
    run.close()
    for a, b in zip(nets, nets0):
        assert_params_equal(layers.get_params(a), layers.get_params(b))
    assert loop.to_json() == loop0.to_json()
    assert lines(d) == lines(d0)


def test_bad_member_settings_are_one_line_errors(synthetic_mnist):
    for seeds, why in (([1, 1], "seeds must differ"), ([], "one or more seeds"), ([-1], "integers >= 0")):
        with pytest.raises(ValueError, match=why):
            config(synthetic_mnist, members=seeds)


def test_cli_trains_members_and_refuses_bad_seeds(synthetic_mnist, tmp_path, capsys):
    from nn3 import cli
    d = tmp_path / "run"
    assert cli.main(["train", "shallow", "--members", "2", "--epochs", "1", "--limit", "100", "--quiet",
                     "--data", str(synthetic_mnist.path), "--run", str(d)]) == 0
    out = capsys.readouterr().out
    assert "accuracy of the members" in out and "member 1: best validation accuracy" in out
    assert json.loads((d / "config.json").read_text(encoding="utf-8"))["members"] == [{"seed": 0}, {"seed": 1}]
    assert cli.main(["train", "shallow", "--seeds", "4,x", "--run", str(tmp_path / "no")]) == 2
    assert "--seeds: not a comma-separated list of integers" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


N_BATCHES = 100            # 1000 synthetic examples in mini-batches of 10; calls of 34, 34 and 32
MID = N_BATCHES + 34       # in the second epoch, after its first call


def params_of(run_dir):
    return [layers.get_params(n) for n in inspect.load(run_dir)]


def train_paused(synthetic_mnist, run_dir, how):
    """``nn3 train --config`` of the member run in a child, paused at MID (a hook, no race), then stopped by
    ``how`` (children.HARD_KILL, STOP)."""
    recorded = run_dir.parent / "config.json"
    recorded.write_text(json.dumps(config(synthetic_mnist)), encoding="utf-8")
    code, _, err, at = children.signalled(["train", "--config", recorded, "--run", run_dir, "--quiet"], MID, how,
                                          run_dir.parent / "paused")
    assert at == str(MID)
    return code, err


@pytest.mark.parametrize("how, latest", [(children.HARD_KILL, N_BATCHES), (children.STOP, MID)])
def test_a_stopped_member_run_resumes_bit_identical(synthetic_mnist, member_run, tmp_path, how, latest, capsys):
    d = tmp_path / "run"
    got, err = train_paused(synthetic_mnist, d, how)
    assert got == children.EXIT[how], (children.HOW[how], err)
    steps = sorted(int(p.name) for p in d.iterdir() if p.name.isdigit())
    assert steps[-1] == latest   # a hard kill loses the second epoch's work; a stop saves it mid-epoch
    assert len(lines(d)) == 1
    if latest == MID:  # the mid-epoch checkpoint, after an epoch with bests: replay says it has no accuracy
        assert cli.main(["replay", str(d), "--step", str(MID)]) == 0
        out = capsys.readouterr().out
        assert "no accuracy was recorded for this step" in out and "the vote: best" in out
    assert cli.main(["resume", str(d), "--quiet"]) == 0
    ref_dir, ref_nets, ref_loop = member_run
    for a, b in zip(params_of(d), [layers.get_params(n) for n in ref_nets]):
        assert_params_equal(a, b)
    assert lines(d) == lines(ref_dir)   # train_loss of the interrupted epoch included


def test_replay_gives_each_member_and_the_vote(lone, member_run, capsys):
    d = member_run[0]
    res = inspect.replay(d)
    assert [m["seed"] for m in res["members"]] == SEEDS
    for m in res["members"]:
        alone = inspect.replay(lone[m["seed"]][3])
        assert (m["accuracy"], m["correct"], m["recorded"]) == (alone["accuracy"], alone["correct"], alone["recorded"])
        assert m["equal"]
    assert res["equal"] and res["accuracy"] == lines(d)[-1]["test_accuracy"]
    one = inspect.replay(d, member=2, data_name="validation", predict=7)
    alone = inspect.replay(lone[SEEDS[2]][3], data_name="validation", predict=7)
    assert {k: one[k] for k in ("accuracy", "recorded", "predicted", "labels")} == \
        {k: alone[k] for k in ("accuracy", "recorded", "predicted", "labels")}
    capsys.readouterr()
    assert cli.main(["replay", str(d)]) == 0
    out = capsys.readouterr().out
    assert out.count("-- equal") == len(SEEDS) + 1 and "test accuracy of the vote" in out
    assert cli.main(["replay", str(d), "--member", str(len(SEEDS))]) == 1
    assert f"member must be 0 to {len(SEEDS) - 1}" in capsys.readouterr().err


def test_export_of_a_member_is_the_lone_runs_export(lone, member_run, tmp_path, capsys):
    d = member_run[0]
    for i, s in enumerate(SEEDS):
        assert cli.main(["export", str(d), str(tmp_path / f"m{i}.json"), "--member", str(i)]) == 0
        inspect.export_json(lone[s][3], tmp_path / f"lone{i}.json")
        assert (tmp_path / f"m{i}.json").read_bytes() == (tmp_path / f"lone{i}.json").read_bytes()
    capsys.readouterr()
    assert cli.main(["export", str(d), str(tmp_path / "all.json")]) == 0   # every member: a bundle (test_bundle.py)
    assert json.loads((tmp_path / "all.json").read_text(encoding="utf-8"))["n_members"] == len(SEEDS)
    assert cli.main(["export", str(lone[0][3]), str(tmp_path / "x.json"), "--member", "0"]) == 1
    assert "has no members; leave out --member" in capsys.readouterr().err


def test_import_into_members_starts_each_from_the_json(member_run, tmp_path):
    src = tmp_path / "net.json"
    inspect.export_json(member_run[0], src, member=0)
    data_path = json.loads((member_run[0] / "config.json").read_text(encoding="utf-8"))["data"]
    common = ["--epochs", "1", "--limit", "100", "--quiet", "--data", data_path]
    assert cli.main(["import", str(src), "--run", str(tmp_path / "m"), "--seeds", "5,2", *common]) == 0
    nets = inspect.load(tmp_path / "m")
    for i, s in enumerate([5, 2]):
        assert cli.main(["import", str(src), "--run", str(tmp_path / f"lone{s}"), "--seed", str(s), *common]) == 0
        assert_params_equal(layers.get_params(nets[i]), layers.get_params(inspect.load(tmp_path / f"lone{s}")))


@pytest.mark.parametrize("stop, reason", [
    (dict(epochs=6, eta=2.0, early_stopping=1), "early_stopping"),
    (dict(epochs=7, eta=2.0, schedule="plateau", patience=1, eta_min_factor=0.25), "eta_floor")])
def test_a_member_that_stops_early_freezes_while_the_others_go_on(synthetic_mnist, tmp_path, stop, reason):
    """Early stopping after one epoch without a new best, or the plateau schedule (eta per
    member, halved) down to its floor: the members stop at different epochs."""
    run, nets, loop = session.start(config(synthetic_mnist, **stop), tmp_path / "m")
    run.close()
    ends = [lp.epoch for lp in loop.loops]
    assert loop.stop_reason == "members_stopped" and len(set(ends)) > 1   # some went on after another stopped
    recorded = lines(tmp_path / "m")
    for i, s in enumerate(SEEDS):
        run, (net,), alone = session.start(config(synthetic_mnist, members=None, seed=s, **stop), tmp_path / f"lone{s}")
        run.close()
        alone = alone.loops[0]
        assert alone.stop_reason == reason
        assert loop.loops[i].to_json() == alone.to_json()
        assert_params_equal(layers.get_params(nets[i]), layers.get_params(net))
        assert [r["members"][i] for r in recorded if r["members"][i] is not None] == lines(tmp_path / f"lone{s}")
    assert_params_equal(layers.get_params(inspect.load(tmp_path / "m", member=0)), layers.get_params(nets[0]))


SWEEP = {"lmbda": [0.0, 0.5], "momentum": [0.2, 0.5]}


def test_a_sweep_is_one_program_whose_members_equal_lone_runs(synthetic_mnist, tmp_path):
    """lmbda and momentum per member, as values in the optimiser's state: a member with
    lmbda 0 gets the decay term with the value 0, and still equals a lone run without it,
    bit for bit. (Momentum 0 beside momentum > 0 is an ulp off a lone run without momentum:
    see engine.trainer.Trainer.)"""
    members = run_config.sweep_members([1, 2], SWEEP)
    assert len(members) == 8 and members[0] == {"lmbda": 0.0, "momentum": 0.2, "seed": 1}
    run, nets, loop = session.start(config(synthetic_mnist, members=members, epochs=1, eta=0.3), tmp_path / "m")
    run.close()
    for i, m in enumerate(members):
        run, (net,), alone = session.start(config(synthetic_mnist, members=None, epochs=1, eta=0.3, **m),
                                           tmp_path / f"{i}")
        run.close()
        alone = alone.loops[0]
        assert_params_equal(layers.get_params(nets[i]), layers.get_params(net))
        assert loop.loops[i].history == alone.history
    resumed = session.resume(tmp_path / "m", epochs=2)[1]   # the sweep's checkpoint restores, velocities too
    assert len(resumed) == 8


def test_a_diverging_member_freezes_at_its_last_good_epoch(synthetic_mnist, tmp_path):
    """eta per member: the one with 1e30 goes NaN in its second epoch and stops there, as a lone run."""
    members = [{"seed": 0, "eta": 0.5}, {"seed": 0, "eta": 1e30}, {"seed": 1, "eta": 0.5}]
    sgd = dict(epochs=3, chunks=None)
    run, nets, loop = session.start(config(synthetic_mnist, members=members, **sgd), tmp_path / "m")
    run.close()
    assert loop.diverged == [1] and loop.stop_reason == "epochs"
    for i, m in enumerate(members):
        run, (net,), alone = session.start(config(synthetic_mnist, members=None, **sgd, **m), tmp_path / f"{i}")
        run.close()
        alone = alone.loops[0]
        assert alone.stop_reason == ("nan" if i == 1 else "epochs")
        assert loop.loops[i].to_json() == alone.to_json()
        assert_params_equal(layers.get_params(nets[i]), layers.get_params(net))
    assert all(np.all(np.isfinite(p["w"])) for p in layers.get_params(nets[1]))


def test_members_train_on_the_full_training_sets_shape_in_unequal_calls():
    """The issue's crash: shallow's 5,000 mini-batches of the full set run as calls of 2,519
    and 2,481 (CHUNK_MACS), whose losses once failed to join for two members."""
    from nn3.engine import train
    from nn3.engine.device_data import DeviceData
    from nn3.engine.settings import SGDConfig
    from nn3.engine.trainer import Trainer
    from nn3.runs import presets
    spec = presets.get("shallow").spec
    rng = np.random.default_rng(0)
    training = (rng.random((50_000, 784), dtype=np.float32), rng.integers(0, 10, 50_000))
    cfgs = [SGDConfig(epochs=1, eta=0.1, shuffle=True, seed=s) for s in (0, 1)]
    tr = Trainer([layers.build(spec, seed=s) for s in (0, 1)], cfgs, DeviceData.from_arrays(*training))
    assert (tr.n_batches, tr.chunk) == (5000, 2519)
    loop = train.fit(tr, train.Splits(training), train.RunState.fresh(cfgs))
    assert loop.stop_reason == "epochs" and [lp.step for lp in loop.loops] == [5000, 5000]
    assert all(np.isfinite(r["train_loss"]) for r in loop.history[0]["members"])


def test_the_facade_loads_one_member_and_plot_says_what_it_lacks(member_run, tmp_path, capsys):
    from nn3 import saved
    d = member_run[0]
    one = saved.load(d, member=1)
    assert_params_equal(layers.get_params(one.engine), layers.get_params(member_run[1][1]))
    assert one.loop.history == member_run[2].loops[1].history
    with pytest.raises(ValueError, match=f"a run of {len(SEEDS)} members; load one with member=K"):
        saved.load(d)
    capsys.readouterr()
    assert cli.main(["plot", str(d), "--out", str(tmp_path)]) == 1
    assert "plots of a member run are not built yet" in capsys.readouterr().err
