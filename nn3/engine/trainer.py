"""N >= 1 networks of one architecture on the device, ready to train epochs over the same examples.

    >>> import numpy as np
    >>> from nn3.engine import layers
    >>> from nn3.engine.device_data import DeviceData
    >>> from nn3.engine.settings import SGDConfig
    >>> from nn3.engine.spec import mlp_spec
    >>> from nn3.engine.trainer import Trainer
    >>> x = np.random.default_rng(0).random((100, 784), np.float32); y = np.arange(100) % 10
    >>> cfgs = [SGDConfig(epochs=1, eta=3.0, seed=s) for s in (0, 1)]
    >>> nets = [layers.build(mlp_spec([784, 30, 10], "QuadraticCost"), seed=c.seed) for c in cfgs]
    >>> tr = Trainer(nets, cfgs, DeviceData.from_arrays(x, y, compact=False))
    >>> ran = tr.run_epoch(epoch=0, start_batch=0, etas=[3.0, 3.0])
    >>> ran.losses.shape, ran.done, ran.diverged
    ((2, 10), 10, [])

A lone network is the case N = 1. The trainer keeps every network's parameters,
optimiser state and keys stacked on a leading *member* axis (sharded over the devices
of ``step.member_mesh`` when there are several, padded to a multiple of them with
copies of the last network: a copy is never live, so "loop" skips it and its device
leaves the core to the others, and nothing of it is reported or saved; a device with a
single member runs the lone program and only keeps a copy's state, which happens
across processes, where the mesh takes every device). ``run_epoch``
cuts an epoch into a few compiled calls of ``step.run_members`` (the stopping points
of Ctrl-C and the ticks of a progress bar) and ``sync`` writes the trained parameters
back into the networks.
Member ``i`` trains as the lone run of ``cfgs[i]`` would: its seed's order and keys, its
own eta, lmbda, L1 strength and momentum (values in the optimiser's state).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nn3.engine import backend, optim, processes, step
from nn3.engine.device_data import DeviceData
from nn3.engine.layers import Network, get_params, set_params
from nn3.engine.settings import SGDConfig, union
from nn3.engine.spec import forward_macs, has_conv

__all__ = ["CHUNK_MACS", "MAX_CHUNKS", "Ran", "Trainer", "chunk_length", "checkpoint_arrays", "member", "stack"]

CHUNK_MACS = 2e9  # forward multiply-adds of the shortest automatic chunk
MAX_CHUNKS = 10


def chunk_length(spec: dict, cfg: SGDConfig, n_full: int) -> int:
    """Mini-batches per compiled call: ``cfg.chunks`` calls per epoch when given; else
    MAX_CHUNKS, but no call shorter than CHUNK_MACS of work (a call costs a little
    overhead; chapter 1's short epoch is then one call)."""
    if cfg.chunks is not None:
        return max(1, math.ceil(n_full / cfg.chunks))
    per_batch = max(1, cfg.mini_batch_size * forward_macs(spec))
    return max(1, math.ceil(n_full / MAX_CHUNKS), min(n_full, math.ceil(CHUNK_MACS / per_batch)))


@dataclasses.dataclass(frozen=True)
class Ran:
    """What ``Trainer.run_epoch`` did.

    Attributes:
      losses: (N, batches run) float32, each member's mini-batch losses in step order
        (a member that did not train has zeros or unused values there).
      done: the epoch's mini-batches done when it returned (== ``n_batches`` when whole).
      diverged: the members whose loss or parameters stopped being finite; their state
        is back where it was when ``run_epoch`` began, and they trained no further.
    """
    losses: np.ndarray
    done: int
    diverged: list[int]


class Trainer:
    """Networks, their settings and their training examples on the device, ready to run epochs."""

    def __init__(self, nets: Sequence[Network], cfgs: Sequence[SGDConfig], data: DeviceData, *,
                 devices: Sequence[jax.Device] | None = None, how: str | None = None,
                 decay_over: int | None = None):
        """Args:
          nets: N >= 1 networks of one architecture (their current parameters are the start).
          cfgs: one SGDConfig per network; only eta, lmbda, l1, momentum and seed may
            differ (``settings.SWEEPABLE``). The update rule has every term some member
            needs; a member without it gets it with the value 0.
          data: the training examples.
          devices: those to shard the members over (default: JAX's); one device, or one
            network, shards nothing.
          how: "vmap" or "loop" (nn3.engine.step); None: the backend's choice.
          decay_over: the n of lmbda/n when it is not what ``cfg.l2`` says (network.py's
            ``update_mini_batch`` decays by the whole training set's size).
        """
        if not nets or len(nets) != len(cfgs):
            raise ValueError(f"trainer: {len(nets)} networks and {len(cfgs)} settings; give one of each")
        self.nets, self.cfgs = list(nets), list(cfgs)
        self.cfg = union(self.cfgs)
        self.data = data
        self.n_examples = data.n * (5 if self.cfg.augment == "expand" else 1)
        for c in self.cfgs:
            c.check(self.n_examples)
        m = self.cfg.mini_batch_size
        self.n_full = self.n_examples // m
        self.remainder = 0 if self.cfg.drop_remainder else self.n_examples % m
        self.n_batches = self.n_full + (1 if self.remainder else 0)
        self.chunk = chunk_length(self.nets[0].spec, self.cfg, self.n_full)
        self.rule = self.cfg.rule()
        how = how or (backend.choices().conv_members if has_conv(self.nets[0].spec) else "vmap")
        if how not in step.HOW:
            raise ValueError(f"members: {how!r} is not one of {', '.join(step.HOW)}")
        self.graphdef, _ = nnx.split(self.nets[0])
        self.statics = dict(graphdef=self.graphdef, cost=self.nets[0].spec["cost"],
                            out_act=self.nets[0].output_activation, augment=self.cfg.augment, rule=self.rule,
                            dropout=any(getattr(layer, "p_dropout", 0.0) > 0 for layer in self.nets[0].layers),
                            how=how)
        self.mesh = step.member_mesh(len(self.nets), None if devices is None else list(devices))
        size = 1 if self.mesh is None else self.mesh.size
        self.width = -(-len(self.nets) // size) * size  # members with padding: a multiple of the devices
        if self.mesh is not None:
            self.data = data.replicated(self._sharding(every=True))  # a copy on every device, once
        padded = self.pad(self.cfgs)
        n_decay = decay_over or self.cfg.l2_divisor(self.n_examples, self.n_full)
        self.hyper = dict(weight_decay=np.array([c.lmbda / n_decay for c in padded]),  # float64 until cast
                          l1=np.array([c.l1 / n_decay for c in padded]),
                          momentum=np.array([c.momentum for c in padded]))
        states = self.pad([nnx.split(n)[1] for n in self.nets])
        self.state = self._place(stack(states))
        self.opt_state = self._place(stack([self.rule.init(s) for s in states]))
        self.keys = self._place(jnp.stack([step.step_keys(c.seed) for c in padded]))

    @property
    def n(self) -> int:
        """The number of networks."""
        return len(self.nets)

    def pad(self, per_member: Sequence[Any]) -> list:
        """``per_member`` with the padding members' entries (the last one's) added."""
        per_member = list(per_member)
        return per_member + per_member[-1:] * (self.width - len(per_member))

    def _sharding(self, every: bool = False) -> jax.sharding.NamedSharding:
        assert self.mesh is not None, "one device: nothing to shard"
        spec = jax.sharding.PartitionSpec() if every else jax.sharding.PartitionSpec(step.AXIS)
        return jax.sharding.NamedSharding(self.mesh, spec)

    def _place(self, tree: Any, every: bool = False) -> Any:
        """``tree`` sharded over the mesh along its leading member axis (padded), or whole
        on every device (``every``); as it is without a mesh. Every process passes the same
        values and supplies the shards of its own devices."""
        return tree if self.mesh is None else processes.place(tree, self._sharding(every))

    def owner(self, i: int) -> int:
        """The process whose devices hold network ``i`` (0 in one process)."""
        if self.mesh is None:
            return processes.index()
        return self.mesh.devices.flat[i // (self.width // self.mesh.size)].process_index

    def owns(self, i: int) -> bool:
        """Whether network ``i`` is on this process's devices (always, in one process)."""
        return self.owner(i) == processes.index()

    def order(self, epoch: int) -> np.ndarray:
        """(width, n_examples) int32: each member's order of ``epoch``'s examples, a lone run's."""
        return np.stack([step.epoch_order(c.seed, epoch, self.n_examples, c.shuffle) for c in self.pad(self.cfgs)])

    def run_epoch(self, epoch: int, start_batch: int, etas: float | Sequence[float],
                  live: Sequence[bool] | None = None, *, on_progress: Callable[[int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> Ran:
        """Train ``epoch`` from mini-batch ``start_batch``.

        Args:
          epoch, start_batch: where to begin (a resumed run may begin mid-epoch).
          etas: the learning rate, one for all or one per network.
          live: which networks train (default: all); the others keep their state.
          on_progress: called with the mini-batches of each finished compiled call.
          should_stop: polled before each call is dispatched and after each is read
            back; when it turns True the epoch ends at the end of the call that was
            running, and a call already dispatched behind it is dropped, so a stop
            never waits for more than the running call.
        Returns:
          A ``Ran``. A call is dispatched before the previous one's results are read
          back, so that Python's work between calls overlaps the device's.
        """
        live_now = np.zeros(self.width, bool)  # the padding members never train: "loop" skips them
        live_now[:self.n] = True if live is None else list(live)
        etas = self.pad(np.broadcast_to(np.asarray(etas, np.float64), (self.n,)).tolist())
        self.opt_state = self._place(optim.set_hyperparams(self.opt_state, learning_rate=np.array(etas), **self.hyper))
        began = (self.state, self.opt_state)
        m, order, base = self.cfg.mini_batch_size, self.order(epoch), epoch * self.n_batches
        spans = [(a, min(a + self.chunk, self.n_full)) for a in range(0, self.n_full, self.chunk)]
        if self.remainder:
            spans.append((self.n_full, self.n_batches))
        spans = [(max(a, start_batch), b) for a, b in spans if b > start_batch]  # resumed inside a call
        stopping = should_stop or (lambda: False)
        losses: list[np.ndarray] = []
        diverged: set[int] = set()
        done, pending = start_batch, None
        for a, b in spans:
            if stopping() or not live_now[:self.n].any():
                break
            idx = order[:, a * m:a * m + (b - a) * m] if a < self.n_full else order[:, self.n_full * m:]
            before = self.state, self.opt_state
            self.state, self.opt_state, ls, finite = step.run_members_jit(
                self.state, self.opt_state, self.data.x, self.data.y, self._place(idx.reshape(self.width, b - a, -1)),
                self._place(np.arange(base + a, base + b, dtype=np.int32), every=True), self.keys,
                self._place(live_now),
                mesh=self.mesh, **self.statics)
            if pending is not None:
                self._collect(pending, live_now, losses, diverged, on_progress)
                if stopping():  # asked while this call ran behind the previous one: end there
                    self.state, self.opt_state = before
                    pending = None
                    break
            pending, done = (ls, finite, b - a), b
        if pending is not None:
            self._collect(pending, live_now, losses, diverged, on_progress)
        if diverged:
            back = np.zeros(self.width, bool)
            back[sorted(diverged)] = True
            self.state, self.opt_state = _where(self._place(back), began, (self.state, self.opt_state))
        shape = (self.n, 0)
        out = np.concatenate(losses, -1)[:self.n] if losses else np.zeros(shape, np.float32)
        return Ran(out, done, sorted(diverged))

    def _collect(self, pending, live_now, losses, diverged, on_progress) -> None:
        """Reads a finished call back: its losses, and which live members it saw diverge (they stop)."""
        ls, finite, n = pending
        ls, finite = processes.to_host((ls, finite))
        losses.append(ls)
        bad = np.flatnonzero(~finite & live_now)
        for i in bad[bad < self.n]:
            diverged.add(int(i))
        live_now[bad] = False
        if on_progress:
            on_progress(n)

    def sync(self) -> None:
        """Writes the trained parameters back into the networks (every process gets every
        network's: a collective when there are several processes)."""
        state = self.state if self.mesh is None else processes.to_host(self.state)
        for i, net in enumerate(self.nets):
            nnx.update(net, member(state, i))

    def arrays(self) -> dict:
        """Every network's ``checkpoint_arrays``, stacked on a leading member axis, as numpy
        (the real members only: the same on any number of devices)."""
        self.sync()
        opt_state = processes.to_host(self.opt_state)
        return stack([checkpoint_arrays(net, self.rule, member(opt_state, i)) for i, net in enumerate(self.nets)])

    def load_arrays(self, arrays: dict) -> None:
        """Takes up stacked arrays of ``arrays()`` (the same on every process); a part they
        lack stays as it is."""
        opt_state = processes.to_host(self.opt_state)
        opts = []
        for i, net in enumerate(self.nets):
            mine = member(arrays, i)
            set_params(net, mine["params"])
            opts.append(restored_opt_state(net, self.rule, member(opt_state, i), mine))
        self.state = self._place(stack(self.pad([nnx.split(n)[1] for n in self.nets])))
        self.opt_state = self._place(stack(self.pad(opts)))


@jax.jit
def _where(mask: jax.Array, yes: Any, no: Any) -> Any:
    """``yes`` where ``mask`` (over the leading member axis) is True, else ``no``: bit for bit."""
    def pick(a, b):
        return jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)
    return jax.tree_util.tree_map(pick, yes, no)


def member(tree: Any, i: int) -> Any:
    """Member ``i``'s slice of a pytree stacked on a leading member axis."""
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def stack(trees: Sequence[Any]) -> Any:
    """Pytrees of one structure stacked on a new leading member axis (numpy leaves stay numpy)."""
    def one(*xs):
        return np.stack(xs) if isinstance(xs[0], np.ndarray) else jnp.stack(xs)
    return jax.tree_util.tree_map(one, *trees)


def checkpoint_arrays(net: Network, rule: optim.Rule, opt_state: Any = None) -> dict:
    """The arrays a checkpoint of one network trained by ``rule`` holds.

    Returns:
      ``{"params": [{"w", "b"} per layer]}``, with the book's momentum beside them as
      ``velocity`` (the same layout) or another optimiser's state as ``opt_state`` (the
      list of ``optim.inner_leaves``). With ``opt_state`` None, a fresh state's: the
      structure a restore needs as its target.
    """
    out: dict[str, Any] = {"params": get_params(net)}
    if opt_state is None:
        opt_state = rule.init(nnx.split(net)[1])
    if rule.book and rule.momentum:
        per = optim.velocity(opt_state)["layers"]
        out["velocity"] = [{"w": np.asarray(per[i]["w"][...]), "b": np.asarray(per[i]["b"][...])}
                           for i in sorted(per.keys())]
    elif not rule.book:
        out["opt_state"] = [np.asarray(a) for a in optim.inner_leaves(opt_state)]
    return out


def restored_opt_state(net: Network, rule: optim.Rule, opt_state: Any, arrays: dict) -> Any:
    """``opt_state`` with the optimiser's arrays of ``checkpoint_arrays`` (a part they lack stays)."""
    if rule.book and rule.momentum and "velocity" in arrays:
        shadow = nnx.clone(net)
        set_params(shadow, arrays["velocity"])
        return optim.with_velocity(opt_state, nnx.split(shadow)[1])
    if not rule.book and "opt_state" in arrays:
        return optim.with_inner_leaves(opt_state, arrays["opt_state"])
    return opt_state
