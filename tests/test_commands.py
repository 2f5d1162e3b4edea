"""The commands around training, on synthetic MNIST-shaped data: import, evaluate, export,
train --config, replay --predict, --help, --version, presets, plot.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_commands.py -q

Two synthetic data sets in the IDX layout (random pixels, labels from different seeds):
``$NN3_DATA_DIR`` points at one, and runs that must use their own data are given the
other with ``--data``. Everything goes through ``nn3.cli.main(argv)``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from nn3 import cli
from nn3.runs import checkpoint
from nn3.store import data, export
from nn3.engine import layers
from nn3.engine.train import Loop
from nn3.runs import presets
from nn3.engine.spec import mlp_spec

LIMIT = ["--limit", "100", "--quiet"]  # 10 mini-batches of 10 per epoch


def _write_idx(path: Path, arr: np.ndarray) -> None:
    path.write_bytes(b"\0\0\x08" + bytes([arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes())


def _synthetic(folder: Path, seed: int) -> Path:
    """The four MNIST IDX files (60000 + 10000 images) with random pixels and labels."""
    folder.mkdir()
    r = np.random.default_rng(seed)
    for split, n in (("train", 60_000), ("t10k", 10_000)):
        _write_idx(folder / f"{split}-images-idx3-ubyte", r.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        _write_idx(folder / f"{split}-labels-idx1-ubyte", r.integers(0, 10, n, dtype=np.uint8))
    return folder


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """(the default data set's folder, another one's)."""
    base = tmp_path_factory.mktemp("data")
    return _synthetic(base / "default", 1), _synthetic(base / "other", 2)


@pytest.fixture(autouse=True)
def _env(datasets, monkeypatch):
    monkeypatch.setenv("NN3_DATA_DIR", str(datasets[0]))
    monkeypatch.setenv("NN3_DATA_CACHE", "")  # no decoded copies on disk


def nn3(capsys, *argv):
    """(exit code, stdout, stderr lines) of ``nn3 ARGV``."""
    capsys.readouterr()
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


def _json_net(path, spec, mini_batch_size=None):
    net = layers.build(spec, seed=5)
    export.save_json(path, spec, layers.get_params(net), mini_batch_size)
    return path


def _config(run):
    return json.loads((Path(run) / "config.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def ch1_run(tmp_path_factory, datasets):
    """A two-epoch ch1 run on the first 100 examples of the default data set."""
    d = tmp_path_factory.mktemp("ch1") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NN3_DATA_DIR", str(datasets[0]))
        mp.setenv("NN3_DATA_CACHE", "")
        assert cli.main(["train", "ch1", "--epochs", "2", "--run", str(d), *LIMIT]) == 0
    return d


# ------------------------------------------------------------------ item 13: import


def test_import_trains_a_chapter1_net_with_chapter1_settings(capsys, tmp_path):
    src = _json_net(tmp_path / "ch1.json", mlp_spec([784, 30, 10], "QuadraticCost"))
    code, out, err = nn3(capsys, "import", src, "--run", tmp_path / "r", "--epochs", "1", *LIMIT)
    assert code == 0, err
    sgd = _config(tmp_path / "r")["sgd"]
    assert sgd["eta"] == 3.0 and sgd.get("lmbda", 0.0) == 0.0 and sgd["epochs"] == 1
    lines = out.splitlines()
    assert "preset ch1" in lines[0] and "--epochs" in lines[0]
    assert lines[1].startswith("settings: epochs 1, mini-batch 10, eta 3, lmbda 0,")
    assert "Epoch 0: " in out  # network.py's lines, as ch1 prints them


def test_import_of_a_net_no_preset_has_uses_plain_settings(capsys, tmp_path):
    src = _json_net(tmp_path / "n.json", mlp_spec([784, 20, 10], "CrossEntropyCost"))
    code, out, err = nn3(capsys, "import", src, "--run", tmp_path / "r", "--epochs", "1", *LIMIT)
    assert code == 0, err
    sgd = _config(tmp_path / "r")["sgd"]
    assert sgd["eta"] == 0.5 and sgd["lmbda"] == 0.0
    assert "a network no preset has" in out and "eta 0.5, lmbda 0," in out


def test_import_trains_a_basic_conv_net_with_its_own_settings(capsys, tmp_path):
    spec = presets.with_mini_batch(presets.get("basic_conv").spec, 10)
    src = _json_net(tmp_path / "c.json", spec, 10)
    code, out, err = nn3(capsys, "import", src, "--run", tmp_path / "r", "--epochs", "1", "--limit", "20",
                         "--quiet")
    assert code == 0, err
    sgd = _config(tmp_path / "r")["sgd"]
    assert sgd["eta"] == 0.1 and sgd.get("lmbda", 0.0) == 0.0  # not dbl_conv_relu's 0.03, 0.1
    assert "preset basic_conv" in out


def test_import_takes_the_training_flags(capsys, tmp_path, datasets):
    src = _json_net(tmp_path / "ch1.json", mlp_spec([784, 30, 10], "QuadraticCost"))
    code, out, err = nn3(capsys, "import", src, "--run", tmp_path / "r", "--epochs", "1", "--eta", "1.5",
                         "--lmbda", "0.25", "--mini-batch", "5", "--seed", "3", "--monitor", "training_accuracy",
                         "--data", datasets[1], *LIMIT)
    assert code == 0, err
    config = _config(tmp_path / "r")
    assert {k: config["sgd"][k] for k in ("epochs", "eta", "lmbda", "mini_batch_size", "seed")} == \
        {"epochs": 1, "eta": 1.5, "lmbda": 0.25, "mini_batch_size": 5, "seed": 3}
    assert config["monitor"] == ["training_accuracy"] and config["data"] == str(datasets[1])
    assert "Accuracy on training data: " in out and "settings: epochs 1, mini-batch 5, eta 1.5, lmbda 0.25" in out


def test_train_and_import_share_their_training_flags():
    sub = _subparsers()
    def flags(name):
        return {a.dest: (a.help, a.type, a.choices) for a in sub[name]._actions if a.option_strings}
    train, imp = flags("train"), flags("import")
    assert set(train) - set(imp) == {"config"}
    assert set(imp) - set(train) == set()
    for dest in (set(train) & set(imp)) - {"help", "run"}:
        assert train[dest][1:] == imp[dest][1:], dest  # the same types and choices


# ------------------------------------------------------------------ item 14


def test_evaluate_takes_validation_as_replay_does(capsys, tmp_path, datasets):
    src = _json_net(tmp_path / "n.json", mlp_spec([784, 30, 10]))
    code, out, err = nn3(capsys, "evaluate", src, "--data", "validation")
    assert code == 0, err
    assert "validation accuracy" in out and "/ 10000)" in out
    net = layers.build(mlp_spec([784, 30, 10]), seed=5)
    from nn3.engine import evaluation
    right, _, n = evaluation.evaluate(net, data.load_data(cache=False)[1])
    assert f"({right} / {n})" in out
    code, out, err = nn3(capsys, "evaluate", src, "--data", datasets[1])
    assert code == 0 and f"{datasets[1]} test accuracy" in out, err


def test_export_into_a_directory_is_one_clear_line(capsys, ch1_run, tmp_path):
    code, out, err = nn3(capsys, "export", ch1_run, tmp_path)
    assert code == 1 and len(err) == 1 and "is a directory" in err[0] and ".tmp" not in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_save_json_names_the_file_not_its_temporary(tmp_path):
    spec = mlp_spec([784, 3, 10])
    with pytest.raises(export.ExportError) as e:
        export.save_json(tmp_path, spec, layers.get_params(layers.build(spec)))
    assert str(e.value).startswith(f"{tmp_path}: cannot write") and ".tmp" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_to_overwrite_unless_forced(capsys, ch1_run, tmp_path):
    out_json = tmp_path / "net.json"
    out_json.write_text("mine", encoding="utf-8")
    code, out, err = nn3(capsys, "export", ch1_run, out_json)
    assert code == 1 and err == [f"nn3: error: {out_json}: exists; pass --force to replace it"]
    assert out_json.read_text(encoding="utf-8") == "mine"
    code, out, err = nn3(capsys, "export", ch1_run, out_json, "--force")
    assert code == 0, err
    assert json.loads(out_json.read_text(encoding="utf-8"))["sizes"] == [784, 30, 10]


def test_train_config_takes_a_run_directory(capsys, ch1_run, tmp_path):
    code, out, err = nn3(capsys, "train", "--config", ch1_run, "--run", tmp_path / "again", "--quiet")
    assert code == 0, err
    assert (tmp_path / "again" / "metrics.jsonl").read_text(encoding="utf-8") == (ch1_run / "metrics.jsonl").read_text(encoding="utf-8")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = nn3(capsys, "train", "--config", empty, "--run", tmp_path / "r")
    assert code == 1 and err == [f"nn3: error: {empty}: a directory without config.json; "
                                 f"give a run directory or a config.json"]


def test_replay_predicts_on_the_runs_own_data(capsys, tmp_path, datasets):
    run = tmp_path / "run"
    code, out, err = nn3(capsys, "train", "ch1", "--epochs", "1", "--run", run, "--data", datasets[1], *LIMIT)
    assert code == 0, err
    for which, split in (("test", 2), ("validation", 1)):
        code, out, err = nn3(capsys, "replay", run, "--data", which, "--predict", "12")
        assert code == 0, err
        labels = data.load_data(datasets[1], cache=False)[split][1][:12]
        default = data.load_data(cache=False)[split][1][:12]
        assert not np.array_equal(labels, default)  # the two data sets tell apart
        assert f"labels:    {' '.join(map(str, labels))}" in out.splitlines()


# ------------------------------------------------------------------ item 16


def _subparsers():
    return next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_option_says_what_it_does_and_its_default():
    for name, p in _subparsers().items():
        for a in p._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            assert a.help, (name, a.dest)
            if a.option_strings:
                assert "default" in a.help or a.required, (name, a.option_strings, a.help)


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("nn3 0.")


def test_presets_show_their_settings(capsys):
    code, out, _ = nn3(capsys, "presets")
    rows = {line.split()[0]: line.split() for line in out.splitlines()}
    assert rows["name"][1:5] == ["epochs", "eta", "lmbda", "data"]
    assert rows["ch3"][1:5] == ["30", "0.5", "5", "mnist"]
    assert rows["dbl_conv_relu"][1:4] == ["60", "0.03", "0.1"]
    assert rows["expanded"][4:7] == ["mnist,", "expanded", "on"]


def _png_title(path):
    from PIL import Image
    with Image.open(path) as im:
        return im.text.get("Title", "")


def test_plot_says_which_epoch_the_misclassified_digits_come_from(capsys, ch1_run, tmp_path):
    pytest.importorskip("matplotlib")
    code, out, err = nn3(capsys, "plot", ch1_run, "--out", tmp_path)
    assert code == 0, err
    assert "after epoch 1 (step 20)" in out and "no training accuracy: --monitor training_accuracy" in out
    assert _png_title(tmp_path / "misclassified.png").endswith("the network after epoch 1 (step 20)")


def test_a_checkpoint_saved_mid_epoch_is_named_so():
    from nn3.engine import train
    assert checkpoint.position(Loop(epoch=2, batch=3, step=23)) == "in epoch 2, after mini-batch 3"
    assert checkpoint.position(Loop(epoch=2, batch=0, step=20)) == "after epoch 1"


def test_train_monitors_training_accuracy(capsys, tmp_path):
    code, out, err = nn3(capsys, "train", "ch3", "--epochs", "2", "--run", tmp_path / "r", "--monitor",
                         "training_accuracy", *LIMIT)
    assert code == 0, err
    records = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["training_n"] for r in records] == [100, 100]
    assert out.count("Accuracy on training data: ") == 2
    if importlib.util.find_spec("matplotlib"):
        code, out, err = nn3(capsys, "plot", tmp_path / "r", "--out", tmp_path / "png")
        assert code == 0 and "no training accuracy" not in out, err
