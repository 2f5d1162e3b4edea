"""Valid convolution and border-dropping max-pooling, the two hot ops of network3's layers.

    >>> import jax.numpy as jnp
    >>> from nn3.engine.conv import conv_pool, conv_valid, max_pool
    >>> max_pool(conv_valid(jnp.zeros((10, 28, 28, 1)), jnp.zeros((20, 1, 5, 5))), (2, 2)).shape
    (10, 12, 12, 20)
    >>> conv_pool(jnp.zeros((10, 12, 12, 20)), jnp.zeros((40, 20, 5, 5)), (2, 2)).shape
    (10, 4, 4, 40)

Three formulations, measured in bench/bench_conv.py:

- ``"fused"`` (CPU): ``conv_pool`` as one op with a hand-written backward pass. The
  first layer (one input map) takes (fh+ph-1)x(fw+pw-1) patches at the pool's stride and
  one matmul against the kernel placed at every pool offset, then a max over the offsets;
  deeper layers take im2col (the fh*fw shifted slices side by side) and one matmul.
- ``"im2col"``: ``max_pool(conv_valid(x, w))``, the conv im2col + matmul differentiated by JAX.
- ``"xla"``: XLA's convolution, the natural choice off CPU and the default there.

The ``formulation`` argument is static (a Python string the trace sees; nn3.engine.layers
keeps it as a ConvPoolLayer attribute, so it is part of the graph that jit keys on). None
takes the backend's choice from nn3.engine.backend, the one place where per-backend
choices are made.
Max-pooling's gradient goes in full to every input equal to its window's max, as
Theano's ``MaxPoolGrad`` (JAX's ``max`` would split ties).
"""
from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from nn3.engine import backend

__all__ = ["FORMULATIONS", "conv_pool", "conv_valid", "max_pool", "resolve"]

FORMULATIONS = ("fused", "im2col", "xla")


def resolve(formulation: str | None = None) -> str:
    """``formulation``, or the backend's choice when None; an unknown name is a ValueError."""
    if formulation is None:
        return backend.choices().conv
    if formulation not in FORMULATIONS:
        raise ValueError(f"conv formulation: {formulation!r} is not one of {', '.join(FORMULATIONS)}")
    return formulation


def _check(x, w, poolsize=(1, 1)):
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv: expected x (batch, H, W, C) and w (nf, C, h, w), got {x.shape} and {w.shape}")
    if x.shape[3] != w.shape[1]:
        raise ValueError(f"conv: x has {x.shape[3]} input maps, w expects {w.shape[1]}")
    if w.shape[2] > x.shape[1] or w.shape[3] > x.shape[2]:
        raise ValueError(f"conv: a {w.shape[2]}x{w.shape[3]} filter does not fit a {x.shape[1]}x{x.shape[2]} image")
    if len(poolsize) != 2 or min(poolsize) < 1:
        raise ValueError(f"conv: poolsize must be two positive integers, got {poolsize}")


def _kernel(w):
    """(nf, C, h, w) -> (h*w*C, nf), flipped: Theano convolves, im2col correlates."""
    nf, c, fh, fw = w.shape
    return w[:, :, ::-1, ::-1].transpose(2, 3, 1, 0).reshape(fh * fw * c, nf)


def _patch_index(width, grid, kernel, stride):
    """(gh, gw, kh*kw) flat pixel indices of the kh x kw patches on a grid at ``stride``."""
    (gh, gw), (kh, kw), (sh, sw) = grid, kernel, stride
    rows = sh * np.arange(gh)[:, None, None, None] + np.arange(kh)[None, None, :, None]
    cols = sw * np.arange(gw)[None, :, None, None] + np.arange(kw)[None, None, None, :]
    return (rows * width + cols).reshape(gh, gw, kh * kw)


def _patches(x, grid, kernel, stride):
    """(batch, gh, gw, kh*kw*C) patches in (row, column, map) order, one per grid point."""
    b, h, w, c = x.shape
    (gh, gw), (kh, kw), (sh, sw) = grid, kernel, stride
    if c == 1:  # one gather: measured faster than 25 slices for the first layer
        return x.reshape(b, h * w)[:, _patch_index(w, grid, kernel, stride)]
    return jnp.concatenate([x[:, u:u + (gh - 1) * sh + 1:sh, v:v + (gw - 1) * sw + 1:sw, :]
                            for u in range(kh) for v in range(kw)], axis=-1)


def _gathered_patches(x, grid, kernel, stride):
    """``_patches`` as one gather for any number of maps (no adjoint here: evaluation only)."""
    b, h, w, c = x.shape
    (gh, gw), (kh, kw) = grid, kernel
    return x.reshape(b, h * w, c)[:, _patch_index(w, grid, kernel, stride), :].reshape(b, gh, gw, kh * kw * c)


def conv_valid(x: jax.Array, w: jax.Array, formulation: str | None = None) -> jax.Array:
    """A valid convolution, true (flipped-kernel) as Theano's ``conv2d``.

    Args:
      x: (batch, H, W, C) float32 images.
      w: (n_filters, C, h, w) float32 filters, network3's layout.
      formulation: "xla" for XLA's convolution, any other for im2col + matmul; None:
        the backend's choice.

    Returns:
      (batch, H-h+1, W-w+1, n_filters) float32.

    Raises:
      ValueError: the shapes do not fit (not 4-D, maps differ, the filter is larger
        than the image).
    """
    _check(x, w)
    nf, c, fh, fw = w.shape
    if resolve(formulation) == "xla":
        return jax.lax.conv_general_dilated(
            x, w[:, :, ::-1, ::-1].transpose(2, 3, 1, 0), (1, 1), "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"))
    oh, ow = x.shape[1] - fh + 1, x.shape[2] - fw + 1
    return _patches(x, (oh, ow), (fh, fw), (1, 1)) @ _kernel(w)  # (batch, oh, ow, K) @ (K, nf)


def _pool_mask(x, m, poolsize):
    """(batch, H//ph, ph, W//pw, pw, C) bools: which inputs equal their window's max ``m``."""
    ph, pw = poolsize
    b, h2, w2, c = m.shape
    windows = x[:, :h2 * ph, :w2 * pw, :].reshape(b, h2, ph, w2, pw, c)
    return windows == m[:, :, None, :, None, :]


def max_pool(x: jax.Array, poolsize: Sequence[int]) -> jax.Array:
    """Max over ``poolsize`` blocks, dropping borders that do not fill one.

    Args:
      x: (batch, H, W, C) float32.
      poolsize: (ph, pw).

    Returns:
      (batch, H//ph, W//pw, C) float32. Its gradient goes in full to every input equal
      to its window's max.
    """
    return _max_pool(x, tuple(int(p) for p in poolsize))


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool(x, poolsize):
    ph, pw = poolsize
    b, h, w, c = x.shape
    h2, w2 = h // ph, w // pw
    return x[:, :h2 * ph, :w2 * pw, :].reshape(b, h2, ph, w2, pw, c).max(axis=(2, 4))  # (b, h2, w2, C)


def _max_pool_fwd(x, poolsize):
    m = _max_pool(x, poolsize)
    return m, (x, m)


def _max_pool_bwd(poolsize, res, g):
    x, m = res
    b, h, w, c = x.shape
    _, h2, w2, _ = m.shape
    ph, pw = poolsize
    gx = jnp.where(_pool_mask(x, m, poolsize), g[:, :, None, :, None, :], 0.0)
    gx = gx.reshape(b, h2 * ph, w2 * pw, c)
    return (jnp.pad(gx, ((0, 0), (0, h - h2 * ph), (0, w - w2 * pw), (0, 0))),)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def conv_pool(x: jax.Array, w: jax.Array, poolsize: Sequence[int], formulation: str | None = None) -> jax.Array:
    """``max_pool(conv_valid(x, w), poolsize)``, fused on CPU (see the module's docstring).

    Args:
      x: (batch, H, W, C) float32 images.
      w: (n_filters, C, h, w) float32 filters, network3's layout.
      poolsize: (ph, pw), positive.
      formulation: "fused", "im2col" or "xla"; None: the backend's choice (nn3.engine.backend).

    Returns:
      (batch, (H-h+1)//ph, (W-w+1)//pw, n_filters) float32: the same values under
      every formulation, up to float32 rounding.

    Raises:
      ValueError: the shapes do not fit, or ``formulation`` is unknown.
    """
    poolsize = tuple(int(p) for p in poolsize)
    _check(x, w, poolsize)
    formulation = resolve(formulation)
    if formulation != "fused":
        return max_pool(conv_valid(x, w, formulation), poolsize)
    return _fused(x, w, poolsize)


def _plan(x_shape, w_shape, poolsize):
    """(grid, kernel, stride, expanded) of the fused formulation for these shapes."""
    _, h, w, c = x_shape
    _, _, fh, fw = w_shape
    ph, pw = poolsize
    h2, w2 = (h - fh + 1) // ph, (w - fw + 1) // pw
    if c == 1:  # the kernel at every pool offset: patches only at the pooled points
        return (h2, w2), (fh + ph - 1, fw + pw - 1), (ph, pw), True
    return (h2 * ph, w2 * pw), (fh, fw), (1, 1), False  # only what survives the pool


def _expanded_kernel(w, poolsize):
    """(nf, C, h, w) -> ((h+ph-1)*(w+pw-1)*C, ph*pw*nf): the kernel at each pool offset."""
    nf, c, fh, fw = w.shape
    ph, pw = poolsize
    k = w[:, :, ::-1, ::-1].transpose(2, 3, 1, 0)  # (fh, fw, C, nf), correlation
    at = [jnp.pad(k, ((a, ph - 1 - a), (d, pw - 1 - d), (0, 0), (0, 0))) for a in range(ph) for d in range(pw)]
    return jnp.stack(at, axis=3).reshape((fh + ph - 1) * (fw + pw - 1) * c, ph * pw * nf)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _fused(x, w, poolsize):
    # Without a gradient (evaluation) the deeper layers' patches come from one gather:
    # one pass instead of kh*kw slices and a concatenation, faster for the second layer
    # of dbl_conv_relu (bench/README.md). The same values, so the same numbers.
    # Training keeps the slices, whose adjoint _col2im its backward uses.
    return _fused_fwd(x, w, poolsize, gather=True)[0]


def _fused_fwd(x, w, poolsize, gather=False):
    grid, kernel, stride, expanded = _plan(x.shape, w.shape, poolsize)
    nf = w.shape[0]
    b = x.shape[0]
    ph, pw = poolsize
    p = (_gathered_patches if gather else _patches)(x, grid, kernel, stride)  # (b, gh, gw, K)
    z = p @ (_expanded_kernel(w, poolsize) if expanded else _kernel(w))
    if expanded:
        m = z.reshape(b, grid[0], grid[1], ph * pw, nf).max(axis=3)
    else:
        m = z.reshape(b, grid[0] // ph, ph, grid[1] // pw, pw, nf).max(axis=(2, 4))
    return m, (x, w, p, z, m)  # x only for its shape: no copy, it is alive anyway


def _fused_bwd(poolsize, res, g):
    x, w, p, z, m = res
    grid, kernel, stride, expanded = _plan(x.shape, w.shape, poolsize)
    nf, c, fh, fw = w.shape
    b, h, wd, _ = x.shape
    ph, pw = poolsize
    (gh, gw), (kh, kw) = grid, kernel
    if expanded:  # z (b, gh, gw, ph*pw*nf): offsets of one pooled point side by side
        zz = z.reshape(b, gh, gw, ph * pw, nf)
        dz = jnp.where(zz == m[:, :, :, None, :], g[:, :, :, None, :], 0.0).reshape(b, gh, gw, ph * pw * nf)
        km = _expanded_kernel(w, poolsize)
    else:
        dz = jnp.where(_pool_mask(z, m, poolsize), g[:, :, None, :, None, :], 0.0).reshape(b, gh, gw, nf)
        km = _kernel(w)
    n_k = p.shape[-1]
    if expanded:  # K short (one map): (K, M) @ (M, nout) measured best
        dkm = p.reshape(-1, n_k).T @ dz.reshape(-1, dz.shape[-1])  # (K, nout)
        d = dkm.reshape(kh, kw, c, ph * pw, nf)
        dk = _total(d[a:a + fh, e:e + fw, :, a * pw + e, :] for a in range(ph) for e in range(pw))
        dw = dk.transpose(3, 2, 0, 1)[:, :, ::-1, ::-1]
    else:  # K long: (nf, M) @ (M, K), measured faster than (K, M) @ (M, nf) (bench/README.md)
        dkm = dz.reshape(-1, nf).T @ p.reshape(-1, n_k)  # (nf, K)
        dw = dkm.reshape(nf, fh, fw, c).transpose(0, 3, 1, 2)[:, :, ::-1, ::-1]
    dp = dz @ km.T  # (b, gh, gw, K); dropped when x is data (the first layer)
    return _col2im(dp, (h, wd, c), kernel, stride), dw


_fused.defvjp(_fused_fwd, _fused_bwd)


def _total(terms: Iterable[jax.Array]) -> jax.Array:
    """``terms[0] + terms[1] + ...`` in that order (``sum`` would start from the int 0)."""
    return functools.reduce(operator.add, terms)


def _col2im(dp, image, kernel, stride):
    """The adjoint of ``_patches``: (b, gh, gw, kh*kw*C) -> (b, H, W, C), overlaps summed."""
    (h, w, c), (kh, kw), (sh, sw) = image, kernel, stride
    b, gh, gw, _ = dp.shape
    if (sh, sw) == (1, 1):  # rows first, then columns: 2*5 pads, measured faster than 25
        dp = dp.reshape(b, gh, gw, kh, kw * c)
        rows = _total(jnp.pad(dp[:, :, :, u, :], ((0, 0), (u, h - gh - u), (0, 0), (0, 0))) for u in range(kh))
        rows = rows.reshape(b, h, gw, kw, c)
        return _total(jnp.pad(rows[:, :, :, v, :], ((0, 0), (0, 0), (v, w - gw - v), (0, 0))) for v in range(kw))
    dp = dp.reshape(b, gh, gw, kh * kw, c)
    zero = jnp.zeros((), dp.dtype)
    return _total(jax.lax.pad(dp[:, :, :, u * kw + v, :], zero,
                              ((0, 0, 0), (u, h - u - (gh - 1) * sh - 1, sh - 1),
                               (v, w - v - (gw - 1) * sw - 1, sw - 1), (0, 0, 0)))
                  for u in range(kh) for v in range(kw))
