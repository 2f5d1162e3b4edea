"""What a run's checkpoint records beside its arrays, and where it stands, in words.

    >>> from nn3.engine import train
    >>> from nn3.runs import checkpoint
    >>> checkpoint.position(train.Loop(epoch=1, batch=40, step=140))
    'in epoch 1, after mini-batch 40'
"""
from __future__ import annotations

from nn3.engine import ensemble, train



def info(loop: train.Loop) -> dict:
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
