"""What the book's three programs share: the engine network, its loop and seed, saving,
and the lines the book prints after each epoch.

    >>> from nn3.book import facade
    >>> record = {"epoch": 0, "test_correct": 9129, "test_n": 10000}
    >>> facade.epoch_lines(record, "network")
    ['Epoch 0: 9129 / 10000']
    >>> facade.epoch_lines({"epoch": 2, "validation_correct": 9392, "validation_n": 10000},
    ...                    "network2", monitor=("validation_accuracy",))
    ['Epoch 2 training complete', 'Accuracy on evaluation data: 9392 / 10000']

``Facade`` is the base of ``network.Network``, ``network2.Network`` and
``network3.Network``: it holds the engine network (``engine``, an nn3.engine.layers
module), the ``loop`` (where training stands: epochs done, history), the ``seed`` that
remakes it, the settings of the last ``SGD`` call, and writes all of that as a run
directory (``save_run``) or as JSON (``save_json``). ``nn3.load`` (nn3.saved) reads both
back.

``Ensemble`` holds several such networks that vote (what ``network3.train_ensemble``
returns and what ``nn3.load`` makes of an ensemble bundle).

``epoch_lines`` is the one place the book's per-epoch lines are written: the façades
print them during ``SGD`` and ``nn3 train`` / ``resume`` print them for a run of the
same style, so the two cannot drift apart.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from nn3.engine import evaluation, layers
from nn3.engine.device_data import DeviceData
from nn3.engine.settings import SGDConfig
from nn3.engine.spec import is_mlp
from nn3.engine.train import Loop, RunState, Splits, best_record, fit
from nn3.engine.trainer import Trainer, checkpoint_arrays
from nn3.runs import checkpoint
from nn3.runs import config as run_config
from nn3.store import bundle, export, metrics
from nn3.store.rundir import RunDir

__all__ = ["MONITOR_LINES", "Ensemble", "Facade", "draw_seed", "epoch_lines", "members_line", "whole_number"]

# network2's monitors, in the order the book prints them: (the key a run records, its line)
MONITOR_LINES = {
    "training_cost": lambda r: f"Cost on training data: {r['training_cost']}",
    "training_accuracy": lambda r: f"Accuracy on training data: {r['training_correct']} / {r['training_n']}",
    "validation_cost": lambda r: f"Cost on evaluation data: {r['validation_cost']}",
    "validation_accuracy":
        lambda r: f"Accuracy on evaluation data: {r['validation_correct']} / {r['validation_n']}",
}


def epoch_lines(record: dict, style: str, monitor: Sequence[str] = (), start: int = 0) -> list[str]:
    """The lines the book's ``style`` program prints after the epoch of ``record``.

    ``style`` is "network", "network2" or "network3"; ``monitor`` names the quantities
    shown besides (keys of MONITOR_LINES, printed in the book's order); ``start`` is
    subtracted from the epoch, as each ``SGD`` call counts its epochs from 0.
    network3 shows the validation accuracy in its own line, so it never repeats it.
    """
    j = record["epoch"] - start
    if style == "network":
        lines = [f"Epoch {j}: {record['test_correct']} / {record['test_n']}" if "test_correct" in record
                 else f"Epoch {j} complete"]
    elif style == "network2":
        lines = [f"Epoch {j} training complete"]
    else:
        lines = [f"Epoch {j}: validation accuracy {record['validation_accuracy']:.2%}"]
        if record["best"]:
            lines.append("This is the best validation accuracy to date.")
            if "test_accuracy" in record:
                lines.append(f"The corresponding test accuracy is {record['test_accuracy']:.2%}")
        monitor = [m for m in monitor if m != "validation_accuracy"]
    return lines + [line(record) for name, line in MONITOR_LINES.items() if name in monitor]


def members_line(record: dict) -> str:
    """One line for an epoch of several networks: each one's accuracy and the vote's
    (a stopped network shows "stopped"). ``nn3 train --members`` prints it too."""
    key = "validation" if "validation_accuracy" in record else "test"
    each = " ".join("stopped" if r is None else f"{r[key + '_accuracy']:.2%}" for r in record["members"])
    return f"Epoch {record['epoch']}: {key} accuracy of the members {each}; the vote {record[key + '_accuracy']:.2%}"


def draw_seed(seed: int | None = None) -> int:
    """``seed``, or a fresh one from numpy's global generator when it is None; a seed
    outside [0, 2**32) is a ValueError.

    The book's networks drew their weights from ``np.random``; we draw just the seed
    from it, and every draw after that comes from the seed.
    """
    if seed is None:
        return int(np.random.randint(0, 2**31 - 1))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"Network: seed must be an integer in [0, 2**32), got {seed!r}")
    return int(seed)


def _same(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are the same data: one object, or pairs of the same two arrays."""
    if a is b:
        return True
    return isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b) == 2 and a[0] is b[0] and a[1] is b[1]


def whole_number(v: Any, name: str) -> int:
    """``v`` as an int; a float is accepted when it is whole, anything else is a ValueError
    naming ``name``.

    The book's scripts are Python 2, where ``1500000 / size`` is an int; run under
    Python 3 it arrives as ``30.0``.
    """
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return int(v)
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"SGD: {name} must be a whole number, got {v!r}")
    return int(v)


class Facade:
    """The state every book network keeps: ``engine``, ``loop``, ``seed``, ``last_config``.

    A subclass names its ``style`` (the book program it stands for) and ``init`` (how
    its weights start), checks its own arguments, then calls ``_build(spec, seed)``.
    """

    style = "network3"
    init = "network3"
    seed: int
    engine: layers.Network
    loop: Loop
    last_config: SGDConfig | None
    run_config: dict | None

    def _build(self, spec: dict, seed: int | None) -> None:
        # The seed is drawn only after the subclass has checked its arguments: a bad call
        # takes nothing from np.random, so a script's later networks start as they would
        # without it.
        self.seed = draw_seed(seed)
        self.engine = layers.build(spec, seed=self.seed, init=self.init)
        # Epochs already trained: a second SGD call goes on with fresh shuffles, as the book's would.
        self.loop = Loop()
        self.last_config = None  # the settings of the last SGD call (saved with the network)
        self.run_config = None   # the config.json of the run this network was loaded from, if any
        self._examples: tuple[Any, DeviceData] | None = None  # the training data last trained on, on the device

    def _fit(self, cfg: SGDConfig, training_data: Any, validation_data: Any = None, test_data: Any = None,
             **kw: Any) -> None:
        """Train on with ``cfg`` (its ``epochs`` counted from the run's start); ``kw``: ``train.fit``'s."""
        self.last_config = cfg
        self.loop.stop_reason = None
        self.loop.eta = float(cfg.eta)
        trainer = Trainer([self.engine], [cfg], self.examples(training_data))
        run = fit(trainer, Splits(training_data, validation_data, test_data), RunState.of_one(self.loop), **kw)
        self.loop = run.loops[0]

    def examples(self, training_data: Any) -> DeviceData:
        """``training_data`` on the device, copied there once for as long as SGD is given
        the same arrays (the same ``(x, y)`` arrays, or the same book list).

        Like network3's ``load_data_shared``, which put the data on the GPU once: an
        array changed in place after the first SGD call that saw it is not copied again;
        pass the changed data as new arrays.
        """
        given = training_data.arrays() if hasattr(training_data, "arrays") else training_data
        if self._examples is None or not _same(given, self._examples[0]):
            x, y = evaluation.as_arrays(training_data, self.engine.n_in, self.engine.n_out)
            self._examples = (given, DeviceData.from_arrays(x, y))
        return self._examples[1]

    def _print_epoch(self, start: int, monitor: Sequence[str] = (),
                     say: Callable[[str], object] = print) -> Callable[[dict, Any, Any], None]:
        """An ``on_epoch`` callback that prints the book's lines for this network's style."""
        def report(record: dict, loop: Any, trainer: Any) -> None:
            for line in epoch_lines(record, self.style, monitor, start):
                say(line)
        return report

    def accuracy_history(self) -> list[dict]:
        """Per-epoch records of every SGD call so far (nn3's addition)."""
        return list(self.loop.history)

    def save(self, run_dir: str | os.PathLike[str]) -> None:
        """Save as a run directory (parameters, settings, history); ``nn3.load`` reads it back."""
        self.save_run(run_dir)

    def save_run(self, run_dir: str | os.PathLike[str]) -> None:
        """Save as a run directory, which ``nn3 resume`` / ``replay`` and ``nn3.load`` read."""
        config = self._run_config()
        run = RunDir.create(run_dir, config)
        try:
            # SGD calls do not carry the optimiser's state between them: a resumed run starts
            # it fresh (zero velocity; a new optax state), in the layout its rule restores.
            rule = SGDConfig(**config["sgd"]).rule()
            arrays = checkpoint_arrays(self.engine, rule)
            run.save(self.loop.step, arrays, checkpoint.info(RunState.of_one(self.loop), stacked=False))
            for record in self.loop.history:
                metrics.append(run.path, record)
        finally:
            run.close()

    def save_json(self, path: str | os.PathLike[str]) -> None:
        """Save as JSON with the seed: network2's format for an MLP, nn3's network3 style otherwise."""
        spec = self.engine.spec
        mb = None if is_mlp(spec) else getattr(self, "mini_batch_size", None)
        export.save_json(path, spec, layers.get_params(self.engine), mb, seed=self.seed)

    def _run_config(self) -> dict:
        """The config.json of this network: what its last SGD call used, else what the run
        it was loaded from recorded, else the defaults with its seed."""
        loaded, cfg = self.run_config, self.last_config
        config: dict[str, Any] = {"preset": None, "dataset": "mnist", "data": None, "limit": None, "monitor": []}
        if loaded:
            config.update({k: loaded[k] for k in ("preset", "dataset", "data", "limit", "monitor") if k in loaded})
        if cfg is not None:  # trained here: the run is as long as what was trained
            sgd = dataclasses.asdict(dataclasses.replace(cfg, epochs=max(self.loop.epoch, 1)))
        elif loaded:
            sgd = dict(loaded["sgd"])
        else:
            sgd = dataclasses.asdict(SGDConfig(epochs=max(self.loop.epoch, 1), seed=self.seed))
        return {**config, "style": self.style, "spec": self.engine.spec, "init": self.init,
                "sgd": sgd, "versions": run_config.versions()}


class Ensemble:
    """Book networks that vote, as chapter 6's five: ``members``, each a façade network.

    ``predict`` and ``accuracy`` are the plurality vote's (a tie goes to the smallest
    digit: nn3.engine.evaluation.vote). ``loop``, when the members were trained together here
    (``network3.train_ensemble``), is their ``train.RunState``: the vote's history and
    best epoch; each member's own is ``members[i].loop``.
    """

    def __init__(self, members: Iterable[Facade], loop: RunState | None = None, source: dict | None = None):
        self.members = list(members)
        self.loop = loop
        self.source = dict(source or {})  # where a loaded bundle came from (run, preset, step, epoch)

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self) -> Iterator[Facade]:
        return iter(self.members)

    def __getitem__(self, i: int) -> Facade:
        return self.members[i]

    @property
    def seeds(self) -> list[int]:
        """Each member's seed."""
        return [m.seed for m in self.members]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The vote's digit for each row of ``x`` (N, 784): (N,) ints."""
        return evaluation.vote([m.engine for m in self.members], x)

    def accuracy(self, data: Any) -> float:
        """The fraction of ``data`` the vote classifies right."""
        return evaluation.vote_accuracy([m.engine for m in self.members], data)

    def member_accuracies(self, data: Any) -> list[float]:
        """Each member's fraction of ``data`` classified right, alone."""
        out = []
        for m in self.members:
            right, _, n = evaluation.evaluate(m.engine, data)
            out.append(right / n)
        return out

    def best(self) -> dict | None:
        """The vote's record of its best epoch (trained here), or None."""
        return None if self.loop is None else best_record(self.loop)

    def save_json(self, path: str | os.PathLike[str]) -> None:
        """Save as one ensemble bundle (nn3.store.bundle): each member's network, seed and settings."""
        spec = self.members[0].engine.spec
        mb = None if is_mlp(spec) else getattr(self.members[0], "mini_batch_size", None)
        settings = [dataclasses.asdict(m.last_config) if m.last_config is not None else {} for m in self.members]
        bundle.save(path, spec, [layers.get_params(m.engine) for m in self.members], self.seeds,
                    settings=settings, mini_batch_size=mb, source=self.source or None)
