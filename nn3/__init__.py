"""nn3: the networks of Nielsen's *Neural Networks and Deep Learning* on JAX + Flax NNX.

    >>> import nn3
    >>> net = nn3.network3.Network([nn3.network3.FullyConnectedLayer(784, 100),
    ...                             nn3.network3.SoftmaxLayer(100, 10)], 10)
    >>> # net.SGD(training_data, 60, 10, 0.1, validation_data, test_data)

The book's three programs are ``nn3.network``, ``nn3.network2`` and ``nn3.network3``
(what they share, ``nn3.book.facade``; a saved one comes back with ``nn3.load``); the
engine underneath is ``nn3.engine`` (``layers`` + ``train``); runs that save, resume and
replay are ``nn3.runs``; files on disk, JSON export among them, are ``nn3.store``.

Submodules are imported when first used (PEP 562): ``import nn3`` alone does not start
JAX, so the command line answers ``--help`` and catches Ctrl-C from its first moment.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nn3.book.facade import Ensemble, Facade

__version__ = "0.1.0"

__all__ = ["book", "engine", "load", "mnist_loader", "network", "network2", "network3", "runs", "serve", "store"]


def __getattr__(name: str) -> ModuleType:
    if name.startswith("_"):
        raise AttributeError(f"module 'nn3' has no attribute {name!r}")
    try:
        return importlib.import_module(f"nn3.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"nn3.{name}":
            raise
        raise AttributeError(f"module 'nn3' has no attribute {name!r}") from None


def load(path: str | os.PathLike[str], *, step: int | None = None, best: bool = False,
         member: int | None = None) -> Facade | Ensemble:
    """A saved network back as a façade (network / network2 / network3 object).

    ``path`` is a run directory (``net.save(dir)``, ``nn3 train``) or a JSON file; an
    ensemble bundle (``nn3 export`` of a member run) comes back as a ``facade.Ensemble``
    of such networks, which votes; ``member=K`` picks member K of a bundle or of a member run.
    """
    from nn3 import saved
    return saved.load(path, step=step, best=best, member=member)
