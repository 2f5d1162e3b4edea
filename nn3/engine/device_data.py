"""Training examples on the device: copied there once, held by whoever trains on them.

    >>> import numpy as np
    >>> from nn3.engine.device_data import DeviceData
    >>> x = np.random.default_rng(0).integers(0, 256, (100, 784)).astype("float32") / 256
    >>> data = DeviceData.from_arrays(x, np.arange(100) % 10, compact=True)
    >>> data.n, data.x.dtype.name        # k/256 pixels travel as their codes k
    (100, 'uint8')

A ``DeviceData`` is made from numpy arrays by the caller and passed to a
``trainer.Trainer``; whoever trains again on the same examples (a façade's second
``SGD`` call, a resumed run) passes the same object and copies nothing again. The
book's network3 did the same with Theano's shared variables.

``compact`` keeps images whose pixels are all k/256 (the book's MNIST) as uint8 codes
k: a quarter of the bytes to hold and to gather per mini-batch, and ``pixels`` turns
them back into exactly the same float32 numbers inside the compiled step.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from nn3.engine import backend, processes

__all__ = ["DeviceData", "compact_codes", "pixels"]


def compact_codes(x: np.ndarray) -> np.ndarray | None:
    """``x`` as uint8 codes k when every value is exactly k/256 with 0 <= k < 256, else None.

    Args:
      x: (N, n_in) float32 images.
    Returns:
      (N, n_in) uint8, or None when some value is not such a fraction (or not float32).
    """
    if x.dtype != np.float32:
        return None
    with np.errstate(invalid="ignore"):  # NaN or out of range: caught by the comparison below
        codes = (x * np.float32(256)).astype(np.uint8)
    return codes if np.array_equal(codes * np.float32(1 / 256), x) else None


def pixels(xb: jax.Array) -> jax.Array:
    """Rows of a ``DeviceData.x`` as float32: codes k become k/256 exactly, floats stay."""
    return xb.astype(jnp.float32) * (1 / 256) if xb.dtype == jnp.uint8 else xb


@dataclasses.dataclass(frozen=True, eq=False)
class DeviceData:
    """Examples on the device.

    Attributes:
      x: (N, n_in) float32, or uint8 codes of k/256 pixels (``compact``).
      y: (N,) int32 labels.
    """
    x: jax.Array
    y: jax.Array

    @classmethod
    def from_arrays(cls, x: np.ndarray, y: np.ndarray, *, compact: bool | None = None) -> DeviceData:
        """Copies ``x`` (N, n_in) float32 and ``y`` (N,) int labels to the default device.

        ``compact``: store k/256 images as their uint8 codes when every pixel is one;
        None: the backend's choice (``backend.choices().compact``).
        """
        x, y = np.asarray(x), np.asarray(y, np.int32)
        if compact is None:
            compact = backend.choices().compact
        codes = compact_codes(x) if compact else None
        return cls(jax.device_put(x if codes is None else codes), jax.device_put(y))

    @property
    def n(self) -> int:
        """The number of examples."""
        return int(self.y.shape[0])

    @property
    def compact(self) -> bool:
        """Whether ``x`` holds uint8 codes."""
        return self.x.dtype == jnp.uint8

    def replicated(self, sharding: jax.sharding.Sharding) -> DeviceData:
        """The same examples laid out by ``sharding`` (a whole copy on every device of a
        mesh, those of other processes too: each process supplies its own devices' copies)."""
        return DeviceData(*processes.place((np.asarray(self.x), np.asarray(self.y)), sharding))
