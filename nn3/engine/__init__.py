"""The engine: the book's networks, their training and evaluation in JAX; no printing, no files.

    >>> from nn3.engine import layers, train
    >>> from nn3.engine.spec import mlp_spec

Bottom of the package: it imports nothing else of nn3. ``spec`` and ``threads`` are
JAX-free, so that a command can read a network file or size JAX's thread pool before
JAX starts.
"""
__all__ = ["activations", "augment", "backend", "conv", "costs", "ensemble", "evaluation", "layers", "optim",
           "spec", "threads", "train"]
