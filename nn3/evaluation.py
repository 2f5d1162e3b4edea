"""Evaluation in large batches: accuracy, cost and predictions; and what data a caller may hand in.

    >>> import numpy as np
    >>> from nn3 import evaluation, layers
    >>> from nn3.spec import mlp_spec
    >>> net = layers.build(mlp_spec([784, 30, 10]))
    >>> right, mean_cost, n = evaluation.evaluate(net, (np.zeros((5, 784), "float32"), np.zeros(5, int)))
    >>> n
    5

Batches have a fixed size per network (``eval_batch``); the last one is padded and
masked, so every data set, whatever its size, runs through one compiled program.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nn3 import backend, costs

EVAL_BATCH = backend.choices("cpu").eval_batch  # the CPU's sizes, for reference; eval_batch picks per backend
CONV_EVAL_BATCH = backend.choices("cpu").conv_eval_batch
CALL_ROWS = 10_000  # images per compiled call: one call for each of MNIST's validation and test sets


def eval_batch(net) -> int:
    """The evaluation batch size for ``net`` on this backend (nn3.backend)."""
    c = backend.choices()
    return c.conv_eval_batch if any(hasattr(l, "poolsize") for l in net.layers) else c.eval_batch


def forward_batch(net) -> int:
    """Rows per forward pass inside an evaluation unit (nn3.backend): divides ``eval_batch(net)``."""
    c = backend.choices()
    unit = eval_batch(net)
    size = c.conv_forward_batch if any(hasattr(l, "poolsize") for l in net.layers) else unit
    return size if 0 < size <= unit and unit % size == 0 else unit


@partial(jax.jit, static_argnames=("graphdef", "cost", "out_act", "size"))
def _eval_units(state, x, y, mask, n_units, *, graphdef, cost, out_act, size):
    """Per unit, (correct count, summed cost) of units ``[0, n_units)`` of ``x`` (k, unit, n_in).

    ``mask`` (k, unit) marks real rows; units from ``n_units`` on are padding, never
    computed, and read 0. A unit's logits come from forward passes of ``size`` rows
    (the same numbers as one pass of the whole unit: each row's arithmetic does not
    depend on the others), its cost is summed over the unit as one float32, as when
    every unit was a call of its own.
    """
    model = nnx.merge(graphdef, state)
    k, unit = mask.shape

    def one(i, acc):
        right, total = acc
        xb, yb, mb = x[i], y[i], mask[i]
        if size < unit:
            z = jax.lax.map(model.logits, xb.reshape(unit // size, size, -1)).reshape(unit, -1)
        else:
            z = model.logits(xb)
        r = jnp.sum((jnp.argmax(z, axis=-1) == yb) & mb)
        c = jnp.sum(jnp.where(mb, costs.get(cost)(z, yb, out_act), 0.0))
        return right.at[i].set(r), total.at[i].set(c)

    return jax.lax.fori_loop(0, n_units, one, (jnp.zeros(k, jnp.int32), jnp.zeros(k, jnp.float32)))


@partial(jax.jit, static_argnames=("graphdef",))
def _predict_batch(state, x, *, graphdef):
    model = nnx.merge(graphdef, state)
    return jnp.argmax(model.logits(x), axis=-1)


def as_arrays(data, n_in=None, n_out=None):
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


def evaluate(net, data) -> tuple[int, float, int]:
    """``(correct, mean cost, n)`` of ``net`` on ``data``, in units of ``eval_batch(net)``.

    One compiled call per CALL_ROWS images (a program for every data set size: the last
    call is padded, its padding masked or skipped). The mean cost adds the units' float32
    sums in order in float64, as it always has, so recorded costs keep their last bits.
    """
    graphdef, state = nnx.split(net)
    x, y = as_arrays(data, net.n_in, net.n_out)
    n = len(y)
    if n == 0:
        raise ValueError("data: empty data set")
    unit, size = eval_batch(net), forward_batch(net)
    k = max(1, CALL_ROWS // unit)  # units per call
    rows = k * unit
    parts = []  # device arrays, read once at the end: no wait between calls
    for i in range(0, n, rows):
        xb, yb = x[i:i + rows], y[i:i + rows]
        m = len(yb)
        if m < rows:
            xb = np.concatenate([xb, np.zeros((rows - m, xb.shape[1]), xb.dtype)])
            yb = np.concatenate([yb, np.zeros(rows - m, yb.dtype)])
        mask = (np.arange(rows) < m).reshape(k, unit)
        used = -(-m // unit)
        parts.append((used, _eval_units(state, xb.reshape(k, unit, -1), yb.reshape(k, unit), mask, used,
                                        graphdef=graphdef, cost=net.spec["cost"], out_act=net.output_activation,
                                        size=size)))
    got = jax.device_get([p for _, p in parts])
    right, total = 0, 0
    for (used, _), (r, c) in zip(parts, got):
        right += int(np.sum(r[:used], dtype=np.int64))
        for v in c[:used].tolist():  # unit after unit, as the sum of one call per unit was
            total += v
    return right, total / n, n


def predict(net, x) -> np.ndarray:
    """The predicted class (N,) for inputs (N, n_in)."""
    graphdef, state = nnx.split(net)
    x = np.asarray(x, np.float32).reshape(-1, net.n_in)
    out = []
    size = eval_batch(net)
    for i in range(0, len(x), size):
        xb = x[i:i + size]
        pad = size - len(xb)
        out.append(np.asarray(_predict_batch(state, np.pad(xb, ((0, pad), (0, 0))), graphdef=graphdef))[:len(xb)])
    return np.concatenate(out) if out else np.zeros((0,), np.int64)


def l2_norm_sq(net) -> float:
    """Sum of squared weights over all layers (biases excluded)."""
    return float(sum(jnp.sum(l.w[...] ** 2) for l in net.layers))
