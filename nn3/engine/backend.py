"""What nn3 does differently per JAX backend (CPU, GPU, TPU), decided in this one place.

    >>> from nn3.engine import backend
    >>> backend.choices("cpu").conv, backend.choices("gpu").conv
    ('fused', 'xla')
    >>> backend.differences({"backend": "cpu", "conv": "fused"}, backend.choices("gpu").record())
    ['backend cpu -> gpu', 'conv fused -> xla']

A run records ``choices().record()`` in its config, so that a replay on another
backend can say what differs (``differences``). The values:

- ``conv``: the conv-pool formulation (see nn3.engine.conv). On CPU nn3's fused conv+pool
  with a hand-written backward, since XLA:CPU's convolution at batch 10 is several
  times slower than im2col (bench/README.md has the numbers); elsewhere XLA's
  convolution, which cuDNN and the TPU compiler serve.
- ``conv_members``: how an ensemble of conv nets runs its members in one program
  (nn3.engine.trainer): "loop" on CPU (member after member: the batched conv ops of
  "vmap" outgrow the caches there), "vmap" elsewhere (one batched op for all members).
- ``compact``: keep k/256 images as uint8 codes on the device (nn3.engine.device_data):
  a quarter of the bytes to hold and gather, bit for bit the same floats. On every backend.
- ``eval_batch`` / ``conv_eval_batch``: evaluation units (nn3.engine.evaluation): the rows
  whose cost is summed as one float32. Fixed per backend, since another size would move
  recorded costs in their last bits. An accelerator wants few large launches, and 20,000
  MNIST images fit many times over.
- ``conv_forward_batch``: rows per forward pass of a conv net inside a unit (it divides
  ``conv_eval_batch``). On CPU 50, the fastest of 25, 50 and 100 for dbl_conv_relu's
  20,000 evaluation images (bench/README.md); the logits are the same numbers at any
  size. Elsewhere the whole unit in one pass.
- ``dense_transposed_grad``: the fully connected weight gradient with its transpose
  materialised (XLA:CPU's faster kernel; elsewhere left to the compiler).
- ``pin_threads``: whether nn3.engine.threads may size and pin XLA's CPU pool (CPU only).
- ``matmul_precision``: JAX's precision for float32 matmuls and convolutions, set where
  nn3 traces a network (``jax.default_matmul_precision``). On a GPU JAX's default is
  TF32 (inputs rounded to 10 bits of mantissa); nn3 asks for full float32 there, so
  that a run means what it means on the CPU (the book's nets are launch-bound on a
  GPU: the precision costs little). None on CPU, which computes float32 anyway.
"""
from __future__ import annotations

import dataclasses
import functools
from contextlib import AbstractContextManager

import jax
import numpy as np

__all__ = ["ACCELERATOR_EVAL_BATCH", "Choices", "choices", "describe", "device_name", "differences", "precision"]

ACCELERATOR_EVAL_BATCH = 10_000  # a choice, not a measurement: bench/device_check.py measures it on a device


@dataclasses.dataclass(frozen=True)
class Choices:
    """What nn3 does on one backend; the fields are the module docstring's list."""

    backend: str
    conv: str
    conv_members: str
    compact: bool
    eval_batch: int
    conv_eval_batch: int
    conv_forward_batch: int
    dense_transposed_grad: bool
    pin_threads: bool
    matmul_precision: str | None

    def record(self) -> dict:
        """The JSON-able form a run's config keeps, with the device it ran on."""
        return {**dataclasses.asdict(self), "device": device_name()}


def choices(name: str | None = None) -> Choices:
    """The choices for backend ``name`` ("cpu", "gpu", "tpu", ...); None: JAX's default."""
    return _choices(name or jax.default_backend())


@functools.cache
def _choices(name: str) -> Choices:
    if name == "cpu":
        return Choices(backend="cpu", conv="fused", conv_members="loop", compact=True, eval_batch=1000,
                       conv_eval_batch=100,
                       conv_forward_batch=50, dense_transposed_grad=True, pin_threads=True, matmul_precision=None)
    return Choices(backend=name, conv="xla", conv_members="vmap", compact=True, eval_batch=ACCELERATOR_EVAL_BATCH,
                   conv_eval_batch=ACCELERATOR_EVAL_BATCH, conv_forward_batch=ACCELERATOR_EVAL_BATCH,
                   dense_transposed_grad=False, pin_threads=False, matmul_precision="highest")


def precision() -> AbstractContextManager[None]:
    """A context in which float32 matmuls and convolutions are traced at the backend's precision."""
    return jax.default_matmul_precision(choices().matmul_precision)


def device_name() -> str:
    """The default device arrays land on, e.g. ``cpu:0`` or ``cuda:0 (NVIDIA H200)``."""
    d = next(iter(jax.device_put(np.zeros((), np.float32)).devices()))  # honours jax_default_device
    kind = getattr(d, "device_kind", "")
    return f"{d.platform}:{d.id}" + (f" ({kind})" if kind and kind.lower() != d.platform else "")


def describe() -> str:
    """One line for the CLI: which backend and device this process computes on."""
    c = choices()
    return f"jax {jax.__version__} on {c.backend}, device {device_name()}, {jax.device_count()} device(s)"


def differences(recorded: dict | None, now: dict | None = None) -> list[str]:
    """What differs between a run's recorded choices and this process's, as ``key old -> new``.

    Keys missing from ``recorded`` are not compared (a record may hold fewer than now).
    """
    if not recorded:
        return []
    now = now if now is not None else choices().record()
    return [f"{k} {recorded[k]} -> {now[k]}" for k in now if k in recorded and recorded[k] != now[k]]
