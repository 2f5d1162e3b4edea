"""Files written before the package redesign (tests/fixtures/made_by_3dfca29) still resume, replay and load.

    python -m pytest tests/test_old_files.py -q

Each old run directory is copied, pointed at the synthetic set this session wrote (the
same bytes as the one it was made on), resumed to a second epoch, and compared with the
same two epochs trained straight through by today's nn3: parameters bit for bit,
metrics.jsonl line for line. Replay of the old checkpoint measures exactly the accuracy
the old code recorded. The old JSON files load as today's do.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import nn3
from nn3 import cli, network2
from nn3.engine import layers
from nn3.runs import inspect

OLD = Path(__file__).resolve().parent / "fixtures" / "made_by_3dfca29"


def _copy(name, tmp_path, data_path) -> Path:
    """The old run ``name`` copied into ``tmp_path``, its config pointing at ``data_path``."""
    d = tmp_path / name
    shutil.copytree(OLD / name, d)
    config = json.loads((d / "config.json").read_text(encoding="utf-8"))
    config["data"] = str(data_path)
    (d / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return d


def _straight(recorded, tmp_path, synthetic_mnist) -> Path:
    """The old run's config trained by today's nn3 for two epochs in one go."""
    d = tmp_path / f"straight-{recorded}"
    argv = ["train", "--config", str(OLD / recorded), "--epochs", "2", "--data", str(synthetic_mnist.path),
            "--run", str(d), "--quiet"]
    assert cli.main(argv) == 0
    return d


def _lines(d) -> list[str]:
    return (Path(d) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()


def _params(net_or_nets) -> list:
    nets = net_or_nets if isinstance(net_or_nets, list) else [net_or_nets]
    return [layers.get_params(n) for n in nets]


def _same(a, b) -> bool:
    return all(np.array_equal(p[k], q[k]) for x, y in zip(a, b) for p, q in zip(x, y) for k in ("w", "b"))


@pytest.mark.parametrize("name, recorded", [("lone_run", "lone.json"), ("member_run", "members.json")])
def test_an_old_run_replays_exactly_and_resumes_as_never_stopping(name, recorded, tmp_path, synthetic_mnist, capsys):
    d = _copy(name, tmp_path, synthetic_mnist.path)
    assert cli.main(["replay", str(d)]) == 0  # the accuracy recorded by the old code, measured again: equal
    out = capsys.readouterr().out
    assert "DIFFERENT" not in out and "-- equal" in out
    assert cli.main(["resume", str(d), "--epochs", "2", "--quiet"]) == 0
    straight = _straight(recorded, tmp_path, synthetic_mnist)
    assert _lines(d) == _lines(straight)
    assert _same(_params(inspect.load(d)), _params(inspect.load(straight)))


def test_old_json_files_load(tmp_path, synthetic_mnist, monkeypatch, capsys):
    net = nn3.load(OLD / "lone_export.json")
    run = nn3.load(_copy("lone_run", tmp_path, synthetic_mnist.path))
    assert _same(_params(net.engine), _params(run.engine))  # the export is the run's network
    again = network2.load(OLD / "network2_save.json")
    assert again.seed == 4 and again.sizes == [784, 6, 10]
    assert _same(_params(again.engine), _params(network2.Network([784, 6, 10], seed=4).engine))
    ensemble = nn3.load(OLD / "member_bundle.json")
    members = inspect.load(_copy("member_run", tmp_path / "m", synthetic_mnist.path))
    assert ensemble.seeds == [3, 0] and _same(_params([m.engine for m in ensemble]), _params(members))
    assert cli.main(["evaluate", str(OLD / "member_bundle.json"), "--data", str(synthetic_mnist.path)]) == 0
    assert "accuracy of the vote" in capsys.readouterr().out
