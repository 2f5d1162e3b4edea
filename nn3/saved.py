"""Saving and loading the book's networks: run directories (orbax) and JSON files.

    >>> from nn3 import network3, saved
    >>> net = network3.Network([network3.FullyConnectedLayer(784, 100), network3.SoftmaxLayer(100, 10)], 10)
    >>> saved.save(net, "checkpoints/mine")   # doctest: +SKIP
    >>> again = saved.load("checkpoints/mine")  # doctest: +SKIP

This answers chapter 6's exercise "add the ability to load and save networks": a
façade network (network, network2 or network3) is saved as a run directory that
``nn3 resume`` / ``nn3 replay`` understand, or as JSON. ``load`` gives back a façade
of the same kind, ready to train on from where it stopped; its seed and, for a run
directory, the settings the run recorded come back with it, so that saving it again
writes them again.
"""
from __future__ import annotations

import dataclasses
import os

from nn3 import export, layers, metrics, network, network2, network3, runs, train
from nn3.rundir import RunDir

_STYLES = {network.Network: "network", network2.Network: "network2", network3.Network: "network3"}


def _style(net) -> str:
    return _STYLES[type(net)] if type(net) in _STYLES else "network3"


def _config(net) -> dict:
    """The config.json of a façade: what its last SGD call used, else what the run it was
    loaded from recorded (``net.run_config``), else the defaults with its seed."""
    loaded = getattr(net, "run_config", None)
    cfg = getattr(net, "last_config", None)
    config = {"preset": None, "dataset": "mnist", "data": None, "limit": None, "monitor": []}
    if loaded:
        config.update({k: loaded[k] for k in ("preset", "dataset", "data", "limit", "monitor") if k in loaded})
    if cfg is not None:  # trained here: the run is as long as what was trained
        sgd = dataclasses.asdict(dataclasses.replace(cfg, epochs=max(net.loop.epoch, 1)))
    elif loaded:
        sgd = dict(loaded["sgd"])
    else:
        sgd = dataclasses.asdict(train.SGDConfig(epochs=max(net.loop.epoch, 1), seed=net.seed))
    return {**config, "style": _style(net), "spec": net.net.spec, "init": getattr(net, "init", "network3"),
            "sgd": sgd, "versions": runs._versions()}


def save(net, run_dir) -> None:
    """Write façade ``net`` (its parameters, settings and history) as a run directory."""
    config = _config(net)
    run = RunDir.create(run_dir, config)
    try:
        arrays = {"params": layers.get_params(net.net)}
        if config["sgd"].get("momentum"):
            arrays["velocity"] = getattr(net, "velocity", None) or [
                {k: v * 0 for k, v in p.items()} for p in arrays["params"]]
        run.save(net.loop.step, arrays, runs._info(net.loop))
        for record in net.loop.history:
            metrics.append(run.path, record)
    finally:
        run.close()


def _facade(style, spec, seed=None):
    if style == "network":
        return network.Network(layers.mlp_sizes(spec), seed=seed)
    if style == "network2":
        return network2.Network(layers.mlp_sizes(spec), cost=spec["cost"], seed=seed)
    mb = next((l["image_shape"][0] for l in spec["layers"] if l["type"] == "ConvPoolLayer"), 10)
    return network3.Network(spec["layers"], mb, seed=seed, cost=spec["cost"])


def load(path, *, step=None, best=False):
    """A façade network from a run directory, or from a JSON file (network2's or nn3's).

    The seed is the one recorded; a JSON file without one gets a seed drawn as a new
    network's is (from numpy's global generator).
    """
    config = None
    if os.path.isdir(path):
        run = RunDir.open(path, read_only=True)
        try:
            _, net, loop, _ = runs.restore(run, step=step, best=best)
            config = run.config
        finally:
            run.close()
        style, seed = config.get("style", "network3"), config["sgd"].get("seed", 0)
    else:
        spec, params, _, meta = export.load_json_meta(path)
        net = layers.build(spec)
        layers.set_params(net, params)
        loop = train.Loop()
        style, seed = "network2" if layers.is_mlp(spec) else "network3", meta.get("seed")
    out = _facade(style, net.spec, seed=seed)
    if config is not None and style != "network3" and config.get("init"):
        out.init = config["init"]
    layers.set_params(out.net, layers.get_params(net))
    out.loop = loop
    out.run_config = config
    return out


def save_json(net, path) -> None:
    """Write façade ``net`` as JSON (with its seed): network2's format for MLPs, nn3's
    network3 style otherwise."""
    spec = net.net.spec
    mb = None if layers.is_mlp(spec) else getattr(net, "mini_batch_size", None)
    export.save_json(path, spec, layers.get_params(net.net), mb, seed=net.seed)
