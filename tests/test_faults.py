"""A catalogue of bad inputs to the ``nn3`` command, each ending in one clear line.

    .venv/bin/python -m pytest tests/test_faults.py -q

Every case runs ``nn3.cli.main(argv)`` in a scratch folder and checks: a non-zero exit,
stderr exactly one line, no traceback, no "internal error", the line naming the thing
and the fault, and the scratch folder unchanged (no file written, none overwritten).
Runs to damage are trained on conftest's synthetic_mnist: nothing here needs the real digits.
"""
from __future__ import annotations

import errno
import gzip
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from nn3 import cli
from nn3.runs import presets

Q = ["--quiet"]


# ------------------------------------------------------------------ bad files, made on demand

def _write(t: Path, name: str, content) -> str:
    p = t / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(p)


def _gz_pickle(t, name, obj, level=1):
    p = t / name
    with gzip.open(p, "wb", compresslevel=level) as f:
        pickle.dump(obj, f, protocol=4)
    return str(p)


def _splits(n=(50_000, 10_000, 10_000)):
    return tuple((np.zeros((k, 784), np.float32), np.zeros(k, np.int64)) for k in n)


def _net2(sizes=(784, 10), cost="CrossEntropyCost", **over):
    d = {"sizes": list(sizes), "weights": [np.zeros((b, a)).tolist() for a, b in zip(sizes[:-1], sizes[1:])],
         "biases": [np.zeros((b, 1)).tolist() for b in sizes[1:]], "cost": cost}
    return json.dumps({**d, **over})


class _Evil:
    def __reduce__(self):
        return (os.system, ("true",))


def _nan_pixels(t):
    s = _splits()
    s[0][0][3, 5] = np.nan
    return _gz_pickle(t, "nan.pkl.gz", s)


def _bad_labels(t):
    s = _splits()
    s[1][1][7] = 12
    return _gz_pickle(t, "labels.pkl.gz", s)


def _truncated_gzip(t):
    full = t / "full.pkl.gz"
    _gz_pickle(t, "full.pkl.gz", _splits((100, 10, 10)))
    data = full.read_bytes()
    full.unlink()
    return _write(t, "trunc.pkl.gz", data[:len(data) // 2])


def _idx_folder(t):
    d = t / "idx"
    d.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (d / name).write_bytes(b"garbage, not IDX")
    return str(d)


def _fake_run(t):
    d = t / "fake_run"
    d.mkdir()
    (d / "config.json").write_text("{}", encoding="utf-8")
    return str(d)


def _config(t, layer_type):
    spec = {"layers": [{"type": layer_type, "n_in": 784, "n_out": 10, "p_dropout": 0.0}], "cost": "LogLikelihoodCost"}
    return _write(t, "config.json", json.dumps({"preset": "shallow", "spec": spec, "sgd": {"epochs": 1}}))


def _damage_all(r):
    for step in (d for d in Path(r).iterdir() if d.name.isdigit()):
        shutil.rmtree(step)
        step.mkdir()
    return r


def _other_arch(r):
    cfg = json.loads((Path(r) / "config.json").read_text(encoding="utf-8"))
    cfg["spec"] = presets.get("ch1_100").spec  # [784, 100, 10] instead of [784, 30, 10]
    (Path(r) / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return r


# ------------------------------------------------------------------ the catalogue
# id: (argv as a function of (scratch folder, run copy or None, the synthetic data set's path),
#      exit code, substrings of the one line, needs a run); the scratch folder is called "scratch".

CASES = {
    # command-line arguments
    "epochs-0": (lambda t, r, d: ["train", "ch1", "--epochs", "0"], 2, ["--epochs", "positive integer"], 0),
    "epochs-negative": (lambda t, r, d: ["train", "ch1", "--epochs", "-1"], 2, ["--epochs", "-1"], 0),
    "mini-batch-0": (lambda t, r, d: ["train", "ch1", "--mini-batch", "0"], 2, ["--mini-batch", "positive"], 0),
    "eta-nan": (lambda t, r, d: ["train", "ch1", "--eta", "nan"], 2, ["--eta", "finite"], 0),
    "eta-negative": (lambda t, r, d: ["train", "ch1", "--eta", "-1"], 2, ["--eta", "-1"], 0),
    "eta-text": (lambda t, r, d: ["train", "ch1", "--eta", "fast"], 2, ["--eta", "not a number"], 0),
    "lmbda-inf": (lambda t, r, d: ["train", "ch1", "--lmbda", "inf"], 2, ["--lmbda", "finite"], 0),
    "seed-text": (lambda t, r, d: ["train", "ch1", "--seed", "x"], 2, ["--seed", "invalid"], 0),
    "seed-too-large": (lambda t, r, d: ["train", "ch1", "--seed", str(2**32)], 1, ["seed", "4294967295"], 0),
    "augment-unknown": (lambda t, r, d: ["train", "ch1", "--augment", "warp"], 2, ["--augment", "invalid choice"], 0),
    "limit-0": (lambda t, r, d: ["train", "ch1", "--limit", "0"], 2, ["--limit", "positive"], 0),
    "preset-unknown": (lambda t, r, d: ["train", "nosuch"], 1, ["unknown preset 'nosuch'", "ch1"], 0),
    "preset-none": (lambda t, r, d: ["train"], 2, ["give a preset name"], 0),
    "command-unknown": (lambda t, r, d: ["frobnicate"], 2, ["invalid choice", "frobnicate"], 0),
    "step-and-best": (lambda t, r, d: ["replay", "x", "--step", "1", "--best"], 2, ["--best", "not allowed"], 0),
    "run-is-a-file": (lambda t, r, d: ["train", "ch1", "--run", _write(t, "afile", "x")], 1,
                      ["afile", "not a directory"], 0),
    "run-exists": (lambda t, r, d: ["train", "ch1", "--run", _fake_run(t)], 1, ["fake_run", "already holds"], 0),
    "config-missing": (lambda t, r, d: ["train", "--config", f"{t}/none.json"], 1, ["none.json", "not a usable"], 0),
    "config-not-json": (lambda t, r, d: ["train", "--config", _write(t, "c.json", "{oops")], 1, ["c.json", "not a usable"], 0),
    "config-unknown-layer": (lambda t, r, d: ["train", "--config", _config(t, "EvilLayer")], 1,
                             ["config.json", "EvilLayer"], 0),
    # network JSON files (evaluate, import)
    "json-missing": (lambda t, r, d: ["evaluate", f"{t}/none.json"], 1, ["none.json", "cannot read"], 0),
    "json-directory": (lambda t, r, d: ["evaluate", str(t)], 1, ["scratch", "not a regular file"], 0),
    "json-empty": (lambda t, r, d: ["evaluate", _write(t, "e.json", "")], 1, ["e.json"], 0),
    "json-not-json": (lambda t, r, d: ["evaluate", _write(t, "n.json", "sizes = [784, 10]")], 1, ["n.json"], 0),
    "json-binary": (lambda t, r, d: ["evaluate", _write(t, "b.json", b"\xff\xfe\x00garbage")], 1, ["b.json"], 0),
    "json-array": (lambda t, r, d: ["evaluate", _write(t, "a.json", "[]")], 1, ["a.json"], 0),
    "json-missing-keys": (lambda t, r, d: ["evaluate", _write(t, "k.json", '{"sizes": [784, 10]}')], 1,
                          ["k.json", "missing key"], 0),
    "json-wrong-shape": (lambda t, r, d: ["evaluate", _write(t, "s.json", _net2(sizes=(784, 10), weights=[
        np.zeros((10, 783)).tolist()]))], 1, ["s.json", "weights"], 0),
    "json-unknown-cost": (lambda t, r, d: ["evaluate", _write(t, "c.json", _net2(cost="FooCost"))], 1,
                          ["c.json", "FooCost"], 0),
    "json-cost-os-system": (lambda t, r, d: ["evaluate", _write(t, "c.json", _net2(cost="os.system"))], 1,
                            ["c.json", "os.system"], 0),
    "json-cost-dunder": (lambda t, r, d: ["evaluate", _write(t, "c.json", _net2(cost="__class__"))], 1,
                         ["c.json", "__class__"], 0),
    "json-unknown-layer": (lambda t, r, d: ["evaluate", _write(t, "l.json", json.dumps(
        {"format": "nn3-network3", "version": 1, "mini_batch_size": 10, "cost": "LogLikelihoodCost",
         "layers": [{"type": "EvilLayer", "n_in": 784, "n_out": 10}]}))], 1, ["l.json", "EvilLayer"], 0),
    "json-nan": (lambda t, r, d: ["evaluate", _write(t, "nan.json", _net2().replace("0.0", "NaN", 1))], 1,
                 ["nan.json"], 0),
    "json-deep-nesting": (lambda t, r, d: ["evaluate", _write(t, "d.json", "[" * 100_000 + "]" * 100_000)], 1,
                          ["d.json", "nesting"], 0),
    "json-10-inputs": (lambda t, r, d: ["evaluate", _write(t, "10.json", _net2(sizes=(10, 2)))], 1,
                       ["10.json", "10 inputs"], 0),
    "import-bad-json": (lambda t, r, d: ["import", _write(t, "c.json", _net2(cost="os.system")), "--run", f"{t}/new"],
                        1, ["c.json", "os.system"], 0),
    # data files
    "data-missing": (lambda t, r, d: ["train", "ch1", "--data", f"{t}/none.pkl.gz"], 1, ["none.pkl.gz", "no such"], 0),
    "data-empty-folder": (lambda t, r, d: ["train", "ch1", "--data", str(t)], 1, ["scratch"], 0),
    "data-not-gzip": (lambda t, r, d: ["train", "ch1", "--data", _write(t, "x.pkl.gz", b"not gzip at all")], 1,
                      ["x.pkl.gz"], 0),
    "data-truncated-gzip": (lambda t, r, d: ["train", "ch1", "--data", _truncated_gzip(t)], 1, ["trunc.pkl.gz"], 0),
    "data-evil-pickle": (lambda t, r, d: ["train", "ch1", "--data", _gz_pickle(t, "evil.pkl.gz", _Evil())], 1,
                         ["evil.pkl.gz", "only numpy arrays"], 0),
    "data-wrong-structure": (lambda t, r, d: ["train", "ch1", "--data", _gz_pickle(t, "dict.pkl.gz", {"a": 1})], 1,
                             ["dict.pkl.gz", "expected (training, validation, test)"], 0),
    "data-wrong-shape": (lambda t, r, d: ["train", "ch1", "--data", _gz_pickle(t, "shape.pkl.gz", (
        (np.zeros((10, 5), np.float32), np.zeros(10, np.int64)),) * 3)], 1, ["shape.pkl.gz", "shape"], 0),
    "data-empty-split": (lambda t, r, d: ["train", "ch1", "--data", _gz_pickle(t, "size.pkl.gz", _splits((100, 0, 10)))],
                         1, ["size.pkl.gz", "validation split is empty"], 0),
    "data-nan-pixels": (lambda t, r, d: ["train", "ch1", "--data", _nan_pixels(t)], 1, ["nan.pkl.gz", "NaN"], 0),
    "data-labels-out-of-range": (lambda t, r, d: ["train", "ch1", "--data", _bad_labels(t)], 1,
                                 ["labels.pkl.gz", "labels outside 0-9"], 0),
    "data-idx-garbage": (lambda t, r, d: ["train", "ch1", "--data", _idx_folder(t)], 1, ["idx", "IDX magic"], 0),
    "data-command-missing": (lambda t, r, d: ["data", "--path", f"{t}/none"], 1, ["none", "no such"], 0),
    "evaluate-data-missing": (lambda t, r, d: ["evaluate", _write(t, "ok.json", _net2()), "--data", f"{t}/none.pkl.gz"],
                              1, ["none.pkl.gz", "no such"], 0),
    # runs and checkpoints (a copy of a real two-epoch run)
    "resume-missing": (lambda t, r, d: ["resume", f"{t}/nothing"], 1, ["nothing", "no such run directory"], 0),
    "resume-foreign": (lambda t, r, d: ["resume", str(t)], 1, ["scratch", "not an nn3 run directory"], 0),
    "resume-a-file": (lambda t, r, d: ["resume", _write(t, "f", "x")], 1, ["f", "no such run directory"], 0),
    "resume-corrupt-config": (lambda t, r, d: ["resume", _write(t, "config.json", "{") and str(t)], 1,
                              ["config.json", "corrupt"], 0),
    "mini-batch-too-big": (lambda t, r, d: ["train", "ch1", "--mini-batch", "500", "--limit", "100", "--run",
                                            f"{t}/new", "--data", d, *Q], 1, ["mini-batch size 500", "100 training examples"], 1),
    "momentum-1": (lambda t, r, d: ["train", "ch1", "--momentum", "1", "--limit", "100", "--run", f"{t}/new",
                                    "--data", d, *Q], 1, ["momentum must be below 1"], 1),
    "resume-other-architecture": (lambda t, r, d: ["resume", _other_arch(r), "--epochs", "3"], 1,
                                  ["different state structure", "architecture"], 1),
    "replay-no-such-step": (lambda t, r, d: ["replay", r, "--step", "999"], 1, ["no checkpoint at step 999"], 1),
    "replay-all-damaged": (lambda t, r, d: ["replay", _damage_all(r)], 1, ["no intact checkpoint"], 1),
    "resume-all-damaged": (lambda t, r, d: ["resume", _damage_all(r), "--epochs", "3"], 1, ["no intact checkpoint"], 1),
    "replay-data-missing": (lambda t, r, d: ["replay", r, "--data", f"{t}/none.pkl.gz"], 1, ["none.pkl.gz", "no such"], 1),
    "export-no-folder": (lambda t, r, d: ["export", r, f"{t}/no/x.json"], 1, ["x.json", "does not exist"], 1),
}


def _snapshot(root: Path) -> dict:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else None for p in sorted(root.rglob("*"))}


def _params():
    return [pytest.param(argv, code, words, run, id=name) for name, (argv, code, words, run) in CASES.items()]


def test_catalogue_is_large():
    assert len(CASES) >= 30


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # rundir.py: stray reads
@pytest.mark.parametrize("argv, code, words, needs_run", _params())
def test_fault(request, tmp_path, capsys, synthetic_mnist, argv, code, words, needs_run):
    t = tmp_path / "scratch"
    t.mkdir()
    r = None
    if needs_run:
        r = str(t / "run")
        shutil.copytree(request.getfixturevalue("base_run"), r)
    args = [str(a) for a in argv(t, r, str(synthetic_mnist.path))]
    before = _snapshot(t)
    capsys.readouterr()
    got = cli.main(args)
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert got == code, (args, out, err)
    assert len(lines) == 1, f"stderr is not one line: {err!r}"
    line = lines[0]
    assert "Traceback" not in err and "internal error" not in line
    assert line.startswith("nn3"), line
    for w in words:
        assert w in line, f"{w!r} not in {line!r}"
    assert _snapshot(t) == before, "a failed command changed files"


def test_damaged_newest_step_is_a_warning_not_an_error(run_copy, capsys):
    r = run_copy
    shutil.rmtree(r / "60")
    (r / "60").mkdir()
    capsys.readouterr()
    assert cli.main(["replay", str(r)]) == 0
    out, err = capsys.readouterr()
    assert "step 30 " in out and len(err.splitlines()) == 1 and "step 60 is damaged" in err and "warning" in err


def test_disk_full_during_a_save(tmp_path, capsys, monkeypatch, synthetic_mnist):
    """The second epoch's save hits ENOSPC: one line, exit 1, the first epoch's step intact."""
    import orbax.checkpoint as ocp
    real, calls = ocp.CheckpointManager.save, []

    def save(self, step, *a, **k):
        calls.append(step)
        if len(calls) >= 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, step, *a, **k)

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    r = tmp_path / "run"
    capsys.readouterr()
    code = cli.main(["train", "ch1", "--epochs", "3", "--limit", "300", "--run", str(r),
                     "--data", str(synthetic_mnist.path), *Q])
    out, err = capsys.readouterr()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "step 60" in err and "No space left on device" in err and str(r) in err
    monkeypatch.setattr(ocp.CheckpointManager, "save", real)
    assert sorted(p.name for p in r.iterdir() if p.name[0].isdigit()) == ["30"]
    capsys.readouterr()
    assert cli.main(["replay", str(r)]) == 0
    out, err = capsys.readouterr()
    assert "step 30 " in out and "equal" in out and err == ""
