"""The engine: the book's networks, their training and evaluation in JAX; no printing, no files.

    >>> from nn3.engine import layers, train
    >>> from nn3.engine.spec import mlp_spec

Read it from the bottom up: ``spec`` (a network as JSON-able data), ``activations``,
``costs``, ``conv`` and ``augment`` (the book's functions in JAX), ``optim`` (update rules
as optax chains), ``layers`` (the book's layers as Flax NNX modules), ``settings`` (what
decides a run), ``device_data`` (examples on the device), ``step`` (the compiled
mini-batch loop, for one network or many), ``trainer`` (networks, optimiser states and
keys on the devices, an epoch at a time), ``evaluation`` (accuracy, cost, the vote),
``train`` (the epoch loop: measure, judge, schedule, stop), ``processes`` (what the
processes of a run of several share, through JAX's collectives). ``backend`` holds what
differs per device, ``threads`` the CPU pool's size. It imports nothing else of nn3;
``spec`` and ``threads`` are JAX-free, so that a command can read a network file or
size JAX's thread pool before JAX starts.
"""
__all__ = ["activations", "augment", "backend", "conv", "costs", "device_data", "evaluation", "layers", "optim",
           "processes", "settings", "spec", "step", "threads", "train", "trainer"]
