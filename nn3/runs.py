"""Runs: training that saves itself, resumes where it stopped, and replays from its directory.

    >>> from nn3 import runs
    >>> cfg = runs.make_config("ch1", epochs=2)
    >>> runs.start(cfg, "checkpoints/demo")     # doctest: +SKIP
    >>> runs.resume("checkpoints/demo", epochs=4)  # doctest: +SKIP
    >>> runs.replay("checkpoints/demo", best=True)["accuracy"]  # doctest: +SKIP
    >>> runs.export_json("checkpoints/demo", "net.json")           # doctest: +SKIP

The library behind every ``nn3`` command: the command line parses flags and makes one
call here (or into nn3.export / nn3.data / nn3.plots); every choice it once made itself
lives here and is tested with the rest (which settings an import trains with, what
``train --config`` reads, where a run goes by default).

A run directory holds ``config.json`` (spec, settings, seed, dataset, versions) and
orbax checkpoints named by the global mini-batch step (nn3.rundir), and
``metrics.jsonl`` (nn3.metrics). A checkpoint is written after every epoch and when
SIGINT/SIGTERM stops training at a chunk boundary. Because every random draw is a function of (seed, epoch, step), a
resumed run gives the parameters of one that never stopped, bit for bit on a CPU.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import importlib.metadata
import math
import os
import json
import pathlib
import time

import jax
import numpy as np

from nn3 import backend, bundle, data, ensemble, export, layers, metrics, presets, stop, threads, train
from nn3.rundir import CONFIG, RunDir, RunDirError
from nn3.spec import is_mlp, validate


def _versions() -> dict:
    out = {}
    for name in ("nn3", "jax", "flax", "orbax-checkpoint", "numpy"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def make_config(preset: str, *, spec=None, init=None, dataset="mnist", data_path=None, limit=None,
                members=None, **sgd) -> dict:
    """The JSON config of a run: a preset with its SGD fields overridden by ``sgd``.

    ``limit`` keeps only the first ``limit`` examples of each split (quick runs, tests).
    ``members``, a list of seeds, makes a member run: one network per seed, trained in one
    program, voting (nn3.ensemble); ``sgd``'s seed is then unused. A member may be a dict
    instead, its seed and the settings of ``ensemble.SWEEPABLE`` it has of its own (a
    sweep, see ``sweep_members``). Unknown fields and bad values raise one-line ValueErrors.
    """
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    p = presets.get(preset)
    fields = {f.name for f in dataclasses.fields(train.SGDConfig)}
    unknown = set(sgd) - fields
    if unknown:
        raise ValueError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
    merged = {**p.sgd, **{k: v for k, v in sgd.items() if v is not None}}
    spec = spec or p.spec
    if "mini_batch_size" in merged:
        spec = presets.with_mini_batch(spec, merged["mini_batch_size"])
    validate(spec)
    train.SGDConfig(**merged).check()  # every value now, before any data is looked for; its size at start
    config = {"preset": preset, "style": p.style, "spec": spec, "init": init or p.init, "sgd": merged,
              "dataset": dataset, "data": None if data_path is None else str(data_path),
              "limit": limit, "monitor": [], "versions": _versions()}
    if members is not None:
        config["members"] = _checked_members(members, merged)
    return config


def _checked_members(members, merged) -> list:
    out = [m if isinstance(m, dict) else {"seed": m} for m in members]
    seeds = [m.get("seed") for m in out]
    if not out or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds):
        raise ValueError(f"members: give one or more seeds, integers >= 0, got {seeds!r}")
    for m in out:
        unknown = set(m) - {"seed", *ensemble.SWEEPABLE}
        if unknown:
            raise ValueError(f"members: {', '.join(sorted(unknown))} cannot differ per member "
                             f"(these can: {', '.join(ensemble.SWEEPABLE)})")
        train.SGDConfig(**{**merged, **m}).check()  # the values; the data's size is checked at start
    if len({json.dumps(m, sort_keys=True) for m in out}) != len(out):
        raise ValueError(f"members: seeds must differ (equal seeds train equal members), got {seeds!r}")
    return out


def sweep_members(seeds, sweeps: dict) -> list:
    """The members of a sweep: every combination of the ``sweeps`` values ({name: [values]})
    with every seed, the values varying slowest: ``[{"seed": s, name: v, ...}, ...]``."""
    combos = [{}]
    for name, values in sweeps.items():
        combos = [{**c, name: v} for c in combos for v in values]
    return [{**c, "seed": s} for c in combos for s in seeds]


def member_sgd(config) -> list:
    """The SGDConfig of each member of a member run: the run's, with the member's own values."""
    return [_sgd({**config, "sgd": {**config["sgd"], **m}}) for m in config["members"]]


def member_seeds(config) -> list | None:
    """The seeds of a member run's members, or None for a lone run."""
    members = config.get("members")
    return None if members is None else [m["seed"] for m in members]


SETTINGS = ("epochs", "eta", "lmbda", "momentum", "mini_batch_size", "seed", "augment", "schedule",
            "early_stopping", "chunks", "optimizer")  # the training settings a command may give (train, import)


def default_run_dir(preset: str) -> str:
    """Where ``nn3 train PRESET`` puts a run unless told: checkpoints/PRESET-YYYYmmdd-HHMMSS."""
    return f"checkpoints/{preset}-{time.strftime('%Y%m%d-%H%M%S')}"


def read_recorded(where) -> dict:
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
    validate(recorded["spec"], where)
    return recorded


def train_config(preset=None, *, recorded=None, dataset=None, data_path=None, limit=None, monitor=None,
                 members=None, **settings) -> dict:
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


def _takes_mnist(net, source) -> None:
    if net.n_in != 784:
        raise ValueError(f"{source}: the network takes {net.n_in} inputs; MNIST images have 784")


def import_config(json_path, *, dataset=None, data_path=None, limit=None, monitor=None, members=None, **settings):
    """What ``nn3 import`` trains: the JSON network's config and weights, and why those settings.

    Unset settings come from the preset whose network it is, else from the book's plain
    settings for its kind of network (presets.for_network); a network3 JSON keeps its
    mini-batch size. ``members`` (seeds) makes a member run whose members all start from
    the JSON's weights. Returns ``(config, params, why)``, ``why`` a phrase for the user.
    """
    spec, params, mb, _ = export.load_json(json_path)
    _takes_mnist(layers.build(spec), json_path)
    preset, plain, why = presets.for_network(spec)
    config = make_config(preset, spec=spec, dataset=dataset or "mnist", data_path=data_path, limit=limit,
                         members=members, **{**plain, **({"mini_batch_size": mb} if mb else {}), **_given(settings)})
    config["monitor"] = list(dict.fromkeys(monitor or []))
    config["imported_from"] = str(json_path)
    return config, params, why


def describe_settings(config) -> str:
    """The settings a run trains with, in one line (what ``nn3 import`` prints before training)."""
    c = _sgd(config)
    where = config["dataset"] + (f" from {config['data']}" if config["data"] else "")
    if config["limit"]:
        where += f", the first {config['limit']} of each split"
    return (f"epochs {c.epochs}, mini-batch {c.mini_batch_size}, eta {c.eta:g}, lmbda {c.lmbda:g}, "
            f"momentum {c.momentum:g}, augment {c.augment}, schedule {c.schedule}, "
            f"early stopping {c.early_stopping or 'off'}, seed {c.seed}; data: {where}; "
            f"monitor: {', '.join(config['monitor']) or 'none'}")


def limit_threads(config) -> None:
    """Start JAX with the CPU pool that suits ``config``'s network (see nn3.threads); a
    command calls this before anything runs on JAX, a library caller may not.

    A member run gets one CPU device per core (no more than it has members), each
    running its share of the members (nn3.ensemble), and every core in the pool (unless
    NN3_CPU_THREADS says otherwise): the devices share it.
    """
    seeds = member_seeds(config)
    if seeds is not None and len(seeds) > 1:
        threads.host_devices(min(len(seeds), threads.cores()))
        if os.environ.get(threads.ENV) is None:
            return
    m = (config.get("sgd") or {}).get("mini_batch_size", 10)
    threads.limit(threads.for_spec(config.get("spec"), m if isinstance(m, int) and m > 0 else 10))


def _sgd(config) -> train.SGDConfig:
    return train.SGDConfig(**config["sgd"])


def load_splits(config):
    """The (training, validation, test) data a run's config names."""
    splits = data.load_data(config.get("data"), dataset=config.get("dataset", "mnist"), download=True)
    limit = config.get("limit")
    if limit:  # a quick run: the first ``limit`` examples of each split
        splits = tuple((x[:limit], y[:limit]) for x, y in splits)
    return splits


def _info(loop: train.Loop) -> dict:
    """What a checkpoint records beside its arrays.

    ``epoch`` is the book's zero-based count, as the training lines print it: the epoch
    just completed, or (with ``batch`` > 0) the epoch in progress. The accuracies are those
    measured on exactly these parameters: after a completed epoch; none mid-epoch.
    A member run's accuracies are the vote's, and ``members`` holds each member's.
    """
    last = loop.history[-1] if loop.history else {}
    measured = loop.batch == 0 and last.get("step") == loop.step
    info = {"epoch": loop.epoch - 1 if loop.batch == 0 else loop.epoch, "batch": loop.batch,
            "step": loop.step, "loop": loop.to_json(),
            "validation_accuracy": last.get("validation_accuracy") if measured else None,
            "test_accuracy": last.get("test_accuracy") if measured else None}
    if isinstance(loop, ensemble.Members):
        info["members"] = [{k: ((r or {}).get(k) if measured else None) for k in ("validation_accuracy", "test_accuracy")}
                           for r in last.get("members", [{}] * len(loop.loops))]
    return info


def position(loop: train.Loop) -> str:
    """Where a checkpoint stands, in the epochs the training lines print (counted from 0)."""
    if loop.batch == 0:
        return "before the first epoch" if loop.epoch == 0 else f"after epoch {loop.epoch - 1}"
    return f"in epoch {loop.epoch}, after mini-batch {loop.batch}"


class _Saver:
    """Writes checkpoints on one background thread, so that training does not wait for disk.

    At most one save is in flight: the next one (and ``wait``) first waits for it and
    re-raises its error, so a failed write still stops the run with its one-line
    message, and steps land in order. The arrays are copied to host memory before the
    thread starts; a process killed mid-write leaves orbax's temporary directory,
    which is never taken for a checkpoint.

    ``due`` spaces the saves of runs whose epochs are shorter than a save is long:
    a save is due when the time since the last one is at least SPACING times what the
    last one took (so saving costs at most ~1/SPACING of the run). The first epoch,
    the last, a new best one (``replay --best`` must find it), an interrupted one and
    the end of a stopped run are always saved.
    """

    SPACING = 100

    def __init__(self, run: RunDir):
        self.run = run
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="nn3-save")
        self.pending = None
        self.records = []         # metrics of epochs not yet written
        self.last_end = None      # perf_counter when the last save finished
        self.last_took = 0.0
        self.last_step = None     # the step of the newest save submitted
        self.last_reason = None   # and the stop reason its loop had

    def due(self) -> bool:
        return self.last_end is None or time.perf_counter() - self.last_end >= self.SPACING * self.last_took

    def submit(self, step, arrays, info):
        self.wait()
        self.last_step, self.last_reason = step, info["loop"]["stop_reason"]
        records, self.records = self.records, []
        self.pending = self.pool.submit(self._write, step, arrays, info, records)

    def _write(self, step, arrays, info, records):
        began = time.perf_counter()
        self.run.save(step, arrays, info)
        for record in records:
            metrics.append(self.run.path, record)
        self.last_end = time.perf_counter()
        self.last_took = self.last_end - began

    def wait(self):
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()

    def close(self):
        try:
            self.wait()
        finally:
            self.pool.shutdown(wait=True)


def _train(run: RunDir, net, trainer, loop, splits, *, report=None, on_progress=None) -> train.Loop:
    """Train with checkpoints at epoch boundaries (see _Saver) and at an interruption.

    SIGINT/SIGTERM (see nn3.stop) end training at the end of the running compiled call
    with a checkpoint there. The request stays recorded for the rest of the process: a
    script that trains again after Ctrl-C stops at once too, unless it calls
    ``nn3.stop.clear()``.
    """
    config = run.config
    cfg = trainer.cfg
    _, validation, test = splits
    saver = _Saver(run)
    saver.last_reason = loop.stop_reason  # resumed: as its checkpoint has it (a diverged run stays diverged)

    def on_epoch(record, lp, tr):
        saver.records.append(record)
        best = record.get("best") or any(r and r.get("best") for r in record.get("members", ()))
        if saver.due() or best or lp.epoch >= cfg.epochs or lp.stop_reason is not None:
            saver.submit(lp.step, tr.arrays(), _info(lp))
        if report:
            report(record, lp)

    pause = _pause_at_step(saver, loop.step)

    def progress(n):
        if on_progress is not None:
            on_progress(n, trainer.n_batches)
        if pause is not None:
            pause(n)

    try:
        with stop.handlers(raising=False):
            fit = ensemble.fit_members if isinstance(trainer, ensemble.EnsembleTrainer) else train.fit
            loop = fit(net, cfg, splits[0], validation, test, loop=loop, trainer=trainer,
                             monitor=tuple(config.get("monitor", ())), on_epoch=on_epoch,
                             on_progress=progress, should_stop=lambda: stop.requested() is not None)
            interrupted = loop.stop_reason == "interrupted" and saver.last_step != loop.step
            # A divergence (or the last member stopping by one) ends the run between epochs, after
            # its last save: that save is written again with the reason, so that the run reads as
            # ended for good (nn3 book skips it), at step 0 (the first weights) if none was made.
            ended = loop.stop_reason in ("nan", "members_stopped") and saver.last_reason != loop.stop_reason
            if interrupted or ended or saver.records:  # saver.records: a diverged run's last good epoch
                saver.submit(loop.step, trainer.arrays(), _info(loop))
            saver.wait()  # inside the handlers: a second Ctrl-C cannot cut a save short
    finally:
        saver.close()
    run.wait()
    return loop


_PAUSE = "NN3_TEST_PAUSE"  # "loaded", or a global step; see _pause_for_tests


def _pause_for_tests(at: str, saver: _Saver | None = None) -> None:
    """A hook for tests that signal an ``nn3`` process, so that they never race it.

    With ``NN3_TEST_PAUSE=loaded``, ``start`` pauses once its data is loaded and its
    network built (start-up, before the run directory exists); with
    ``NN3_TEST_PAUSE=N``, training pauses at the end of the first compiled call that
    reaches N mini-batches in all, after the save in flight has landed. At the pause
    the process writes ``at`` to the file ``NN3_TEST_PAUSE_FILE`` and waits until a
    signal asks it to stop (or ``kill -9`` ends it); then it goes on as after any signal.
    """
    if saver is not None:
        saver.wait()
    where = pathlib.Path(os.environ["NN3_TEST_PAUSE_FILE"])
    tmp = where.with_name(where.name + ".tmp")
    tmp.write_text(at, encoding="utf-8")
    tmp.replace(where)  # the test sees the whole word or nothing
    give_up = time.monotonic() + 600  # a test that never signals does not hang CI for ever
    while stop.requested() is None and time.monotonic() < give_up:
        time.sleep(0.01)


def _pause_at_step(saver: _Saver, step: int):
    """The progress callback that pauses at step ``$NN3_TEST_PAUSE`` (see above), or None."""
    at = os.environ.get(_PAUSE, "")
    if not at.isdigit():
        return None
    done, paused = [step], [False]

    def pause(n):
        done[0] += n
        if done[0] >= int(at) and not paused[0]:
            paused[0] = True
            _pause_for_tests(str(done[0]), saver)
    return pause


def start(config: dict, run_dir, *, params=None, report=None, on_progress=None):
    """Create ``run_dir`` for ``config`` and train it; returns (run, net, loop).

    ``params`` (a params list) starts from given weights instead of a fresh draw.
    ``report(record, loop)`` is called after each epoch; ``on_progress(n, per_epoch)``
    after each compiled chunk, with the mini-batches just done and an epoch's total.
    """
    where = pathlib.Path(run_dir)  # refused before anything is loaded
    if where.exists() and not where.is_dir():
        raise RunDirError(f"{run_dir}: exists and is not a directory")
    if (where / CONFIG).exists():
        raise RunDirError(f"{run_dir}: already holds an nn3 run; carry on with: nn3 resume {run_dir}")
    splits = load_splits(config)
    cfg = _sgd(config)
    cfg.check(len(splits[0][1]) * (5 if cfg.augment == "expand" else 1))
    net, trainer, loop = _trainer(config, splits, params)
    if os.environ.get(_PAUSE) == "loaded":
        _pause_for_tests("loaded")
    if stop.requested() is not None:  # a Ctrl-C that a library swallowed while loading: no directory yet
        raise KeyboardInterrupt
    # The backend's choices (a replay elsewhere compares them) and where the members ran (not compared).
    config = {**config, "backend": {**backend.choices().record(), **_placement(trainer)}}
    with stop.handlers(raising=False):  # never half a directory: a signal now stops at the first call
        run = RunDir.create(run_dir, config)
    loop = _train(run, net, trainer, loop, splits, report=report, on_progress=on_progress)
    return run, net, loop


def _trainer(config, splits, params=None):
    """(the network, or a member run's list of them; its trainer; a fresh loop) for ``config``."""
    cfg = _sgd(config)
    seeds = member_seeds(config)
    if seeds is None:
        net = layers.build(config["spec"], seed=cfg.seed, init=config.get("init"))
        if params is not None:
            layers.set_params(net, params)
        return net, train.Trainer(net, cfg, splits[0]), train.Loop(eta=float(cfg.eta))
    nets = [layers.build(config["spec"], seed=s, init=config.get("init")) for s in seeds]
    for net in nets if params is not None else ():
        layers.set_params(net, params)
    cfgs = member_sgd(config)
    trainer = ensemble.EnsembleTrainer(nets, cfg, splits[0], seeds, cfgs)
    return nets, trainer, ensemble.Members([train.Loop(eta=float(c.eta)) for c in cfgs])


def _placement(trainer) -> dict:
    """Where a run computes, beside the backend's choices: the devices this process has
    and, of a member run, how many its members are sharded over and their number with
    padding (a replay does not compare these: the numbers are the same on any count)."""
    out = {"devices": jax.device_count()}
    if isinstance(trainer, ensemble.EnsembleTrainer):
        out["member_devices"] = 1 if trainer.mesh is None else trainer.mesh.size
        out["members_padded"] = trainer.width
    return out


def restore(run: RunDir, *, step=None, best=False, trainer=None):
    """The network (and loop) saved in ``run``; falls back past damaged steps (with a warning).

    For a member run: the list of its networks, and an ``ensemble.Members`` loop.
    """
    config = run.config
    try:
        spec = config["spec"]
        validate(spec)
        seeds = member_seeds(config)
        nets = [layers.build(spec, seed=s, init=config.get("init"))
                for s in (seeds if seeds is not None else [config["sgd"].get("seed", 0)])]
    except (KeyError, TypeError, ValueError) as e:
        raise RunDirError(f"{run.path}: its config.json does not describe a network ({e})") from None
    if not run.steps():
        raise RunDirError(f"{run.path}: holds no checkpoint yet")
    rule = _sgd(config).rule() if seeds is None else ensemble.rule_of(member_sgd(config))
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


def resume(run_dir, *, epochs=None, report=None, on_progress=None):
    """Carry on the run in ``run_dir`` (to ``epochs`` in all, if given); returns (run, net, loop)."""
    run = RunDir.open(run_dir)
    config = run.config
    if epochs is not None:
        config["sgd"]["epochs"] = epochs
    splits = load_splits(config)
    net, trainer, loop = _trainer(config, splits)
    if run.steps():
        _, net, loop, _ = restore(run, trainer=trainer)
    elif config.get("imported_from"):
        raise RunDirError(f"{run_dir}: holds no checkpoint yet and began from "
                              f"{config['imported_from']}; import it again")
    # else: stopped before its first checkpoint: (seed, config) make starting over the same run
    if epochs is not None:  # checked and restorable: from now on the run's length (a later resume keeps to it)
        run.write_config(config)
    metrics.truncate(run.path, loop.epoch)
    have = {r.get("epoch") for r in metrics.read(run.path)}
    for record in loop.history:
        if record["epoch"] not in have:
            metrics.append(run.path, record)
    loop = _train(run, net, trainer, loop, splits, report=report, on_progress=on_progress)
    return run, net, loop


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
            splits = load_splits(run.config)
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
           "position": position(loop), "differs": backend.differences(run.config.get("backend")),
           "labels": [int(v) for v in y[:predict]]}
    seeds = member_seeds(run.config)
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
    seeds = member_seeds(config)
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
    seeds = member_seeds(config)
    first = net if seeds is None else net[0]
    mb = None if is_mlp(first.spec) else config["sgd"].get("mini_batch_size")
    if seeds is not None and member is None:
        settings = [dataclasses.asdict(c) for c in member_sgd(config)]
        source = {"run": str(run_dir), "preset": config.get("preset"), "step": n,
                  "epoch": loop.epoch - 1 if loop.batch == 0 else loop.epoch, "batch": loop.batch}
        bundle.save(out, first.spec, [layers.get_params(one) for one in net], seeds, settings=settings,
                    mini_batch_size=mb, source=source)
    else:
        one = net if member is None else net[member]
        export.save_json(out, one.spec, layers.get_params(one), mb)
    return {"members": None if seeds is None or member is not None else len(seeds), "step": n,
            "position": position(loop)}


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
    _takes_mnist(nets[0], path)
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


def stop_message(loop: train.Loop, run_dir) -> str | None:
    """A line for a run that stopped early, or None."""
    if loop.stop_reason == "nan" and loop.step == 0:
        return (f"training diverged (NaN loss) in epoch {loop.epoch}, before any epoch completed; "
                f"the checkpoint at step 0 holds the first weights (try a smaller eta)")
    lines = {
        "nan": lambda: f"training diverged (NaN loss) in epoch {loop.epoch}; stopped, the last good checkpoint "
                       f"(step {loop.step}) stays the latest",
        "interrupted": lambda: f"interrupted {position(loop)}; checkpoint saved at step {loop.step}; "
                               f"carry on with: nn3 resume {run_dir}",
        "early_stopping": lambda: f"early stopping after epoch {loop.epoch - 1}: no improvement in "
                                  f"{loop.since_best} epochs",
        "eta_floor": lambda: f"stopped after epoch {loop.epoch - 1}: eta fell to {loop.eta:g}",
        "members_stopped": lambda: f"every member stopped by epoch {loop.epoch - 1}: "
                                   + ", ".join(f"member {i} {lp.stop_reason}" for i, lp in enumerate(loop.loops)),
    }
    return lines[loop.stop_reason]() if loop.stop_reason in lines else None
