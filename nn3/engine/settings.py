"""What decides a training run: ``SGDConfig``, JSON-able, checked in one place.

    >>> from nn3.engine.settings import SGDConfig, union
    >>> cfg = SGDConfig(epochs=30, mini_batch_size=10, eta=3.0)
    >>> cfg.rule()
    Rule(optimizer='sgd', decay=False, l1=False, momentum=False)
    >>> union([cfg, SGDConfig(epochs=30, eta=0.5, lmbda=5.0)]).rule().decay
    True

Every update is ``p += v`` with ``v = mu*v - eta*(grad + decay*w)`` (no decay on
biases), ``grad`` the mean over the mini-batch. With ``mu = 0`` that is network.py's
``w -= eta/m * sum``; ``decay = lmbda/n`` (``l2="example"``) gives network2's
``(1 - eta*lmbda/n)``; ``decay = lmbda/num_batches`` (``l2="batch"``) gives network3's
``0.5*lmbda*sum(w^2)/num_batches`` in the cost. The rule is an optax chain
(nn3.engine.optim); ``optimizer`` may name another of optax's.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from nn3.engine import optim

__all__ = ["AUGMENTS", "L2_STYLES", "SCHEDULES", "SWEEPABLE", "SGDConfig", "union"]

AUGMENTS = ("none", "expand", "affine")
SCHEDULES = ("constant", "plateau")
L2_STYLES = ("example", "batch")
# The settings that may differ between the networks trained together (a sweep): values
# in the optimiser's state, or the seed. The rest decide the program's shape.
SWEEPABLE = ("eta", "lmbda", "momentum", "l1")


@dataclasses.dataclass(frozen=True)
class SGDConfig:
    """How one network trains.

    ``l2`` says what lmbda is divided by: ``"example"`` the training-set size
    (network2), ``"batch"`` the number of mini-batches (network3). ``schedule``
    ``"plateau"`` halves eta after ``patience`` epochs without a new best and stops
    once eta is ``eta_min_factor`` of its start (chapter 3's exercise).
    ``early_stopping`` stops after that many epochs without a new best. ``chunks`` is
    the number of compiled calls per epoch (None: automatic, nn3.engine.trainer).
    ``optimizer`` is ``"sgd"``, the book's rule, or one of optax's (``optim.OPTIMIZERS``)
    with ``eta`` as its learning rate; lmbda and l1 add to the gradient in every case.
    """
    epochs: int
    mini_batch_size: int = 10
    eta: float = 0.1
    lmbda: float = 0.0
    l1: float = 0.0
    l2: str = "example"
    momentum: float = 0.0
    shuffle: bool = True
    drop_remainder: bool = False
    augment: str = "none"
    schedule: str = "constant"
    patience: int = 10
    eta_min_factor: float = 1.0 / 128
    early_stopping: int | None = None
    seed: int = 0
    chunks: int | None = None
    optimizer: str = "sgd"

    def check(self, n_train: int | None = None) -> None:
        """Raises a one-line ValueError for a setting that cannot train; with ``n_train`` (the
        training examples an epoch draws from) also for a mini-batch larger than the data."""
        def bad(what: str) -> None:
            raise ValueError(f"training settings: {what}")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            bad(f"epochs must be a positive integer, got {self.epochs!r}")
        if not isinstance(self.mini_batch_size, int) or self.mini_batch_size < 1:
            bad(f"mini-batch size must be a positive integer, got {self.mini_batch_size!r}")
        if n_train is not None and self.mini_batch_size > n_train:
            bad(f"mini-batch size {self.mini_batch_size} is larger than the {n_train} training examples")
        for name in ("eta", "lmbda", "l1", "momentum"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                bad(f"{name} must be a finite number >= 0, got {v!r}")
        if self.eta == 0:
            bad("eta must be positive")
        if self.momentum >= 1:
            bad(f"momentum must be below 1, got {self.momentum}")
        for name, allowed in (("l2", L2_STYLES), ("augment", AUGMENTS), ("schedule", SCHEDULES)):
            if getattr(self, name) not in allowed:
                bad(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.chunks is not None and (not isinstance(self.chunks, int) or self.chunks < 1):
            bad(f"chunks must be a positive integer, got {self.chunks!r}")
        # JAX's key takes the seed modulo 2**32: a larger seed would silently repeat a smaller one's draws.
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            bad(f"seed must be an integer in 0..{2**32 - 1}, got {self.seed!r}")
        if self.early_stopping is not None and self.early_stopping < 1:
            bad(f"early_stopping must be a positive number of epochs, got {self.early_stopping}")
        try:
            self.rule()
        except ValueError as e:
            bad(str(e))

    def rule(self) -> optim.Rule:
        """The static part of the update rule: the optimiser and which terms are on."""
        return optim.Rule(self.optimizer, decay=bool(self.lmbda), l1=bool(self.l1), momentum=bool(self.momentum))

    def l2_divisor(self, n_examples: int, n_batches: int) -> int:
        """The n of lmbda/n: the training examples (network2) or the mini-batches (network3)."""
        return n_examples if self.l2 == "example" else n_batches


def union(cfgs: Sequence[SGDConfig]) -> SGDConfig:
    """The first of ``cfgs`` with the largest of each SWEEPABLE value: its rule has every
    term that some network trained with ``cfgs`` needs (the others get it with value 0)."""
    return dataclasses.replace(cfgs[0], **{k: max(getattr(c, k) for c in cfgs) for k in SWEEPABLE})
