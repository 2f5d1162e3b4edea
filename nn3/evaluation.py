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


def eval_batch(net) -> int:
    """The evaluation batch size for ``net`` on this backend (nn3.backend)."""
    c = backend.choices()
    return c.conv_eval_batch if any(hasattr(l, "poolsize") for l in net.layers) else c.eval_batch


@partial(jax.jit, static_argnames=("graphdef", "cost", "out_act"))
def _eval_batch(state, x, y, mask, *, graphdef, cost, out_act):
    """(correct count, summed cost) over one padded batch; ``mask`` marks real rows."""
    model = nnx.merge(graphdef, state)
    z = model.logits(x)
    right = (jnp.argmax(z, axis=-1) == y) & mask
    c = jnp.where(mask, costs.get(cost)(z, y, out_act), 0.0)
    return jnp.sum(right), jnp.sum(c)


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
    """``(correct, mean cost, n)`` of ``net`` on ``data``, in batches of ``eval_batch(net)``.

    Compiles once for all data sets: the last batch is padded and masked.
    """
    graphdef, state = nnx.split(net)
    x, y = as_arrays(data, net.n_in, net.n_out)
    n = len(y)
    if n == 0:
        raise ValueError("data: empty data set")
    size = eval_batch(net)
    parts = []  # device scalars, read once at the end: no wait between batches
    for i in range(0, n, size):
        xb, yb = x[i:i + size], y[i:i + size]
        mask = np.arange(size) < len(yb)
        pad = size - len(yb)
        if pad:
            xb = np.pad(xb, ((0, pad), (0, 0)))
            yb = np.pad(yb, (0, pad))
        parts.append(_eval_batch(state, xb, yb, mask, graphdef=graphdef, cost=net.spec["cost"],
                                 out_act=net.output_activation))
    got = jax.device_get(parts)
    right = sum(int(r) for r, _ in got)
    total = sum(float(c) for _, c in got)
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
