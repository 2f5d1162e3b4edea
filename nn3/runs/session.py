"""Training that saves itself: start a run in its directory, resume it, stop it cleanly on a signal.

    >>> from nn3.runs import config, session
    >>> c = config.make_config("ch1", epochs=2)
    >>> run, nets, state = session.start(c, "checkpoints/demo")     # doctest: +SKIP
    >>> run, nets, state = session.resume("checkpoints/demo", epochs=4)  # doctest: +SKIP

A run directory holds ``config.json`` (spec, settings, seeds, dataset, versions), orbax
checkpoints named by the global mini-batch step (nn3.store.rundir) and ``metrics.jsonl``
(nn3.store.metrics). ``start`` and ``resume`` build the networks and the trainer from
the config alone, train them with ``engine.train.fit`` and save: after an epoch (spaced
when epochs are short, nn3.runs.saver), at a new best, at the end, and where a signal
stopped training (nn3.runs.stop: SIGINT, SIGTERM, and Ctrl-Break on Windows, at the end
of the running compiled call). Every random draw is a function of (seed, epoch, step),
so a resumed run gives the parameters of one that never stopped, bit for bit on a CPU.

A caller follows a run through a ``Watch``: the progress of each compiled call, the
record of each epoch, and the moment the data is loaded (before anything is written).
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable
from typing import Any

import jax

from nn3.engine import backend, layers, processes, threads
from nn3.engine.device_data import DeviceData
from nn3.engine.evaluation import as_arrays
from nn3.engine.layers import Network
from nn3.engine.train import RunState, Splits, fit
from nn3.engine.trainer import Trainer
from nn3.runs import checkpoint, cluster, inspect, stop, watchdog
from nn3.runs import config as run_config
from nn3.runs.saver import Saver
from nn3.store import metrics
from nn3.store.rundir import CONFIG, RunDir

__all__ = ["Watch", "limit_threads", "resume", "start", "stop_message"]


@dataclasses.dataclass(frozen=True)
class Watch:
    """How the caller of ``start`` or ``resume`` follows a run; every callback may be None.

    Attributes:
      on_ready: called once the data is loaded and the networks are built, before the
        run directory exists (``start`` only).
      on_progress: called as ``on_progress(n, per_epoch, step)`` after each compiled
        call, with its mini-batches, an epoch's, and the global step it reached.
      on_epoch: called as ``on_epoch(record, state)`` after each epoch, with the run's
        record (the network's, or a member run's vote) and its ``RunState``.
      settled: call ``on_progress`` only once the checkpoint in flight is on disk (a
        caller that may kill the process there loses no more than the running epoch).
    """
    on_ready: Callable[[], None] | None = None
    on_progress: Callable[[int, int, int], None] | None = None
    on_epoch: Callable[[dict, RunState], None] | None = None
    settled: bool = False


def limit_threads(config: dict, setup: cluster.Setup | None = None) -> None:
    """Start JAX as ``config``'s run wants it (a command calls this before anything runs on
    JAX; a library caller may not): its CPU devices and thread pool (nn3.engine.threads),
    and, with ``setup``, the other processes of the run (nn3.runs.cluster).

    A member run gets one CPU device per core (no more than it has members), each
    running its share of the members, and every core in the pool (unless
    NN3_CPU_THREADS says otherwise): the devices share it. A pool of n threads in
    process k of a run takes the cores from the (k * n)-th on.
    """
    seeds = run_config.member_seeds(config)
    many = seeds is not None and len(seeds) > 1
    if seeds is not None and many:
        threads.host_devices(min(len(seeds), threads.cores()))
    if setup is not None:
        cluster.join(setup)
    if not many or os.environ.get(threads.ENV) is not None:
        m = (config.get("sgd") or {}).get("mini_batch_size", 10)
        n = threads.for_spec(config.get("spec"), m if isinstance(m, int) and m > 0 else 10)
        threads.limit(n, first=cluster.jax_index() * (n or 0))  # processes on one machine: cores of their own
    cluster.start()


def start(config: dict, run_dir: str | os.PathLike, *, params: list | None = None,
          watch: Watch = Watch()) -> tuple[RunDir | None, list[Network], RunState]:
    """Create ``run_dir`` for ``config`` and train it.

    Args:
      config: a checked config (nn3.runs.config).
      run_dir: a directory that does not exist yet, or is empty.
      params: a params list to start every network from instead of a fresh draw (import).
      watch: what to call as the run goes.
    Returns:
      (the run directory, still open, or None on a process other than the primary of a
      run of several; the trained networks; the RunState).
    """
    cluster.check_same("settings", {k: v for k, v in config.items() if k != "versions"})
    cluster.check_same("nn3, JAX and their libraries' versions", config.get("versions"))
    cluster.first_error(_refusal(run_dir) if processes.is_primary() else None)  # before anything is loaded
    splits = run_config.load_splits(config)
    trainer, state = _trainer(config, splits, params)
    if watch.on_ready:
        watch.on_ready()
    if cluster.any_stop(stop.requested()) is not None:  # a Ctrl-C swallowed while loading: no directory yet
        raise KeyboardInterrupt
    # The backend's choices (a replay elsewhere compares them) and where the members ran (not compared).
    config = {**config, "backend": {**backend.choices().record(), **_placement(trainer, config)}}
    run = None
    if processes.is_primary():
        with stop.handlers(raising=False):  # never half a directory: a signal now stops at the first call
            run = RunDir.create(run_dir, config)
    return run, trainer.nets, _train(run, config, trainer, state, splits, watch)


def _refusal(run_dir: str | os.PathLike) -> str | None:
    """Why ``run_dir`` cannot hold a new run, in one line, or None."""
    where = pathlib.Path(run_dir)
    if where.exists() and not where.is_dir():
        return f"{run_dir}: exists and is not a directory"
    if (where / CONFIG).exists():
        return f"{run_dir}: already holds an nn3 run; carry on with: nn3 resume {run_dir}"
    return None


def resume(run_dir: str | os.PathLike, *, epochs: int | None = None,
           watch: Watch = Watch()) -> tuple[RunDir | None, list[Network], RunState]:
    """Carry on the run in ``run_dir`` (to ``epochs`` in all, if given); returns what ``start`` does.

    In a run of several processes only the primary reads the directory: the others get
    its config, arrays and state through the collectives.
    """
    run, config, error = None, None, None
    if processes.is_primary():
        try:
            run = RunDir.open(run_dir)
            config = run.config
            if epochs is not None:
                config["sgd"]["epochs"] = epochs
            if not run.steps() and config.get("imported_from"):
                error = (f"{run_dir}: holds no checkpoint yet and began from {config['imported_from']}; "
                         f"import it again")
        except ValueError as e:  # RunDirError: one line
            error = str(e)
    cluster.first_error(error)
    config = cluster.agree(config)
    if cluster.started() and run_config.member_seeds(config) is None:
        raise cluster.ClusterError(f"{run_dir}: a run of one network cannot use more than one process")
    splits = run_config.load_splits(config)
    trainer, state = _trainer(config, splits)
    if cluster.agree(bool(run is not None and run.steps())):
        if run is not None:
            _, arrays, info = inspect.read(run, trainer.nets)
        else:  # the shapes to receive the primary's arrays into
            arrays, info = checkpoint.stacked_arrays(checkpoint.target(trainer.nets, trainer.rule, True), True), None
        trainer.load_arrays(processes.from_primary(arrays))
        state = checkpoint.state_of(cluster.agree(info), run_config.member_seeds(config) is not None)
    # else: stopped before its first checkpoint: (seed, config) make starting over the same run
    if run is not None:
        if epochs is not None:  # checked and restorable: from now on the run's length (a later resume keeps to it)
            run.write_config(config)
        metrics.truncate(run.path, state.epoch)
        have = {r.get("epoch") for r in metrics.read(run.path)}
        for record in state.history:
            if record["epoch"] not in have:
                metrics.append(run.path, record)
    return run, trainer.nets, _train(run, config, trainer, state, splits, watch)


def _trainer(config: dict, splits: tuple, params: list | None = None) -> tuple[Trainer, RunState]:
    """The trainer of ``config``'s networks on the training split, and a fresh RunState."""
    cfgs = run_config.member_sgd(config)
    nets = [layers.build(config["spec"], seed=c.seed, init=config.get("init")) for c in cfgs]
    if params is not None:
        for net in nets:
            layers.set_params(net, params)
    x, y = as_arrays(splits[0], nets[0].n_in, nets[0].n_out)
    return Trainer(nets, cfgs, DeviceData.from_arrays(x, y)), RunState.fresh(cfgs)


def _placement(trainer: Trainer, config: dict) -> dict:
    """Where a run computes, beside the backend's choices: the devices this process has
    and, of a member run, how many its members are sharded over and their number with
    padding (a replay does not compare these: the numbers are the same on any count)."""
    out: dict[str, Any] = {"devices": jax.device_count()}
    if run_config.member_seeds(config) is not None:
        out["member_devices"] = 1 if trainer.mesh is None else trainer.mesh.size
        out["members_padded"] = trainer.width
    return out


class _Checkpoints:
    """When a session saves, and what: every process gathers the arrays, the primary writes.

    After an epoch: when the saver says one is due (always, in a run of several
    processes: each must know), at a new best, at the last epoch and when the run
    stops. At the end: where a signal stopped it, and once more where a divergence (or
    the last member stopping by one) ended it, with the reason, so that the run reads as
    ended for good (``nn3 book`` skips it), at step 0 (the first weights) if none was made.
    """

    def __init__(self, run: RunDir | None, trainer: Trainer, stacked: bool, state: RunState):
        self.saver = Saver(run) if run is not None else None
        self.trainer, self.stacked, self.epochs = trainer, stacked, trainer.cfg.epochs
        self.step: int | None = None            # the newest save's step
        self.reason = state.stop_reason         # and its stop reason (resumed: its checkpoint's)
        self.unsaved: list[dict] = []           # records of the epochs since

    def save(self, st: RunState) -> None:
        arrays = checkpoint.arrays(self.trainer, self.stacked)  # every process: the members are gathered
        self.step, self.reason, self.unsaved = st.step, st.stop_reason, []
        if self.saver is not None:
            self.saver.submit(st.step, arrays, checkpoint.info(st, self.stacked))

    def after_epoch(self, record: dict, st: RunState) -> None:
        if self.saver is not None:
            self.saver.records.append(record)
        self.unsaved.append(record)
        best = record.get("best") or any(r and r.get("best") for r in record.get("members", ()))
        due = cluster.started() or (self.saver is not None and self.saver.due())
        if due or best or st.epoch >= self.epochs or st.stop_reason is not None:
            self.save(st)

    def at_end(self, st: RunState) -> None:
        interrupted = st.stop_reason == "interrupted" and self.step != st.step
        ended = st.stop_reason in ("nan", "members_stopped") and self.reason != st.stop_reason
        if interrupted or ended or self.unsaved:  # unsaved: a diverged run's last good epoch
            self.save(st)
        if self.saver is not None:
            self.saver.wait()

    def close(self) -> None:
        if self.saver is not None:
            self.saver.close()


def _train(run: RunDir | None, config: dict, trainer: Trainer, state: RunState, splits: tuple,
           watch: Watch) -> RunState:
    """Train with checkpoints at epoch boundaries and at an interruption (``_Checkpoints``).

    SIGINT/SIGTERM (Ctrl-Break on Windows; nn3.runs.stop) end training at the end of the
    running compiled call with a checkpoint there; in a run of several processes, a
    signal to any of them stops them all there. The request stays recorded for the rest
    of the process: a script that trains again after Ctrl-C stops at once too, unless it
    calls ``stop.clear()``. ``run`` is None on the processes that do not write (every
    process still takes part in gathering what is saved).
    """
    stacked = run_config.member_seeds(config) is not None
    saves = _Checkpoints(run, trainer, stacked, state)
    reached = [state.step]

    def on_epoch(record: dict, st: RunState, _: Trainer) -> None:
        saves.after_epoch(record, st)
        if watch.on_epoch:
            watch.on_epoch(record, st)

    def on_progress(n: int) -> None:
        reached[0] += n
        if watch.settled and saves.saver is not None:
            saves.saver.wait()
        if watch.on_progress:
            watch.on_progress(n, trainer.n_batches, reached[0])

    def should_stop() -> bool:  # in a run of several: a request to any process stops them all
        asked = cluster.any_stop(stop.requested())
        if asked is not None:
            stop.adopt(asked)
        return asked is not None

    try:
        with stop.handlers(raising=False):
            try:
                state = fit(trainer, Splits(*splits), state, monitor=tuple(config.get("monitor", ())), vote=stacked,
                            on_epoch=on_epoch, on_progress=on_progress, should_stop=should_stop)
            except Exception as e:  # in a run of several: another process is gone
                if not cluster.started():
                    raise
                watchdog.lost(e)
            saves.at_end(state)  # inside the handlers: a second Ctrl-C cannot cut a save short
    finally:
        saves.close()
    if run is not None:
        run.wait()
    cluster.finish()
    return state


def stop_message(state: RunState, run_dir: str | os.PathLike, *, members: bool = False) -> str | None:
    """A line for a run that stopped early, or None. ``members``: a member run (its own lines)."""
    loop = state if members else state.loops[0]
    if loop.stop_reason == "nan" and loop.step == 0:
        return (f"training diverged (NaN loss) in epoch {loop.epoch}, before any epoch completed; "
                f"the checkpoint at step 0 holds the first weights (try a smaller eta)")
    lines: dict[str, Callable[[], str]] = {
        "nan": lambda: f"training diverged (NaN loss) in epoch {loop.epoch}; stopped, the last good checkpoint "
                       f"(step {loop.step}) stays the latest",
        "interrupted": lambda: f"interrupted {checkpoint.position(loop)}; checkpoint saved at step {loop.step}; "
                               f"carry on with: nn3 resume {run_dir}",
        "early_stopping": lambda: f"early stopping after epoch {loop.epoch - 1}: no improvement in "
                                  f"{getattr(loop, 'since_best', 0)} epochs",
        "eta_floor": lambda: f"stopped after epoch {loop.epoch - 1}: eta fell to {getattr(loop, 'eta', 0):g}",
        "members_stopped": lambda: f"every member stopped by epoch {loop.epoch - 1}: "
                                   + ", ".join(f"member {i} {lp.stop_reason}" for i, lp in enumerate(state.loops)),
    }
    reason = loop.stop_reason
    return lines[reason]() if reason in lines else None
