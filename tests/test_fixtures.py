"""The tests' own data: the real MNIST found where nn3 finds it, and the synthetic set.

    python -m pytest tests/test_fixtures.py -q
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from nn3.store import data

ROOT = Path(__file__).resolve().parents[1]


def test_synthetic_set_is_mnist_shaped_and_learnable(synthetic_mnist):
    splits = data.load_data(synthetic_mnist.path)   # as --data PATH reads it
    assert [len(x) for x, _ in splits] == list(synthetic_mnist.sizes)
    for x, y in splits:
        assert x.shape[1:] == (784,) and x.dtype == np.float32 and y.dtype == np.int64
        k = x * 256
        np.testing.assert_array_equal(k, np.round(k))                    # pixels are k/256
        assert k.max() == 255 and (x == 0).mean() > 0.5                   # black background
        assert set(np.unique(y)) == set(range(10))
    (tx, ty), _, (ex, ey) = splits
    w = np.linalg.lstsq(np.c_[tx, np.ones(len(tx))], np.eye(10)[ty], rcond=None)[0]
    assert (np.argmax(np.c_[ex, np.ones(len(ex))] @ w, axis=1) == ey).mean() > 0.8   # chance: 0.1


def test_synthetic_as_default_is_what_nn3_finds(synthetic_as_default):
    assert data.find_source().files == (synthetic_as_default.path,)
    assert [len(x) for x, _ in data.load_data()] == list(synthetic_as_default.sizes)


def test_real_data_in_dot_data_is_found_as_nn3_finds_it(real_mnist, tmp_path):
    """The README's test command from a folder whose ./data holds the book's file, with no
    $NN3_DATA_DIR: the real-data tests run (a skip here was the old NN3_DATA_DIR-only lookup)."""
    (tmp_path / "data").mkdir()
    shutil.copyfile(real_mnist / "mnist.pkl.gz", tmp_path / "data" / "mnist.pkl.gz")
    env = {k: v for k, v in os.environ.items() if k != "NN3_DATA_DIR"}
    env["PYTHONPATH"] = str(ROOT)
    test = f"{ROOT / 'tests' / 'test_data.py'}::test_real_mnist"
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", test],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "1 passed" in out.stdout and "skipped" not in out.stdout, out.stdout[-2000:]
