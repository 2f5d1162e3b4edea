"""Every module's opening synopsis runs as written (steps that train or write big files are +SKIP)."""
import doctest
import importlib
import pkgutil

import pytest

import nn3

NEED_DATA = ["nn3.store.data", "nn3.mnist_loader", "nn3.network", "nn3.network2", "nn3.network3"]
MODULES = sorted(m.name for m in pkgutil.walk_packages(nn3.__path__, "nn3.")
                 if m.name not in NEED_DATA and m.name != "nn3.__main__")


def _run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_every_module_opens_with_a_synopsis():
    bare = [name for name in MODULES + NEED_DATA
            if ">>>" not in (importlib.import_module(name).__doc__ or "") and "$ " not in (importlib.import_module(name).__doc__ or "")]
    assert not bare, f"modules without a synopsis: {bare}"


@pytest.mark.parametrize("name", MODULES)
def test_synopsis_runs(name, tmp_path, monkeypatch):
    _run(name, tmp_path, monkeypatch)


@pytest.mark.parametrize("name", NEED_DATA)
def test_synopsis_with_data_runs(name, tmp_path, monkeypatch, real_mnist):
    monkeypatch.setenv("NN3_DATA_DIR", str(real_mnist))   # _run moves to tmp_path, away from ./data
    _run(name, tmp_path, monkeypatch)
