"""Every module's opening synopsis runs as written (steps that train or write big files are +SKIP)."""
import doctest
import importlib

import pytest

MODULES = ["spec", "activations", "costs", "optim", "layers", "conv", "augment", "evaluation", "train", "presets",
           "export", "bundle", "files", "metrics", "rundir", "ensemble", "runs", "facade", "saved", "plots", "booktable", "bookreport", "book",
           "cli"]
NEED_DATA = ["data", "mnist_loader", "network", "network2", "network3"]


def _run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(f"nn3.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


@pytest.mark.parametrize("name", MODULES)
def test_synopsis_runs(name, tmp_path, monkeypatch):
    _run(name, tmp_path, monkeypatch)


@pytest.mark.parametrize("name", NEED_DATA)
def test_synopsis_with_data_runs(name, tmp_path, monkeypatch, real_mnist):
    monkeypatch.setenv("NN3_DATA_DIR", str(real_mnist))   # _run moves to tmp_path, away from ./data
    _run(name, tmp_path, monkeypatch)
