"""Ensemble bundles: a member run exported as one file that votes as the run did.

``nn3 export RUN OUT`` of a member run writes every member and the vote's rule
(nn3.store.bundle); ``nn3 evaluate OUT`` and ``nn3.load(OUT)`` read it back. The vote from the
file equals the vote the run recorded in metrics.jsonl for the same epoch, and a bad
bundle is one line naming the file and the fault.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import nn3
from nn3 import cli
from nn3.runs import config as run_config, inspect, session
from nn3.store import bundle, export
from nn3.engine import evaluation, layers, spec
from nn3.book import facade

SPEC = {"layers": [
    {"type": "FullyConnectedLayer", "n_in": 784, "n_out": 20, "activation_fn": "sigmoid", "p_dropout": 0.3},
    {"type": "SoftmaxLayer", "n_in": 20, "n_out": 10, "p_dropout": 0.0}], "cost": "LogLikelihoodCost"}
SEEDS = [3, 0, 7]
SGD = dict(epochs=2, eta=0.5, lmbda=0.1, mini_batch_size=10)


def lines(run_dir):
    return [json.loads(t) for t in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if t.strip()]


@pytest.fixture(scope="module")
def member_run(synthetic_mnist, tmp_path_factory):
    d = tmp_path_factory.mktemp("members") / "run"
    config = run_config.make_config("shallow", spec=SPEC, data_path=synthetic_mnist.path, members=SEEDS, **SGD)
    run, nets, loop = session.start(config, d)
    run.close()
    return d, nets, loop


@pytest.fixture(scope="module")
def exported(member_run, tmp_path_factory):
    """The bundle of the newest step (the last epoch), written by the command."""
    out = tmp_path_factory.mktemp("bundle") / "five.json"
    assert cli.main(["export", str(member_run[0]), str(out)]) == 0
    return out


def test_export_without_member_writes_a_bundle_of_every_member(member_run, exported, tmp_path):
    d = member_run[0]
    doc = json.loads(exported.read_text(encoding="utf-8"))
    assert doc["format"] == "nn3-ensemble" and doc["vote"] == {"rule": "plurality", "ties": "smallest"}
    assert doc["n_members"] == len(SEEDS) and [m["seed"] for m in doc["members"]] == SEEDS
    assert doc["members"][1]["settings"]["lmbda"] == 0.1 and doc["members"][1]["settings"]["seed"] == 0
    assert doc["source"]["step"] == lines(d)[-1]["step"]
    for i in range(len(SEEDS)):  # each member's network is what export --member writes
        assert cli.main(["export", str(d), str(tmp_path / f"m{i}.json"), "--member", str(i)]) == 0
        assert doc["members"][i]["network"] == json.loads((tmp_path / f"m{i}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("epoch", [0, 1])
def test_the_bundles_vote_equals_the_vote_the_run_recorded(synthetic_mnist, member_run, tmp_path, epoch):
    d, nets, _ = member_run
    record = lines(d)[epoch]
    out = tmp_path / "b.json"
    assert cli.main(["export", str(d), str(out), "--step", str(record["step"])]) == 0
    ens = nn3.load(out)
    assert isinstance(ens, facade.Ensemble) and ens.seeds == SEEDS and len(ens) == len(SEEDS)
    _, validation, test = run_config.load_splits(json.loads((d / "config.json").read_text(encoding="utf-8")))
    assert ens.accuracy(test) == record["test_accuracy"]
    assert ens.accuracy(validation) == record["validation_accuracy"]
    assert ens.member_accuracies(test) == [r["test_accuracy"] for r in record["members"]]
    if epoch == 1:
        assert np.array_equal(ens.predict(test[0]), evaluation.vote(nets, test[0]))


def test_nn3_evaluate_prints_each_member_and_the_vote(synthetic_as_default, member_run, exported, capsys):
    record = lines(member_run[0])[-1]
    for which in ("test", "validation"):
        capsys.readouterr()
        assert cli.main(["evaluate", str(exported), "--data", which]) == 0
        out = capsys.readouterr().out.splitlines()
        assert len(out) == len(SEEDS) + 1
        for i, (line, r) in enumerate(zip(out, record["members"])):
            assert line.startswith(f"member {i} (seed {SEEDS[i]}): {which} accuracy ")
            assert f"({r[which + '_correct']} / {r[which + '_n']})" in line
        assert out[-1] == (f"{exported}: {which} accuracy of the vote {record[which + '_accuracy']:.2%} "
                           f"({record[which + '_correct']} / {record[which + '_n']})")


def test_a_tie_goes_to_the_smallest_digit(tmp_path):
    """Two one-layer nets that always say 7 and 3, and one that always says 5: each digit
    has one vote, so the bundle says 3."""
    s = {"layers": [{"type": "SoftmaxLayer", "n_in": 784, "n_out": 10, "p_dropout": 0.0}], "cost": "LogLikelihoodCost"}

    def always(digit):
        return [{"w": np.zeros((10, 784), np.float32), "b": np.eye(10, dtype=np.float32)[digit]}]
    bundle.save(tmp_path / "tie.json", s, [always(7), always(3), always(5)], seeds=[0, 1, 2])
    ens = nn3.load(tmp_path / "tie.json")
    x = np.random.default_rng(0).random((4, 784), dtype=np.float32)
    assert ens.predict(x).tolist() == [3, 3, 3, 3]


def _fault(tmp_path, capsys, doc_or_text, name="bad.json"):
    """The CLI's exit code and stderr for ``nn3 evaluate`` of this document, and the library's error."""
    path = tmp_path / name
    path.write_text(doc_or_text if isinstance(doc_or_text, str) else json.dumps(doc_or_text), encoding="utf-8")
    capsys.readouterr()
    code = cli.main(["evaluate", str(path)])
    err = capsys.readouterr().err
    with pytest.raises(export.ExportError) as e:
        nn3.load(path)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)
    return code, err.strip(), str(e.value)


def test_bad_bundles_are_one_line_errors_naming_the_file_and_the_fault(exported, tmp_path, capsys):
    good = json.loads(exported.read_text(encoding="utf-8"))
    cases = []
    missing = {**good, "members": [good["members"][0], good["members"][2]]}
    cases.append((missing, "members[1].member: is 2, expected 1: member 1 is missing"))
    short = {**good, "members": good["members"][:2]}
    cases.append((short, "members: 2 of n_members 3: member 2 is missing"))
    other = {**SPEC, "layers": [{**SPEC["layers"][0], "n_out": 21}, {**SPEC["layers"][1], "n_in": 21}]}
    params = [{"w": np.zeros(w, np.float32), "b": np.zeros(b, np.float32)}
              for w, b in map(spec.param_shapes, other["layers"])]
    wider = json.loads(json.dumps(good))
    wider["members"][2]["network"] = export.to_json_dict(other, params, 10)
    cases.append((wider, "members[2].network: layers[0].n_out is 21 (int), member 0's is 20 (int) "
                         "(the members of a bundle share one architecture)"))
    bent = json.loads(json.dumps(good))
    bent["members"][1]["network"]["layers"][1]["weights"][4] = [0.0] * 3
    cases.append((bent, "members[1].network: layers[1].weights[4]: expected 10 entries (shape (20, 10)), got 3"))
    cases.append((exported.read_text(encoding="utf-8")[:5000], "not valid JSON"))  # a truncated file
    cases.append(({**good, "vote": {"rule": "mean", "ties": "smallest"}}, "vote.rule: 'mean'"))
    for doc, why in cases:
        code, err, lib = _fault(tmp_path, capsys, doc)
        assert code == 1 and err == f"nn3: error: {lib}" and why in lib, (why, lib)
        assert lib.startswith(f"{tmp_path / 'bad.json'}: ")


def test_a_bundle_is_not_taken_for_one_network(exported, tmp_path):
    with pytest.raises(export.ExportError, match="an ensemble bundle of several networks, not one network"):
        export.load_json(exported)
    export.save_json(tmp_path / "one.json", SPEC, [
        {"w": np.zeros(w, np.float32), "b": np.zeros(b, np.float32)}
        for w, b in map(spec.param_shapes, SPEC["layers"])])
    with pytest.raises(export.ExportError, match="one network, not an ensemble bundle"):
        bundle.load(tmp_path / "one.json")
    assert isinstance(nn3.load(tmp_path / "one.json"), nn3.network3.Network)   # one network loads as before


def test_an_ensemble_saves_the_bundle_it_was_loaded_from(exported, tmp_path):
    ens = nn3.load(exported)
    ens.save_json(tmp_path / "again.json")
    a, b = bundle.load(exported), bundle.load(tmp_path / "again.json")
    assert (a.spec, a.seeds, a.mini_batch_size) == (b.spec, b.seeds, b.mini_batch_size)
    assert a.settings == b.settings and all(a.settings) and a.source == b.source and a.source
    for p, q in zip(a.params, b.params):
        for x, y in zip(p, q):
            np.testing.assert_array_equal(x["w"], y["w"])
            np.testing.assert_array_equal(x["b"], y["b"])
    assert layers.get_params(ens[1].engine)[0]["w"].dtype == np.float32
    one = nn3.load(exported, member=1)  # one member of a bundle, as of a member run
    np.testing.assert_array_equal(layers.get_params(one.engine)[0]["w"], layers.get_params(ens[1].engine)[0]["w"])
    with pytest.raises(ValueError, match="no member 7"):
        nn3.load(exported, member=7)


# ------------------------------------------------------------------ network3.train_ensemble

def book_layers():
    from nn3.network3 import FullyConnectedLayer, SoftmaxLayer
    return [FullyConnectedLayer(n_in=784, n_out=20, p_dropout=0.2), SoftmaxLayer(n_in=20, n_out=10)]


@pytest.mark.parametrize("shuffle", [False, True])
def test_train_ensemble_trains_each_network_as_it_would_alone(capsys, shuffle):
    from conftest import synthetic_splits
    from nn3 import network3
    training, validation, test = synthetic_splits()
    seeds = [5, 1, 9]
    ens = network3.train_ensemble(book_layers, 3, training, 2, 10, 0.5, validation, test, lmbda=0.1,
                                  seeds=seeds, shuffle=shuffle)
    out = capsys.readouterr().out.splitlines()
    assert isinstance(ens, facade.Ensemble) and ens.seeds == seeds
    for i, s in enumerate(seeds):
        alone = network3.Network(book_layers(), 10, seed=s)
        alone.SGD(training, 2, 10, 0.5, validation, test, lmbda=0.1, shuffle=shuffle, verbose=False)
        for p, q in zip(ens.members[i].params, alone.params):   # bit for bit
            np.testing.assert_array_equal(p["w"], q["w"])
            np.testing.assert_array_equal(p["b"], q["b"])
        assert ens.members[i].loop.history == alone.loop.history
        assert ens.members[i].best() == alone.best()
        first = facade.epoch_lines(alone.loop.history[0], "network3")[0]
        assert f"Network {i}: {first}" in out
    last = ens.loop.history[-1]
    assert ens.accuracy(validation) == last["validation_accuracy"] and ens.accuracy(test) == last["test_accuracy"]
    assert f"Vote: Epoch 1: validation accuracy {last['validation_accuracy']:.2%}" in out
    assert out[-3] == "Finished training 3 networks."
    assert out[-2].startswith("Best validation accuracy of the vote ")


def test_train_ensemble_summarises_and_refuses_what_cannot_vote(capsys, tmp_path):
    from conftest import synthetic_splits
    from nn3 import network3
    training, validation, test = synthetic_splits((200, 100, 100))
    ens = network3.train_ensemble(book_layers, 2, training, 1, 10, 0.5, validation, test, seeds=[0, 1], each=False)
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["Training mini-batch number 0", facade.members_line(ens.loop.history[0])]
    assert not any(o.startswith("Network") for o in out)
    ens.save_json(tmp_path / "two.json")   # the book's nets as a bundle, read back voting alike
    again = nn3.load(tmp_path / "two.json")
    assert np.array_equal(again.predict(test[0]), ens.predict(test[0]))
    assert bundle.load(tmp_path / "two.json").settings[1]["seed"] == 1
    with pytest.raises(ValueError, match="2 seeds for 3 networks"):
        network3.train_ensemble(book_layers, 3, training, 1, 10, 0.5, validation, test, seeds=[0, 1])
    sizes = iter([20, 30])

    def growing():
        n = next(sizes)
        return [network3.FullyConnectedLayer(784, n), network3.SoftmaxLayer(n, 10)]
    with pytest.raises(ValueError, match="built network 1 unlike network 0"):
        network3.train_ensemble(growing, 2, training, 1, 10, 0.5, validation, test)


# ------------------------------------------------------------------ each member's best epoch

def test_replay_gives_each_members_best_epoch_as_of_the_checkpoint(member_run, capsys):
    d, _, loop = member_run
    recorded = lines(d)
    for at in (0, 1):   # the first epoch's checkpoint knows only that epoch
        res = inspect.replay(d, step=recorded[at]["step"])
        for i, m in enumerate(res["members"]):
            mine = [r["members"][i] for r in recorded[:at + 1]]
            best = max(mine, key=lambda r: r["validation_accuracy"])   # the first of equals, as training's
            assert m["best"] == {k: best[k] for k in ("epoch", "validation_accuracy", "test_accuracy")}
        assert res["best"]["epoch"] == (0 if at == 0 else loop.best_epoch)
    capsys.readouterr()
    assert cli.main(["replay", str(d)]) == 0
    out = capsys.readouterr().out.splitlines()
    for i, lp in enumerate(loop.loops):
        b = next(r for r in lp.history if r["epoch"] == lp.best_epoch)
        assert out[i].endswith(f"; best validation accuracy {b['validation_accuracy']:.2%} at epoch {b['epoch']} "
                               f"(test {b['test_accuracy']:.2%})")
    b = next(r for r in loop.history if r["epoch"] == loop.best_epoch)
    assert out[-1] == f"the vote: best validation accuracy {b['validation_accuracy']:.2%} at epoch {b['epoch']} " \
                      f"(test {b['test_accuracy']:.2%})"
    assert cli.main(["replay", str(d), "--member", "2"]) == 0
    b = next(r for r in loop.loops[2].history if r["epoch"] == loop.loops[2].best_epoch)
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"member 2: best validation accuracy "
                                                               f"{b['validation_accuracy']:.2%} at epoch {b['epoch']}")


def _random_params(s, seed):
    rng = np.random.default_rng(seed)
    return [{"w": rng.standard_normal(w).astype(np.float32), "b": rng.standard_normal(b).astype(np.float32)}
            for w, b in map(spec.param_shapes, s["layers"])]


def test_conv_and_network2_members_round_trip_bit_for_bit(small_conv_spec, tmp_path, capsys):
    """A conv net's members keep their mini-batch size and filters; sigmoid MLPs' come back
    as network2 networks; ``nn3 evaluate`` refuses a net that does not take MNIST's 784 pixels."""
    mlp = spec.mlp_spec([784, 6, 10], "CrossEntropyCost")
    for s, mb, kind in ((small_conv_spec, 4, nn3.network3.Network), (mlp, None, nn3.network2.Network)):
        params = [_random_params(s, k) for k in range(3)]
        path = tmp_path / f"{kind.__module__}.json"
        bundle.save(path, s, params, seeds=[4, 5, 6], mini_batch_size=mb)
        b = bundle.load(path)
        assert (b.spec, b.mini_batch_size, b.seeds, b.settings, b.source) == (s, mb, [4, 5, 6], [{}] * 3, {})
        ens = nn3.load(path)
        assert all(isinstance(m, kind) for m in ens) and ens.seeds == [4, 5, 6]
        for m, p in zip(ens, params):
            for got, want in zip(layers.get_params(m.engine), p):
                np.testing.assert_array_equal(got["w"], want["w"])
                np.testing.assert_array_equal(got["b"], want["b"])
    assert nn3.load(tmp_path / "nn3.network3.json")[0].mini_batch_size == 4
    capsys.readouterr()
    assert cli.main(["evaluate", str(tmp_path / "nn3.network3.json")]) == 1
    assert "takes 64 inputs; MNIST images have 784" in capsys.readouterr().err
