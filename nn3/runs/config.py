"""A run's config: a preset with the user's settings over it, checked; the JSON that config.json holds.

    >>> from nn3.runs import config
    >>> c = config.make_config("ch1", epochs=2)
    >>> c["preset"], c["sgd"]["epochs"], c["sgd"]["eta"]
    ('ch1', 2, 3.0)

Every choice a command makes about what to train lives here and is tested with the
rest: which settings an import trains with, what ``train --config`` reads, where a run
goes by default, which seeds and settings the members of a member run (or a sweep) have.
Unknown fields and bad values raise one-line ValueErrors before any data is read.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import pathlib
import time
from collections.abc import Sequence
from typing import Any

from nn3.engine import layers
from nn3.engine.layers import Network
from nn3.engine.settings import SWEEPABLE, SGDConfig
from nn3.engine.spec import validate
from nn3.runs import presets
from nn3.store import data, export
from nn3.store.rundir import CONFIG


def versions() -> dict:
    out: dict[str, str | None] = {}
    for name in ("nn3", "jax", "flax", "orbax-checkpoint", "numpy"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def make_config(preset: str, *, spec: dict | None = None, init: str | None = None, dataset: str = "mnist",
                data_path: str | os.PathLike | None = None, limit: int | None = None,
                members: Sequence[int | dict] | None = None, **sgd: Any) -> dict:
    """The JSON config of a run: a preset with its SGD fields overridden by ``sgd``.

    ``limit`` keeps only the first ``limit`` examples of each split (quick runs, tests).
    ``members``, a list of seeds, makes a member run: one network per seed, trained in one
    program, voting (nn3.engine.train); ``sgd``'s seed is then unused. A member may be a dict
    instead, its seed and the settings of ``SWEEPABLE`` it has of its own (a
    sweep, see ``sweep_members``). Unknown fields and bad values raise one-line ValueErrors.
    """
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    p = presets.get(preset)
    fields = {f.name for f in dataclasses.fields(SGDConfig)}
    unknown = set(sgd) - fields
    if unknown:
        raise ValueError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
    merged = {**p.sgd, **{k: v for k, v in sgd.items() if v is not None}}
    spec = spec or p.spec
    if "mini_batch_size" in merged:
        spec = presets.with_mini_batch(spec, merged["mini_batch_size"])
    validate(spec)
    SGDConfig(**merged).check()  # every value now, before any data is looked for; its size at start
    config: dict[str, Any] = {"preset": preset, "style": p.style, "spec": spec, "init": init or p.init, "sgd": merged,
              "dataset": dataset, "data": None if data_path is None else str(data_path),
              "limit": limit, "monitor": [], "versions": versions()}
    if members is not None:
        config["members"] = _checked_members(members, merged)
    return config


def _checked_members(members: Sequence[int | dict], merged: dict) -> list[dict]:
    out = [m if isinstance(m, dict) else {"seed": m} for m in members]
    seeds = [m.get("seed") for m in out]
    if not out or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds):
        raise ValueError(f"members: give one or more seeds, integers >= 0, got {seeds!r}")
    for m in out:
        unknown = set(m) - {"seed", *SWEEPABLE}
        if unknown:
            raise ValueError(f"members: {', '.join(sorted(unknown))} cannot differ per member "
                             f"(these can: {', '.join(SWEEPABLE)})")
        SGDConfig(**{**merged, **m}).check()  # the values; the data's size is checked at start
    if len({json.dumps(m, sort_keys=True) for m in out}) != len(out):
        raise ValueError(f"members: seeds must differ (equal seeds train equal members), got {seeds!r}")
    return out


def sweep_members(seeds: Sequence[int], sweeps: dict) -> list[dict]:
    """The members of a sweep: every combination of the ``sweeps`` values ({name: [values]})
    with every seed, the values varying slowest: ``[{"seed": s, name: v, ...}, ...]``."""
    combos: list[dict] = [{}]
    for name, values in sweeps.items():
        combos = [{**c, name: v} for c in combos for v in values]
    return [{**c, "seed": s} for c in combos for s in seeds]


def member_sgd(config: dict) -> list[SGDConfig]:
    """The SGDConfig of each network of a run: a lone run's one, or each member's (the
    run's settings with the member's own seed and values)."""
    if config.get("members") is None:
        return [sgd_of(config)]
    return [sgd_of({**config, "sgd": {**config["sgd"], **m}}) for m in config["members"]]


def member_seeds(config: dict) -> list[int] | None:
    """The seeds of a member run's members, or None for a lone run."""
    members = config.get("members")
    return None if members is None else [m["seed"] for m in members]


SETTINGS = ("epochs", "eta", "lmbda", "momentum", "mini_batch_size", "seed", "augment", "schedule",
            "early_stopping", "chunks", "optimizer")  # the training settings a command may give (train, import)


def default_run_dir(preset: str) -> str:
    """Where ``nn3 train PRESET`` puts a run unless told: checkpoints/PRESET-YYYYmmdd-HHMMSS."""
    return f"checkpoints/{preset}-{time.strftime('%Y%m%d-%H%M%S')}"


def read_recorded(where: str | os.PathLike) -> dict:
    """A recorded config to train again: a config.json, or the run directory that holds one.

    Checked as far as training it needs (preset, spec, sgd; the spec's layers by name),
    with one-line ValueErrors that name ``where``.
    """
    path = pathlib.Path(where)
    if path.is_dir():
        path = path / CONFIG
        if not path.is_file():
            raise ValueError(f"{where}: a directory without {CONFIG}; give a run directory or a config.json")
    try:
        recorded = json.loads(path.read_text(encoding="utf-8-sig"))  # a BOM: Notepad's UTF-8
    except (OSError, ValueError) as e:
        raise ValueError(f"{where}: not a usable nn3 config ({type(e).__name__}: {e})") from None
    if not (isinstance(recorded, dict) and "preset" in recorded and "spec" in recorded
            and isinstance(recorded.get("sgd"), dict)):
        raise ValueError(f"{where}: not a usable nn3 config (expected an object with preset, spec and sgd)")
    validate(recorded["spec"], str(where))
    return recorded


def train_config(preset: str | None = None, *, recorded: dict | None = None, dataset: str | None = None,
                 data_path: str | os.PathLike | None = None, limit: int | None = None,
                 monitor: Sequence[str] | None = None, members: Sequence[int | dict] | None = None,
                 **settings: Any) -> dict:
    """The config ``nn3 train`` runs: a preset, or a recorded config (``read_recorded``) again.

    Given settings (``SETTINGS``; None means unset) override the preset's or the recorded
    ones; unset data choices (dataset, data_path, limit, monitor) keep the recorded ones.
    """
    if recorded is not None:
        preset, spec, base, init = recorded["preset"], recorded["spec"], dict(recorded["sgd"]), recorded.get("init")
        dataset = dataset or recorded.get("dataset", "mnist")
        data_path = data_path or recorded.get("data")
        limit = limit or recorded.get("limit")
        monitor = monitor or recorded.get("monitor") or []
        members = members or member_seeds(recorded)
    elif preset is None:
        raise ValueError("give a preset name or a recorded config")
    else:
        spec, base, init, dataset = None, {}, None, dataset or "mnist"
    config = make_config(preset, spec=spec, init=init, dataset=dataset, data_path=data_path, limit=limit,
                         members=members, **{**base, **_given(settings)})
    config["monitor"] = list(dict.fromkeys(monitor or []))
    return config


def _given(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if v is not None}


def takes_mnist(net: Network, source: object) -> None:
    """A one-line ValueError unless ``net`` takes MNIST's 784 pixels (``source`` names where it came from)."""
    if net.n_in != 784:
        raise ValueError(f"{source}: the network takes {net.n_in} inputs; MNIST images have 784")


def import_config(json_path: str | os.PathLike, *, dataset: str | None = None,
                  data_path: str | os.PathLike | None = None, limit: int | None = None,
                  monitor: Sequence[str] | None = None,
                  members: Sequence[int | dict] | None = None, **settings: Any) -> tuple[dict, list[dict], str]:
    """What ``nn3 import`` trains: the JSON network's config and weights, and why those settings.

    Unset settings come from the preset whose network it is, else from the book's plain
    settings for its kind of network (presets.for_network); a network3 JSON keeps its
    mini-batch size. ``members`` (seeds) makes a member run whose members all start from
    the JSON's weights. Returns ``(config, params, why)``, ``why`` a phrase for the user.
    """
    spec, params, mb, _ = export.load_json(json_path)
    takes_mnist(layers.build(spec), json_path)
    preset, plain, why = presets.for_network(spec)
    config = make_config(preset, spec=spec, dataset=dataset or "mnist", data_path=data_path, limit=limit,
                         members=members, **{**plain, **({"mini_batch_size": mb} if mb else {}), **_given(settings)})
    config["monitor"] = list(dict.fromkeys(monitor or []))
    config["imported_from"] = str(json_path)
    return config, params, why


def describe_settings(config: dict) -> str:
    """The settings a run trains with, in one line (what ``nn3 import`` prints before training)."""
    c = sgd_of(config)
    where = config["dataset"] + (f" from {config['data']}" if config["data"] else "")
    if config["limit"]:
        where += f", the first {config['limit']} of each split"
    return (f"epochs {c.epochs}, mini-batch {c.mini_batch_size}, eta {c.eta:g}, lmbda {c.lmbda:g}, "
            f"momentum {c.momentum:g}, augment {c.augment}, schedule {c.schedule}, "
            f"early stopping {c.early_stopping or 'off'}, seed {c.seed}; data: {where}; "
            f"monitor: {', '.join(config['monitor']) or 'none'}")


def sgd_of(config: dict) -> SGDConfig:
    """The run's own SGDConfig (a member run's members each change some of it: ``member_sgd``)."""
    return SGDConfig(**config["sgd"])


def load_splits(config: dict) -> tuple:
    """The (training, validation, test) data a run's config names."""
    splits = data.load_data(config.get("data"), dataset=config.get("dataset", "mnist"), download=True)
    limit = config.get("limit")
    if limit:  # a quick run: the first ``limit`` examples of each split
        splits = tuple((x[:limit], y[:limit]) for x, y in splits)
    return splits
