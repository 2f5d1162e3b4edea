"""Training images altered on the device, inside the training step.

    >>> import jax, jax.numpy as jnp
    >>> from nn3.engine import augment
    >>> x = jnp.zeros((10, 784)); v = jnp.arange(10)
    >>> augment.expanded(x, v % 5).shape
    (10, 784)

``expanded`` is chapter 6's expanded data without its 250,000-image file: virtual
example ``v`` of an epoch over 5N is image ``v // 5`` shifted by ``SHIFTS[v % 5]``.
``affine`` is the chapter's exercise: small random rotations, skews and translations,
a function of the key alone, so a resumed run draws the same ones.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

__all__ = ["SHIFTS", "SIDE", "affine", "expanded"]

SIDE = 28
# (rows, cols) each copy moves by; pixels shifted in are zero.
SHIFTS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))


def _shift(img: jax.Array, dy: int, dx: int) -> jax.Array:
    """(batch, 28, 28) moved by (dy, dx) pixels, zero-filled."""
    out = jnp.roll(img, (dy, dx), axis=(1, 2))
    rows = jnp.arange(SIDE)[:, None] - dy
    cols = jnp.arange(SIDE)[None, :] - dx
    inside = (rows >= 0) & (rows < SIDE) & (cols >= 0) & (cols < SIDE)
    return jnp.where(inside, out, 0.0)


def expanded(x: jax.Array, which: jax.Array) -> jax.Array:
    """The book's expanded copies: each image of ``x`` shifted as ``which`` says.

    Args:
      x: (batch, 784) float32 images.
      which: (batch,) ints in 0..4, an index into ``SHIFTS``: unchanged, up, down,
        left, right.

    Returns:
      (batch, 784) float32, pixels shifted in are zero.
    """
    img = x.reshape(-1, SIDE, SIDE)
    variants = jnp.stack([_shift(img, dy, dx) for dy, dx in SHIFTS])  # (5, batch, 28, 28)
    picked = jnp.take_along_axis(variants, which[None, :, None, None], axis=0)[0]
    return picked.reshape(x.shape)


def affine(x: jax.Array, key: jax.Array, max_degrees: float = 10.0, max_skew: float = 0.15,
           max_shift: float = 2.0) -> jax.Array:
    """Each image warped by its own small random affine map, sampled bilinearly.

    Args:
      x: (batch, 784) float32 images.
      key: a PRNG key; the maps are a function of it alone.
      max_degrees: rotations are uniform in [-max_degrees, max_degrees].
      max_skew: the shear factor, uniform in [-max_skew, max_skew].
      max_shift: translations, uniform in [-max_shift, max_shift] pixels on each axis.

    Returns:
      (batch, 784) float32; pixels mapped from outside the image are zero.
    """
    n = x.shape[0]
    ka, ks, kt = jax.random.split(key, 3)
    angle = jnp.deg2rad(jax.random.uniform(ka, (n,), minval=-max_degrees, maxval=max_degrees))
    skew = jax.random.uniform(ks, (n,), minval=-max_skew, maxval=max_skew)
    shift = jax.random.uniform(kt, (n, 2), minval=-max_shift, maxval=max_shift)
    c, s = jnp.cos(angle), jnp.sin(angle)
    # Inverse map: output pixel (r, q) samples the input at A @ (r - m, q - m) + m - t.
    a = jnp.stack([jnp.stack([c, -s + skew], -1), jnp.stack([s, c], -1)], -2)  # (n, 2, 2)
    mid = (SIDE - 1) / 2.0
    grid = jnp.stack(jnp.meshgrid(jnp.arange(SIDE), jnp.arange(SIDE), indexing="ij"), 0)
    grid = grid.reshape(2, -1).astype(jnp.float32) - mid  # (2, 784)
    src = jnp.einsum("nij,jp->nip", a, grid) + mid - shift[:, :, None]  # (n, 2, 784)
    img = x.reshape(n, SIDE, SIDE)
    warp = jax.vmap(lambda im, co: map_coordinates(im, [co[0], co[1]], order=1, mode="constant"))
    return warp(img, src).reshape(x.shape)
