"""Loading the book's networks back: run directories (orbax) and JSON files.

    >>> from nn3 import network3, saved
    >>> net = network3.Network([network3.FullyConnectedLayer(784, 100), network3.SoftmaxLayer(100, 10)], 10)
    >>> net.save("checkpoints/mine")              # doctest: +SKIP
    >>> again = saved.load("checkpoints/mine")  # doctest: +SKIP

This answers chapter 6's exercise "add the ability to load and save networks": a
façade network (network, network2 or network3) saves itself (nn3.book.facade: ``save_run``
writes a run directory that ``nn3 resume`` / ``nn3 replay`` understand, ``save_json``
a JSON file). ``load`` gives back a façade of the same kind, ready to train on from
where it stopped; its seed and, for a run directory, the settings the run recorded
come back with it, so that saving it again writes them again. An ensemble bundle (``nn3
export`` of a member run, ``Ensemble.save_json``) comes back as a ``facade.Ensemble``
of such networks, which votes.
"""
from __future__ import annotations

import dataclasses
import os

from nn3 import network, network2, network3
from nn3.book import facade
from nn3.engine import layers
from nn3.engine.settings import SGDConfig
from nn3.engine.spec import is_mlp, mlp_sizes
from nn3.engine.train import Loop
from nn3.runs import config as run_config
from nn3.runs import inspect
from nn3.store import bundle, export
from nn3.store.rundir import RunDir

__all__ = ["load"]


def _facade(style: str, spec: dict, seed: int | None = None,
            mini_batch_size: int | None = None) -> network.Network | network3.Network:
    if style == "network":
        return network.Network(mlp_sizes(spec), seed=seed)
    if style == "network2":
        return network2.Network(mlp_sizes(spec), cost=spec["cost"], seed=seed)
    mb = next((layer["image_shape"][0] for layer in spec["layers"] if layer["type"] == "ConvPoolLayer"),
              mini_batch_size or 10)
    return network3.Network(spec["layers"], mb, seed=seed, cost=spec["cost"])


def load(path: str | os.PathLike[str], *, step: int | None = None, best: bool = False,
         member: int | None = None) -> facade.Facade | facade.Ensemble:
    """A façade network from a run directory, or from a JSON file (network2's or nn3's).

    The seed is the one recorded; a JSON file without one gets a seed drawn as a new
    network's is (from numpy's global generator). Of a member run, member ``member``.
    An ensemble bundle gives a ``facade.Ensemble`` of its members (with ``member``, that member).
    """
    config: dict | None = None
    if os.path.isdir(path):
        run = RunDir.open(path, read_only=True)
        try:
            config = run.config
            seeds = run_config.member_seeds(config)
            if seeds is not None and member is None:
                raise ValueError(f"{path}: a run of {len(seeds)} members; load one with member=K "
                                 f"(0 to {len(seeds) - 1})")
            inspect.check_member(config, member, path)
            got = inspect.restore(run, step=step, best=best)
        finally:
            run.close()
        style, seed = config.get("style", "network3"), config["sgd"].get("seed", 0)
        k = 0 if member is None else member
        net, loop = got.nets[k], got.state.loops[k]
        if seeds is not None and member is not None:  # a member run's member
            seed = seeds[member]
    else:
        doc, src = export.read_document(path)
        if bundle.is_bundle(doc):
            ens = _ensemble(bundle.from_json_dict(doc, src))
            if member is None:
                return ens
            if not isinstance(member, int) or not 0 <= member < len(ens):
                raise ValueError(f"{path}: no member {member!r} in this bundle of {len(ens)} (0 to {len(ens) - 1})")
            return ens[member]
        spec, params, _, meta = export.from_document(doc, src)
        net = layers.build(spec)
        layers.set_params(net, params)
        loop = Loop()
        style, seed = "network2" if is_mlp(spec) else "network3", meta.get("seed")
    out = _facade(style, net.spec, seed=seed)
    if config is not None and style != "network3" and config.get("init"):
        out.init = config["init"]
    layers.set_params(out.engine, layers.get_params(net))
    out.loop = loop
    out.run_config = config
    return out


def _ensemble(b: bundle.Bundle) -> facade.Ensemble:
    style = "network2" if is_mlp(b.spec) else "network3"
    members = []
    known = {f.name for f in dataclasses.fields(SGDConfig)}
    for params, seed, settings in zip(b.params, b.seeds, b.settings):
        one = _facade(style, b.spec, seed=seed, mini_batch_size=b.mini_batch_size)
        layers.set_params(one.engine, params)
        if settings:  # what it was trained with, so that saving it again writes it again
            one.last_config = SGDConfig(**{k: v for k, v in settings.items() if k in known})
        members.append(one)
    return facade.Ensemble(members, source=b.source)
