"""Evaluation in large batches: accuracy, cost and predictions; and what data a caller may hand in.

    >>> import numpy as np
    >>> from nn3.engine import evaluation, layers
    >>> from nn3.engine.spec import mlp_spec
    >>> net = layers.build(mlp_spec([784, 30, 10]))
    >>> right, mean_cost, n = evaluation.evaluate(net, (np.zeros((5, 784), "float32"), np.zeros(5, int)))
    >>> n
    5

Data go through in *units* of ``eval_batch(net)`` rows, the last one padded and masked.
Each unit's cost is summed in float32 and the units' sums are added in float64, one unit
after another, so a recorded cost is the same number however the units are grouped into
compiled calls. The units go ``CALL_ROWS`` images to a compiled call (a loop over them
inside: MNIST's validation and test sets are one call each), and a conv net's units run
as forward passes of ``forward_batch(net)`` rows (on the CPU 50: smaller passes stay in
the caches; the logits are the same numbers at any batch size, each row's arithmetic
being its own). One program per network, whatever the data set's size: the last call
is padded, and its padding units are not computed.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nn3.engine import backend, costs
from nn3.engine.layers import Network
from nn3.engine.spec import has_conv

EVAL_BATCH = backend.choices("cpu").eval_batch  # the CPU's sizes, for reference; eval_batch picks per backend
CONV_EVAL_BATCH = backend.choices("cpu").conv_eval_batch
CALL_ROWS = 10_000  # images per compiled call: one call for each of MNIST's validation and test sets


def eval_batch(net: Network) -> int:
    """Rows of one evaluation unit for ``net`` on this backend (nn3.engine.backend): its cost is one float32 sum."""
    c = backend.choices()
    return c.conv_eval_batch if has_conv(net.spec) else c.eval_batch


def forward_batch(net: Network) -> int:
    """Rows per forward pass inside an evaluation unit (nn3.engine.backend); it divides ``eval_batch(net)``."""
    unit = eval_batch(net)
    size = backend.choices().conv_forward_batch if has_conv(net.spec) else unit
    return size if 0 < size <= unit and unit % size == 0 else unit


@partial(jax.jit, static_argnames=("graphdef", "cost", "out_act", "size"))
def _eval_units(state, x, y, mask, n_units, *, graphdef, cost, out_act, size):
    """Per unit (correct count, summed cost), and the predicted classes, of units ``[0, n_units)``.

    ``x`` (k, unit, n_in), ``y`` and ``mask`` (k, unit); ``mask`` marks real rows. Units
    from ``n_units`` on are padding: never computed, they read 0. A unit's logits come
    from forward passes of ``size`` rows; its cost is summed over the unit.
    """
    model = nnx.merge(graphdef, state)
    k, unit = mask.shape

    def one(i, acc):
        right, total, pred = acc
        xb, yb, mb = x[i], y[i], mask[i]
        if size < unit:
            z = jax.lax.map(model.logits, xb.reshape(unit // size, size, -1)).reshape(unit, -1)
        else:
            z = model.logits(xb)
        guess = jnp.argmax(z, axis=-1).astype(jnp.int32)
        r = jnp.sum((guess == yb) & mb)
        c = jnp.sum(jnp.where(mb, costs.get(cost)(z, yb, out_act), 0.0))
        return right.at[i].set(r), total.at[i].set(c), pred.at[i].set(guess)

    start = (jnp.zeros(k, jnp.int32), jnp.zeros(k, jnp.float32), jnp.zeros((k, unit), jnp.int32))
    return jax.lax.fori_loop(0, n_units, one, start)


def _run(net, x, y):
    """``[(units used, (right (k,), cost (k,), pred (k, unit)))]`` per call, on the device (not waited for)."""
    graphdef, state = nnx.split(net)
    unit, size = eval_batch(net), forward_batch(net)
    full = max(1, CALL_ROWS // unit)  # units per call
    out = []
    for i in range(0, len(y), full * unit):
        xb, yb = x[i:i + full * unit], y[i:i + full * unit]
        m = len(yb)
        if m < full * unit:  # one shape, one program: padding costs less than compiling a second (bench/README.md)
            xb = np.concatenate([xb, np.zeros((full * unit - m, xb.shape[1]), xb.dtype)])
            yb = np.concatenate([yb, np.zeros(full * unit - m, yb.dtype)])
        mask = (np.arange(full * unit) < m).reshape(full, unit)
        used = -(-m // unit)
        out.append((used, _eval_units(state, xb.reshape(full, unit, -1), yb.reshape(full, unit), mask, used,
                                      graphdef=graphdef, cost=net.spec["cost"], out_act=net.output_activation,
                                      size=size)))
    return out


def as_arrays(data: Any, n_in: int | None = None, n_out: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(x (N, n_in) float32, y (N,) int32)`` numpy arrays from what a caller hands in.

    Accepts an ``(x, y)`` pair of arrays, an object with ``.arrays()`` (nn3's
    mnist_loader sequences), or a list of the book's ``(x, y)`` pairs with
    (784, 1) columns and one-hot (10, 1) or integer labels. With ``n_in`` / ``n_out``
    (the network's), inputs of another width, one-hot labels of another width and
    labels outside 0..n_out-1 are refused rather than broadcast or clipped.
    """
    if hasattr(data, "arrays"):
        x, y = data.arrays()
    elif isinstance(data, tuple) and len(data) == 2 and hasattr(data[0], "shape") and np.ndim(data[0]) == 2:
        x, y = data
    else:
        pairs = list(data)
        if not pairs:
            raise ValueError("data: empty data set")
        x = np.stack([np.asarray(a, np.float32).reshape(-1) for a, _ in pairs])
        y = np.array([int(np.argmax(b)) if np.ndim(b) else int(b) for _, b in pairs])
    x = np.asarray(x, np.float32)
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        if n_out is not None and y.shape[1] != n_out:
            raise ValueError(f"data: one-hot labels have {y.shape[1]} columns, the network has {n_out} outputs")
        y = np.argmax(y, axis=1)
    y = y.reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"data: inputs {x.shape} and labels {y.shape} do not match")
    if n_in is not None and x.shape[1] != n_in:
        raise ValueError(f"data: inputs have {x.shape[1]} features, the network takes {n_in}")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.mod(y, 1) == 0):
            raise ValueError("data: labels must be integers")
    if n_out is not None and len(y) and (y.min() < 0 or y.max() >= n_out):
        raise ValueError(f"data: labels run from {y.min()} to {y.max()}, the network has {n_out} outputs")
    return x, y.astype(np.int32)


def evaluate(net: Network, data: Any) -> tuple[int, float, int]:
    """``(correct, mean cost, n)`` of ``net`` on ``data``, in units of ``eval_batch(net)`` (see the
    module's docstring)."""
    x, y = as_arrays(data, net.n_in, net.n_out)
    n = len(y)
    if n == 0:
        raise ValueError("data: empty data set")
    calls = _run(net, x, y)
    got = jax.device_get([(r, c) for _, (r, c, _) in calls])  # one wait, at the end
    right, total = 0, 0
    for (used, _), (r, c) in zip(calls, got):
        right += int(np.sum(r[:used], dtype=np.int64))
        for v in c[:used].tolist():  # unit after unit in float64, as when each unit was a call
            total += v
    return right, total / n, n


def predict(net: Network, x: np.ndarray) -> np.ndarray:
    """The predicted class (N,) for inputs (N, n_in)."""
    x = np.asarray(x, np.float32).reshape(-1, net.n_in)
    if not len(x):
        return np.zeros((0,), np.int64)
    calls = _run(net, x, np.zeros(len(x), np.int32))
    got = jax.device_get([p for _, (_, _, p) in calls])
    return np.concatenate([p.reshape(-1) for p in got])[:len(x)]


def l2_norm_sq(net: Network) -> float:
    """Sum of squared weights over all layers (biases excluded)."""
    return float(sum(jnp.sum(layer.w[...] ** 2) for layer in net.layers))


def plurality(preds: np.ndarray, n_classes: int) -> np.ndarray:
    """(N,) the plurality vote of predicted classes (networks, N); a tie goes to the
    smallest class (the rule an ensemble bundle records)."""
    counts = np.apply_along_axis(np.bincount, 0, preds, minlength=n_classes)  # (classes, N)
    return np.argmax(counts, axis=0)


def vote(nets: Sequence[Network], x: np.ndarray) -> np.ndarray:
    """(N,) the networks' plurality vote for inputs (N, n_in) (see ``plurality``)."""
    return plurality(np.stack([predict(n, x) for n in nets]), nets[0].n_out)


def vote_accuracy(nets: Sequence[Network], data: Any) -> float:
    """The fraction of ``data`` (see ``as_arrays``) that the networks' vote classifies right."""
    x, y = as_arrays(data)
    return float(np.mean(vote(nets, x) == y))
