"""Ensemble bundles: the networks of a member run in one JSON file, with what their vote needs.

    >>> import numpy as np
    >>> from nn3.store import bundle
    >>> from nn3.engine import spec
    >>> s = spec.mlp_spec([4, 3, 2], "CrossEntropyCost")
    >>> rng = np.random.default_rng(0)
    >>> nets = [[{"w": rng.standard_normal(w).astype(np.float32), "b": np.zeros(b, np.float32)}
    ...          for w, b in map(spec.param_shapes, s["layers"])] for _ in range(3)]
    >>> b = bundle.loads(bundle.dumps(s, nets, seeds=[0, 1, 2]))
    >>> b.seeds, len(b.params), np.array_equal(b.params[2][0]["w"], nets[2][0]["w"])
    ([0, 1, 2], 3, True)

The book's best result is five nets voting. ``nn3 export RUN OUT`` of a member run writes
them as one bundle; ``nn3 evaluate OUT`` and ``nn3.load(OUT)`` read it back and vote.
Like nn3.store.export, this module holds the file's layout and its checks only (numpy +
json): the vote itself is nn3.engine.evaluation's ``vote``, and nn3.book.facade's
``Ensemble`` is what a loaded bundle becomes.

File format
-----------
::

    {"format": "nn3-ensemble", "version": 1,
     "vote": {"rule": "plurality", "ties": "smallest"},
     "n_members": 5,
     "members": [
       {"member": 0, "seed": 0,
        "settings": {"eta": 0.03, "lmbda": 0.1, ...},   # optional: how it was trained
        "network": {... the member as nn3 export --member 0 writes it ...}},
       ...],
     "source": {"run": "checkpoints/dropout-...", "preset": "dropout",          # optional
                "step": 25000, "epoch": 4, "batch": 0}}

Each ``network`` is a document of nn3.store.export (network2's for sigmoid MLPs,
nn3-network3's otherwise), read with its checks. The vote: each member's digit is its
largest output (the first, on a tie); the bundle's is the digit most members give; a tie
between digits goes to the smallest (``ties: "smallest"``), as
nn3.engine.evaluation.vote does.

Reading is strict, as nn3.store.export's: exact key sets; ``n_members`` entries whose
``member`` fields count 0, 1, ... (so a member cut out is named); every member of one
architecture and mini-batch size (a difference is named by its key path); and the one
vote rule there is. Every fault is one ``ExportError`` line naming the file.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from nn3.engine.spec import describe, error, integer, require_keys
from nn3.store import export

__all__ = ["KEYS", "MAX_MEMBERS", "MEMBER_KEYS", "MEMBER_OPTIONAL", "OPTIONAL", "VERSION", "VOTE", "Bundle",
           "dumps", "from_json_dict", "is_bundle", "load", "loads", "save", "to_json_dict"]

VERSION = 1
VOTE = {"rule": "plurality", "ties": "smallest"}  # the one rule: nn3.engine.evaluation.vote's
KEYS = ("format", "version", "vote", "n_members", "members")
OPTIONAL = ("source",)
MEMBER_KEYS, MEMBER_OPTIONAL = ("member", "seed", "network"), ("settings",)
MAX_MEMBERS = 10_000


@dataclasses.dataclass
class Bundle:
    """A bundle read back: one architecture, each member's params (nn3's layouts) and seed.

    ``settings``: each member's training settings as the file recorded them (``{}`` where
    none); ``source``: where the bundle came from (``{}`` when unrecorded).
    """
    spec: dict
    params: list[list[dict]]
    mini_batch_size: int | None
    seeds: list[int]
    settings: list[dict]
    source: dict = dataclasses.field(default_factory=dict)


def to_json_dict(spec: dict, params: list, seeds: list, *, settings: list | None = None,
                 mini_batch_size: int | None = None, source: dict | None = None) -> dict:
    """The bundle document of the networks ``params`` (one params list per member) of ``spec``.

    ``seeds`` and ``settings`` have one entry per member; ``source`` is recorded when
    given. A fault is an ExportError.
    """
    if not isinstance(params, (list, tuple)) or not params:
        raise error("<bundle>", "params", f"expected a list of one or more members' params, got {describe(params)}")
    if not isinstance(seeds, (list, tuple)) or len(seeds) != len(params):
        raise error("<bundle>", "seeds", f"expected {len(params)} seeds, one per member, got {describe(seeds)}")
    if settings is not None and len(settings) != len(params):
        raise error("<bundle>", "settings", f"expected {len(params)} entries, one per member, got {len(settings)}")
    members = []
    for i, (p, s) in enumerate(zip(params, seeds)):
        m: dict[str, Any] = {"member": i, "seed": integer(s, "<bundle>", f"seeds[{i}]", 0, export.MAX_SEED)}
        if settings is not None:
            m["settings"] = dict(settings[i])
        m["network"] = export.to_json_dict(spec, p, mini_batch_size)
        members.append(m)
    doc = {"format": export.BUNDLE_FORMAT, "version": VERSION, "vote": dict(VOTE),
           "n_members": len(members), "members": members}
    if source:
        doc["source"] = dict(source)
    return doc


def dumps(spec: dict, params: list, seeds: list, **kw: Any) -> str:
    """The JSON text of ``to_json_dict`` (``kw``: its keyword arguments)."""
    return json.dumps(to_json_dict(spec, params, seeds, **kw), allow_nan=False, separators=(",", ":"))


def save(path: str | os.PathLike, spec: dict, params: list, seeds: list, **kw: Any) -> None:
    """Writes ``dumps(...)`` to ``path`` atomically (nn3.store.export.write_atomic)."""
    export.write_atomic(path, dumps(spec, params, seeds, **kw).encode("utf-8"))


def is_bundle(doc: Any) -> bool:
    """Whether a parsed document says it is a bundle (it may still be a faulty one)."""
    return isinstance(doc, dict) and doc.get("format") == export.BUNDLE_FORMAT


def from_json_dict(d: Any, source: str = "<memory>") -> Bundle:
    """The ``Bundle`` of a parsed document, every fault one ExportError naming ``source``."""
    if not is_bundle(d):
        one = isinstance(d, dict) and (d.get("format") == export.FORMAT or ("sizes" in d and "format" not in d))
        what = "one network, not an ensemble bundle" if one else \
            f"not an ensemble bundle (expected format '{export.BUNDLE_FORMAT}')"
        raise error(source, "", what)
    if "version" not in d:
        raise error(source, "", "missing key 'version'")
    if integer(d["version"], source, "version", 0, 2**31 - 1) != VERSION:  # before the keys: they may change
        raise error(source, "version", f"version {d['version']} is not supported (this reads {VERSION})")
    require_keys(d, source, "", KEYS, OPTIONAL)
    require_keys(d["vote"], source, "vote", tuple(VOTE))
    for k, v in VOTE.items():
        if d["vote"][k] != v:
            raise error(source, f"vote.{k}", f"{describe(d['vote'][k])} is not supported (this reads '{v}')")
    n = integer(d["n_members"], source, "n_members", 1, MAX_MEMBERS)
    members = d["members"]
    if not isinstance(members, list):
        raise error(source, "members", f"expected a list of {n} members, got {describe(members)}")
    for i, m in enumerate(members):
        require_keys(m, source, f"members[{i}]", MEMBER_KEYS, MEMBER_OPTIONAL)
        if integer(m["member"], source, f"members[{i}].member", 0, MAX_MEMBERS) != i:
            raise error(source, f"members[{i}].member", f"is {m['member']}, expected {i}: member {i} is missing")
    if len(members) < n:
        raise error(source, "members", f"{len(members)} of n_members {n}: member {len(members)} is missing")
    if len(members) > n:
        raise error(source, "members", f"{len(members)} members, more than n_members {n}")
    if "source" in d and not isinstance(d["source"], dict):
        raise error(source, "source", f"expected an object, got {describe(d['source'])}")
    out = Bundle(spec={}, params=[], mini_batch_size=None, seeds=[], settings=[], source=d.get("source", {}))
    for i, m in enumerate(members):
        where = f"members[{i}]"
        seed = integer(m["seed"], source, f"{where}.seed", 0, export.MAX_SEED)
        settings = m.get("settings", {})
        if not isinstance(settings, dict):
            raise error(source, f"{where}.settings", f"expected an object, got {describe(settings)}")
        spec, params, mb = export.from_json_dict(m["network"], f"{source}: {where}.network")
        if i == 0:
            out.spec, out.mini_batch_size = spec, mb
        elif (spec, mb) != (out.spec, out.mini_batch_size):
            path, mine, first = _difference({**spec, "mini_batch_size": mb},
                                            {**out.spec, "mini_batch_size": out.mini_batch_size})
            raise error(source, f"{where}.network", f"{path} is {describe(mine)}, member 0's is {describe(first)} "
                                                    "(the members of a bundle share one architecture)")
        out.params.append(params)
        out.seeds.append(seed)
        out.settings.append(settings)
    return out


_MISSING = "(missing)"


def _difference(a: Any, b: Any, path: str = "") -> tuple[str, Any, Any]:
    """The first key path where two JSON values differ, and the two values there."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in [*a, *(k for k in b if k not in a)]:
            if a.get(k, _MISSING) != b.get(k, _MISSING):
                return _difference(a.get(k, _MISSING), b.get(k, _MISSING), f"{path}.{k}" if path else k)
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _difference(x, y, f"{path}[{i}]")
    return path, a, b


def loads(text: str | bytes, source: str = "<string>") -> Bundle:
    """``from_json_dict`` of a JSON text, with nn3.store.export's size, nesting and NaN guards."""
    return from_json_dict(export.parse(text, source), source)


def load(path: str | os.PathLike) -> Bundle:
    """The ``Bundle`` in the file at ``path``."""
    return from_json_dict(*export.read_document(path))
