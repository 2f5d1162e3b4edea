"""The training loop: epochs of N >= 1 networks, each judged, scheduled and stopped as a lone run.

    >>> import numpy as np
    >>> from nn3.engine import layers, train
    >>> from nn3.engine.settings import SGDConfig
    >>> from nn3.engine.spec import mlp_spec
    >>> x = np.random.default_rng(0).random((100, 784), np.float32); y = np.arange(100) % 10
    >>> net = layers.build(mlp_spec([784, 30, 10], "QuadraticCost"), seed=0, init="normal")
    >>> run = train.fit_networks([net], [SGDConfig(epochs=2, eta=3.0)], train.Splits((x, y), test=(x, y)))
    >>> run.epoch, run.stop_reason, len(run.loops[0].history)
    (2, 'epochs', 2)

``fit`` is the book's ``SGD`` loop: for each epoch, train (one or a few compiled calls,
nn3.engine.trainer), measure, record, and decide whether to go on. It trains every
network of a ``Trainer`` at once; a lone run is one network. Each network keeps its own
``Loop`` — its eta, its best epoch, its history — exactly as its lone run would, and a
network that stops (early stopping, the plateau schedule's floor, a NaN loss) freezes
while the others go on. With several networks the run also measures their plurality
vote after each epoch. ``RunState`` holds the loops and where the run stands.

Nothing here prints or writes files: callers watch through callbacks (``on_epoch``,
``on_progress``) and may stop the loop at the end of any compiled call (``should_stop``).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nn3.engine import evaluation, processes
from nn3.engine.device_data import DeviceData
from nn3.engine.layers import Network
from nn3.engine.settings import SGDConfig
from nn3.engine.trainer import Trainer

__all__ = ["Loop", "RunState", "Splits", "best_record", "fit", "fit_networks"]

Pair = tuple[np.ndarray, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Splits:
    """The data a run measures itself on: ``(x, y)`` numpy pairs (``evaluation.as_arrays``'s forms).

    The best epoch is judged on validation data, or on test data when there is none
    (network.py's habit); without either, nothing is judged.
    """
    training: Any
    validation: Any = None
    test: Any = None

    @property
    def judge(self) -> Any:
        return self.validation if self.validation is not None else self.test


@dataclasses.dataclass
class Loop:
    """Where one network's training stands, JSON-able: enough, with its arrays, to carry on exactly."""
    epoch: int = 0          # the epoch being (or next to be) trained
    batch: int = 0          # mini-batches of that epoch already done
    step: int = 0           # mini-batches done in all
    eta: float | None = None
    best_accuracy: float | None = None
    best_epoch: int | None = None
    best_step: int | None = None
    since_best: int = 0
    since_eta_change: int = 0
    loss_sum: float = 0.0   # training loss summed over the epoch in progress, in step order
    stop_reason: str | None = None  # None, "epochs", "early_stopping", "eta_floor", "interrupted", "nan"
    history: list = dataclasses.field(default_factory=list)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Loop:
        return cls(**d)


@dataclasses.dataclass
class RunState:
    """Where a run of N networks stands, JSON-able: each network's ``Loop`` and the run's
    own position, best epoch and history.

    With one network the run's record of an epoch is that network's; with several it is
    the vote's (``validation_accuracy``, ...; ``train_loss`` the networks' mean) with
    ``members``, each network's own record (None once it has stopped), and ``best_*``
    follow the vote. ``diverged`` lists the networks whose loss went NaN.
    """
    loops: list
    epoch: int = 0
    batch: int = 0
    step: int = 0
    best_accuracy: float | None = None
    best_epoch: int | None = None
    best_step: int | None = None
    stop_reason: str | None = None
    diverged: list = dataclasses.field(default_factory=list)
    history: list = dataclasses.field(default_factory=list)

    @classmethod
    def fresh(cls, cfgs: Sequence[SGDConfig]) -> RunState:
        """A run about to begin: one new Loop per network, at its own eta."""
        return cls([Loop(eta=float(c.eta)) for c in cfgs])

    @classmethod
    def of_one(cls, loop: Loop) -> RunState:
        """The run of one network that stands where ``loop`` stands."""
        return cls([loop], epoch=loop.epoch, batch=loop.batch, step=loop.step, best_accuracy=loop.best_accuracy,
                   best_epoch=loop.best_epoch, best_step=loop.best_step, stop_reason=loop.stop_reason,
                   diverged=[0] if loop.stop_reason == "nan" else [], history=list(loop.history))

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> RunState:
        return cls(**{**d, "loops": [Loop.from_json(x) for x in d["loops"]]})


def best_record(loop: Loop | RunState) -> dict | None:
    """The history record of the best epoch so far (a network's, or a run's), or None
    before any judged epoch."""
    if loop.best_epoch is None:
        return None
    return next((r for r in loop.history if r["epoch"] == loop.best_epoch), None)


def fit_networks(nets: Sequence[Network], cfgs: Sequence[SGDConfig], splits: Splits, **kw: Any) -> RunState:
    """Train ``nets`` (one per SGDConfig) from the start on ``splits``: ``fit`` with a new
    Trainer on the training examples. ``kw``: ``fit``'s keywords."""
    x, y = evaluation.as_arrays(splits.training, nets[0].n_in, nets[0].n_out)
    trainer = Trainer(nets, cfgs, DeviceData.from_arrays(x, y))
    return fit(trainer, splits, RunState.fresh(cfgs), **kw)


def fit(trainer: Trainer, splits: Splits, run: RunState, *, epochs: int | None = None, monitor: Sequence[str] = (),
        vote: bool | None = None, eta_fn: Callable[[int], float] | None = None,
        on_epoch: Callable[[dict, RunState, Trainer], None] | None = None,
        on_progress: Callable[[int], None] | None = None,
        should_stop: Callable[[], bool] | None = None) -> RunState:
    """Train ``trainer``'s networks in place until ``cfg.epochs`` or a stop rule.

    Args:
      trainer: the networks, their settings and training examples on the device.
      splits: the data to measure on after each epoch (the training pair for the monitors).
      run: where to begin: ``RunState.fresh(cfgs)``, or a saved one to carry on from.
      epochs: train to this many epochs in all (default: the trainer's ``cfg.epochs``).
      monitor: names among "training_cost", "training_accuracy", "validation_cost":
        extra per-epoch measurements (network2's monitors).
      vote: whether the run's record is the networks' vote (a member run, even of one
        network); None: when there are several.
      eta_fn: eta as a function of the epoch (the chapter-6 exercise); overrides the schedule.
      on_epoch: called as ``on_epoch(record, run, trainer)`` after each completed epoch.
      on_progress: called with the number of mini-batches of each finished compiled call.
      should_stop: polled at the end of compiled calls; True stops with stop_reason "interrupted".
    Returns:
      ``run``, advanced: each loop's history holds one record per epoch, and
      ``stop_reason`` says why it ended ("epochs", "interrupted", "nan",
      "early_stopping", "eta_floor"; with several networks "members_stopped" once every
      one has stopped on its own).
    """
    vote = trainer.n > 1 if vote is None else vote
    epochs = trainer.cfg.epochs if epochs is None else epochs
    for loop in (run, *run.loops):
        if loop.stop_reason in ("epochs", "interrupted"):
            loop.stop_reason = None
    while run.epoch < epochs and run.stop_reason is None:
        live = [loop.stop_reason is None for loop in run.loops]
        etas = [float(eta_fn(run.epoch)) if eta_fn else loop.eta for loop in run.loops]
        ran = trainer.run_epoch(run.epoch, run.batch, etas, live, on_progress=on_progress, should_stop=should_stop)
        trainer.sync()
        for i in ran.diverged:  # back at its state before this epoch, frozen there, as its lone run stops
            run.loops[i].stop_reason = "nan"
            run.diverged.append(i)
        training = [i for i, loop in enumerate(run.loops) if loop.stop_reason is None]
        if not training:
            run.stop_reason = _all_stopped(run, vote)
            break
        for i in training:
            loop = run.loops[i]
            for v in ran.losses[i].tolist():  # a sequential float64 sum: the same wherever a run paused
                loop.loss_sum += v
            loop.step, loop.batch = run.step + ran.done - run.batch, ran.done
        run.step, run.batch = run.step + ran.done - run.batch, ran.done
        if ran.done < trainer.n_batches:
            run.stop_reason = "interrupted"
            break
        measured = _measured(trainer, training, splits, monitor)
        records = [_network_record(trainer, i, run.loops[i], etas[i], measured[i], splits, monitor)
                   if i in training else None for i in range(trainer.n)]
        if vote:
            record = _vote_record(trainer, run, records, splits)
            if all(loop.stop_reason is not None for loop in run.loops):
                run.stop_reason = _all_stopped(run, vote)
        else:
            record = records[0] or {}  # the one network trained this epoch: its record
            _follow(run, run.loops[0])
        run.history.append(record)
        if on_epoch:
            on_epoch(record, run, trainer)
    if run.stop_reason is None:
        run.stop_reason = "epochs"
    for loop in run.loops:  # the running ones end as the run does ("epochs", "interrupted")
        if loop.stop_reason is None:
            loop.stop_reason = run.stop_reason
    return run


def _all_stopped(run: RunState, vote: bool) -> str:
    """Why a run ends whose every network stopped on its own: "nan" when all diverged;
    else a lone network's own reason, or a member run's "members_stopped"."""
    if len(run.diverged) == len(run.loops):
        return "nan"
    return "members_stopped" if vote else run.loops[0].stop_reason


def _follow(run: RunState, loop: Loop) -> None:
    """A run of one network stands where that network's loop stands."""
    run.epoch, run.batch, run.step, run.stop_reason = loop.epoch, loop.batch, loop.step, loop.stop_reason
    run.best_accuracy, run.best_epoch, run.best_step = loop.best_accuracy, loop.best_epoch, loop.best_step


def _sets(splits: Splits, monitor: Sequence[str]) -> dict[str, Any]:
    """The data sets each network is measured on after an epoch, by the name its record uses."""
    out = {key: data for key, data in (("validation", splits.validation), ("test", splits.test)) if data is not None}
    if "training_cost" in monitor or "training_accuracy" in monitor:
        out["training"] = splits.training
    return out


def _measured(trainer: Trainer, which: Sequence[int], splits: Splits, monitor: Sequence[str]) -> list[dict]:
    """For each network in ``which``, ``{set name: (correct, mean cost, n)}`` on the sets of
    ``_sets``: measured by the process that holds the network, known to every process."""
    sets = _sets(splits, monitor)
    table = np.zeros((trainer.n, len(sets), 3))  # correct, mean cost, n: float64 holds each exactly
    for i in which:
        if trainer.owns(i):
            for j, data in enumerate(sets.values()):
                table[i, j] = evaluation.evaluate(trainer.nets[i], data)
    table = _from_owners(trainer, table)
    return [{key: (int(table[i, j, 0]), float(table[i, j, 1]), int(table[i, j, 2])) for j, key in enumerate(sets)}
            for i in range(trainer.n)]


def _from_owners(trainer: Trainer, values: np.ndarray) -> np.ndarray:
    """``values`` (networks first), each network's row as the process that holds it has it."""
    every = processes.gather(values)  # (processes, networks, ...)
    return np.stack([every[trainer.owner(i), i] for i in range(trainer.n)])


def _network_record(trainer: Trainer, i: int, loop: Loop, eta: float, measured: dict, splits: Splits,
                    monitor: Sequence[str]) -> dict:
    """Network ``i``'s record of the epoch just trained (its accuracies, costs, monitors) from
    what was ``measured``, with its loop moved past the epoch: best epoch, eta schedule, early stopping."""
    net, cfg = trainer.nets[i], trainer.cfgs[i]
    record = {"epoch": loop.epoch, "step": loop.step, "eta": eta, "train_loss": loop.loss_sum / trainer.n_batches}
    loop.loss_sum = 0.0
    costs = {"validation": "validation_cost" in monitor, "training": "training_cost" in monitor}
    for key, (right, cost, n) in measured.items():
        record[f"{key}_accuracy"], record[f"{key}_correct"], record[f"{key}_n"] = right / n, right, n
        if costs.get(key):
            record[f"{key}_cost"] = cost + _l2_term(cfg, evaluation.l2_norm_sq(net), n, trainer.n_full)
    _advance(loop, cfg, record, splits.judge is not None)
    loop.history.append(record)
    return record


def _l2_term(cfg: SGDConfig, l2: float, n: int, n_batches: int) -> float:
    """The L2 term of the total cost on ``n`` examples, for weights whose squares sum to
    ``l2``: network2's ``0.5*(lmbda/n)*sum w^2``, or network3's ``0.5*lmbda*sum w^2/num_batches``."""
    if cfg.l2 == "example":
        return 0.5 * cfg.lmbda / n * l2
    return 0.5 * cfg.lmbda * l2 / n_batches


def _advance(loop: Loop, cfg: SGDConfig, record: dict, judged: bool) -> None:
    """Moves a network's ``loop`` past the epoch of ``record``: its best epoch, the plateau
    schedule (eta halved after ``cfg.patience`` epochs without a new best, a stop at the
    floor) and early stopping. Nothing is judged without data to judge on."""
    better = _judge(loop, record, judged)
    if not judged:
        return
    loop.since_best = 0 if better else loop.since_best + 1
    loop.since_eta_change = 0 if better else loop.since_eta_change + 1
    if cfg.schedule == "plateau" and loop.since_eta_change >= cfg.patience and loop.eta is not None:
        loop.eta /= 2
        loop.since_eta_change = 0
        if loop.eta <= cfg.eta * cfg.eta_min_factor * (1 + 1e-9):
            loop.stop_reason = "eta_floor"
    if cfg.early_stopping and loop.since_best >= cfg.early_stopping:
        loop.stop_reason = "early_stopping"


def _vote_record(trainer: Trainer, run: RunState, records: list, splits: Splits) -> dict:
    """The run's record of an epoch of several networks: their vote's accuracies, the
    mean training loss of those still training, and each one's own record."""
    record: dict[str, Any] = {"epoch": run.epoch, "step": run.step,
                              "train_loss": float(np.mean([r["train_loss"] for r in records if r is not None]))}
    for key, data in (("validation", splits.validation), ("test", splits.test)):
        if data is not None:
            x, y = evaluation.as_arrays(data)
            preds = np.stack([evaluation.predict(net, x) if trainer.owns(i) else np.zeros(len(y), np.int32)
                              for i, net in enumerate(trainer.nets)])  # each network's by the process holding it
            votes = evaluation.plurality(_from_owners(trainer, preds), trainer.nets[0].n_out)
            right = int(np.sum(votes == y))
            record[f"{key}_accuracy"], record[f"{key}_correct"], record[f"{key}_n"] = right / len(y), right, len(y)
    record["members"] = records
    _judge(run, record, splits.judge is not None)
    return record


def _judge(holder: Loop | RunState, record: dict, judged: bool) -> bool:
    """Moves ``holder`` past the epoch of ``record``; True when the epoch is a new best.

    The best is the highest validation accuracy (test accuracy without validation data);
    a later equal one is no improvement. ``record["best"]`` says whether it is the best so far.
    """
    acc = record.get("validation_accuracy", record.get("test_accuracy"))
    holder.epoch += 1
    holder.batch = 0
    better = judged and acc is not None and (holder.best_accuracy is None or acc > holder.best_accuracy)
    if better:
        holder.best_accuracy, holder.best_epoch, holder.best_step = acc, record["epoch"], record["step"]
    record["best"] = judged and holder.best_epoch == record["epoch"]
    return better
