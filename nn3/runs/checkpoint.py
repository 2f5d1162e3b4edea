"""A run's checkpoint as it lies on disk: the arrays, the record beside them, and where it stands.

    >>> from nn3.engine.train import Loop, RunState
    >>> from nn3.runs import checkpoint
    >>> state = RunState.of_one(Loop(epoch=1, batch=40, step=140))
    >>> checkpoint.position(state)
    'in epoch 1, after mini-batch 40'
    >>> checkpoint.info(state, stacked=False)["epoch"]
    1

Two layouts, told apart by the run's config (nn3.runs.config.member_seeds): a run of
one network keeps that network's arrays (``trainer.checkpoint_arrays``) and its
``train.Loop``; a member run keeps every member's arrays stacked on a leading member
axis and its ``train.RunState``. The trainer always works with the stacked layout; the
functions here convert at the boundary, so that every run directory ever written reads
back the same way.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from nn3.engine.layers import Network
from nn3.engine.optim import Rule
from nn3.engine.train import Loop, RunState
from nn3.engine.trainer import Trainer, checkpoint_arrays, member, stack

__all__ = ["arrays", "info", "position", "stacked_arrays", "state_of", "target"]


def arrays(trainer: Trainer, stacked: bool) -> dict:
    """The arrays to save of ``trainer``'s networks, in the run's layout (numpy)."""
    out = trainer.arrays()
    return out if stacked else member(out, 0)


def target(nets: list[Network], rule: Rule, stacked: bool) -> dict:
    """The structure a restore of these networks needs (fresh optimiser states)."""
    each = [checkpoint_arrays(net, rule) for net in nets]
    return stack(each) if stacked else each[0]


def stacked_arrays(saved: dict, stacked: bool) -> dict:
    """Saved arrays in the trainer's layout: a leading member axis, numpy leaves."""
    return saved if stacked else stack([saved])


def info(state: RunState, stacked: bool) -> dict:
    """What a checkpoint records beside its arrays.

    ``epoch`` is the book's zero-based count, as the training lines print it: the epoch
    just completed, or (with ``batch`` > 0) the epoch in progress. The accuracies are those
    measured on exactly these parameters: after a completed epoch; none mid-epoch. A
    member run's accuracies are the vote's, and ``members`` holds each member's.
    """
    loop: Loop | RunState = state if stacked else state.loops[0]
    last = loop.history[-1] if loop.history else {}
    measured = loop.batch == 0 and last.get("step") == loop.step
    out: dict[str, Any] = {
        "epoch": loop.epoch - 1 if loop.batch == 0 else loop.epoch, "batch": loop.batch, "step": loop.step,
        "loop": loop.to_json(),
        "validation_accuracy": last.get("validation_accuracy") if measured else None,
        "test_accuracy": last.get("test_accuracy") if measured else None}
    if stacked:
        keys = ("validation_accuracy", "test_accuracy")
        out["members"] = [{k: ((r or {}).get(k) if measured else None) for k in keys}
                          for r in last.get("members", [{}] * len(state.loops))]
    return out


def state_of(saved_info: dict, stacked: bool) -> RunState:
    """The RunState a checkpoint's ``info`` records."""
    if stacked:
        return RunState.from_json(saved_info["loop"])
    return RunState.of_one(Loop.from_json(saved_info["loop"]))


def position(loop: Loop | RunState) -> str:
    """Where a checkpoint stands, in the epochs the training lines print (counted from 0)."""
    if loop.batch == 0:
        return "before the first epoch" if loop.epoch == 0 else f"after epoch {loop.epoch - 1}"
    return f"in epoch {loop.epoch}, after mini-batch {loop.batch}"


def as_numpy(tree: Any) -> Any:
    """Restored arrays as numpy (they come back on the default device)."""
    import jax
    return jax.tree.map(np.asarray, tree)
