"""What the book's own scripts call on the façades, beyond SGD (BOOK.md's last section).

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_book_calls.py -q

Gradients are checked against chapter 2's backpropagation, written here in numpy (in
float64, on the network's own float32 parameters); seeds, saving and loading on
synthetic MNIST-shaped data.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import nn3
from nn3 import network, network2, network3
from nn3.runs import config as run_config, session
from nn3.engine import layers
from nn3.store.rundir import RunDir
from nn3.network3 import FullyConnectedLayer, SoftmaxLayer
import references


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n)


def _column(label):
    e = np.zeros((10, 1))
    e[label] = 1.0
    return e


def _pairs(x, y):
    """The book's training data: (784, 1) columns and one-hot (10, 1) outputs."""
    return [(a.reshape(784, 1), _column(b)) for a, b in zip(x, y)]


def _close(ours, theirs):
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6 * np.abs(b).max())


NETS = [
    ("network", lambda: network.Network([784, 30, 20, 10], seed=3), "QuadraticCost"),
    ("network2-ce", lambda: network2.Network([784, 30, 20, 10], seed=3), "CrossEntropyCost"),
    ("network2-quad", lambda: network2.Network([784, 30, 20, 10], cost=network2.QuadraticCost, seed=3),
     "QuadraticCost"),
]


# ------------------------------------------------------------------ backprop (item 7)

@pytest.mark.parametrize("name, make, cost", NETS, ids=[n[0] for n in NETS])
def test_backprop_is_chapter_twos(name, make, cost):
    net = make()
    net.large_weight_initializer() if name.startswith("network2") else None   # saturated units too
    x, y = _data(4, seed=1)
    for i in range(4):
        nabla_b, nabla_w = net.backprop(x[i].reshape(784, 1), _column(y[i]))
        assert [b.shape for b in nabla_b] == [(30, 1), (20, 1), (10, 1)]
        assert [w.shape for w in nabla_w] == [(30, 784), (20, 30), (10, 20)]
        want_b, want_w = references.backprop(net.weights, net.biases, x[i].reshape(784, 1), _column(y[i]), cost)
        _close(nabla_b, want_b)
        _close(nabla_w, want_w)
    # any desired output, not only a one-hot one; an int label means its one-hot column
    target = np.linspace(0.1, 0.9, 10).reshape(10, 1)
    _close(net.backprop(x[0].reshape(784, 1), target)[1],
           references.backprop(net.weights, net.biases, x[0].reshape(784, 1), target, cost)[1])
    for a, b in zip(net.backprop(x[1].reshape(784, 1), int(y[1])), net.backprop(x[1].reshape(784, 1), _column(y[1]))):
        assert all(np.array_equal(p, q) for p, q in zip(a, b))


def test_backprop_refuses_wrong_shapes():
    net = network.Network([784, 5, 10], seed=0)
    x, _ = _data(1)
    for bad_x, bad_y, match in [(x[0][:100], _column(1), "x has shape"), (x[0], np.zeros((9, 1)), "y has shape"),
                                (x[0], 10, "label 10")]:
        with pytest.raises(ValueError, match=match) as e:
            net.backprop(bad_x, bad_y)
        assert "\n" not in str(e.value)


# ------------------------------------------------------------------ update_mini_batch, weights (item 8)

def test_update_mini_batch_is_the_books_step():
    x, y = _data(10, seed=2)
    batch = _pairs(x, y)
    net = network.Network([784, 20, 10], seed=1)
    ws, bs = net.weights, net.biases
    grads = [references.backprop(ws, bs, a, b, "QuadraticCost") for a, b in batch]
    net.update_mini_batch(batch, 3.0)
    for i in range(2):
        want_w = ws[i] - 3.0 / 10 * sum(g[1][i] for g in grads)
        want_b = bs[i] - 3.0 / 10 * sum(g[0][i] for g in grads)
        np.testing.assert_allclose(net.weights[i], want_w, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(net.biases[i], want_b, rtol=1e-5, atol=1e-5)


def test_network2_update_mini_batch_has_l2_by_the_training_set_size():
    x, y = _data(10, seed=3)
    batch = _pairs(x, y)
    net = network2.Network([784, 20, 10], seed=1)
    ws, bs = net.weights, net.biases
    grads = [references.backprop(ws, bs, a, b, "CrossEntropyCost") for a, b in batch]
    eta, lmbda, n = 0.5, 5.0, 1000
    net.update_mini_batch(batch, eta, lmbda, n)
    for i in range(2):
        want_w = (1 - eta * lmbda / n) * ws[i] - eta / 10 * sum(g[1][i] for g in grads)
        want_b = bs[i] - eta / 10 * sum(g[0][i] for g in grads)
        np.testing.assert_allclose(net.weights[i], want_w, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(net.biases[i], want_b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="n \\(the training set's size\\)"):
        net.update_mini_batch(batch, eta, lmbda, 0)


@pytest.mark.parametrize("module", [network, network2])
def test_weights_and_biases_are_assignable_in_the_books_shapes(module):
    net = module.Network([784, 20, 10], seed=1)
    rng = np.random.default_rng(0)
    ws = [rng.standard_normal((20, 784)), rng.standard_normal((10, 20))]
    bs = [rng.standard_normal((20, 1)), rng.standard_normal((10, 1))]
    net.weights, net.biases = ws, bs
    for got, want in zip(net.weights + net.biases, ws + bs):
        np.testing.assert_array_equal(got, want.astype(np.float32))
    x, _ = _data(1)
    a = references.feedforward(ws, bs, x[0].reshape(784, 1))
    np.testing.assert_allclose(net.feedforward(x[0].reshape(784, 1)), a, rtol=1e-4, atol=1e-6)
    for attr, value, match in [("weights", [ws[0], ws[1].T], r"weights\[1\] has shape \(20, 10\), expected \(10, 20\)"),
                               ("biases", [bs[0].ravel(), bs[1]], r"biases\[0\] has shape \(20,\), expected \(20, 1\)"),
                               ("weights", ws[:1], "1 arrays given, the network has 2 layers")]:
        with pytest.raises(ValueError, match=match):
            setattr(net, attr, value)
    np.testing.assert_array_equal(net.weights[1], ws[1].astype(np.float32))   # a refused list changes nothing


@pytest.mark.parametrize("module", [network, network2])
def test_sigmoid_and_sigmoid_prime_are_module_functions(module):
    z = np.array([[-2.0], [0.0], [3.0]])
    np.testing.assert_allclose(module.sigmoid(z), 1 / (1 + np.exp(-z)))
    np.testing.assert_allclose(module.sigmoid_prime(z), np.exp(-z) / (1 + np.exp(-z)) ** 2)
    assert module.sigmoid_prime(0.0) == 0.25


def test_an_integral_float_epoch_count_is_taken(capsys):
    x, y = _data(40)
    size = 20
    net = network.Network([784, 10, 10], seed=0)
    net.SGD(_pairs(x, y)[:size], 40 / size, 10, 3.0, test_data=list(zip(x, y)))   # Python 2's 40 / size
    assert capsys.readouterr().out.count("Epoch") == 2 and net.loop.epoch == 2
    net2 = network2.Network([784, 10, 10], seed=0)
    net2.SGD((x, y), np.float64(2.0), 10.0, 0.5)
    assert net2.loop.epoch == 2
    net3 = network3.Network([FullyConnectedLayer(784, 10), SoftmaxLayer(10, 10)], 10, seed=0)
    net3.SGD((x, y), 2.0, 10, 0.1, (x, y), None, verbose=False)
    assert net3.loop.epoch == 2
    for call in (lambda: net.SGD((x, y), 2.5, 10, 3.0), lambda: net2.SGD((x, y), 1, 2.5, 0.5),
                 lambda: net3.SGD((x, y), 0.5, 10, 0.1, (x, y), None)):
        with pytest.raises(ValueError, match="must be a whole number, got") as e:
            call()
        assert "\n" not in str(e.value)


# ------------------------------------------------------------------ seeds (item 10)

MAKERS = {"network": lambda **kw: network.Network([784, 10, 10], **kw),
          "network2": lambda **kw: network2.Network([784, 10, 10], **kw),
          "network3": lambda **kw: network3.Network([FullyConnectedLayer(784, 10), SoftmaxLayer(10, 10)], 10, **kw)}


@pytest.mark.parametrize("kind", MAKERS)
def test_without_a_seed_numpys_global_generator_decides(kind):
    make = MAKERS[kind]
    np.random.seed(12)
    a, b = make(), make()
    np.random.seed(12)
    again = make()
    first = lambda n: layers.get_params(n.engine)[0]["w"]  # noqa: E731
    assert not np.array_equal(first(a), first(b)) and a.seed != b.seed   # two nets in one script differ
    assert np.array_equal(first(a), first(again)) and a.seed == again.seed  # np.random.seed repeats a run
    x, y = _data(30)
    for net in (a, again):   # and so does its training (the shuffles come from the same seed)
        if kind == "network3":
            net.SGD((x, y), 1, 10, 0.1, (x, y), None, shuffle=True, verbose=False)
        else:
            net.SGD((x, y), 1, 10, 0.5)
    assert all(np.array_equal(p[k], q[k]) for p, q in zip(layers.get_params(a.engine), layers.get_params(again.engine))
               for k in "wb")


@pytest.mark.parametrize("kind", MAKERS)
def test_with_a_seed_nothing_global_is_used(kind):
    make = MAKERS[kind]
    np.random.seed(1)
    state = np.random.get_state()[1].copy()
    a = make(seed=7)
    assert np.array_equal(np.random.get_state()[1], state)
    np.random.seed(2)
    b = make(seed=7)
    assert a.seed == b.seed == 7
    assert np.array_equal(layers.get_params(a.engine)[0]["w"], layers.get_params(b.engine)[0]["w"])
    with pytest.raises(ValueError, match="seed must be an integer"):
        make(seed=-1)


@pytest.mark.parametrize("kind", MAKERS)
def test_the_seed_used_is_recorded(tmp_path, kind):
    np.random.seed(3)
    net = MAKERS[kind]()
    net.save_run(tmp_path / "run")      # untrained: the config still records this net's seed
    assert RunDir.read_config(tmp_path / "run")["sgd"]["seed"] == net.seed
    assert nn3.load(tmp_path / "run").seed == net.seed
    net.save_json(tmp_path / "net.json")
    assert json.loads((tmp_path / "net.json").read_text(encoding="utf-8"))["seed"] == net.seed
    assert nn3.load(tmp_path / "net.json").seed == net.seed


def test_network2_json_keeps_the_books_keys_and_its_loader_still_reads_it(tmp_path):
    net = network2.Network([784, 12, 10], seed=42)
    net.save(tmp_path / "net.json")
    d = json.loads((tmp_path / "net.json").read_text(encoding="utf-8"))
    assert sorted(d) == ["biases", "cost", "seed", "sizes", "weights"] and d["seed"] == 42

    def books_load(filename):   # what the book's network2.load reads: four keys, nothing else
        with open(filename, encoding="utf-8") as f:
            data = json.load(f)
        weights, biases = [np.array(w) for w in data["weights"]], [np.array(b) for b in data["biases"]]
        return data["sizes"], data["cost"], weights, biases

    sizes, cost, ws, bs = books_load(tmp_path / "net.json")
    assert sizes == [784, 12, 10] and cost == "CrossEntropyCost"
    assert all(np.array_equal(a, b) for a, b in zip(ws + bs, net.weights + net.biases))
    again = network2.load(tmp_path / "net.json")
    assert again.seed == 42
    del d["seed"]   # a file from the book: no seed, so one is drawn as for a new network
    (tmp_path / "book.json").write_text(json.dumps(d), encoding="utf-8")
    np.random.seed(0)
    s1 = network2.load(tmp_path / "book.json").seed
    np.random.seed(0)
    assert network2.load(tmp_path / "book.json").seed == s1
    d["seed"] = "zero"
    (tmp_path / "bad.json").write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(ValueError, match="seed: expected an int"):
        network2.load(tmp_path / "bad.json")


# ------------------------------------------------------------------ network2.save (item 12)

def test_network2_save_writes_json_whatever_the_name(tmp_path):
    net = network2.Network([784, 12, 10], seed=1)
    for name in ("net", "net.txt", "weights.v2"):
        net.save(tmp_path / name)
        assert (tmp_path / name).is_file()
        again = network2.load(tmp_path / name)
        assert all(np.array_equal(a, b) for a, b in zip(again.weights, net.weights))
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="is a directory; save writes a JSON file"):
        net.save(tmp_path / "folder")
    assert list((tmp_path / "folder").iterdir()) == []
    net.save_run(tmp_path / "run")             # a run directory when asked for one
    assert (tmp_path / "run" / "config.json").is_file()
    assert type(nn3.load(tmp_path / "run")) is network2.Network


# ------------------------------------------------------------------ settings kept (item 15)

def test_load_then_save_keeps_the_recorded_settings(tmp_path):
    x, y = _data(40)
    net = network2.Network([784, 10, 10], seed=11)
    net.large_weight_initializer()
    net.SGD((x, y), 2, 5, 0.25, lmbda=2.0, momentum=0.5)
    net.save_run(tmp_path / "a")
    first = RunDir.read_config(tmp_path / "a")
    assert first["sgd"]["eta"] == 0.25 and first["sgd"]["seed"] == 11
    nn3.load(tmp_path / "a").save_run(tmp_path / "b")
    second = RunDir.read_config(tmp_path / "b")
    assert second["sgd"] == first["sgd"] and second["init"] == first["init"] == "normal"
    loaded = nn3.load(tmp_path / "b")
    loaded.SGD((x, y), 1, 5, 0.125, lmbda=2.0, momentum=0.5)   # trained on: its own settings count
    loaded.save_run(tmp_path / "c")
    third = RunDir.read_config(tmp_path / "c")["sgd"]
    assert third["eta"] == 0.125 and third["epochs"] == 3 and third["seed"] == 11


@pytest.fixture
def tiny_run(tmp_path, monkeypatch):
    """A chapter-1 run made by session.start on 40 synthetic examples (no MNIST file needed)."""
    x, y = _data(60)
    monkeypatch.setattr(run_config, "load_splits", lambda config: ((x[:40], y[:40]), (x[40:50], y[40:50]),
                                                             (x[50:], y[50:])))
    config = run_config.make_config("ch1", epochs=1, eta=2.0, seed=5, limit=40)
    run, _, _ = session.start(config, tmp_path / "run")
    run.close()
    return tmp_path / "run"


def test_load_then_save_of_a_trained_run_keeps_preset_and_data(tiny_run, tmp_path):
    recorded = RunDir.read_config(tiny_run)
    net = nn3.load(tiny_run)
    assert net.seed == 5
    net.save_run(tmp_path / "again")
    again = RunDir.read_config(tmp_path / "again")
    for key in ("preset", "dataset", "data", "limit", "sgd", "style", "init", "spec"):
        assert again[key] == recorded[key], key


def test_resume_records_the_new_epoch_count(tiny_run):
    run, _, loop = session.resume(tiny_run, epochs=3)
    run.close()
    assert loop.epoch == 3
    assert RunDir.read_config(tiny_run)["sgd"]["epochs"] == 3
    run, _, loop = session.resume(tiny_run)        # and a later resume keeps to it
    run.close()
    assert loop.epoch == 3


def test_save_run_of_a_loaded_adam_run_resumes(tmp_path, monkeypatch):
    """A run trained by another optimiser, loaded and saved again, holds that optimiser's state."""
    x, y = _data(60)
    monkeypatch.setattr(run_config, "load_splits", lambda config: ((x[:40], y[:40]), (x[40:50], y[40:50]),
                                                             (x[50:], y[50:])))
    config = run_config.make_config("ch1", epochs=1, eta=0.01, seed=5, limit=40, optimizer="adam")
    run, _, _ = session.start(config, tmp_path / "run")
    run.close()
    nn3.load(tmp_path / "run").save_run(tmp_path / "again")
    run, _, loop = session.resume(tmp_path / "again", epochs=2)
    run.close()
    assert loop.epoch == 2
