"""Training that saves itself: start a run, resume it, stop it cleanly on a signal.

    >>> from nn3.runs import config, session
    >>> c = config.make_config("ch1", epochs=2)
    >>> session.start(c, "checkpoints/demo")          # doctest: +SKIP
    >>> session.resume("checkpoints/demo", epochs=4)  # doctest: +SKIP

A run directory holds ``config.json`` (spec, settings, seed, dataset, versions) and
orbax checkpoints named by the global mini-batch step (nn3.store.rundir), and
``metrics.jsonl`` (nn3.store.metrics). A checkpoint is written after every epoch (spaced
when epochs are short, nn3.runs.saver) and when SIGINT/SIGTERM stops training at the end
of a compiled call. Because every random draw is a function of (seed, epoch, step), a
resumed run gives the parameters of one that never stopped, bit for bit on a CPU.
"""
from __future__ import annotations

import os
import pathlib
import time

import jax

from nn3.engine import backend, ensemble, layers, threads, train
from nn3.runs import checkpoint, inspect, stop
from nn3.runs import config as run_config

from nn3.runs.saver import Saver
from nn3.store import metrics
from nn3.store.rundir import CONFIG, RunDir, RunDirError



def limit_threads(config) -> None:
    """Start JAX with the CPU pool that suits ``config``'s network (see nn3.threads); a
    command calls this before anything runs on JAX, a library caller may not.

    A member run gets one CPU device per core (no more than it has members), each
    running its share of the members (nn3.ensemble), and every core in the pool (unless
    NN3_CPU_THREADS says otherwise): the devices share it.
    """
    seeds = run_config.member_seeds(config)
    if seeds is not None and len(seeds) > 1:
        threads.host_devices(min(len(seeds), threads.cores()))
        if os.environ.get(threads.ENV) is None:
            return
    m = (config.get("sgd") or {}).get("mini_batch_size", 10)
    threads.limit(threads.for_spec(config.get("spec"), m if isinstance(m, int) and m > 0 else 10))


def _train(run: RunDir, net, trainer, loop, splits, *, report=None, on_progress=None) -> train.Loop:
    """Train with checkpoints at epoch boundaries (see Saver) and at an interruption.

    SIGINT/SIGTERM (see nn3.stop) end training at the end of the running compiled call
    with a checkpoint there. The request stays recorded for the rest of the process: a
    script that trains again after Ctrl-C stops at once too, unless it calls
    ``nn3.stop.clear()``.
    """
    config = run.config
    cfg = trainer.cfg
    _, validation, test = splits
    saver = Saver(run)
    saver.last_reason = loop.stop_reason  # resumed: as its checkpoint has it (a diverged run stays diverged)

    def on_epoch(record, lp, tr):
        saver.records.append(record)
        best = record.get("best") or any(r and r.get("best") for r in record.get("members", ()))
        if saver.due() or best or lp.epoch >= cfg.epochs or lp.stop_reason is not None:
            saver.submit(lp.step, tr.arrays(), checkpoint.info(lp))
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
                saver.submit(loop.step, trainer.arrays(), checkpoint.info(loop))
            saver.wait()  # inside the handlers: a second Ctrl-C cannot cut a save short
    finally:
        saver.close()
    run.wait()
    return loop


_PAUSE = "NN3_TEST_PAUSE"  # "loaded", or a global step; see _pause_for_tests


def _pause_for_tests(at: str, saver: Saver | None = None) -> None:
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
    tmp.write_text(at)
    tmp.replace(where)  # the test sees the whole word or nothing
    give_up = time.monotonic() + 600  # a test that never signals does not hang CI for ever
    while stop.requested() is None and time.monotonic() < give_up:
        time.sleep(0.01)


def _pause_at_step(saver: Saver, step: int):
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
    splits = run_config.load_splits(config)
    cfg = run_config.sgd_of(config)
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
    cfg = run_config.sgd_of(config)
    seeds = run_config.member_seeds(config)
    if seeds is None:
        net = layers.build(config["spec"], seed=cfg.seed, init=config.get("init"))
        if params is not None:
            layers.set_params(net, params)
        return net, train.Trainer(net, cfg, splits[0]), train.Loop(eta=float(cfg.eta))
    nets = [layers.build(config["spec"], seed=s, init=config.get("init")) for s in seeds]
    for net in nets if params is not None else ():
        layers.set_params(net, params)
    cfgs = run_config.member_sgd(config)
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


def resume(run_dir, *, epochs=None, report=None, on_progress=None):
    """Carry on the run in ``run_dir`` (to ``epochs`` in all, if given); returns (run, net, loop)."""
    run = RunDir.open(run_dir)
    config = run.config
    if epochs is not None:
        config["sgd"]["epochs"] = epochs
    splits = run_config.load_splits(config)
    net, trainer, loop = _trainer(config, splits)
    if run.steps():
        _, net, loop, _ = inspect.restore(run, trainer=trainer)
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


def stop_message(loop: train.Loop, run_dir) -> str | None:
    """A line for a run that stopped early, or None."""
    if loop.stop_reason == "nan" and loop.step == 0:
        return (f"training diverged (NaN loss) in epoch {loop.epoch}, before any epoch completed; "
                f"the checkpoint at step 0 holds the first weights (try a smaller eta)")
    lines = {
        "nan": lambda: f"training diverged (NaN loss) in epoch {loop.epoch}; stopped, the last good checkpoint "
                       f"(step {loop.step}) stays the latest",
        "interrupted": lambda: f"interrupted {checkpoint.position(loop)}; checkpoint saved at step {loop.step}; "
                               f"carry on with: nn3 resume {run_dir}",
        "early_stopping": lambda: f"early stopping after epoch {loop.epoch - 1}: no improvement in "
                                  f"{loop.since_best} epochs",
        "eta_floor": lambda: f"stopped after epoch {loop.epoch - 1}: eta fell to {loop.eta:g}",
        "members_stopped": lambda: f"every member stopped by epoch {loop.epoch - 1}: "
                                   + ", ".join(f"member {i} {lp.stop_reason}" for i, lp in enumerate(loop.loops)),
    }
    return lines[loop.stop_reason]() if loop.stop_reason in lines else None
