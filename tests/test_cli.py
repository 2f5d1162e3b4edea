"""The ``nn3`` command end to end on the tests' small MNIST-shaped set, and how it fails.

    .venv/bin/python -m pytest tests/test_cli.py -q

Everything goes through ``nn3.cli.main(argv)`` in this process (one compile per shape),
with stdout/stderr captured: train -> resume -> replay -> export -> import -> evaluate;
damaged checkpoints; refusals; a diverging run. The data is conftest's synthetic_mnist
(``--data PATH``); none of it needs the real digits.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from nn3 import cli
from nn3.store import metrics
from nn3.runs import presets

LIMIT = ["--limit", "300", "--quiet"]  # 30 mini-batches of 10 per epoch; 200 validation and test images


def nn3(capsys, *argv):
    """(exit code, stdout, stderr lines) of ``nn3 ARGV``."""
    capsys.readouterr()
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


def steps(run_dir):
    return sorted(int(d.name) for d in Path(run_dir).iterdir() if d.is_dir() and d.name.isdigit())


@pytest.fixture(scope="module")
def data_args(synthetic_mnist):
    return ["--data", str(synthetic_mnist.path)]


def test_pipeline(capsys, tmp_path, data_args, synthetic_as_default):
    d, d2, out_json = tmp_path / "run", tmp_path / "imported", tmp_path / "net.json"
    code, out, err = nn3(capsys, "train", "ch1", "--epochs", "2", "--run", d, *data_args, *LIMIT)
    assert code == 0, err
    assert "Epoch 0: " in out and "Epoch 1: " in out and "/ 200" in out
    assert (d / "config.json").is_file() and steps(d) == [30, 60]
    assert len((d / "metrics.jsonl").read_text(encoding="utf-8").splitlines()) == 2
    code, out, err = nn3(capsys, "resume", d, "--epochs", "3", "--quiet")
    assert code == 0, err
    assert "Epoch 2: " in out and "Epoch 1: " not in out and steps(d)[-1] == 90
    assert [json.loads(x)["epoch"] for x in (d / "metrics.jsonl").read_text(encoding="utf-8").splitlines()] == [0, 1, 2]
    for how in (["--best"], ["--step", "60"], []):
        code, out, err = nn3(capsys, "replay", d, *how)
        assert code == 0 and "equal" in out and "DIFFERENT" not in out, (how, out, err)
    correct = int(re.search(r"\((\d+) / 200\)", nn3(capsys, "replay", d)[1]).group(1))
    assert correct > 60, "3 epochs on 300 examples should beat chance (20 of 200) by far"
    assert "step 60" in nn3(capsys, "replay", d, "--step", "60")[1]
    code, out, err = nn3(capsys, "replay", d, "--data", "validation", "--predict", "5")
    assert code == 0 and "predicted: " in out and "labels: " in out
    code, out, err = nn3(capsys, "export", d, out_json)
    assert code == 0 and out_json.is_file() and set(json.loads(out_json.read_text(encoding="utf-8"))) >= {"sizes", "weights"}
    code, out, err = nn3(capsys, "import", out_json, "--run", d2, "--epochs", "1", "--limit", "300")
    assert code == 0, err  # import has no --data: it trains on what nn3 finds (synthetic_as_default)
    assert steps(d2) == [30] and json.loads((d2 / "config.json").read_text(encoding="utf-8"))["imported_from"] == str(out_json)
    code, out, err = nn3(capsys, "evaluate", out_json, *data_args)
    assert code == 0 and "test accuracy" in out and "/ 200" in out, err


def test_presets_lists_the_book(capsys):
    code, out, _ = nn3(capsys, "presets")
    assert code == 0 and "ch1" in out and "dbl_conv_relu" in out


def _newest_state_files(run_dir):
    newest = Path(run_dir) / str(steps(run_dir)[-1]) / "state"
    return sorted((f for f in newest.rglob("*") if f.is_file() and f.parent.name == "d"),
                  key=lambda f: f.stat().st_size)


def _empty_step(d):
    shutil.rmtree(d / "60")
    (d / "60").mkdir()


def _truncate(d):
    for f in _newest_state_files(d):
        f.write_bytes(f.read_bytes()[:5])


def _flip_bit(d):
    big = _newest_state_files(d)[-1]  # the weights
    b = bytearray(big.read_bytes())
    b[len(b) // 2] ^= 0x10
    big.write_bytes(bytes(b))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # rundir.py: stray tensorstore reads
@pytest.mark.parametrize("damage", [_empty_step, _truncate, _flip_bit], ids=["emptied", "truncated", "bit-flip"])
def test_damaged_newest_step_falls_back_with_a_warning(capsys, run_copy, damage):
    damage(run_copy)
    code, out, err = nn3(capsys, "replay", run_copy)
    assert code == 0 and "step 30 " in out and "equal" in out
    assert len(err) == 1 and "warning" in err[0] and "step 60 is damaged" in err[0] and "using step 30" in err[0]


def test_resume_past_a_damaged_step(capsys, run_copy):
    _flip_bit(run_copy)
    code, out, err = nn3(capsys, "resume", run_copy, "--epochs", "2", "--quiet")
    assert code == 0 and len(err) == 1 and "step 60 is damaged" in err[0]
    assert "Epoch 1: " in out and steps(run_copy) == [30, 60]
    code, out, err = nn3(capsys, "replay", run_copy)  # step 60 trained again from 30: intact
    assert code == 0 and "step 60 " in out and err == []


def test_missing_and_foreign_directories(capsys, tmp_path):
    for where, why in ((tmp_path / "nothing", "no such run directory"), (tmp_path, "not an nn3 run directory")):
        for cmd in ("resume", "replay", "export"):
            extra = [tmp_path / "x.json"] if cmd == "export" else []
            code, _, err = nn3(capsys, cmd, where, *extra)
            assert code == 1 and len(err) == 1 and why in err[0] and str(where) in err[0], (cmd, err)


def test_train_refuses_an_existing_run(capsys, run_copy, data_args):
    before = {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file()}
    code, _, err = nn3(capsys, "train", "ch1", "--run", run_copy, *data_args, *LIMIT)
    assert code == 1 and len(err) == 1 and "already holds an nn3 run" in err[0]
    assert before == {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file()}


def test_resume_refuses_another_architecture(capsys, run_copy):
    cfg = json.loads((run_copy / "config.json").read_text(encoding="utf-8"))
    cfg["spec"] = presets.get("ch1_100").spec  # [784, 100, 10] instead of [784, 30, 10]
    (run_copy / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    code, _, err = nn3(capsys, "resume", run_copy, "--epochs", "3")
    assert code == 1 and len(err) == 1 and "different state structure" in err[0] and "architecture" in err[0]
    assert steps(run_copy) == [30, 60]


def test_divergence_keeps_the_last_good_epoch(capsys, tmp_path, data_args):
    d = tmp_path / "nan"  # ch3 with eta 300 survives epoch 0 on these 300 examples, not epoch 1
    code, out, err = nn3(capsys, "train", "ch3", "--eta", "300", "--epochs", "3", "--run", d, *data_args, *LIMIT)
    assert code == cli.EXIT_DIVERGED
    assert len(err) == 1 and "diverged" in err[0] and "epoch 1" in err[0] and "step 30" in err[0]
    assert steps(d) == [30]
    assert [json.loads(x)["epoch"] for x in (d / "metrics.jsonl").read_text(encoding="utf-8").splitlines()] == [0]
    code, out, _ = nn3(capsys, "replay", d, "--best")
    assert code == 0 and "step 30 " in out and "equal" in out


def test_divergence_in_the_first_epoch_keeps_the_first_weights(capsys, tmp_path, data_args):
    d = tmp_path / "nan0"
    code, out, err = nn3(capsys, "train", "ch3", "--eta", "1e6", "--epochs", "2", "--run", d, *data_args, *LIMIT)
    assert code == cli.EXIT_DIVERGED
    assert len(err) == 1 and "diverged" in err[0] and "step 0 holds the first weights" in err[0]
    assert steps(d) == [0]  # the stop reason, recorded: a resume does not train it again
    code, out, err = nn3(capsys, "replay", d)
    assert code == 0 and "step 0 (before the first epoch)" in out
    code, out, err = nn3(capsys, "resume", d, "--quiet")
    assert code == cli.EXIT_DIVERGED and steps(d) == [0] and metrics.read(d) == []


def test_replay_detects_a_tampered_record(capsys, run_copy):
    info = run_copy / "60" / "info" / "metadata"
    rec = json.loads(info.read_text(encoding="utf-8"))
    rec["test_accuracy"] = 0.999
    info.write_text(json.dumps(rec), encoding="utf-8")
    code, out, err = nn3(capsys, "replay", run_copy)
    assert code == 1 and "DIFFERENT" in out and "99.90%" in out


def test_resume_before_the_first_checkpoint_starts_over(capsys, tmp_path, base_run):
    """A run killed in its first epoch (config.json, no step) resumes from the start, the same run."""
    from nn3.store.rundir import RunDir
    d = tmp_path / "fresh"
    RunDir.create(d, json.loads((base_run / "config.json").read_text(encoding="utf-8"))).close()
    code, out, err = nn3(capsys, "resume", d, "--quiet")
    assert code == 0, err
    assert steps(d) == [30, 60]
    assert (d / "metrics.jsonl").read_text(encoding="utf-8") == (base_run / "metrics.jsonl").read_text(encoding="utf-8")


def test_plot_writes_three_pngs(capsys, tmp_path, synthetic_mnist):
    pytest.importorskip("matplotlib")
    d = tmp_path / "run"
    spec = presets.with_mini_batch(presets.get("basic_conv").spec, 10)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"preset": "basic_conv", "spec": spec, "data": str(synthetic_mnist.path),
                                  "sgd": dict(presets.get("basic_conv").sgd, epochs=1)}), encoding="utf-8")
    assert nn3(capsys, "train", "--config", config, "--run", d, *LIMIT)[0] == 0
    code, out, err = nn3(capsys, "plot", d, "--out", tmp_path / "png")
    assert code == 0, err
    for name in ("curves.png", "misclassified.png", "filters.png"):
        assert (tmp_path / "png" / name).read_bytes()[:4] == b"\x89PNG"
    assert "wrong" in out
    assert nn3(capsys, "plot", tmp_path / "nowhere")[0] == 1


def test_compile_cache_is_used_when_asked_and_changes_nothing(tmp_path, base_run):
    import subprocess
    import sys
    cache = tmp_path / "xla"
    env = {**os.environ, "NN3_CACHE_DIR": str(cache)}
    outs = [subprocess.run([sys.executable, "-m", "nn3", "replay", str(base_run)], env=env, timeout=180,
                           capture_output=True, text=True) for _ in range(2)]
    assert [o.returncode for o in outs] == [0, 0], outs[0].stderr
    assert outs[0].stdout == outs[1].stdout and "equal" in outs[0].stdout
    assert any(cache.iterdir())


@pytest.mark.parametrize("argv, words", [
    (["train", "ch1", "--seed", str(2 ** 32)], ["seed", "4294967295"]),
    (["train", "ch1", "--momentum", "1"], ["momentum must be below 1"]),
    (["train", "ch1", "--optimizer", "nosuch"], ["nosuch"]),
    (["train", "shallow", "--seeds", "1,1"], ["seeds must differ"]),
    (["train", "shallow", "--members", "2", "--sweep", "momentum=0.5,1"], ["momentum must be below 1"]),
])
def test_every_flag_is_checked_before_any_data_is_looked_for(capsys, tmp_path, monkeypatch, argv, words):
    """A fresh clone has no MNIST: a bad flag must be named, not the missing data (nor a download tried)."""
    from nn3.store import data
    looked = []
    monkeypatch.setattr(data, "load_data", lambda *a, **k: looked.append(a) or pytest.fail("data looked for"))
    monkeypatch.setattr(data, "find_source", lambda *a, **k: looked.append(a) or pytest.fail("data looked for"))
    monkeypatch.delenv("NN3_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    code, out, err = nn3(capsys, *argv, "--run", tmp_path / "r")
    assert code == 1 and len(err) == 1 and all(w in err[0] for w in words), err
    assert looked == [] and not (tmp_path / "r").exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize("module, extra", [("werkzeug", "web"), ("matplotlib", "plot")])
def test_a_missing_extra_is_one_line_that_names_it(capsys, tmp_path, base_run, monkeypatch, module, extra):
    """An extra left uninstalled is the user's setup, not a bug: which extra, and how to install it."""
    monkeypatch.setitem(sys.modules, module, None)   # import fails as if it were not installed
    argv = ["serve", base_run] if module == "werkzeug" else ["plot", base_run, "--out", tmp_path]
    code, out, err = nn3(capsys, *argv)
    assert code == 1 and len(err) == 1 and "internal error" not in err[0], err
    assert err[0].startswith("nn3: error: ") and module in err[0]
    assert f"nn3's {extra} extra" in err[0] and f'pip install -e ".[{extra}]" -c constraints.txt' in err[0]


@pytest.mark.parametrize("platforms", ["cuda", "gpu", "cuda,cpu"])
def test_jax_platforms_asking_for_a_gpu_without_its_plugin_is_one_line(capsys, tmp_path, monkeypatch, platforms):
    """JAX itself fails there with a bare AssertionError, which read as 'internal error (a bug)'."""
    from nn3.engine import threads
    monkeypatch.setenv("JAX_PLATFORMS", platforms)
    monkeypatch.setattr(threads.importlib.util, "find_spec", lambda name, *a: None)  # no plugin, even on a GPU host
    code, out, err = nn3(capsys, "train", "ch1", "--run", tmp_path / "r")
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith(f"nn3: error: JAX_PLATFORMS={platforms} asks for an NVIDIA GPU")
    assert "JAX_PLATFORMS=cpu" in err[0] and 'pip install -e ".[cuda]"' in err[0]
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    threads.check_platforms()  # the CPU needs no plugin


def test_several_processes_where_jax_has_no_collectives_between_them_is_one_line(monkeypatch):
    """jaxlib builds its CPU collectives between processes (gloo) for Linux and macOS only:
    on Windows a run of several is refused in one line before anything starts."""
    from nn3.runs import cluster
    with monkeypatch.context() as m:
        m.setattr(cluster.sys, "platform", "win32")
        with pytest.raises(cluster.ClusterError, match=r"^a run of several processes needs Linux or macOS"):
            cluster.Setup.from_flags("127.0.0.1:9", 2, 1)
        with pytest.raises(cluster.ClusterError, match="needs Linux or macOS"):
            cluster.Setup.from_flags(None, None, None, {"SLURM_JOB_ID": "1", "SLURM_NTASKS": "2"})
        assert cluster.Setup.from_flags("127.0.0.1:9", 1, 0) is None  # one process: nothing to refuse
        m.setattr(cluster.sys, "platform", "linux")
        assert cluster.Setup.from_flags("127.0.0.1:9", 2, 1) == cluster.Setup("127.0.0.1:9", 2, 1)


@pytest.mark.skipif(sys.platform != "win32", reason="Windows only; .ci/windows runs it under Windows CPython")
def test_several_processes_on_windows_end_in_one_line(capsys, tmp_path):
    code, out, err = nn3(capsys, "train", "shallow", "--members", "2", "--epochs", "1", "--run", tmp_path / "r",
                         "--coordinator", "127.0.0.1:9", "--num-processes", "2", "--process-id", "1")
    assert code == 1 and err == ["nn3: error: a run of several processes needs Linux or macOS (WSL2 on Windows): "
                                 "JAX on Windows has no collectives between processes"], err
    assert not (tmp_path / "r").exists()
