"""nn3: the networks of Nielsen's *Neural Networks and Deep Learning* on JAX + Flax NNX.

    >>> import nn3
    >>> net = nn3.network3.Network([nn3.network3.FullyConnectedLayer(784, 100),
    ...                             nn3.network3.SoftmaxLayer(100, 10)], 10)
    >>> # net.SGD(training_data, 60, 10, 0.1, validation_data, test_data)

The book's three programs are ``nn3.network``, ``nn3.network2`` and ``nn3.network3``;
the engine underneath is ``nn3.layers`` + ``nn3.train``; runs that save, resume and
replay are ``nn3.runs``; JSON export is ``nn3.export``.
"""
from nn3 import network, network2, network3  # noqa: F401

__version__ = "0.1.0"


def load(run_dir, *, step=None, best=False):
    """The trained network (``layers.Network``) saved in a run directory."""
    from nn3 import runs
    return runs.load(run_dir, step=step, best=best)


def load_json(path):
    """A ``layers.Network`` rebuilt from an nn3 / network2 JSON file."""
    from nn3 import export, layers
    spec, params, _ = export.load_json(path)
    net = layers.build(spec)
    layers.set_params(net, params)
    return net
