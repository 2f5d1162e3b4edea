"""The book's three programs: their calls, their printed lines, saving and loading.

Synthetic data shaped like MNIST (784 inputs, 10 classes), so these run in seconds;
the real-data smoke test is marked ``mnist``.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest

import nn3
from nn3 import mnist_loader, network, network2, network3
from nn3.engine import layers
from nn3.book.facade import Facade
from nn3.network3 import ConvPoolLayer, FullyConnectedLayer, ReLU, SoftmaxLayer


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n)


def _pairs(x, y, one_hot):
    return mnist_loader.PairSequence(x, y, one_hot=one_hot)


def _params(net):
    return layers.get_params(net.engine)


def _same(a, b):
    return all(np.array_equal(p[k], q[k]) for p, q in zip(a, b) for k in ("w", "b"))


def test_network_sgd_prints_the_books_lines(capsys):
    x, y = _data(120)
    training, test = _pairs(x[:100], y[:100], True), _pairs(x[100:], y[100:], False)
    net = network.Network([784, 30, 10])
    net.SGD(training, 3, 10, 3.0, test_data=test)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    for j, line in enumerate(lines):
        assert re.fullmatch(rf"Epoch {j}: \d+ / 20", line), line
    assert net.evaluate(test) == int(lines[-1].split()[2])
    net.SGD(training, 1, 10, 3.0)
    assert capsys.readouterr().out == "Epoch 0 complete\n"


def test_network_takes_arrays_and_pairs_alike():
    x, y = _data(60)
    a, b = network.Network([784, 10, 10], seed=4), network.Network([784, 10, 10], seed=4)
    a.SGD((x, y), 2, 10, 3.0)
    b.SGD(list(_pairs(x, y, True)), 2, 10, 3.0)
    assert _same(_params(a), _params(b))


def test_network_feedforward_and_the_books_attributes():
    net = network.Network([784, 30, 10])
    assert [w.shape for w in net.weights] == [(30, 784), (10, 30)]
    assert [b.shape for b in net.biases] == [(30, 1), (10, 1)]
    x, _ = _data(3)
    col = net.feedforward(x[0].reshape(784, 1))
    assert col.shape == (10, 1)
    a = x[0].reshape(784, 1)
    for w, b in zip(net.weights, net.biases):  # the book's feedforward, in numpy
        a = 1 / (1 + np.exp(-(w @ a + b)))
    np.testing.assert_allclose(col, a, rtol=1e-5, atol=1e-6)
    assert net.feedforward(x).shape == (3, 10)


def test_network_rejects_bad_sizes():
    with pytest.raises(ValueError, match="sizes"):
        network.Network([784])
    with pytest.raises(ValueError, match="sizes"):
        network.Network([784, 0, 10])


def test_network2_returns_the_four_lists_and_prints_monitors(capsys):
    x, y = _data(150)
    training, evaluation = (x[:100], y[:100]), (x[100:], y[100:])
    net = network2.Network([784, 20, 10], cost=network2.CrossEntropyCost)
    ec, ea, tc, ta = net.SGD(training, 2, 10, 0.5, lmbda=5.0, evaluation_data=evaluation,
                             monitor_evaluation_cost=True, monitor_evaluation_accuracy=True,
                             monitor_training_cost=True, monitor_training_accuracy=True)
    assert len(ec) == len(ea) == len(tc) == len(ta) == 2
    out = capsys.readouterr().out
    assert "Epoch 1 training complete" in out
    assert f"Accuracy on evaluation data: {ea[-1]} / 50" in out
    assert f"Accuracy on training data: {ta[-1]} / 100" in out
    assert ea[-1] == net.accuracy(evaluation)
    assert tc[-1] == pytest.approx(net.total_cost(training, 5.0), rel=1e-5)
    w2 = sum(float(np.sum(w ** 2)) for w in net.weights)
    assert net.total_cost(evaluation, 5.0) - net.total_cost(evaluation, 0.0) == pytest.approx(0.5 * 5.0 / 50 * w2, rel=1e-4)


def test_network2_initialisers():
    net = network2.Network([784, 100, 10])
    assert np.std(net.weights[0]) == pytest.approx(1 / np.sqrt(784), rel=0.05)
    net.large_weight_initializer()
    assert np.std(net.weights[0]) == pytest.approx(1.0, rel=0.05)
    net.default_weight_initializer()
    assert np.std(net.weights[0]) == pytest.approx(1 / np.sqrt(784), rel=0.05)


def test_network2_save_is_the_books_json_and_load_accepts_only_known_costs(tmp_path):
    net = network2.Network([784, 12, 10], cost=network2.QuadraticCost)
    net.save(tmp_path / "net.json")
    d = json.loads((tmp_path / "net.json").read_text(encoding="utf-8"))
    assert sorted(d) == ["biases", "cost", "seed", "sizes", "weights"]   # the book's load reads the other four
    assert d["sizes"] == [784, 12, 10] and d["cost"] == "QuadraticCost"
    assert np.array(d["biases"][0]).shape == (12, 1)
    again = network2.load(tmp_path / "net.json")
    assert again.cost is network2.QuadraticCost and _same(_params(net), _params(again))
    d["cost"] = "os.system"
    (tmp_path / "bad.json").write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(ValueError, match="cost"):
        network2.load(tmp_path / "bad.json")


def test_network2_early_stopping_and_plateau_schedule(capsys):
    x, y = _data(60)
    net = network2.Network([784, 5, 10])
    net.SGD((x, y), 40, 10, 0.5, evaluation_data=(x, y), monitor_evaluation_accuracy=True, early_stopping_n=2)
    assert net.loop.stop_reason == "early_stopping" and net.loop.epoch < 40
    net = network2.Network([784, 5, 10])
    net.SGD((x, y), 200, 10, 0.5, evaluation_data=(x, y), schedule="plateau", momentum=0.5)
    assert net.loop.stop_reason == "eta_floor"
    assert net.loop.eta == pytest.approx(0.5 / 128)


def _book_net(mini_batch_size=10):
    return network3.Network([
        ConvPoolLayer(image_shape=(mini_batch_size, 1, 28, 28), filter_shape=(4, 1, 5, 5),
                      poolsize=(2, 2), activation_fn=ReLU),
        FullyConnectedLayer(n_in=4 * 12 * 12, n_out=20, activation_fn=ReLU, p_dropout=0.5),
        SoftmaxLayer(n_in=20, n_out=10)], mini_batch_size)


def test_network3_runs_the_books_call_and_prints_its_lines(capsys):
    x, y = _data(130)
    training, validation, test = (x[:100], y[:100]), (x[100:120], y[100:120]), (x[120:], y[120:])
    net = _book_net()
    best = net.SGD(training, 2, 10, 0.03, validation, test, lmbda=0.1)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Training mini-batch number 0"
    assert re.fullmatch(r"Epoch 0: validation accuracy \d+\.\d\d%", out[1])
    assert out[2] == "This is the best validation accuracy to date."
    assert re.fullmatch(r"The corresponding test accuracy is \d+\.\d\d%", out[3])
    assert "Finished training network." in out
    assert any(re.fullmatch(r"Best validation accuracy of \d+\.\d\d% obtained at iteration \d+", l) for l in out)
    assert best == net.best()["validation_accuracy"]
    assert net.accuracy(validation) == pytest.approx(net.loop.history[-1]["validation_accuracy"])
    assert net.predict(x[:5]).shape == (5,)
    assert network3.size(training) == 100


def test_network3_honours_its_mini_batch_and_odd_sizes():
    x, y = _data(105)
    net = _book_net()
    with pytest.raises(ValueError, match="mini_batch_size"):
        net.SGD((x, y), 1, 20, 0.1, (x, y), (x, y))
    net.SGD((x, y), 1, 10, 0.1, (x[:37], y[:37]), None, verbose=False)  # 105 = 10 batches + 5 dropped
    assert net.loop.step == 10
    assert 0.0 <= net.accuracy((x[:37], y[:37])) <= 1.0


def test_network3_rejects_unknown_activations():
    with pytest.raises(ValueError, match="activation_fn"):
        network3.FullyConnectedLayer(784, 10, activation_fn=np.tanh).spec()


@pytest.mark.parametrize("make", ["network", "network2", "network3"])
def test_every_facade_saves_and_loads(tmp_path, make):
    x, y = _data(60)
    if make == "network3":
        net = network3.Network([FullyConnectedLayer(784, 10), SoftmaxLayer(10, 10)], 10)
        net.SGD((x, y), 1, 10, 0.1, (x, y), (x, y), verbose=False)
    else:
        net = getattr(nn3, make).Network([784, 10, 10])
        net.SGD((x, y), 1, 10, 0.1)
    net.save_run(tmp_path / "run")
    again = nn3.load(tmp_path / "run")
    assert type(again) is type(net) and again.loop.epoch == 1
    assert _same(_params(net), _params(again))
    net.save_json(tmp_path / "net.json")
    assert _same(_params(net), _params(nn3.load(tmp_path / "net.json")))
    assert not hasattr(nn3, "load_json")  # one loader name per thing: nn3.load
    if make == "network3":  # and it trains on, from where it stopped
        again.SGD((x, y), 1, 10, 0.1, (x, y), (x, y), verbose=False)
    else:
        again.SGD((x, y), 1, 10, 0.1)
    assert again.loop.epoch == 2


def test_a_short_real_run_beats_90_percent(capsys, monkeypatch, real_mnist):
    """The chapter-1 session with its imports changed; then chapter 3's net, one epoch."""
    monkeypatch.setenv("NN3_DATA_DIR", str(real_mnist))
    training_data, validation_data, test_data = mnist_loader.load_data_wrapper()
    net = network.Network([784, 30, 10])
    net.SGD(training_data, 1, 10, 3.0, test_data=test_data)
    assert re.fullmatch(r"Epoch 0: \d+ / 10000", capsys.readouterr().out.strip())
    net = network2.Network([784, 30, 10])
    _, accuracy, _, _ = net.SGD(training_data, 1, 10, 0.5, lmbda=5.0, evaluation_data=validation_data,
                                monitor_evaluation_accuracy=True)
    assert accuracy[0] > 9000, accuracy
    assert net.accuracy(test_data) > 9000


# ---------------------------------------------------------------- one source of truth (nn3.book.facade)


def test_the_books_lines_are_written_in_one_place():
    # facade.epoch_lines is the one writer of the per-epoch lines: the façades and the
    # CLI both print through it, so no other module spells them out.
    # (Docstrings may show them: network2's synopsis does.)
    phrases = ("training complete", "Accuracy on evaluation data", "best validation accuracy to date",
               "The corresponding test accuracy", "Cost on training data")
    writers = set()
    for path in Path(nn3.__file__).parent.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body
                and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        strings = [n.value for n in ast.walk(tree)
                   if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]
        writers |= {path.name for text in strings for phrase in phrases if phrase in text}
    assert writers == {"facade.py"}


def test_cli_runs_print_the_facades_lines(capsys):
    from nn3 import cli
    from nn3.book import facade
    record = {"epoch": 3, "test_correct": 9, "test_n": 10, "validation_correct": 7, "validation_n": 10,
              "validation_accuracy": 0.7, "test_accuracy": 0.9, "best": True, "training_cost": 0.5,
              "training_correct": 3, "training_n": 4, "validation_cost": 0.25}
    for style, shown in (("network", ()), ("network2", ("validation_accuracy",)), ("network3", ())):
        cli.report.reporter(style, monitor=("training_cost",))(record, None)
        assert capsys.readouterr().out.splitlines() == facade.epoch_lines(record, style, ("training_cost", *shown))
    assert facade.epoch_lines(record, "network2", ("validation_accuracy", "training_cost"), start=3) == [
        "Epoch 0 training complete", "Cost on training data: 0.5", "Accuracy on evaluation data: 7 / 10"]


@pytest.mark.parametrize("make", [
    lambda: network.Network([784, 10, 10], seed=0),
    lambda: network2.Network([784, 10, 10], seed=0),
    lambda: network3.Network([FullyConnectedLayer(784, 10), SoftmaxLayer(10, 10)], 10, seed=0)])
def test_the_engine_network_has_one_name(make):
    net = make()
    assert isinstance(net, Facade) and isinstance(net.engine, layers.Network)
    assert not hasattr(net, "net")


def test_history_records_eta_as_a_float():
    x, y = _data(40)
    net = network.Network([784, 10, 10], seed=0)
    net.SGD((x, y), 1, 10, 3)   # an int eta, as a script may write it
    assert [type(r["eta"]) for r in net.accuracy_history()] == [float]
