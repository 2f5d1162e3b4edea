"""Files on disk: the data (MNIST, checked), durable writes, run directories, metrics, network JSON.

    >>> from nn3.store import data, export, rundir

``data`` is the way in to MNIST (``load_data``, ``nn3 data``): ``sources`` finds the
files, ``readers`` reads and checks them, ``cache`` keeps them decoded, ``download``
fetches them, ``expanded`` makes and verifies chapter 6's expanded set. ``files`` writes
small files whole or not at all; ``rundir`` is a run directory (config.json and orbax
checkpoints, each with a hash of its arrays, ``integrity``); ``metrics`` its metrics.jsonl; ``export``
network2-style JSON and nn3's network3 style; ``bundle`` a member run's networks in one
file. Imports the engine only (``spec`` for network files); nothing here trains.
"""
__all__ = ["bundle", "cache", "data", "download", "expanded", "export", "files", "integrity", "metrics", "readers",
           "rundir", "sources"]
