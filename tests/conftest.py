"""Shared test setup: strict rank promotion, where the real MNIST is, small synthetic data
sets, and the runs that more than one test file reads (trained once a session).

    PYTHONPATH=. .venv/bin/python -m pytest tests -q                   # all; real-data tests if MNIST is found
    PYTHONPATH=. .venv/bin/python -m pytest tests -q -m "not mnist"    # only what needs no real digits

``jax_numpy_rank_promotion="raise"`` is switched on at import, before any test traces
anything: an implicit broadcast of a lower-rank array anywhere in the engine fails a test.
The house rule behind it: strictness that makes a mistake fail early rather than pass
quietly. An array that meets one of higher rank is reshaped on purpose (``b[None, :]``), so
a column met where a row was meant is an error, not a silently wrong (n, n) sum.

Real data is found the way nn3 finds it from where pytest starts ($NN3_DATA_DIR, then
./data): a test that asks for ``real_mnist`` is marked ``mnist``, and every ``mnist`` test
is skipped, saying where nn3 looked, when there is none. Everything else runs on data the
tests make: ``synthetic_mnist`` is a small MNIST-shaped set in the book's pickle format,
for the CLI and runs (``nn3 train ch1 --data PATH``, in this process or a subprocess).
"""
from __future__ import annotations

import gzip
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
# The CLI's compile cache is opt-in; tests run without it (test_cli checks it on its own).
os.environ.pop("NN3_CACHE_DIR", None)


import numpy as np  # noqa: E402
import pytest  # noqa: E402

from nn3.store import data, sources  # noqa: E402


def _find_real_mnist() -> tuple[Path | None, str]:
    """(the folder of the mnist.pkl.gz that nn3's search finds, absolute; or None and why not).

    The real-data tests check the book's file itself (its size, its hash), so MNIST's IDX
    files, which nn3 also reads, do not count here."""
    try:
        source = data.find_source()
    except data.DataError as e:
        return None, str(e)
    if source.kind != "pickle":
        return None, f"nn3 finds the IDX files in {source.files[0].parent}, not the book's {data.PICKLE_NAME}"
    return source.files[0].parent, ""


REAL_MNIST, NO_REAL_MNIST = _find_real_mnist()   # from pytest's starting folder, once


@pytest.hookimpl(tryfirst=True)   # before -m selects by marker
def pytest_collection_modifyitems(items):
    for item in items:
        if "real_mnist" in item.fixturenames:
            item.add_marker(pytest.mark.mnist)
        if REAL_MNIST is None and item.get_closest_marker("mnist"):
            item.add_marker(pytest.mark.skip(reason=f"needs the real MNIST: {NO_REAL_MNIST}"))


@pytest.fixture(scope="session")
def real_mnist() -> Path:
    """The folder where nn3 finds the real MNIST ($NN3_DATA_DIR, then ./data, from where
    pytest started), absolute: a test that changes folder or starts a process sets
    $NN3_DATA_DIR to it. Asking for it marks the test ``mnist`` (skipped without data)."""
    return REAL_MNIST


@dataclass(frozen=True)
class Synthetic:
    """A data set the tests made: ``path`` is its mnist.pkl.gz, ``sizes`` its splits' lengths."""
    path: Path
    sizes: tuple[int, int, int]


SYNTHETIC_SIZES = (1000, 200, 200)   # training, validation, test


def synthetic_splits(sizes=SYNTHETIC_SIZES, seed=0):
    """((x, y), (x, y), (x, y)) shaped like the book's MNIST: x float32 (N, 784) of k/256,
    y int64 (N,) in 0..9. Each label has its own pattern of three soft blobs; an example is
    its label's pattern moved up to two pixels, at some contrast, over sparse specks: a linear
    least-squares classifier gets 88% of the test split right; chance is 10%."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:28, 0:28]
    patterns = np.zeros((10, 28, 28))
    for digit in range(10):
        for cy, cx, sy, sx in zip(*rng.uniform(6, 22, (2, 3)), *rng.uniform(1.5, 5, (2, 3))):
            patterns[digit] += np.exp(-((rows - cy) / sy) ** 2 - ((cols - cx) / sx) ** 2)
    patterns = np.minimum(patterns, 1)
    splits = []
    for n in sizes:
        y = rng.integers(0, 10, n)
        dy, dx = rng.integers(-2, 3, (2, n))
        img = np.stack([np.roll(patterns[d], (a, b), (0, 1)) for d, a, b in zip(y, dy, dx)])
        specks = rng.uniform(0, 0.6, img.shape) * (rng.random(img.shape) < 0.1)
        img = img * rng.uniform(0.5, 1.0, (n, 1, 1)) + specks
        img[img < 0.15] = 0   # a black background, as in MNIST
        k = np.minimum(np.floor(img * 256), 255)   # the book's pixels are k/256, k in 0..255
        splits.append(((k / 256).reshape(n, 784).astype(np.float32), y.astype(np.int64)))
    return tuple(splits)


@pytest.fixture(scope="session")
def synthetic_mnist(tmp_path_factory) -> Synthetic:
    """A small MNIST-shaped set (SYNTHETIC_SIZES) written as the book's mnist.pkl.gz
    (gzip'd pickle, protocol 2) in a folder of its own. Give its path to the product:
    ``nn3 train ch1 --data PATH``, ``run_config.make_config(..., data_path=PATH)``, ``load_data(PATH)``."""
    path = tmp_path_factory.mktemp("synthetic") / data.PICKLE_NAME
    with gzip.open(path, "wb", compresslevel=1) as f:
        pickle.dump(synthetic_splits(), f, protocol=2)
    return Synthetic(path, SYNTHETIC_SIZES)


@pytest.fixture
def synthetic_as_default(synthetic_mnist, monkeypatch) -> Synthetic:
    """The synthetic set as the data nn3 finds by itself, in this process only: for commands
    that take no --data. $NN3_DATA_DIR points at its folder and its sizes count as standard."""
    monkeypatch.setenv("NN3_DATA_DIR", str(synthetic_mnist.path.parent))
    monkeypatch.setattr(sources, "STANDARD_SIZES", synthetic_mnist.sizes)
    return synthetic_mnist


# ------------------------------------------------------------------ runs trained once a session
# A run that more than one test file needs is trained here, once: a test that changes a run
# (resumes it, damages it) copies it first (``run_copy`` or shutil.copytree).


@pytest.fixture(scope="session")
def base_run(tmp_path_factory, synthetic_mnist) -> Path:
    """``nn3 train ch1 --epochs 2 --limit 300`` on synthetic_mnist: steps 30 and 60 (30
    mini-batches of 10 an epoch), 200 validation and test images. Read it; copy it to change it."""
    from nn3 import cli
    d = tmp_path_factory.mktemp("base") / "run"
    argv = ["train", "ch1", "--epochs", "2", "--limit", "300", "--run", str(d),
            "--data", str(synthetic_mnist.path), "--quiet"]
    assert cli.main(argv) == 0
    return d


@pytest.fixture
def run_copy(base_run, tmp_path) -> Path:
    """A copy of base_run of this test's own, to change."""
    d = tmp_path / "run"
    shutil.copytree(base_run, d)
    return d


@pytest.fixture(scope="session")
def shallow_real_run(tmp_path_factory, real_mnist) -> Path:
    """The preset ``shallow``, one epoch on the first 300 real training images (the data nn3
    finds). Asking for it marks a test ``mnist``. Read it; copy it to change it."""
    from nn3.runs import config as run_config, session
    d = tmp_path_factory.mktemp("shallow") / "run"
    run, _, _ = session.start(run_config.make_config("shallow", epochs=1, limit=300), d)
    run.close()
    return d


@pytest.fixture
def tiny_data():
    """60 examples of 8 features in [0, 1), labels 0..2: (x (60, 8) float32, y (60,) int)."""
    r = np.random.default_rng(1)
    return r.random((60, 8), dtype=np.float32), r.integers(0, 3, 60)


@pytest.fixture
def mnist_like():
    """60 MNIST-shaped examples: (x (60, 784) float32 in [0, 1), y (60,) int in 0..9)."""
    r = np.random.default_rng(2)
    return r.random((60, 784), dtype=np.float32), r.integers(0, 10, 60)


@pytest.fixture
def small_conv_spec():
    """A network3-shaped net small enough for unit tests: 8x8 image -> 6x6 -> 3x3 x 2 maps."""
    return {"layers": [
        {"type": "ConvPoolLayer", "filter_shape": [2, 1, 3, 3], "image_shape": [4, 1, 8, 8],
         "poolsize": [2, 2], "activation_fn": "tanh"},
        {"type": "FullyConnectedLayer", "n_in": 18, "n_out": 5, "activation_fn": "tanh", "p_dropout": 0.0},
        {"type": "SoftmaxLayer", "n_in": 5, "n_out": 3, "p_dropout": 0.0}],
        "cost": "LogLikelihoodCost"}


@pytest.fixture(scope="session", autouse=True)
def _array_cache(tmp_path_factory):
    """Decoded data sets go to a throwaway folder, not the user's ~/.cache."""
    os.environ["NN3_DATA_CACHE"] = str(tmp_path_factory.mktemp("arrays"))
