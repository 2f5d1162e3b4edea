"""Tests of bench/'s numpy references: they agree with each other and with finite differences.

Synopsis::

    .venv/bin/python -m pytest tests/test_bench_refs.py -q
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import bench_mlp  # noqa: E402
from reference_network import BookNetwork  # noqa: E402
from reference_program import ProgramNetwork  # noqa: E402
from reference_vectorised import VectorisedNetwork  # noqa: E402

SIZES = [6, 5, 4, 3]  # two hidden layers, so the backward loop runs more than once


def _data(n, sizes=SIZES, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.random((n, sizes[0]))
    y = rng.integers(0, sizes[-1], n)
    return x, y, np.eye(sizes[-1])[y]


def _assert_params_close(p, q, tol=1e-10):
    for u, v in zip(p.weights + p.biases, q.weights + q.biases):
        assert u.shape == v.shape
        np.testing.assert_allclose(u, v, rtol=0, atol=tol)


def test_same_seed_same_parameters_in_the_book_layout():
    book, vec = BookNetwork(SIZES, seed=3), VectorisedNetwork(SIZES, seed=3)
    _assert_params_close(book, vec, tol=0)
    assert [w.shape for w in book.weights] == [(5, 6), (4, 5), (3, 4)]
    assert [b.shape for b in book.biases] == [(5, 1), (4, 1), (3, 1)]
    assert book.weights[0].dtype == np.float64
    assert not np.array_equal(book.weights[0], BookNetwork(SIZES, seed=4).weights[0])


def test_mini_batch_gradients_agree():
    book, vec = BookNetwork(SIZES, seed=0), VectorisedNetwork(SIZES, seed=0)
    x, _, y1h = _data(10)
    gb_book, gw_book = book.mini_batch_gradient(x, y1h)
    gb_vec, gw_vec = vec.mini_batch_gradient(x, y1h)
    for g, h in zip(gb_book + gw_book, gb_vec + gw_vec):
        assert g.shape == h.shape
        np.testing.assert_allclose(g, h, rtol=0, atol=1e-10)
    assert max(np.abs(g).max() for g in gw_book) > 1e-3  # not trivially zero


def test_update_mini_batch_agrees():
    book, vec = BookNetwork(SIZES, seed=0), VectorisedNetwork(SIZES, seed=0)
    x, _, y1h = _data(10)
    book.update_mini_batch(x, y1h, 3.0)
    vec.update_mini_batch(x, y1h, 3.0)
    _assert_params_close(book, vec)
    assert not np.allclose(book.weights[0], BookNetwork(SIZES, seed=0).weights[0])


@pytest.mark.parametrize("one_hot", [False, True])
def test_sgd_epoch_agrees_with_ragged_last_batch(one_hot):
    book, vec = BookNetwork(SIZES, seed=0), VectorisedNetwork(SIZES, seed=0)
    x, y, y1h = _data(53)
    target = y1h if one_hot else y
    for _ in range(2):
        book.sgd_epoch(x, target, 10, 3.0, np.random.default_rng(7))
        vec.sgd_epoch(x, target, 10, 3.0, np.random.default_rng(7))
    _assert_params_close(book, vec)


def test_program_shaped_reference_takes_the_books_pairs_and_gives_the_same_numbers():
    x, y, y1h = _data(53)
    pairs = ProgramNetwork.pairs(x, y, SIZES[-1])
    assert len(pairs) == 53 and pairs[0][0].shape == (6, 1) and pairs[0][1].shape == (3, 1)
    assert pairs[0][1].dtype == np.float64 and pairs[0][1][y[0], 0] == 1.0 and pairs[0][1].sum() == 1.0
    prog, book = ProgramNetwork(SIZES, seed=0), BookNetwork(SIZES, seed=0)
    for _ in range(2):
        prog.sgd_epoch(pairs, None, 10, 3.0, np.random.default_rng(7))
        book.sgd_epoch(x, y, 10, 3.0, np.random.default_rng(7))
    _assert_params_close(prog, book, tol=1e-12)
    rows = ProgramNetwork(SIZES, seed=0)
    rows.sgd_epoch(x, y1h, 10, 3.0, np.random.default_rng(7))
    assert not np.allclose(rows.weights[0], ProgramNetwork(SIZES, seed=0).weights[0])
    gb, gw = ProgramNetwork(SIZES, seed=0).mini_batch_gradient(x[:10], y1h[:10])
    hb, hw = BookNetwork(SIZES, seed=0).mini_batch_gradient(x[:10], y1h[:10])
    for g, h in zip(gb + gw, hb + hw):
        np.testing.assert_allclose(g, h, rtol=0, atol=1e-12)


def test_sgd_epoch_shuffles_with_the_given_rng():
    x, y, _ = _data(40)
    nets = [BookNetwork(SIZES, seed=0) for _ in range(3)]
    for net, seed in zip(nets, [7, 7, 8]):
        net.sgd_epoch(x, y, 10, 3.0, np.random.default_rng(seed))
    _assert_params_close(nets[0], nets[1], tol=0)
    assert not np.allclose(nets[0].weights[0], nets[2].weights[0])


def test_feedforward_and_evaluate_agree():
    book, vec = BookNetwork(SIZES, seed=2), VectorisedNetwork(SIZES, seed=2)
    x, y, _ = _data(30)
    np.testing.assert_allclose(book.feedforward(x[0].reshape(-1, 1)).ravel(),
                               vec.feedforward(x[:1]).ravel(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(book.feedforward(x.T).T, vec.feedforward(x), rtol=0, atol=1e-12)
    expected = int(np.sum(np.argmax(vec.feedforward(x), axis=1) == y))
    assert book.evaluate(x, y) == vec.evaluate(x, y) == expected


def test_backprop_matches_finite_differences():
    net = BookNetwork([3, 4, 2], seed=5)
    x = np.array([[0.2], [0.7], [0.4]])
    y = np.array([[0.0], [1.0]])

    def cost():
        return 0.5 * float(np.sum((net.feedforward(x) - y) ** 2))

    nabla_b, nabla_w = net.backprop(x, y)
    eps = 1e-6
    for params, grads in ((net.weights, nabla_w), (net.biases, nabla_b)):
        for p, g in zip(params, grads):
            assert g.shape == p.shape
            numeric = np.zeros_like(p)
            for i in np.ndindex(p.shape):
                keep = p[i]
                p[i] = keep + eps
                up = cost()
                p[i] = keep - eps
                down = cost()
                p[i] = keep
                numeric[i] = (up - down) / (2 * eps)
            np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-9)


def test_float32_option_trains_in_float32():
    net = VectorisedNetwork(SIZES, seed=0, dtype=np.float32)
    x, y, _ = _data(20)
    net.sgd_epoch(x.astype(np.float32), y, 10, 3.0, np.random.default_rng(0))
    assert all(w.dtype == np.float32 for w in net.weights + net.biases)


@pytest.mark.parametrize("cls", [BookNetwork, VectorisedNetwork])
def test_bad_input_raises_one_line_value_error(cls):
    with pytest.raises(ValueError, match=f"{cls.__name__}: sizes"):
        cls([784], seed=0)
    net = cls(SIZES, seed=0)
    x, y, _ = _data(10)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="x must be"):
        net.sgd_epoch(x[:, :4], y, 10, 3.0, rng)
    with pytest.raises(ValueError, match="labels must lie"):
        net.sgd_epoch(x, y + 3, 10, 3.0, rng)
    with pytest.raises(ValueError, match="rows"):
        net.evaluate(x, y[:5])
    with pytest.raises(ValueError, match="mini_batch_size"):
        net.sgd_epoch(x, y, 0, 3.0, rng)


def test_mnist_reader_refuses_a_file_with_the_wrong_hash(tmp_path):
    bad = tmp_path / "mnist.pkl.gz"
    bad.write_bytes(b"not the book's file")
    with pytest.raises(ValueError, match="SHA-256"):
        bench_mlp.read_mnist_pickle(tmp_path)
    with pytest.raises(FileNotFoundError):
        bench_mlp.read_mnist_pickle(tmp_path / "missing.pkl.gz")


def _args(**kw):
    return bench_mlp.parse_args(["--epochs", "2", "--ref-subset", "20", "--no-nn3"] + [
        f"--{k}={v}" for k, v in kw.items()])


def test_bench_rows_and_ratios_on_synthetic_data(capsys):
    x, y, _ = _data(60, sizes=[8, 5, 3])
    res = bench_mlp.bench_one([8, 5, 3], (x, y, x[:10], y[:10]), _args())
    a, b = res["a_book_per_example"], res["b_vectorised"]
    assert a["scaled_from"] == 20 and b["train_images"] == 60
    assert a["s_per_epoch"] == pytest.approx(a["measured_s_per_epoch"] * 3)
    assert len(a["rounds_s"]) == 3 and a["s_per_epoch"] == min(a["rounds_s"])  # the fastest of --rounds
    bench_mlp.print_table(res, _args())
    out = capsys.readouterr().out
    assert "nn3: not available yet" in out and "(a) network.py-shaped numpy" in out
    assert res["a_lean_per_example"]["scaled_from"] == 20 and "(a') lean per-example numpy" in out


def test_time_nn3_through_a_stand_in_facade(monkeypatch, capsys):
    class StandIn:  # the façade's API: Network(sizes, seed).SGD(data, epochs, m, eta, test_data)
        def __init__(self, sizes, seed=0):
            self.net = VectorisedNetwork(sizes, seed=seed)
            self.epochs_run = 0

        def SGD(self, training_data, epochs, mini_batch_size, eta, test_data=None):  # noqa: N802
            for j in range(epochs):
                self.net.sgd_epoch(*training_data, mini_batch_size, eta, np.random.default_rng(j))
                self.epochs_run += 1
                print(f"Epoch {j} complete")

        def feedforward(self, a):
            return self.net.feedforward(a.T).T

        def evaluate(self, test_data):
            return self.net.evaluate(*test_data)

    network = types.ModuleType("nn3.network")
    network.Network = StandIn
    package = types.ModuleType("nn3")
    package.network = network
    monkeypatch.setitem(sys.modules, "nn3", package)
    monkeypatch.setitem(sys.modules, "nn3.network", network)
    x, y, _ = _data(40, sizes=[8, 5, 3])
    r = bench_mlp.time_nn3([8, 5, 3], x.astype(np.float32), y, x[:10], y[:10], _args())
    assert r["available"] and r["epochs"] == 2 and r["s_per_epoch"] > 0
    assert r["compile_s"] == pytest.approx(r["first_call_s"] - r["s_per_epoch"])
    assert 0 <= r["test_correct"] <= 10
    assert "Epoch" not in capsys.readouterr().out  # the façade's lines are kept out of the table


def test_bench_main_on_a_slice_of_real_mnist(tmp_path, real_mnist):
    out = tmp_path / "mlp.json"
    report = bench_mlp.main(["--sizes", "784,30,10", "--limit", "200", "--ref-subset", "50",
                             "--no-nn3", "--data", str(real_mnist), "--json", str(out)])
    assert out.is_file()
    res = report["results"][0]
    assert res["train_images"] == 200 and res["test_images"] == 10000
    assert res["a_book_per_example"]["s_per_epoch"] > 0 and not res["nn3"]["available"]
