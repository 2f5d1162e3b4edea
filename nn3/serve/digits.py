"""A drawn digit made into an MNIST input: cropped, scaled into a 20x20 box, centred by mass in 28x28.

    >>> import numpy as np
    >>> from nn3.serve import digits
    >>> ink = np.zeros((280, 280), np.float32); ink[40:240, 120:160] = 1.0   # a tall bar: a "1"
    >>> x = digits.mnist_style(ink)
    >>> x.shape, float(x.max()), digits.centre_of_mass(x.reshape(28, 28)).round().tolist()
    ((784,), 1.0, [14.0, 14.0])

MNIST's digits were size-normalised to fit a 20x20 box (keeping their aspect ratio, with
anti-aliasing) and placed in a 28x28 field with their centre of mass at its centre. In
index coordinates that centre is (14, 14): the mean over MNIST's own training digits is
(14.00, 14.01) with a spread of 0.29, which is what whole-pixel shifts give. We do the
same to a canvas drawing so that the network sees what it was trained on. The area
resampling is written here (two small matrices) because numpy has none and the book's
dependencies bring no image library.
"""
from __future__ import annotations

import numpy as np

__all__ = ["BOX", "SIDE", "centre_of_mass", "mnist_style"]

SIDE, BOX = 28, 20


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): output pixel i averages the input span it covers, partial pixels pro rata."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
    return overlap / (n_in / n_out)


def centre_of_mass(img: np.ndarray) -> np.ndarray:
    """(row, column) of the ink's centre of mass, in index coordinates."""
    total = img.sum()
    rows, cols = np.indices(img.shape)
    return np.array([(rows * img).sum() / total, (cols * img).sum() / total])


def mnist_style(ink: np.ndarray) -> np.ndarray:
    """The (784,) float32 input in [0, 1] for a drawing ``ink`` (H, W), 0 = paper, 1 = ink.

    Raises ValueError for a blank drawing.
    """
    ink = np.clip(np.asarray(ink, np.float64), 0.0, 1.0)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if len(rows) == 0:
        raise ValueError("the drawing is blank")
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = crop.shape
    scale = BOX / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = _area_weights(h, nh) @ crop @ _area_weights(w, nw).T  # (nh, nw), the longer side 20
    # Whole-pixel shift that brings the centre of mass to (14, 14), the box kept inside the field.
    cy, cx = centre_of_mass(small)
    top = int(np.clip(round(SIDE / 2 - cy), 0, SIDE - nh))
    left = int(np.clip(round(SIDE / 2 - cx), 0, SIDE - nw))
    out = np.zeros((SIDE, SIDE), np.float32)
    out[top:top + nh, left:left + nw] = small
    return out.reshape(-1)
