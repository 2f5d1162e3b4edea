"""nn3: the networks of Nielsen's *Neural Networks and Deep Learning* on JAX + Flax NNX.

    >>> import nn3
    >>> net = nn3.network3.Network([nn3.network3.FullyConnectedLayer(784, 100),
    ...                             nn3.network3.SoftmaxLayer(100, 10)], 10)
    >>> # net.SGD(training_data, 60, 10, 0.1, validation_data, test_data)

The book's three programs are ``nn3.network``, ``nn3.network2`` and ``nn3.network3``
(what they share, ``nn3.facade``; a saved one comes back with ``nn3.load``);
the engine underneath is ``nn3.layers`` + ``nn3.train``; runs that save, resume and
replay are ``nn3.runs``; JSON export is ``nn3.export``.

Submodules are imported when first used (PEP 562): ``import nn3`` alone does not start
JAX, so the command line answers ``--help`` and catches Ctrl-C from its first moment.
"""
import importlib

__version__ = "0.1.0"


def __getattr__(name):
    if name.startswith("_"):
        raise AttributeError(f"module 'nn3' has no attribute {name!r}")
    try:
        return importlib.import_module(f"nn3.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"nn3.{name}":
            raise
        raise AttributeError(f"module 'nn3' has no attribute {name!r}") from None


def load(path, *, step=None, best=False, member=None):
    """A saved network back as a façade (network / network2 / network3 object).

    ``path`` is a run directory (``net.save(dir)``, ``nn3 train``) or a JSON file; an
    ensemble bundle (``nn3 export`` of a member run) comes back as a ``facade.Ensemble``
    of such networks, which votes; ``member=K`` picks member K of a bundle or of a member run.
    """
    from nn3 import saved
    return saved.load(path, step=step, best=best, member=member)
