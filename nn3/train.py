"""The engine: jit-compiled SGD epochs as ``lax.scan`` over mini-batches, and evaluation.

    >>> import numpy as np
    >>> from nn3 import layers, train
    >>> from nn3.spec import mlp_spec
    >>> net = layers.build(mlp_spec([784, 30, 10], "QuadraticCost"), seed=0, init="normal")
    >>> x = np.random.rand(100, 784).astype("float32"); y = np.arange(100) % 10
    >>> cfg = train.SGDConfig(epochs=1, mini_batch_size=10, eta=3.0)
    >>> loop = train.fit(net, cfg, (x, y))
    >>> loop.epoch
    1

Every update is ``p += v`` with ``v = mu*v - eta*(grad + decay*w)`` (no decay on
biases), ``grad`` the mean over the mini-batch. With ``mu = 0`` that is network.py's
``w -= eta/m * sum``; ``decay = lmbda/n`` gives network2's ``(1 - eta*lmbda/n)``;
``decay = lmbda/num_batches`` gives network3's ``0.5*lmbda*sum(w^2)/num_batches``.
The rule is an optax chain (nn3.optim); ``SGDConfig.optimizer`` may name another of optax's.

Randomness is a function of (seed, epoch, step): the order of an epoch from a numpy
generator seeded by (seed, epoch), dropout and augmentation from ``fold_in`` of JAX keys
by (seed, step). Nothing global,
so a run resumed from any step gives the numbers of one that never stopped. No
printing and no files here: callers watch through callbacks.
"""
from __future__ import annotations

import dataclasses
import math
import weakref
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nn3 import augment as aug
from nn3 import backend, costs, data, layers, optim
from nn3.evaluation import EVAL_BATCH, as_arrays, evaluate, l2_norm_sq, predict  # noqa: F401  (part of train's API)
from nn3.layers import get_params, set_params
from nn3.spec import forward_macs

AUGMENTS = ("none", "expand", "affine")
SCHEDULES = ("constant", "plateau")
L2_STYLES = ("example", "batch")


@dataclasses.dataclass(frozen=True)
class SGDConfig:
    """What decides a training run, all JSON-able.

    ``l2`` says what lmbda is divided by: ``"example"`` the training-set size
    (network2), ``"batch"`` the number of mini-batches (network3). ``schedule``
    ``"plateau"`` halves eta after ``patience`` epochs without a new best and stops
    once eta is ``eta_min_factor`` of its start (chapter 3's exercise).
    ``early_stopping`` stops after that many epochs without a new best.
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
    chunks: int | None = None  # compiled calls per epoch; None: up to 10, none under ~0.15 s (CHUNK_MACS)
    optimizer: str = "sgd"

    def check(self, n_train: int | None = None) -> None:
        """Raise a one-line ValueError for a setting that cannot train; with ``n_train`` (the
        training examples an epoch draws from) also for a mini-batch larger than the data."""
        def bad(what):
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


@dataclasses.dataclass
class Loop:
    """Where a run stands, JSON-able: enough, with the arrays, to carry on exactly."""
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
    def from_json(cls, d) -> "Loop":
        return cls(**d)


def best_record(loop) -> dict | None:
    """The history record of ``loop``'s best epoch so far (a Loop, or a member run's
    ``ensemble.Members`` for the vote), or None before any judged epoch."""
    if loop.best_epoch is None:
        return None
    return next((r for r in loop.history if r["epoch"] == loop.best_epoch), None)


# --------------------------------------------------------------------------- the step


STATICS = ("graphdef", "cost", "out_act", "augment", "dropout", "rule")


def scan_batches(state, opt_state, x, y, batches, steps, keys, *,
                 graphdef, cost, out_act, augment, dropout, rule):
    """Train over ``batches`` (n_batches, m) of example indices in one compiled call.

    Args:
      state: nnx.State of the parameters; opt_state: ``rule``'s optax state, which holds
        the hyperparameters (eta, decay, l1 coefficient, momentum) as values.
      x: (N, n_in) float32 on the device, or uint8 codes k of pixels k/256 (``_compact``);
        y: (N,) int32.
      batches: (n_batches, m) int32 indices, into 5N virtual examples when augment="expand".
      steps: (n_batches,) int32 global step numbers (for the keys).
      keys: (2, 2) uint32: the dropout and augmentation base keys.
      rule: optim.Rule, static: the optimiser and which terms are on at all (an off term
        costs no operations in the step).
    Returns:
      (state, opt_state, losses (n_batches,) float32, finite: whether every parameter
      is finite after the last update).
    """
    cost_fn = costs.get(cost)
    tx = rule.transform()  # its values come from opt_state

    def loss_fn(st, xb, yb, key):
        model = nnx.merge(graphdef, st)
        return cost_fn(model.logits(xb, key), yb, out_act).mean()

    def step(carry, inp):
        st, opt = carry
        idx, s = inp
        if augment == "expand":
            xb = aug.expanded(_pixels(x[idx // 5]), idx % 5)
            yb = y[idx // 5]
        else:
            xb, yb = _pixels(x[idx]), y[idx]
        if augment == "affine":
            xb = aug.affine(xb, jax.random.fold_in(keys[1], s))
        key = jax.random.fold_in(keys[0], s) if dropout else None
        with backend.precision():  # the custom backward passes (conv, dense) too
            loss, grads = jax.value_and_grad(loss_fn)(st, xb, yb, key)
        updates, opt = tx.update(grads, opt, st)
        return (optax.apply_updates(st, updates), opt), loss

    (state, opt_state), losses = jax.lax.scan(step, (state, opt_state), (batches, steps))
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree_util.tree_leaves(state)]))
    return state, opt_state, losses, finite


_run_batches = jax.jit(scan_batches, static_argnames=STATICS)


# --------------------------------------------------------------------------- the loop


_ON_DEVICE: dict = {}  # (id of a read-only numpy array, compact, device) -> (weak reference to it, its copy)
COMPACT = None  # uint8 codes for k/256 images; None: the backend's choice (tests set False to compare)


def _compact(a: np.ndarray) -> np.ndarray:
    """``a`` as uint8 codes k when every value is exactly k/256, 0 <= k < 256; else ``a``.

    The book's MNIST images are such values. A quarter of the bytes to gather per
    mini-batch makes an MLP epoch ~10% faster, and ``_pixels`` turns the codes back
    into exactly the same float32 numbers, so the training is bit for bit the same.
    """
    if not (backend.choices().compact if COMPACT is None else COMPACT) or a.dtype != np.float32:
        return a
    with np.errstate(invalid="ignore"):  # NaN or out of range: caught by the comparison
        codes = (a * np.float32(256)).astype(np.uint8)
    return codes if np.array_equal(codes * np.float32(1 / 256), a) else a


def _pixels(xb: jax.Array) -> jax.Array:
    """Rows of ``x`` as float32 (codes k of ``_compact`` become k/256, exactly)."""
    return xb.astype(jnp.float32) * (1 / 256) if xb.dtype == jnp.uint8 else xb


def _on_device(a: np.ndarray, compact: bool = False) -> jax.Array:
    """``a`` on the device, copied once per read-only array (the shared originals of
    what load_data hands out, see ``data.shared_original``).

    A second ``SGD`` call on the same data then skips a 157 MB copy. Writable arrays
    are copied every time: the caller may have changed them in between. ``compact``
    stores k/256 images as uint8 codes (see ``_compact``).
    """
    a = data.shared_original(a)  # load_data's private copies, unchanged, share their original's
    owner = a  # keyed by the array owning the memory: a reshaped view of it finds the same copy
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    key = (id(owner), a.shape, a.dtype.str, compact, str(jax.config.jax_default_device))  # per default device
    hit = _ON_DEVICE.get(key)
    if hit is not None and hit[0]() is owner:
        return hit[1]
    out = jax.device_put(_compact(a) if compact else a)  # onto the default device
    if not a.flags.writeable and not owner.flags.writeable:
        _ON_DEVICE[key] = (weakref.ref(owner), out)
        weakref.finalize(owner, _ON_DEVICE.pop, key, None)
    return out


CHUNK_MACS = 2e9  # forward multiply-adds of the shortest automatic chunk: ~0.15 s here
MAX_CHUNKS = 10


def _chunk_length(spec, cfg: SGDConfig, n_full: int) -> int:
    """Mini-batches per compiled call: ``cfg.chunks`` calls per epoch when given; else
    MAX_CHUNKS, but no call shorter than CHUNK_MACS of work (chapter 1's epoch is then
    one call: each call costs ~0.5 ms, a progress bar on a 0.1 s epoch nothing)."""
    if cfg.chunks is not None:
        return max(1, math.ceil(n_full / cfg.chunks))
    per_batch = max(1, cfg.mini_batch_size * forward_macs(spec))
    return max(1, math.ceil(n_full / MAX_CHUNKS), min(n_full, math.ceil(CHUNK_MACS / per_batch)))


def step_keys(seed: int) -> jax.Array:
    """(2, 2) uint32: the base keys of dropout and augmentation for ``seed``."""
    root = jax.random.PRNGKey(seed)
    return jnp.stack([jax.random.fold_in(root, 2), jax.random.fold_in(root, 3)])


def epoch_order(seed: int, epoch: int, n: int, shuffle: bool = True) -> np.ndarray:
    """(n,) int32: the order of ``epoch``'s examples, a function of (seed, epoch) alone."""
    if not shuffle:
        return np.arange(n, dtype=np.int32)
    # numpy's shuffle of a stream seeded by (seed, epoch): ~1 ms for 50,000, where
    # jax.random.permutation's sorts took ~20 ms, an eighth of an MLP epoch.
    return np.random.default_rng([seed, 1, epoch]).permutation(n).astype(np.int32)


class Trainer:
    """A network, its settings and its training data on the device, ready to run epochs."""

    _run = staticmethod(_run_batches)
    live = None  # an ensemble's members whose losses count (nn3.ensemble); None: all

    def __init__(self, net, cfg: SGDConfig, train_data):
        x, y = as_arrays(train_data, net.n_in, net.n_out)
        self.n_examples = len(y) * (5 if cfg.augment == "expand" else 1)
        cfg.check(self.n_examples)
        self.net, self.cfg = net, cfg
        self.x, self.y = _on_device(x, compact=True), _on_device(y)
        m = cfg.mini_batch_size
        self.n_full = self.n_examples // m
        self.remainder = 0 if cfg.drop_remainder else self.n_examples % m
        self.n_batches = self.n_full + (1 if self.remainder else 0)
        self.chunk = _chunk_length(net.spec, cfg, self.n_full)
        n_decay = self.n_examples if cfg.l2 == "example" else self.n_full
        self.decay, self.l1 = cfg.lmbda / n_decay, cfg.l1 / n_decay
        self.momentum = cfg.momentum  # an ensemble's: one per member
        self.graphdef, self.state = nnx.split(net)
        self.rule = cfg.rule()
        self.opt_state = self.rule.init(self.state)  # the values are set by each run_epoch
        self.keys = step_keys(cfg.seed)
        self.statics = dict(graphdef=self.graphdef, cost=net.spec["cost"], out_act=net.output_activation,
                            augment=cfg.augment, rule=self.rule,
                            dropout=any(getattr(l, "p_dropout", 0.0) > 0 for l in net.layers))

    def order(self, epoch: int) -> np.ndarray:
        """(n_examples,) the order of ``epoch``'s examples: a function of (seed, epoch)."""
        return epoch_order(self.cfg.seed, epoch, self.n_examples, self.cfg.shuffle)

    def run_epoch(self, epoch, start_batch, eta, *, on_progress=None, should_stop=None):
        """Train ``epoch`` from mini-batch ``start_batch`` at learning rate ``eta`` (a number,
        or one per member of an ensemble); chunks are the stopping points.

        A chunk is dispatched before the previous one's losses are read back, so that
        Python's work between chunks overlaps the device's. ``should_stop`` is polled
        before each dispatch and after each chunk is read back: the epoch then ends at
        the end of the chunk that was running when it turned True, and a chunk already
        dispatched behind it is dropped (the state stays the one before it), so a stop
        never waits for more than the running call.

        Returns:
          (losses (batches run,) numpy float32 (members first for an ensemble), next batch index).
        """
        cfg, m = self.cfg, self.cfg.mini_batch_size
        order = self.order(epoch)
        self.opt_state = optim.set_hyperparams(self.opt_state, learning_rate=eta, weight_decay=self.decay,
                                               l1=self.l1, momentum=self.momentum)
        base = epoch * self.n_batches
        spans = [(a, min(a + self.chunk, self.n_full)) for a in range(0, self.n_full, self.chunk)]
        if self.remainder:
            spans.append((self.n_full, self.n_batches))
        spans = [(max(a, start_batch), b) for a, b in spans if b > start_batch]  # resumed inside a chunk
        losses, done, pending = [], start_batch, None
        stopping = should_stop or (lambda: False)

        def collect(ls, finite, n):  # the finished chunk: False when training must stop
            losses.append(np.asarray(ls))
            if on_progress:
                on_progress(n)
            watched, fin = losses[-1], np.asarray(finite)
            if self.live is not None:  # a stopped member's losses no longer count
                watched, fin = watched[self.live], fin[self.live]
            if not np.all(np.isfinite(watched)) or not np.all(fin):  # the update itself overflowed
                losses[-1] = np.concatenate([losses[-1], np.full(losses[-1].shape[:-1] + (1,), np.nan)], -1)
                return False
            return True

        for a, b in spans:
            if stopping():
                break
            idx = order[..., a * m:a * m + (b - a) * m] if a < self.n_full else order[..., self.n_full * m:]
            batches = idx.reshape(idx.shape[:-1] + (b - a, -1))  # (..., n_batches, m)
            steps = np.arange(base + a, base + b, dtype=np.int32)
            before = self.state, self.opt_state
            self.state, self.opt_state, ls, finite = self._run(
                self.state, self.opt_state, self.x, self.y, batches, steps, self.keys, **self.statics)
            if pending and not collect(*pending):
                pending = None
                break
            if pending and stopping():  # asked while the previous chunk ran: end there
                self.state, self.opt_state = before
                pending = None
                break
            pending, done = (ls, finite, b - a), b
        if pending:
            collect(*pending)
        # (..., batches run): an ensemble's losses carry a leading member axis
        return (np.concatenate(losses, -1) if losses else np.zeros(0, np.float32)), done

    def sync(self):
        """Write the trained parameters back into the network object."""
        nnx.update(self.net, self.state)

    def arrays(self) -> dict:
        """The arrays a checkpoint needs (see ``checkpoint_arrays``)."""
        self.sync()
        return checkpoint_arrays(self.net, self.rule, self.opt_state)

    def load_arrays(self, arrays: dict) -> None:
        """Take up the arrays of ``checkpoint_arrays``; a part they lack stays as it is."""
        set_params(self.net, arrays["params"])
        self.graphdef, self.state = nnx.split(self.net)
        self.opt_state = restored_opt_state(self.net, self.rule, self.opt_state, arrays)


def restored_opt_state(net, rule: optim.Rule, opt_state, arrays: dict):
    """``opt_state`` with the optimiser's arrays of ``checkpoint_arrays`` (a part they lack stays)."""
    if rule.book and rule.momentum and "velocity" in arrays:
        shadow = nnx.clone(net)
        set_params(shadow, arrays["velocity"])
        return optim.with_velocity(opt_state, nnx.split(shadow)[1])
    if not rule.book and "opt_state" in arrays:
        return optim.with_inner_leaves(opt_state, arrays["opt_state"])
    return opt_state


def checkpoint_arrays(net, rule: optim.Rule, opt_state=None) -> dict:
    """The arrays a checkpoint of ``net`` trained by ``rule`` holds.

    The parameters as per-layer lists of ``{"w", "b"}``; the book's momentum beside them
    as ``velocity``, in the same layout (as checkpoints have always held it); another
    optimiser's state as ``opt_state``, the list of ``optim.inner_leaves``. With
    ``opt_state`` None, a fresh state's: the structure a restore needs as its target.
    """
    out = {"params": get_params(net)}
    if opt_state is None:
        opt_state = rule.init(nnx.split(net)[1])
    if rule.book and rule.momentum:
        out["velocity"] = _per_layer(optim.velocity(opt_state))
    elif not rule.book:
        out["opt_state"] = [np.asarray(a) for a in optim.inner_leaves(opt_state)]
    return out


def _per_layer(state) -> list:
    per = state["layers"]
    return [{"w": np.asarray(per[i]["w"][...]), "b": np.asarray(per[i]["b"][...])} for i in sorted(per.keys())]


def _accuracy(net, data, key, record, cost_reg=None):
    right, cost, n = evaluate(net, data)
    record[f"{key}_accuracy"] = right / n
    record[f"{key}_correct"] = right
    record[f"{key}_n"] = n
    if cost_reg is not None:
        record[f"{key}_cost"] = cost + cost_reg(n)


def fit(net, cfg: SGDConfig, train_data, validation_data=None, test_data=None, *,
        loop: Loop | None = None, trainer: Trainer | None = None, monitor=(), eta_fn: Callable | None = None,
        on_epoch=None, on_progress=None, should_stop=None) -> Loop:
    """Train ``net`` in place for ``cfg.epochs`` epochs (or until a stop rule fires).

    Args:
      net: a layers.Network; its parameters are updated after every epoch.
      cfg: the SGDConfig.
      train_data, validation_data, test_data: see ``as_arrays``. The best epoch is judged
        on validation data, or on test data when there is none (network.py's habit).
      loop: where to carry on from (resume); a new Loop when None.
      trainer: a Trainer already holding the data and state (resume restores into it).
      monitor: names among "training_cost", "training_accuracy", "validation_cost":
        extra per-epoch measurements (network2's monitors).
      eta_fn: eta as a function of the epoch (the chapter-6 exercise); overrides the schedule.
      on_epoch: called as ``on_epoch(record, loop, trainer)`` after each completed epoch.
      on_progress: called with the number of mini-batches just done.
      should_stop: polled at chunk boundaries; True stops with stop_reason "interrupted".
    Returns:
      The Loop, with ``history`` (one record per epoch) and ``stop_reason``.
    """
    tr = trainer or Trainer(net, cfg, train_data)
    loop = loop or Loop(eta=float(cfg.eta))
    if loop.stop_reason in ("epochs", "interrupted"):
        loop.stop_reason = None
    judge = validation_data if validation_data is not None else test_data
    l2 = lambda: l2_norm_sq(net)  # noqa: E731
    if cfg.l2 == "example":
        reg = lambda n: 0.5 * cfg.lmbda / n * l2()  # noqa: E731  network2's total_cost
    else:
        reg = lambda n: 0.5 * cfg.lmbda * l2() / tr.n_full  # noqa: E731
    while loop.epoch < cfg.epochs and loop.stop_reason is None:
        eta = float(eta_fn(loop.epoch)) if eta_fn else loop.eta
        good = (tr.state, tr.opt_state)
        losses, done = tr.run_epoch(loop.epoch, loop.batch, eta, on_progress=on_progress, should_stop=should_stop)
        if not np.all(np.isfinite(losses)):
            tr.state, tr.opt_state = good
            tr.sync()
            loop.stop_reason = "nan"
            break
        for v in losses.tolist():  # sequential float64 sum: the same wherever a run was paused
            loop.loss_sum += v
        loop.step += done - loop.batch
        loop.batch = done
        tr.sync()
        if done < tr.n_batches:
            loop.stop_reason = "interrupted"
            break
        record = {"epoch": loop.epoch, "step": loop.step, "eta": eta,
                  "train_loss": loop.loss_sum / tr.n_batches}
        loop.loss_sum = 0.0
        if validation_data is not None:
            _accuracy(net, validation_data, "validation", record, reg if "validation_cost" in monitor else None)
        if test_data is not None:
            _accuracy(net, test_data, "test", record)
        if "training_cost" in monitor or "training_accuracy" in monitor:
            _accuracy(net, train_data, "training", record, reg if "training_cost" in monitor else None)
        _advance(loop, cfg, record, judge is not None)
        loop.history.append(record)
        if on_epoch:
            on_epoch(record, loop, tr)
    if loop.stop_reason is None:
        loop.stop_reason = "epochs"
    return loop


def _advance(loop: Loop, cfg: SGDConfig, record: dict, judged: bool) -> None:
    """Move ``loop`` past a finished epoch: best tracking, eta schedule, early stopping."""
    acc = record.get("validation_accuracy", record.get("test_accuracy"))
    loop.epoch += 1
    loop.batch = 0
    if judged and (loop.best_accuracy is None or acc > loop.best_accuracy):
        loop.best_accuracy, loop.best_epoch, loop.best_step = acc, record["epoch"], record["step"]
        loop.since_best = loop.since_eta_change = 0
    elif judged:
        loop.since_best += 1
        loop.since_eta_change += 1
    record["best"] = judged and loop.best_epoch == record["epoch"]
    if judged and cfg.schedule == "plateau" and loop.since_eta_change >= cfg.patience:
        loop.eta /= 2
        loop.since_eta_change = 0
        if loop.eta <= cfg.eta * cfg.eta_min_factor * (1 + 1e-9):
            loop.stop_reason = "eta_floor"
    if judged and cfg.early_stopping and loop.since_best >= cfg.early_stopping:
        loop.stop_reason = "early_stopping"
