"""A run read back from its directory alone: restore, replay, load, export, and JSON evaluated.

    >>> from nn3.runs import inspect
    >>> inspect.replay("checkpoints/demo", best=True)["accuracy"]   # doctest: +SKIP
    >>> inspect.export_json("checkpoints/demo", "net.json")         # doctest: +SKIP

Nothing here writes into a run directory: a run may still be training there.
"""
from __future__ import annotations

import dataclasses
import math
import pathlib

import jax
import numpy as np

from nn3.engine import backend, ensemble, layers, train
from nn3.engine.spec import is_mlp, validate
from nn3.runs import checkpoint
from nn3.runs import config as run_config

from nn3.store import bundle, data, export
from nn3.store.rundir import RunDir, RunDirError



def restore(run: RunDir, *, step=None, best=False, trainer=None):
    """The network (and loop) saved in ``run``; falls back past damaged steps (with a warning).

    For a member run: the list of its networks, and an ``ensemble.Members`` loop.
    """
    config = run.config
    try:
        spec = config["spec"]
        validate(spec)
        seeds = run_config.member_seeds(config)
        nets = [layers.build(spec, seed=s, init=config.get("init"))
                for s in (seeds if seeds is not None else [config["sgd"].get("seed", 0)])]
    except (KeyError, TypeError, ValueError) as e:
        raise RunDirError(f"{run.path}: its config.json does not describe a network ({e})") from None
    if not run.steps():
        raise RunDirError(f"{run.path}: holds no checkpoint yet")
    rule = run_config.sgd_of(config).rule() if seeds is None else ensemble.rule_of(run_config.member_sgd(config))
    if trainer is not None:
        target = trainer.arrays()
    else:
        target = train.checkpoint_arrays(nets[0], rule) if seeds is None else ensemble.checkpoint_arrays(nets, rule)
    n, arrays, info = run.restore(target, step=step, best=best)
    arrays = jax.tree.map(np.asarray, arrays)
    if trainer is not None:
        trainer.load_arrays(arrays)
        net = trainer.net if seeds is None else trainer.nets
    elif seeds is None:
        net = nets[0]
        layers.set_params(net, arrays["params"])
    else:
        for i, one in enumerate(nets):
            layers.set_params(one, ensemble.member(arrays["params"], i))
        net = nets
    loop = (train.Loop if seeds is None else ensemble.Members).from_json(info["loop"])
    return n, net, loop, info


def replay(run_dir, *, step=None, best=False, data_name="test", predict=0, member=None) -> dict:
    """Rebuild the network from ``run_dir`` alone and evaluate it.

    Returns a dict: step, epoch (counted from 0 as training prints it: the epoch the
    checkpoint completed, or the one it was taken in), batch (mini-batches into that
    epoch; 0 after a completed epoch), position (both in words), accuracy, correct, n,
    recorded (the accuracy measured on these very parameters when the epoch ended, or
    None: a mid-epoch checkpoint, the one Ctrl-C writes, has none), equal (whether
    they agree exactly) and differs (nn3.backend's choices that differ from the run's,
    ``["conv fused -> xla"]``). With ``predict`` = N, also predicted and labels: the
    network's digits for the first N images of the data the accuracy was measured on,
    and their labels. Nothing in the directory changes: a run may still be training there.

    Of a member run: with ``member`` = K, member K as a lone run's; else the vote's
    accuracy (and predictions), and ``members``, one such dict (accuracy, correct, n,
    recorded, equal, seed, best) per member. ``best``: ``best_of`` the run's (the
    vote's, a member's) loop as of the checkpoint.
    """
    run = RunDir.open(run_dir, read_only=True)
    try:
        check_member(run.config, member, run_dir)
        n, net, loop, info = restore(run, step=step, best=best)
        if data_name in ("test", "validation"):
            splits = run_config.load_splits(run.config)
            dataset = splits[2] if data_name == "test" else splits[1]
        else:
            dataset = data.load_data(data_name)[2]
    finally:
        run.close()
    x, y = dataset
    # Whether the step is an epoch's end comes from the loop, not from info's fields: runs
    # saved before this rule stored the last epoch's accuracy with mid-epoch checkpoints too.
    last = loop.history[-1] if loop.history else {}
    measured = loop.batch == 0 and last.get("step") == loop.step and data_name in ("test", "validation")

    def scored(right, count, saved):
        recorded = saved.get(f"{data_name}_accuracy") if measured else None
        acc = right / count
        return {"accuracy": acc, "correct": right, "n": count, "recorded": recorded,
                "equal": recorded is not None and math.isclose(acc, recorded, rel_tol=0, abs_tol=0)}

    out = {"step": n, "epoch": loop.epoch - 1 if loop.batch == 0 else loop.epoch, "batch": loop.batch,
           "position": checkpoint.position(loop), "differs": backend.differences(run.config.get("backend")),
           "labels": [int(v) for v in y[:predict]]}
    seeds = run_config.member_seeds(run.config)
    if seeds is None or member is not None:
        one = net if member is None else net[member]
        right, _, count = train.evaluate(one, dataset)
        saved = info if member is None else (info.get("members") or [{}] * len(seeds))[member]
        predicted = train.predict(one, x[:predict]) if predict else []
        out.update(scored(right, count, saved), net=one, best=best_of(loop if member is None else loop.loops[member]))
    else:
        out["members"] = []
        for i, (one, saved) in enumerate(zip(net, info.get("members") or [{}] * len(seeds))):
            right, _, count = train.evaluate(one, dataset)
            out["members"].append({"member": i, "seed": seeds[i], **scored(right, count, saved),
                                   "best": best_of(loop.loops[i])})
        votes = ensemble.vote(net, x)
        right = int(np.sum(votes == y))
        predicted = votes[:predict] if predict else []
        out.update(scored(right, len(y), info), net=net, best=best_of(loop))
    out["predicted"] = [int(v) for v in predicted]
    return out


def best_of(loop: train.Loop) -> dict | None:
    """The best epoch of a loop (a lone run's, a member's, a member run's vote) so far:
    ``{"epoch", "validation_accuracy", "test_accuracy"}`` as recorded then (None where not
    measured), or None before any judged epoch."""
    record = train.best_record(loop)
    if record is None:
        return None
    return {"epoch": record["epoch"], "validation_accuracy": record.get("validation_accuracy"),
            "test_accuracy": record.get("test_accuracy")}


def load(run_dir, *, step=None, best=False, member=None):
    """The trained ``layers.Network`` of ``run_dir`` (newest intact step, or as chosen).

    Of a member run: the list of its networks, or with ``member`` = K the K-th.
    """
    run = RunDir.open(run_dir, read_only=True)
    try:
        check_member(run.config, member, run_dir)
        net = restore(run, step=step, best=best)[1]
    finally:
        run.close()
    return net if member is None else net[member]


def check_member(config, member, run_dir) -> None:
    """A one-line ValueError unless ``member`` (None, or an index K) suits the run."""
    seeds = run_config.member_seeds(config)
    if member is None:
        return
    if seeds is None:
        raise ValueError(f"{run_dir}: a run of one network has no members; leave out --member")
    if isinstance(member, bool) or not isinstance(member, int) or not 0 <= member < len(seeds):
        raise ValueError(f"{run_dir}: member must be 0 to {len(seeds) - 1} (the run has {len(seeds)}), got {member!r}")


def export_json(run_dir, out, *, step=None, best=False, force=False, member=None) -> dict:
    """Write the network of ``run_dir`` (newest intact step, or as chosen) as JSON at ``out``.

    network2's format for a sigmoid MLP, nn3's network3 style (with the run's mini-batch
    size) otherwise. Of a member run: member ``member`` as a lone run's, or without it
    every member as one ensemble bundle (nn3.bundle: each member's network, seed and
    settings, and the vote's rule), which ``evaluate_json`` and ``nn3.load`` read back.
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
        n, net, loop, _ = restore(run, step=step, best=best)
    finally:
        run.close()
    seeds = run_config.member_seeds(config)
    first = net if seeds is None else net[0]
    mb = None if is_mlp(first.spec) else config["sgd"].get("mini_batch_size")
    if seeds is not None and member is None:
        settings = [dataclasses.asdict(c) for c in run_config.member_sgd(config)]
        source = {"run": str(run_dir), "preset": config.get("preset"), "step": n,
                  "epoch": loop.epoch - 1 if loop.batch == 0 else loop.epoch, "batch": loop.batch}
        bundle.save(out, first.spec, [layers.get_params(one) for one in net], seeds, settings=settings,
                    mini_batch_size=mb, source=source)
    else:
        one = net if member is None else net[member]
        export.save_json(out, one.spec, layers.get_params(one), mb)
    return {"members": None if seeds is None or member is not None else len(seeds), "step": n,
            "position": checkpoint.position(loop)}


def evaluate_json(path, *, data_name="test", dataset="mnist") -> dict:
    """The accuracy of the JSON network or ensemble bundle at ``path`` on ``data_name``:
    test | validation (of ``dataset``), or a data file or directory, whose test split is used.

    Returns a dict: name (the data, in words), accuracy, correct, n; for a bundle these
    are the vote's, and ``members`` holds each member's (member, seed, accuracy, correct, n).
    """
    doc, src = export.read_document(path)
    if bundle.is_bundle(doc):
        b = bundle.from_json_dict(doc, src)
        nets = [layers.build(b.spec) for _ in b.params]
        for net, params in zip(nets, b.params):
            layers.set_params(net, params)
    else:
        spec, params, _ = export.from_json_dict(doc, src)
        nets = [layers.build(spec)]
        layers.set_params(nets[0], params)
    run_config.takes_mnist(nets[0], path)
    if data_name in ("test", "validation"):
        split, name = data.load_data(dataset=dataset)[2 if data_name == "test" else 1], data_name
    else:
        split, name = data.load_data(data_name, dataset=dataset)[2], f"{data_name} test"
    if not bundle.is_bundle(doc):
        right, _, n = train.evaluate(nets[0], split)
        return {"name": name, "accuracy": right / n, "correct": right, "n": n}
    members = []
    for i, (net, seed) in enumerate(zip(nets, b.seeds)):
        right, _, n = train.evaluate(net, split)
        members.append({"member": i, "seed": seed, "accuracy": right / n, "correct": right, "n": n})
    x, y = split
    right = int(np.sum(ensemble.vote(nets, x) == y))
    return {"name": name, "accuracy": right / len(y), "correct": right, "n": len(y), "members": members}
