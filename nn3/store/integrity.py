"""Whether a checkpoint can be trusted: the hash of its arrays, and their structure against a restore's target.

    >>> import numpy as np
    >>> from nn3.store import integrity
    >>> integrity.state_hash({"w": np.zeros(2, np.float32)})[:16]
    'dbce7f9244987356'

orbax restores a flipped bit silently: every checkpoint nn3 writes carries the SHA-256
of its arrays (``state_hash``), checked when it is read back (nn3.store.rundir). A
checkpoint of another network (other layers, other shapes) is told apart before any
array is read (``structure_difference``).
"""
from __future__ import annotations

import contextlib
import hashlib
import sys
import time
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

__all__ = ["quiet_stray_reads", "state_hash", "structure_difference"]


def state_hash(state: Any) -> str:
    """SHA-256 hex digest over every leaf's dtype, shape and bytes, in tree-flatten order."""
    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(state):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def structure_difference(saved: list, want: list) -> str | None:
    """How the saved leaves differ from the target's, in words, or None when they agree.

    Args:
      saved: ``(key path, metadata with .shape and .dtype)`` of each saved leaf, in order.
      want: ``(key path, array or ShapeDtypeStruct)`` of each leaf a restore expects.
    """
    keys = jax.tree_util.keystr
    saved_keys, want_keys = [keys(p) for p, _ in saved], [keys(p) for p, _ in want]
    if saved_keys != want_keys:
        diff = sorted(set(saved_keys) ^ set(want_keys))[:3] or ["leaf order"]
        return f"{len(saved_keys)} saved leaves vs {len(want_keys)}, differing at {', '.join(diff)}"
    for (p, m), (_, t) in zip(saved, want):
        t_shape, t_dtype = tuple(np.shape(t)), np.dtype(getattr(t, "dtype", np.result_type(t)))
        if tuple(m.shape) != t_shape or np.dtype(m.dtype) != t_dtype:
            return f"{keys(p)} saved {np.dtype(m.dtype)}{list(m.shape)}, target {t_dtype}{list(t_shape)}"
    return None


@contextlib.contextmanager
def quiet_stray_reads(settle_s: float = 0.2) -> Iterator[None]:
    """Drops the 'Event loop is closed' noise of a restore that failed part-way.

    When one array of a damaged step fails to read, orbax closes its event loop while
    tensorstore still finishes the other reads; their callbacks then hit the closed
    loop and Python reports each as an ignored exception. We let them land, unheard.
    """
    previous = sys.unraisablehook

    def hook(u):
        if not (isinstance(u.exc_value, RuntimeError) and str(u.exc_value) == "Event loop is closed"):
            previous(u)

    sys.unraisablehook = hook
    try:
        yield
    except BaseException:
        time.sleep(settle_s)
        raise
    finally:
        sys.unraisablehook = previous
