"""Host values shared between the processes of one run (multi-controller JAX); nothing to share in one process.

    >>> import numpy as np
    >>> from nn3.engine import processes
    >>> processes.count(), processes.index(), processes.is_primary()
    (1, 0, True)
    >>> processes.gather(np.array([1.5, 2.0]))            # one process: its own values, (1, ...)
    array([[1.5, 2. ]])
    >>> processes.any_true(False)
    False

With ``jax.distributed`` every process runs the same program over one global device mesh
(nn3.runs.cluster starts it). Each process holds the shards of the members on its own
devices; what the others must know (a member's measured accuracy, its predictions for the
vote, whether someone pressed Ctrl-C) travels through JAX's collectives, never files. Every
function here is a collective when there are several processes: all of them must call it,
in the same order. In one process each one returns at once.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np

__all__ = ["any_true", "count", "from_primary", "gather", "index", "is_primary", "place", "to_host"]


def count() -> int:
    """The number of processes in the run."""
    return jax.process_count()


def index() -> int:
    """This process's index, 0 .. count() - 1."""
    return jax.process_index()


def is_primary() -> bool:
    """Whether this process is the one that writes (process 0)."""
    return index() == 0


def _wide(a: np.ndarray) -> np.ndarray:
    """``a`` as 32-bit words: 64-bit values would be cast to 32 bits on their way through
    JAX (x64 is off), so they travel as the two words of their bits."""
    a = np.ascontiguousarray(a)
    return a.view(np.uint32) if a.dtype.itemsize == 8 else a


def gather(values: Any) -> Any:
    """Every process's ``values`` (a pytree of numpy arrays of the same shapes on every
    process), stacked on a new leading process axis, bit for bit (float64 included)."""
    leaves, treedef = jax.tree.flatten(values)
    leaves = [np.asarray(v) for v in leaves]
    if count() == 1:
        return jax.tree.unflatten(treedef, [v[None] for v in leaves])
    from jax.experimental import multihost_utils
    got = multihost_utils.process_allgather([_wide(v) for v in leaves])
    return jax.tree.unflatten(treedef, [np.asarray(g).view(v.dtype).reshape((count(),) + v.shape)
                                        for g, v in zip(got, leaves)])


def any_true(flag: bool) -> bool:
    """Whether ``flag`` is True on any process."""
    return bool(np.any(gather(np.array([bool(flag)]))))


def from_primary(values: Any) -> Any:
    """The primary's ``values`` on every process (the others pass arrays of the same shapes)."""
    if count() == 1:
        return values
    from jax.experimental import multihost_utils
    leaves, treedef = jax.tree.flatten(values)
    leaves = [np.asarray(v) for v in leaves]
    got = multihost_utils.broadcast_one_to_all([_wide(v) for v in leaves], is_source=is_primary())
    return jax.tree.unflatten(treedef, [np.asarray(g).view(v.dtype).reshape(v.shape) for g, v in zip(got, leaves)])


def place(host: Any, sharding: jax.sharding.Sharding) -> Any:
    """A pytree of host arrays, the same on every process, laid out by ``sharding`` (each
    process supplies the shards of its own devices)."""
    if sharding.is_fully_addressable:
        return jax.device_put(host, sharding)

    def one(a: Any) -> jax.Array:
        if isinstance(a, jax.Array) and a.sharding == sharding:
            return a  # placed already
        a = np.asarray(a)
        return jax.make_array_from_callback(a.shape, sharding, lambda i: a[i])
    return jax.tree.map(one, host)


def to_host(tree: Any) -> Any:
    """A pytree of (possibly sharded) arrays as whole numpy arrays on every process."""
    leaves, treedef = jax.tree.flatten(tree)
    if all(getattr(a, "is_fully_addressable", True) for a in leaves):
        return jax.tree.unflatten(treedef, [np.asarray(a) for a in leaves])
    from jax.experimental import multihost_utils
    return jax.tree.unflatten(treedef, [np.asarray(a) for a in multihost_utils.process_allgather(leaves, tiled=True)])
