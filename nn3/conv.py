"""Valid convolution and border-dropping max-pooling, the two hot ops of network3's layers.

    >>> import jax.numpy as jnp
    >>> from nn3.conv import conv_valid, max_pool
    >>> max_pool(conv_valid(jnp.zeros((10, 28, 28, 1)), jnp.zeros((20, 1, 5, 5))), (2, 2)).shape
    (10, 12, 12, 20)

The formulation is chosen here and nowhere else, by measurement (bench/bench_conv.py).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def conv_valid(x, w):
    """A valid convolution, true (flipped-kernel) as Theano's ``conv2d``.

    Args:
      x: (batch, H, W, C) float32 images.
      w: (n_filters, C, h, w) float32 filters, network3's layout.
    Returns:
      (batch, H-h+1, W-w+1, n_filters).

    On CPU, im2col + one matmul was measured ~6x faster than XLA's convolution at
    mini-batch 10 (PERF.md); elsewhere XLA's convolution is the natural choice.
    """
    nf, c, fh, fw = w.shape
    w = w[:, :, ::-1, ::-1]  # flip: Theano convolves, XLA and im2col correlate
    if jax.default_backend() != "cpu":
        return jax.lax.conv_general_dilated(
            x, w.transpose(2, 3, 1, 0), (1, 1), "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"))
    oh, ow = x.shape[1] - fh + 1, x.shape[2] - fw + 1
    patches = jnp.concatenate(
        [x[:, i:i + oh, j:j + ow, :] for i in range(fh) for j in range(fw)], axis=-1)
    # (batch, oh, ow, fh*fw*C) @ (fh*fw*C, n_filters)
    return patches @ w.transpose(2, 3, 1, 0).reshape(fh * fw * c, nf)


def max_pool(x, poolsize):
    """Max over ``poolsize`` blocks of (batch, H, W, C), dropping borders that do not fill one."""
    ph, pw = poolsize
    b, h, w, c = x.shape
    h2, w2 = h // ph, w // pw
    x = x[:, :h2 * ph, :w2 * pw, :].reshape(b, h2, ph, w2, pw, c)
    return x.max(axis=(2, 4))  # (batch, H//ph, W//pw, C)
