"""The compiled part of training: mini-batches of one network as one ``lax.scan``, and
N networks of one architecture in one program, over one device or many.

    >>> import numpy as np, jax.numpy as jnp
    >>> from nn3.engine import layers, step
    >>> from nn3.engine.spec import mlp_spec
    >>> step.epoch_order(seed=0, epoch=1, n=5)
    array([0, 4, 3, 1, 2], dtype=int32)
    >>> step.layout(n_members=5, n_devices=4)   # 5 members run 2 a device on 3 devices
    (3, 6)

``scan_batches`` is the book's inner loop for one network: for each mini-batch, gather
its examples, augment them, take the gradient of the cost and apply the update rule.
``run_members`` runs it for a leading *member* axis: each member with its own
parameters, optimiser state (hyperparameters included), order and keys, so that member
``i`` computes exactly what a lone run with its seed and settings computes. Two ways,
the backend's choice (``backend.choices().conv_members``):

- ``"vmap"``: every op batched over the members. What a GPU wants, and on the CPU what
  an MLP wants (one op for all members).
- ``"loop"``: the lone scan, member after member, inside the one call (``lax.map``); a
  member that is not ``live`` is skipped. On the CPU, conv nets: there the batched conv
  ops outgrow the caches (bench/README.md, "members").

One member always runs the lone scan itself: a vmap over one member rounds differently.

With a mesh (``member_mesh``) the member axis is sharded over its devices and each
device runs the one-device program on its members (``shard_map``); nothing crosses
between devices, so the numbers do not depend on how many there are.

Randomness is a function of (seed, epoch, step): the order of an epoch comes from a
numpy generator seeded by (seed, epoch), dropout and augmentation from ``fold_in`` of
the member's keys by the global step. A run resumed anywhere draws what it would have.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nn3.engine import augment as aug
from nn3.engine import backend, costs
from nn3.engine.device_data import pixels
from nn3.engine.optim import Rule

__all__ = ["AXIS", "HOW", "STATICS", "epoch_order", "layout", "member_mesh", "run_members", "scan_batches",
           "step_keys"]

STATICS = ("graphdef", "cost", "out_act", "augment", "dropout", "rule")
HOW = ("vmap", "loop")
AXIS = "members"  # the mesh axis the member axis is sharded over


def step_keys(seed: int) -> jax.Array:
    """(2, 2) uint32: the base keys of dropout and augmentation for ``seed``."""
    root = jax.random.PRNGKey(seed)
    return jnp.stack([jax.random.fold_in(root, 2), jax.random.fold_in(root, 3)])


def epoch_order(seed: int, epoch: int, n: int, shuffle: bool = True) -> np.ndarray:
    """(n,) int32: the order of ``epoch``'s examples, a function of (seed, epoch) alone.

    numpy's permutation of a stream seeded by (seed, epoch): much cheaper than
    ``jax.random.permutation``'s sort for an MLP's short epoch.
    """
    if not shuffle:
        return np.arange(n, dtype=np.int32)
    return np.random.default_rng([seed, 1, epoch]).permutation(n).astype(np.int32)


def scan_batches(state: Any, opt_state: Any, x: jax.Array, y: jax.Array, batches: jax.Array, steps: jax.Array,
                 keys: jax.Array, *, graphdef: Any, cost: str, out_act: str, augment: str, dropout: bool,
                 rule: Rule) -> tuple[Any, Any, jax.Array, jax.Array]:
    """Train one network over ``batches`` of example indices, in order.

    Args:
      state: the network's ``nnx.State``; opt_state: ``rule``'s optax state, which holds
        the hyperparameters (eta, decay, L1 strength, momentum) as values.
      x: (N, n_in) float32, or uint8 codes (nn3.engine.device_data); y: (N,) int32.
      batches: (n_batches, m) int32 indices into x; into 5N virtual examples when
        ``augment`` is "expand" (example v is image v // 5, shifted by v % 5).
      steps: (n_batches,) int32 global step numbers, which key dropout and augmentation.
      keys: (2, 2) uint32: the dropout and augmentation base keys (``step_keys``).
      graphdef, cost, out_act, augment, dropout, rule: static; ``rule`` says which terms
        of the update are on at all (an off term costs no operations).
    Returns:
      (state, opt_state, losses (n_batches,) float32 (each mini-batch's mean cost before
      its update), finite: () bool, whether every loss and every parameter is finite).
    """
    cost_fn = costs.get(cost)
    tx = rule.transform()  # its values come from opt_state

    def loss_fn(st, xb, yb, key):
        model = nnx.merge(graphdef, st)
        return cost_fn(model.logits(xb, key), yb, out_act).mean()

    def one_step(carry, inp):
        st, opt = carry
        idx, s = inp
        if augment == "expand":
            xb = aug.expanded(pixels(x[idx // 5]), idx % 5)
            yb = y[idx // 5]
        else:
            xb, yb = pixels(x[idx]), y[idx]
        if augment == "affine":
            xb = aug.affine(xb, jax.random.fold_in(keys[1], s))
        key = jax.random.fold_in(keys[0], s) if dropout else None
        with backend.precision():  # the custom backward passes (conv, dense) too
            loss, grads = jax.value_and_grad(loss_fn)(st, xb, yb, key)
        updates, opt = tx.update(grads, opt, st)
        return (optax.apply_updates(st, updates), opt), loss

    (state, opt_state), losses = jax.lax.scan(one_step, (state, opt_state), (batches, steps))
    leaves = [losses, *jax.tree_util.tree_leaves(state)]
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in leaves]))
    return state, opt_state, losses, finite


def _kept(live, new, old):
    """``new`` for the live members, ``old`` for the others (a leading member axis): bit for bit."""
    return jax.tree.map(lambda a, b: jnp.where(live.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)


def _members(state, opt_state, x, y, batches, steps, keys, live, *, how, sharded, **statics):
    """``scan_batches`` for each member on this device (a leading axis on every argument
    but ``x``, ``y`` and ``steps``); a member whose ``live`` is False keeps its state.
    ``sharded``: inside ``shard_map``, where per-member values vary over the mesh."""
    one: Callable[..., Any] = partial(scan_batches, **statics)
    if keys.shape[0] == 1:  # one member: the lone program itself (a vmap of one rounds differently)
        st, opt, ls, fin = one(*jax.tree.map(lambda a: a[0], (state, opt_state)), x, y, batches[0], steps, keys[0])
        new = jax.tree.map(lambda a: a[None], (st, opt, ls, fin))
        return (*_kept(live, new[:2], (state, opt_state)), new[2], new[3] | ~live)
    if how == "vmap":
        new = jax.vmap(one, in_axes=(0, 0, None, None, 0, None, 0))(state, opt_state, x, y, batches, steps, keys)
        return (*_kept(live, new[:2], (state, opt_state)), new[2], new[3] | ~live)

    def member(m):
        return one(m[0], m[1], x, y, m[2], steps, m[3])

    def skipped(m):  # a stopped or padding member: its state as it was, finite, no losses
        done = (jnp.zeros(steps.shape, jnp.float32), jnp.array(True))
        if sharded:
            done = jax.lax.pcast(done, AXIS, to="varying")
        return (m[0], m[1], *done)

    return jax.lax.map(lambda m: jax.lax.cond(m[4], member, skipped, m), (state, opt_state, batches, keys, live))


def run_members(state: Any, opt_state: Any, x: jax.Array, y: jax.Array, batches: jax.Array, steps: jax.Array,
                keys: jax.Array, live: jax.Array, *, how: str, mesh: jax.sharding.Mesh | None = None,
                **statics: Any) -> tuple[Any, Any, jax.Array, jax.Array]:
    """``scan_batches`` for M members at once (compiled: ``run_members_jit``).

    Args:
      state, opt_state: as ``scan_batches``'s, with a leading member axis (M, ...).
      x, y, steps: shared by every member (a copy on every device of ``mesh``).
      batches: (M, n_batches, m) int32: each member's own order.
      keys: (M, 2, 2) uint32: each member's ``step_keys``.
      live: (M,) bool: the members that train; the others keep their state and report
        finite, zero losses in "loop" (they are skipped) and their unused ones in "vmap".
      how: "vmap" or "loop" (see the module's docstring); static.
      mesh: None, or a mesh with an ``AXIS`` axis that M is a multiple of: each device
        runs its slice of the members and nothing crosses between devices; static.
    Returns:
      (state, opt_state, losses (M, n_batches) float32, finite (M,) bool).
    """
    if how not in HOW:
        raise ValueError(f"members: {how!r} is not one of {', '.join(HOW)}")
    local: Callable[..., Any] = partial(_members, how=how, sharded=mesh is not None, **statics)
    if mesh is None:
        return local(state, opt_state, x, y, batches, steps, keys, live)
    mine, every = jax.sharding.PartitionSpec(AXIS), jax.sharding.PartitionSpec()
    return jax.shard_map(local, mesh=mesh, in_specs=(mine, mine, every, every, mine, every, mine, mine),
                         out_specs=mine)(state, opt_state, x, y, batches, steps, keys, live)


run_members_jit = jax.jit(run_members, static_argnames=STATICS + ("how", "mesh"))


def layout(n_members: int, n_devices: int) -> tuple[int, int]:
    """(devices to use, members with padding) for ``n_members`` on ``n_devices``.

    The time of a call is that of the busiest device, ``ceil(n / devices)`` members: as
    few devices as give that time are used, and the members are padded to a multiple
    of them. 5 members on 4 devices run 2 a device on 3 (6 in all), not on 4 (8).
    """
    per_device = -(-n_members // max(1, n_devices))
    used = -(-n_members // per_device)
    return used, used * per_device


def member_mesh(n_members: int, devices: list | None = None) -> jax.sharding.Mesh | None:
    """The mesh (one ``AXIS`` axis) that ``n_members`` members are sharded over, or None
    when they run on one device. ``devices``: those to use (default: JAX's devices).

    In one process, as few devices as ``layout`` says. Across processes, every device of
    every process, in process order: each process must hold a part of the program it runs.
    """
    devices = sorted(jax.devices() if devices is None else devices, key=lambda d: (d.process_index, d.id))
    used = len(devices) if len({d.process_index for d in devices}) > 1 else layout(n_members, len(devices))[0]
    if used < 2:
        return None
    return jax.make_mesh((used,), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices[:used])
