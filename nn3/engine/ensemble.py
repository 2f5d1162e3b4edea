"""Ensembles: N networks of one architecture trained in one compiled program, voting by plurality.

    >>> from nn3.engine import ensemble, train
    >>> from nn3.runs import presets
    >>> spec = presets.get("shallow").spec
    >>> cfg = train.SGDConfig(epochs=1, eta=0.1, l2="batch", shuffle=False, drop_remainder=True)
    >>> nets = ensemble.fit(spec, cfg, seeds=[0, 1, 2], train_data=training_data)  # doctest: +SKIP
    >>> ensemble.vote(nets, test_x)  # doctest: +SKIP

The book trains its five dropout nets one after another and lets them vote. Here the
members' parameters, optimiser states and keys are stacked and the epoch's scan runs
over them in one compiled call: member ``i`` sees exactly what a lone run with seed
``seeds[i]`` would see. The hyperparameters live in the optimiser's state, so each member
may have its own (``run_epoch`` takes one eta per member).

Two ways to run the members, the backend's choice (``backend.choices().conv_members``):

- ``"vmap"``: the scan ``vmap``-ed over the member axis, every op batched. What a GPU
  wants, and on the CPU what an MLP wants (one op for all members: 0.84x the time of
  five lone runs for ``shallow``, bench/bench_members.py).
- ``"loop"``: the lone scan, member after member, inside the one compiled call
  (``lax.map``); for conv nets on the CPU. There the batched conv ops of "vmap" hold
  five members' patches at once, outgrow the caches, and ran every op 1.3-4x slower
  than five lone ones (profiled: the layer-2 patch matmuls, its col2im, the ReLU masks):
  5 dbl_conv_relu members took 1.15-1.5x the time of five lone runs, "loop" ~1.0x.

Either way each member's arithmetic is a lone run's, bit for bit (tests/test_ensemble.py).
A single member (of the run, or on its device) always runs the lone scan: a vmap over
one member rounded differently (measured: an MLP's weights an ulp off).

With more than one device (a GPU box, or the CPU's host devices: ``nn3 train --members``
makes one per core, nn3.runs) the member axis is sharded over them: a mesh with one
"members" axis (``member_mesh``), the state and keys in a ``NamedSharding`` along it,
the data copied to every device once, and the step ``shard_map``-ped, so that each
device runs the one-device program (loop or vmap) on its members and nothing crosses
between devices. The members are padded with copies of the last one to a multiple of
the devices used (``layout``: as few as keep the busiest at ``ceil(n / devices)``);
looped copies are skipped, and none is reported, checked or saved. Numbers are those of
one device, bit for bit, and a checkpoint holds the real members only, as numpy: it
resumes on any number of devices (tests/test_shard.py).

``fit_members`` is ``train.fit`` for such a program: each member keeps its own
``train.Loop`` (eta, best epoch, history: a lone run's, record for record), ``Members``
holds them with the shared position and the vote's history, and nn3.runs saves, resumes
and replays it as it does a lone run. A checkpoint holds every member's arrays stacked
on a leading member axis (``EnsembleTrainer.arrays``).
"""
from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nn3.engine import backend, layers, train

HOW = ("vmap", "loop")


SWEEPABLE = ("eta", "lmbda", "momentum", "l1")  # settings that may differ per member: values in the optimiser's state


def how(graphdef) -> str:
    """"loop" or "vmap" (see the module's docstring) for members of the network ``graphdef``."""
    has_conv = any(getattr(n, "type", None) is layers.ConvPoolLayer for n in graphdef.nodes)
    return backend.choices().conv_members if has_conv else "vmap"


def _members(state, opt_state, x, y, batches, steps, keys, *, members_how=None, mesh=None, n_real=None, **statics):
    """``train.scan_batches`` for every member in one call: a leading axis on the parameters,
    the optimiser's state (its hyperparameters too), the order and the keys.

    ``members_how``: "vmap" or "loop"; None: ``how(graphdef)``, the backend's choice.
    ``mesh``: None, or a mesh with a "members" axis (``member_mesh``): each device then
    runs its slice of the members, in the same way, with no exchange between devices.
    ``n_real``: the members before padding (with a mesh): looped padding members are
    skipped (their slices come back as they went in, with zero losses).
    """
    if mesh is not None:
        mine, every = jax.sharding.PartitionSpec(AXIS), jax.sharding.PartitionSpec()
        local = partial(_members, members_how=members_how, n_real=n_real, **statics)
        return jax.shard_map(local, mesh=mesh, in_specs=(mine, mine, every, every, mine, every, mine),
                             out_specs=mine)(state, opt_state, x, y, batches, steps, keys)
    one = partial(train.scan_batches, **statics)
    members_how = members_how or how(statics["graphdef"])
    if members_how not in HOW:
        raise ValueError(f"members: {members_how!r} is not one of {', '.join(HOW)}")
    if members_how == "loop" or keys.shape[0] == 1:  # one member (on its device) vmapped rounded differently
        def member(m):
            return one(m[0], m[1], x, y, m[2], steps, m[3])
        if n_real is None:
            return jax.lax.map(member, (state, opt_state, batches, keys))
        k = keys.shape[0]  # members on this device: global index axis_index * k + j
        real = jax.lax.axis_index(AXIS) * k + jnp.arange(k) < n_real

        def maybe(m):
            def skip(m):
                done = (jnp.zeros(steps.shape, jnp.float32), jnp.array(True))  # typed as the member's: per device
                return (m[0], m[1], *jax.lax.pcast(done, AXIS, to="varying"))
            return jax.lax.cond(m[4], member, skip, m)
        return jax.lax.map(maybe, (state, opt_state, batches, keys, real))
    return jax.vmap(one, in_axes=(0, 0, None, None, 0, None, 0))(
        state, opt_state, x, y, batches, steps, keys)


_run_members = jax.jit(_members, static_argnames=train.STATICS + ("members_how", "mesh", "n_real"))


AXIS = "members"  # the mesh axis the member axis is sharded over


def layout(n_members: int, n_devices: int) -> tuple[int, int]:
    """(devices to use, members with padding) for ``n_members`` on ``n_devices``.

    The time of a call is that of the busiest device: ``ceil(n / devices)`` members. As
    few devices as give that time are used, and the members are padded to a multiple of
    them: 5 members on 4 devices run 2 a device on 3 (6 in all), not on 4 (8).
    """
    per_device = -(-n_members // max(1, n_devices))
    used = -(-n_members // per_device)
    return used, used * per_device


def member_mesh(n_members: int, devices=None):
    """The mesh (one "members" axis) that ``n_members`` members are sharded over, or None
    when they run on one device. ``devices``: those to use (default: JAX's devices)."""
    devices = list(jax.devices() if devices is None else devices)
    used, _ = layout(n_members, len(devices))
    if used < 2:
        return None
    return jax.make_mesh((used,), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices[:used])


class EnsembleTrainer(train.Trainer):
    """A Trainer whose state, optimiser state, keys and epoch order carry a leading member axis.

    With more than one device (``member_mesh``) that axis is sharded over them, padded
    to a multiple of the devices used with copies of the last member. A looped copy is
    skipped (``lax.cond``: a device with fewer real members finishes early and leaves its
    core to the others); a vmapped one computes what its original does. Copies are never
    reported or saved (``run_epoch``'s losses, ``arrays()``, ``nets`` and ``seeds`` hold
    the real members); the NaN watch sees them, as copies of a real member's numbers.
    """

    _run = staticmethod(_run_members)
    _live = None

    def __init__(self, nets, cfg, train_data, seeds, cfgs=None, *, devices=None):
        """``cfgs``: one SGDConfig per member (a sweep: eta, lmbda, momentum and l1 may differ),
        else ``cfg`` for every one. The update rule has every term some member needs; a
        member without it gets it with the value 0. That is bit for bit a lone run without
        the term for lmbda and l1 (g + 0*w is g), not for momentum: momentum 0 in the
        book's momentum step lands an ulp off plain SGD's p - eta*g (measured; XLA fuses
        the two differently). ``devices``: those to shard the members over (default:
        JAX's; one device, or one member, shards nothing)."""
        cfgs = list(cfgs or [cfg] * len(nets))
        super().__init__(nets[0], _union(cfg, cfgs), train_data)  # the data goes to the device once, for all
        for c in cfgs:
            c.check(self.n_examples)
        self.cfgs = cfgs
        self.nets, self.seeds = list(nets), list(seeds)
        self.mesh = member_mesh(len(self.nets), devices)
        self.width = layout(len(self.nets), 1 if self.mesh is None else self.mesh.size)[1]  # members with padding
        if self.mesh is not None:
            self._run = _sharded_run(self.mesh, len(self.nets))
            self.x, self.y = (jax.device_put(a, jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec()))
                              for a in (self.x, self.y))  # a copy on every device, once
        padded = self.pad(cfgs)
        n_decay = self.n_examples if cfg.l2 == "example" else self.n_full
        self.decay = np.array([c.lmbda / n_decay for c in padded])  # float64, as a lone run's, until cast
        self.l1 = np.array([c.l1 / n_decay for c in padded])
        self.momentum = np.array([c.momentum for c in padded])
        states = self.pad([nnx.split(n)[1] for n in self.nets])
        self.state = self._place(_jnp_stack(states))
        self.opt_state = self._place(_jnp_stack([self.rule.init(s) for s in states]))
        self.keys = self._place(jnp.stack([train.step_keys(s) for s in self.pad(self.seeds)]))

    def pad(self, per_member):
        """``per_member`` (one entry per member) with the padding members' entries: the last one's."""
        per_member = list(per_member)
        return per_member + per_member[-1:] * (self.width - len(per_member))

    def _place(self, tree):
        """``tree``, stacked over the padded members, sharded over the mesh (as it is without one)."""
        if self.mesh is None:
            return tree
        return jax.device_put(tree, jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec(AXIS)))

    @property
    def live(self):
        return self._live

    @live.setter
    def live(self, live):  # the NaN watch of run_epoch reads the padded members' too
        self._live = None if live is None else np.array(self.pad(live), bool)

    def run_epoch(self, epoch, start_batch, eta, **kw):
        """``train.Trainer.run_epoch`` with ``eta`` a number or one per member; the losses
        are the real members' (members, batches run)."""
        if np.ndim(eta):
            eta = np.array(self.pad(eta))
        losses, done = super().run_epoch(epoch, start_batch, eta, **kw)
        return (losses[:len(self.nets)] if losses.ndim > 1 else losses), done

    def order(self, epoch):
        # (members, n_examples): member i's order is a lone run's with seed seeds[i]
        return np.stack([train.epoch_order(s, epoch, self.n_examples, self.cfg.shuffle)
                         for s in self.pad(self.seeds)])

    def sync(self):
        state = self.state if self.mesh is None else jax.device_get(self.state)  # numpy: onto the default device
        for i, net in enumerate(self.nets):
            nnx.update(net, jax.tree_util.tree_map(lambda a: jnp.asarray(a[i]), state))

    def arrays(self) -> dict:
        """Every member's ``train.checkpoint_arrays``, stacked on a leading member axis
        (the real members only, as numpy: the same whatever the devices)."""
        self.sync()
        opt_state = self.opt_state if self.mesh is None else jax.device_get(self.opt_state)
        return stack([train.checkpoint_arrays(net, self.rule, member(opt_state, i))
                      for i, net in enumerate(self.nets)])

    def load_arrays(self, arrays: dict) -> None:
        """Take up the stacked arrays of ``arrays()`` (a part they lack stays as it is)."""
        opt_state = self.opt_state if self.mesh is None else jax.device_get(self.opt_state)
        opts = []
        for i, net in enumerate(self.nets):
            mine = member(arrays, i)
            layers.set_params(net, mine["params"])
            opts.append(train.restored_opt_state(net, self.rule, member(opt_state, i), mine))
        self.state = self._place(stack(self.pad([nnx.split(n)[1] for n in self.nets])))
        self.opt_state = self._place(stack(self.pad(opts)))


def _jnp_stack(trees):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def _sharded_run(mesh, n_real):
    """``_run_members`` over ``mesh``, its inputs laid out first as it needs them (a no-op for
    those already so): the hyperparameters that ``run_epoch`` sets on the host and the
    order are sharded too, so every call of an epoch has one signature (one compile)."""
    mine = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(AXIS))
    every = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    def run(state, opt_state, x, y, batches, steps, keys, **statics):
        state, opt_state, batches, keys = jax.device_put((state, opt_state, batches, keys), mine)
        return _run_members(state, opt_state, x, y, batches, jax.device_put(steps, every), keys,
                            mesh=mesh, n_real=n_real, **statics)
    return run


def _union(cfg, cfgs):
    """``cfg`` with the largest of each sweepable value: its rule has every term a member needs."""
    return dataclasses.replace(cfg, **{k: max(getattr(c, k) for c in cfgs) for k in SWEEPABLE})


def rule_of(cfgs):
    """The update rule of a member run whose members train with ``cfgs``."""
    return _union(cfgs[0], cfgs).rule()


def member(tree, i):
    """Member ``i``'s slice of a pytree stacked on a leading member axis."""
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def stack(trees):
    """Pytrees of one structure stacked on a new leading member axis (numpy leaves stay numpy)."""
    def one(*xs):
        return np.stack(xs) if isinstance(xs[0], np.ndarray) else jnp.stack(xs)
    return jax.tree_util.tree_map(one, *trees)


def checkpoint_arrays(nets, rule) -> dict:
    """The stacked arrays a member run's checkpoint holds, for fresh optimiser states: a
    restore's target when there is no trainer (replay, export)."""
    return stack([train.checkpoint_arrays(n, rule) for n in nets])


@dataclasses.dataclass
class Members:
    """Where a member run stands, JSON-able: one ``train.Loop`` per member (its eta, best
    epoch and history, as a lone run's), the shared position, and the vote's history.

    ``history`` holds one record per epoch: the vote's accuracies (``validation_accuracy``,
    ...), ``train_loss`` the members' mean, ``best`` whether the vote is at its best, and
    ``members``, each member's own record. ``best_*`` follow the vote.
    """
    loops: list
    epoch: int = 0
    batch: int = 0
    step: int = 0
    best_accuracy: float | None = None
    best_epoch: int | None = None
    best_step: int | None = None
    stop_reason: str | None = None
    diverged: list = dataclasses.field(default_factory=list)  # members whose loss went NaN
    history: list = dataclasses.field(default_factory=list)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d) -> "Members":
        return cls(**{**d, "loops": [train.Loop.from_json(x) for x in d["loops"]]})


def _vote_accuracy(nets, data, key, record):
    x, y = train.as_arrays(data)
    right = int(np.sum(vote(nets, x) == y))
    record[f"{key}_accuracy"], record[f"{key}_correct"], record[f"{key}_n"] = right / len(y), right, len(y)


def fit_members(nets, cfg: train.SGDConfig, train_data, validation_data=None, test_data=None, *,
                loop: Members | None = None, trainer: EnsembleTrainer, monitor=(), on_epoch=None,
                on_progress=None, should_stop=None) -> Members:
    """``train.fit`` for the members of ``trainer``: member i's loop, records and parameters
    are those of a lone run with seed ``trainer.seeds[i]`` and settings ``trainer.cfgs[i]``
    (``cfg`` gives the rest); after each epoch the vote is
    measured too. ``on_epoch(record, loop, trainer)`` gets the vote's record (see Members).

    A member that stops (early stopping, the plateau schedule's floor, or a NaN loss: then
    at its last good epoch, as a lone run) freezes while the others go on: the program
    still runs it (one compiled shape), and its slice of the state is put back after
    every call. Its entry in later records is None. The run stops when every member has
    ("nan" if every one diverged, else "members_stopped").
    """
    tr = trainer
    n = len(nets)
    loop = loop or Members([train.Loop(eta=float(c.eta)) for c in tr.cfgs])
    if loop.stop_reason in ("epochs", "interrupted"):
        loop.stop_reason = None
    for lp in loop.loops:
        if lp.stop_reason in ("epochs", "interrupted"):
            lp.stop_reason = None
    judge = validation_data if validation_data is not None else test_data
    while loop.epoch < cfg.epochs and loop.stop_reason is None:
        live = np.array([lp.stop_reason is None for lp in loop.loops])
        tr.live = live
        etas = np.array([lp.eta for lp in loop.loops])  # one per member: as a lone run, cast to float32
        good = (tr.state, tr.opt_state)
        losses, done = tr.run_epoch(loop.epoch, loop.batch, etas, on_progress=on_progress,
                                    should_stop=should_stop)  # (members, batches run)
        bad = [i for i in np.flatnonzero(live) if not np.all(np.isfinite(losses[i]))]
        if bad:  # back to the epoch's start; the diverged members freeze there, the others run it again
            real = losses[:, :-1]  # run_epoch appends a NaN column to every member once one goes bad
            bad = [i for i in bad if not np.all(np.isfinite(real[i]))] or bad
            tr.state, tr.opt_state = good
            for i in bad:
                loop.loops[i].stop_reason = "nan"
                loop.diverged.append(int(i))
            _stop_if_all_stopped(loop)
            tr.sync()
            continue
        tr.state, tr.opt_state = _keep_frozen(np.array(tr.pad(live)), (tr.state, tr.opt_state), good)
        for i in np.flatnonzero(live):
            for v in losses[i].tolist():  # sequential float64 sum, as train.fit's
                loop.loops[i].loss_sum += v
        loop.step += done - loop.batch
        loop.batch = done
        for i in np.flatnonzero(live):
            loop.loops[i].step, loop.loops[i].batch = loop.step, loop.batch
        tr.sync()
        if done < tr.n_batches:
            loop.stop_reason = "interrupted"
            break
        records = [_member_record(net, lp, c, tr, train_data, validation_data, test_data, monitor, judge)
                   if alive else None for net, lp, c, alive in zip(nets, loop.loops, tr.cfgs, live)]
        record = {"epoch": loop.epoch, "step": loop.step,
                  "train_loss": float(np.mean([r["train_loss"] for r in records if r is not None]))}
        if validation_data is not None:
            _vote_accuracy(nets, validation_data, "validation", record)
        if test_data is not None:
            _vote_accuracy(nets, test_data, "test", record)
        record["members"] = records
        _advance_vote(loop, record, judge is not None)
        _stop_if_all_stopped(loop)
        loop.history.append(record)
        if on_epoch:
            on_epoch(record, loop, tr)
    if loop.stop_reason is None:
        loop.stop_reason = "epochs"
    for lp in loop.loops:  # the running ones end as the run does ("epochs", "interrupted")
        if lp.stop_reason is None:
            lp.stop_reason = loop.stop_reason
    return loop


def _keep_frozen(live, now, before):
    """``now`` with the stopped members' slices (``live`` False) taken from ``before``: bit for bit."""
    if live.all():
        return now

    def pick(a, b):
        mask = jnp.asarray(live).reshape((-1,) + (1,) * (a.ndim - 1))
        return jnp.where(mask, a, b)
    return jax.tree_util.tree_map(pick, now, before)


def _stop_if_all_stopped(loop: Members) -> None:
    if all(lp.stop_reason is not None for lp in loop.loops):
        loop.stop_reason = "nan" if len(loop.diverged) == len(loop.loops) else "members_stopped"


def _member_record(net, lp, cfg, tr, train_data, validation_data, test_data, monitor, judge) -> dict:
    """One member's epoch record and loop, exactly as train.fit makes them."""
    l2 = lambda: train.l2_norm_sq(net)  # noqa: E731
    if cfg.l2 == "example":
        reg = lambda n: 0.5 * cfg.lmbda / n * l2()  # noqa: E731
    else:
        reg = lambda n: 0.5 * cfg.lmbda * l2() / tr.n_full  # noqa: E731
    record = {"epoch": lp.epoch, "step": lp.step, "eta": lp.eta, "train_loss": lp.loss_sum / tr.n_batches}
    lp.loss_sum = 0.0
    if validation_data is not None:
        train._accuracy(net, validation_data, "validation", record, reg if "validation_cost" in monitor else None)
    if test_data is not None:
        train._accuracy(net, test_data, "test", record)
    if "training_cost" in monitor or "training_accuracy" in monitor:
        train._accuracy(net, train_data, "training", record, reg if "training_cost" in monitor else None)
    train._advance(lp, cfg, record, judge is not None)
    lp.history.append(record)
    return record


def _advance_vote(loop: Members, record: dict, judged: bool) -> None:
    acc = record.get("validation_accuracy", record.get("test_accuracy"))
    loop.epoch += 1
    loop.batch = 0
    if judged and (loop.best_accuracy is None or acc > loop.best_accuracy):
        loop.best_accuracy, loop.best_epoch, loop.best_step = acc, record["epoch"], record["step"]
    record["best"] = judged and loop.best_epoch == record["epoch"]


def fit(spec, cfg: train.SGDConfig, seeds, train_data, *, init=None, on_epoch=None):
    """Train one network per seed, all in one program; returns the trained layers.Networks."""
    nets = [layers.build(spec, seed=s, init=init) for s in seeds]
    tr = EnsembleTrainer(nets, cfg, train_data, seeds)
    for epoch in range(cfg.epochs):
        losses, _ = tr.run_epoch(epoch, 0, cfg.eta)
        if on_epoch:
            tr.sync()
            on_epoch(epoch, nets)
    tr.sync()
    return nets


def vote(nets, x) -> np.ndarray:
    """The plurality vote of the members' predictions (N,); ties go to the smaller digit."""
    preds = np.stack([train.predict(n, x) for n in nets])  # (members, N)
    n_classes = nets[0].spec["layers"][-1]["n_out"]
    counts = np.apply_along_axis(np.bincount, 0, preds, minlength=n_classes)  # (classes, N)
    return np.argmax(counts, axis=0)


def accuracy(nets, data) -> float:
    x, y = train.as_arrays(data)
    return float(np.mean(vote(nets, x) == y))


__all__ = ["EnsembleTrainer", "Members", "accuracy", "checkpoint_arrays", "fit", "fit_members", "member", "stack", "vote"]
