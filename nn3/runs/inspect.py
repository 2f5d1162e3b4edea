"""A run read back from its directory alone: restore, replay, load, export; and JSON networks evaluated.

    >>> from nn3.runs import inspect
    >>> inspect.replay("checkpoints/demo", best=True)["accuracy"]   # doctest: +SKIP
    >>> inspect.export_json("checkpoints/demo", "net.json")         # doctest: +SKIP

Nothing here writes into a run directory: a run may still be training there. A run is
rebuilt from its config.json (the spec, the seeds, the settings) and the arrays of one
checkpoint (nn3.runs.checkpoint), on any backend and any number of devices.
"""
from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from typing import Any

import numpy as np

from nn3.engine import backend, evaluation, layers
from nn3.engine.layers import Network
from nn3.engine.settings import union
from nn3.engine.spec import is_mlp, validate
from nn3.engine.train import Loop, RunState, best_record
from nn3.runs import checkpoint
from nn3.runs import config as run_config
from nn3.store import bundle, data, export
from nn3.store.rundir import RunDir, RunDirError

__all__ = ["Restored", "best_of", "check_member", "evaluate_json", "export_json", "load", "networks", "read", "replay",
           "restore"]


@dataclasses.dataclass
class Restored:
    """A checkpoint read back: its ``step``, the ``nets`` (one, or a member run's every
    member), the ``state`` it records, its ``info``, and whether it is a member run's."""
    step: int
    nets: list[Network]
    state: RunState
    info: dict
    members: bool


def restore(run: RunDir, *, step: int | None = None, best: bool = False) -> Restored:
    """The networks and state saved in ``run``; falls back past damaged steps (with a warning).

    ``step``: that checkpoint; ``best``: the one of the best validation accuracy; else
    the newest intact one.
    """
    nets = networks(run)
    n, arrays, info = read(run, nets, step=step, best=best)
    for i, net in enumerate(nets):
        layers.set_params(net, [{k: v[i] for k, v in p.items()} for p in arrays["params"]])
    stacked = run_config.member_seeds(run.config) is not None
    return Restored(n, nets, checkpoint.state_of(info, stacked), info, stacked)


def networks(run: RunDir) -> list[Network]:
    """Fresh networks of the run in ``run`` (one, or one per member), to restore into."""
    config = run.config
    try:
        validate(config["spec"])
        return [layers.build(config["spec"], seed=c.seed, init=config.get("init"))
                for c in run_config.member_sgd(config)]
    except (KeyError, TypeError, ValueError) as e:
        raise RunDirError(f"{run.path}: its config.json does not describe a network ({e})") from None


def read(run: RunDir, nets: list[Network], *, step: int | None = None, best: bool = False) -> tuple[int, dict, dict]:
    """(step, arrays, info) of a checkpoint of ``run``, whose networks are ``nets``: the
    arrays stacked on a leading member axis (a lone run's too), as numpy."""
    if not run.steps():
        raise RunDirError(f"{run.path}: holds no checkpoint yet")
    stacked = run_config.member_seeds(run.config) is not None
    rule = union(run_config.member_sgd(run.config)).rule()
    n, saved, info = run.restore(checkpoint.target(nets, rule, stacked), step=step, best=best)
    return n, checkpoint.stacked_arrays(checkpoint.as_numpy(saved), stacked), info


def replay(run_dir: str | os.PathLike, *, step: int | None = None, best: bool = False, data_name: str = "test",
           predict: int = 0, member: int | None = None) -> dict:
    """Rebuild the network from ``run_dir`` alone and evaluate it.

    Returns a dict: step, epoch (counted from 0 as training prints it: the epoch the
    checkpoint completed, or the one it was taken in), batch (mini-batches into that
    epoch; 0 after a completed epoch), position (both in words), accuracy, correct, n,
    recorded (the accuracy measured on these very parameters when the epoch ended, or
    None: a mid-epoch checkpoint, the one Ctrl-C writes, has none), equal (whether
    they agree exactly) and differs (nn3.engine.backend's choices that differ from the
    run's, ``["conv fused -> xla"]``). With ``predict`` = N, also predicted and labels:
    the network's digits for the first N images of the data the accuracy was measured
    on, and their labels. Nothing in the directory changes.

    Of a member run: with ``member`` = K, member K as a lone run's; else the vote's
    accuracy (and predictions), and ``members``, one such dict (accuracy, correct, n,
    recorded, equal, seed, best) per member. ``best``: ``best_of`` the run's (the
    vote's, a member's) loop as of the checkpoint.
    """
    run = RunDir.open(run_dir, read_only=True)
    try:
        check_member(run.config, member, run_dir)
        got = restore(run, step=step, best=best)
        if data_name in ("test", "validation"):
            splits = run_config.load_splits(run.config)
            dataset = splits[2] if data_name == "test" else splits[1]
        else:
            dataset = data.load_data(data_name)[2]
    finally:
        run.close()
    x, y = dataset
    state, info = got.state, got.info
    # Whether the step is an epoch's end comes from the state, not from info's fields: some
    # run directories hold the last epoch's accuracy beside mid-epoch checkpoints too.
    last = state.history[-1] if state.history else {}
    measured = state.batch == 0 and last.get("step") == state.step and data_name in ("test", "validation")

    def scored(right: int, count: int, saved: dict) -> dict:
        recorded = saved.get(f"{data_name}_accuracy") if measured else None
        acc = right / count
        return {"accuracy": acc, "correct": right, "n": count, "recorded": recorded,
                "equal": recorded is not None and math.isclose(acc, recorded, rel_tol=0, abs_tol=0)}

    out: dict[str, Any] = {
        "step": got.step, "epoch": state.epoch - 1 if state.batch == 0 else state.epoch, "batch": state.batch,
        "position": checkpoint.position(state), "differs": backend.differences(run.config.get("backend")),
        "labels": [int(v) for v in y[:predict]]}
    if not got.members or member is not None:
        one = got.nets[0 if member is None else member]
        right, _, count = evaluation.evaluate(one, dataset)
        saved = info if member is None else (info.get("members") or [{}] * len(got.nets))[member]
        predicted: Any = evaluation.predict(one, x[:predict]) if predict else []
        out.update(scored(right, count, saved), net=one,
                   best=best_of(state if member is None else state.loops[member]))
    else:
        seeds = run_config.member_seeds(run.config) or []
        out["members"] = []
        for i, (one, saved) in enumerate(zip(got.nets, info.get("members") or [{}] * len(got.nets))):
            right, _, count = evaluation.evaluate(one, dataset)
            out["members"].append({"member": i, "seed": seeds[i], **scored(right, count, saved),
                                   "best": best_of(state.loops[i])})
        votes = evaluation.vote(got.nets, x)
        right = int(np.sum(votes == y))
        predicted = votes[:predict] if predict else []
        out.update(scored(right, len(y), info), net=got.nets, best=best_of(state))
    out["predicted"] = [int(v) for v in predicted]
    return out


def best_of(loop: Loop | RunState) -> dict | None:
    """The best epoch of a loop (a lone run's, a member's, a member run's vote) so far:
    ``{"epoch", "validation_accuracy", "test_accuracy"}`` as recorded then (None where not
    measured), or None before any judged epoch."""
    record = best_record(loop)
    if record is None:
        return None
    return {"epoch": record["epoch"], "validation_accuracy": record.get("validation_accuracy"),
            "test_accuracy": record.get("test_accuracy")}


def load(run_dir: str | os.PathLike, *, step: int | None = None, best: bool = False,
         member: int | None = None) -> Network | list[Network]:
    """The trained network of ``run_dir`` (newest intact step, or as chosen).

    Of a member run: the list of its networks, or with ``member`` = K the K-th.
    """
    run = RunDir.open(run_dir, read_only=True)
    try:
        check_member(run.config, member, run_dir)
        got = restore(run, step=step, best=best)
    finally:
        run.close()
    if member is not None:
        return got.nets[member]
    return got.nets if got.members else got.nets[0]


def check_member(config: dict, member: int | None, run_dir: str | os.PathLike) -> None:
    """A one-line ValueError unless ``member`` (None, or an index K) suits the run."""
    seeds = run_config.member_seeds(config)
    if member is None:
        return
    if seeds is None:
        raise ValueError(f"{run_dir}: a run of one network has no members; leave out --member")
    if isinstance(member, bool) or not isinstance(member, int) or not 0 <= member < len(seeds):
        raise ValueError(f"{run_dir}: member must be 0 to {len(seeds) - 1} (the run has {len(seeds)}), got {member!r}")


def export_json(run_dir: str | os.PathLike, out: str | os.PathLike, *, step: int | None = None, best: bool = False,
                force: bool = False, member: int | None = None) -> dict:
    """Write the network of ``run_dir`` (newest intact step, or as chosen) as JSON at ``out``.

    network2's format for a sigmoid MLP, nn3's network3 style (with the run's mini-batch
    size) otherwise. Of a member run: member ``member`` as a lone run's, or without it
    every member as one ensemble bundle (nn3.store.bundle: each member's network, seed
    and settings, and the vote's rule), which ``evaluate_json`` and ``nn3.load`` read back.
    Refuses, before loading anything, a directory, an existing file (unless ``force``),
    a missing folder and a wrong member. Returns what it wrote: ``members`` (the count,
    or None for one network), ``step`` and ``position``.
    """
    where = pathlib.Path(out)
    if where.is_dir():
        raise ValueError(f"{out}: is a directory; give the file to write, e.g. {where / 'net.json'}")
    if where.exists() and not force:
        raise ValueError(f"{out}: exists; pass --force to replace it")
    if not where.resolve().parent.is_dir():
        raise ValueError(f"{out}: its folder {where.resolve().parent} does not exist")
    config = RunDir.read_config(run_dir)
    check_member(config, member, run_dir)
    run = RunDir.open(run_dir, read_only=True)
    try:
        got = restore(run, step=step, best=best)
    finally:
        run.close()
    state, first = got.state, got.nets[0]
    mb = None if is_mlp(first.spec) else config["sgd"].get("mini_batch_size")
    if got.members and member is None:
        settings = [dataclasses.asdict(c) for c in run_config.member_sgd(config)]
        source = {"run": str(run_dir), "preset": config.get("preset"), "step": got.step,
                  "epoch": state.epoch - 1 if state.batch == 0 else state.epoch, "batch": state.batch}
        bundle.save(out, first.spec, [layers.get_params(one) for one in got.nets],
                    run_config.member_seeds(config) or [], settings=settings, mini_batch_size=mb, source=source)
    else:
        one = got.nets[0 if member is None else member]
        export.save_json(out, one.spec, layers.get_params(one), mb)
    return {"members": len(got.nets) if got.members and member is None else None, "step": got.step,
            "position": checkpoint.position(state)}


def evaluate_json(path: str | os.PathLike, *, data_name: str = "test", dataset: str = "mnist") -> dict:
    """The accuracy of the JSON network or ensemble bundle at ``path`` on ``data_name``:
    test | validation (of ``dataset``), or a data file or directory, whose test split is used.

    Returns a dict: name (the data, in words), accuracy, correct, n; for a bundle these
    are the vote's, and ``members`` holds each member's (member, seed, accuracy, correct, n).
    """
    doc, src = export.read_document(path)
    seeds: list | None = None
    if bundle.is_bundle(doc):
        b = bundle.from_json_dict(doc, src)
        spec, all_params, seeds = b.spec, b.params, b.seeds
    else:
        spec, params, _ = export.from_json_dict(doc, src)
        all_params = [params]
    nets = [layers.build(spec) for _ in all_params]
    for net, params in zip(nets, all_params):
        layers.set_params(net, params)
    run_config.takes_mnist(nets[0], path)
    if data_name in ("test", "validation"):
        split, name = data.load_data(dataset=dataset)[2 if data_name == "test" else 1], data_name
    else:
        split, name = data.load_data(data_name, dataset=dataset)[2], f"{data_name} test"
    if seeds is None:
        right, _, n = evaluation.evaluate(nets[0], split)
        return {"name": name, "accuracy": right / n, "correct": right, "n": n}
    members = []
    for i, (net, seed) in enumerate(zip(nets, seeds)):
        right, _, n = evaluation.evaluate(net, split)
        members.append({"member": i, "seed": seed, "accuracy": right / n, "correct": right, "n": n})
    x, y = split
    right = int(np.sum(evaluation.vote(nets, x) == y))
    return {"name": name, "accuracy": right / len(y), "correct": right, "n": len(y), "members": members}
