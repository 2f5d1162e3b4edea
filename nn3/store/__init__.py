"""Files on disk: the data (MNIST, checked), durable writes, run directories, metrics, network JSON.

    >>> from nn3.store import data, export, rundir

Imports the engine only (``spec`` for network files); nothing here trains.
"""
__all__ = ["bundle", "data", "export", "files", "metrics", "rundir"]
