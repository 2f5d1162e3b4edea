"""Network files: network2.py's JSON for sigmoid MLPs, the same style for network3's nets.

    >>> import numpy as np
    >>> from nn3.store import export
    >>> from nn3.engine.spec import mlp_spec
    >>> spec = mlp_spec([2, 3, 1])
    >>> params = [{"w": np.ones((3, 2), np.float32), "b": np.zeros(3, np.float32)},
    ...           {"w": np.ones((1, 3), np.float32), "b": np.zeros(1, np.float32)}]
    >>> sorted(export.to_json_dict(spec, params))
    ['biases', 'cost', 'sizes', 'weights']
    >>> spec2, params2, _ = export.loads(export.dumps(spec, params))
    >>> spec2 == spec and np.array_equal(params2[1]["w"], params[1]["w"])
    True

Works on a spec and a params list only (numpy + json): no JAX here. What a spec may
hold and how its layers must fit is nn3.engine.spec's; this module adds the files' layouts.

File format
-----------
**network2** (sigmoid MLPs, every layer a ``FullyConnectedLayer`` with ``sigmoid`` and
``p_dropout`` 0, cost ``QuadraticCost`` or ``CrossEntropyCost``): exactly what the book's
``network2.save`` writes and ``network2.load`` reads::

    {"sizes": [784, 30, 10],
     "weights": [30x784 nested lists, 10x30],      # (out, in)
     "biases": [30x1 nested lists, 10x1],          # (out, 1): lists of one-element lists
     "cost": "CrossEntropyCost"}

and, optionally, ``"seed"``: the int a network was made and trained with. The book's
``load`` reads only the four keys it needs, so it reads files with a seed too.

**nn3-network3** (everything else: conv, softmax, dropout, other activations)::

    {"format": "nn3-network3", "version": 1, "mini_batch_size": 10,
     "cost": "LogLikelihoodCost",
     "layers": [
       {"type": "ConvPoolLayer", "filter_shape": [20, 1, 5, 5],
        "image_shape": [10, 1, 28, 28], "poolsize": [2, 2], "activation_fn": "ReLU",
        "weights": (n_filters, n_in_maps, h, w) nested lists, "biases": (n_filters,)},
       {"type": "FullyConnectedLayer", "n_in": 2880, "n_out": 100,
        "activation_fn": "ReLU", "p_dropout": 0.5,
        "weights": (n_in, n_out) nested lists, "biases": (n_out,)},
       {"type": "SoftmaxLayer", "n_in": 100, "n_out": 10, "p_dropout": 0.0,
        "weights": (n_in, n_out), "biases": (n_out,)}]}

again with an optional ``"seed"``.

Layer keys are network3.py's class and constructor-argument names; weights are in
network3's layouts (fully connected and softmax weights are the transpose of nn3's
internal ``(n_out, n_in)``; filters are as nn3 holds them and as Theano's ``conv2d``
in network3 applies them: a true, kernel-flipping convolution). Numbers are float64
JSON numbers (a float32 value written this way reads back bit-identical).
``mini_batch_size`` must equal every ConvPoolLayer's ``image_shape[0]``; the output
layer is fully connected or softmax.

Reading is strict: the spec as nn3.engine.spec.validate checks it (exact key sets, names
from its registries only, ints that are ints, sizes that chain, a cost that fits the
output layer, at most ``spec.MAX_PARAMS`` parameters), plus the file's own: ``"seed"``
the one optional key; weights and biases of exactly the declared shapes, finite and
within float32 range; at most ``MAX_FILE_BYTES`` of file; no duplicate keys. Every
fault is one ``ExportError`` line: the file, the key path (``layers[1].weights[3]``)
and what is wrong.
"""
from __future__ import annotations

import json
import os
import pathlib
import stat
from typing import Any

import numpy as np

from nn3.engine.spec import (
    MAX_SIZE,
    NonFinite,
    SpecError,
    describe,
    error,
    integer,
    is_mlp,
    mlp_sizes,
    mlp_spec,
    param_shapes,
    require_keys,
    validate,
)
from nn3.store.files import atomic_write

__all__ = ["BUNDLE_FORMAT", "DEFAULT_MINI_BATCH", "FORMAT", "MAX_FILE_BYTES", "MAX_SEED", "META_KEYS",
           "NETWORK2_KEYS", "NETWORK3_KEYS", "VERSION", "ExportError", "dumps", "from_document", "from_json_dict",
           "load_json", "loads", "parse", "read_document", "save_json", "to_json_dict", "validate_params",
           "write_atomic"]

MAX_FILE_BYTES = 256 << 20
FORMAT, VERSION = "nn3-network3", 1
BUNDLE_FORMAT = "nn3-ensemble"  # nn3.store.bundle's: several networks that vote
DEFAULT_MINI_BATCH = 10  # the book's, for nets without a ConvPoolLayer to say otherwise

NETWORK2_KEYS = ("sizes", "weights", "biases", "cost")
NETWORK3_KEYS = ("format", "version", "mini_batch_size", "cost", "layers")
META_KEYS = ("seed",)  # optional in both formats
MAX_SEED = 2**32 - 1   # jax.random.key takes seeds below 2**32 apart

# One error for a spec and for the file that holds it: a file's fault is a spec's fault
# with the file's name in front.
ExportError = SpecError


def _array(v: Any, src: str, path: str, shape: tuple) -> np.ndarray:
    if not (isinstance(v, np.ndarray) or hasattr(v, "__array__")):
        raise error(src, path, f"expected an array, got {describe(v)}")
    a = np.asarray(v)
    if a.dtype.kind != "f":
        raise error(src, path, f"expected a float array, got dtype {a.dtype}")
    if a.shape != shape:
        raise error(src, path, f"expected shape {shape}, got {a.shape}")
    a = a.astype(np.float32)  # a copy, always
    if not np.isfinite(a).all():
        raise error(src, path, f"non-finite value at {tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])}")
    return a


def validate_params(spec: dict, params: Any, source: str = "<params>") -> list[dict]:
    """Checks params (nn3's layouts) against a spec; returns float32 copies."""
    layers = validate(spec, source)["layers"]
    if not isinstance(params, (list, tuple)) or len(params) != len(layers):
        raise error(source, "params", f"expected a list of {len(layers)} layers' params, got {describe(params)}")
    out = []
    for i, (p, layer) in enumerate(zip(params, layers)):
        require_keys(p, source, f"params[{i}]", ("w", "b"))
        w_shape, b_shape = param_shapes(layer)
        out.append({"w": _array(p["w"], source, f"params[{i}].w", w_shape),
                    "b": _array(p["b"], source, f"params[{i}].b", b_shape)})
    return out


def to_json_dict(spec: dict, params: list, mini_batch_size: int | None = None, seed: int | None = None) -> dict:
    """The JSON document for a net: network2's for sigmoid MLPs (``mini_batch_size``
    unused), nn3-network3's otherwise (``mini_batch_size`` defaults to the conv layers'
    ``image_shape[0]``, else 10). ``seed``, when given, is recorded."""
    spec = validate(spec)
    params = validate_params(spec, params)
    meta = {} if seed is None else {"seed": integer(seed, "<to_json_dict>", "seed", 0, MAX_SEED)}
    layers = spec["layers"]
    if is_mlp(spec):
        return {"sizes": mlp_sizes(spec),
                "weights": [p["w"].tolist() for p in params],  # float32 -> exact Python floats
                "biases": [p["b"].reshape(-1, 1).tolist() for p in params],
                "cost": spec["cost"], **meta}
    batches = {x["image_shape"][0] for x in layers if x["type"] == "ConvPoolLayer"}
    if mini_batch_size is None:
        mini_batch_size = batches.pop() if batches else DEFAULT_MINI_BATCH
    mini_batch_size = integer(mini_batch_size, "<to_json_dict>", "mini_batch_size")
    if batches - {mini_batch_size}:
        raise error("<to_json_dict>", "mini_batch_size", f"{mini_batch_size} differs from the "
                   f"ConvPoolLayers' image_shape[0] {batches.pop()}")
    out = []
    for layer, p in zip(layers, params):
        w = p["w"] if layer["type"] == "ConvPoolLayer" else p["w"].T  # network3: (n_in, n_out)
        out.append({**layer, "weights": w.tolist(), "biases": p["b"].tolist()})
    return {"format": FORMAT, "version": VERSION, "mini_batch_size": mini_batch_size,
            "cost": spec["cost"], "layers": out, **meta}


_NUMBER = (int, float)


def _nested(v: Any, src: str, path: str, shape: tuple) -> np.ndarray:
    """A float32 array from nested lists of JSON numbers of exactly ``shape``."""
    def walk(x: Any, depth: int, p: str) -> None:
        if not isinstance(x, list):
            raise error(src, p, f"expected a list of {shape[depth]} (shape {shape}), got {describe(x)}")
        if len(x) != shape[depth]:
            raise error(src, p, f"expected {shape[depth]} entries (shape {shape}), got {len(x)}")
        if depth + 1 < len(shape):
            for j, e in enumerate(x):
                walk(e, depth + 1, f"{p}[{j}]")
        elif not all(type(e) in _NUMBER for e in x):
            j = next(j for j, e in enumerate(x) if type(e) not in _NUMBER)
            raise error(src, f"{p}[{j}]", f"expected a number, got {describe(x[j])}")

    walk(v, 0, path)
    try:
        a = np.array(v, dtype=np.float64)
    except (OverflowError, ValueError, TypeError):
        raise error(src, path, "a number too large for float64") from None
    with np.errstate(over="ignore"):
        a32 = a.astype(np.float32)
    bad = ~np.isfinite(a32)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        at = path + "".join(f"[{i}]" for i in idx)
        raise error(src, at, f"{float(a[idx])!r} is not finite or is outside float32 range")
    return a32.reshape(shape)


def _meta(d: dict, src: str) -> dict:
    return {"seed": integer(d["seed"], src, "seed", 0, MAX_SEED)} if "seed" in d else {}


def _read_network2(d: dict, src: str) -> tuple[dict, list[dict], None]:
    require_keys(d, src, "", NETWORK2_KEYS, META_KEYS)
    spec = mlp_spec(d["sizes"], d["cost"], src)
    sizes = mlp_sizes(spec)
    n = len(sizes) - 1
    for key in ("weights", "biases"):
        if not isinstance(d[key], list) or len(d[key]) != n:
            raise error(src, key, f"expected a list of {n} (one per layer after the input), got {describe(d[key])}")
    params = [{"w": _nested(w, src, f"weights[{i}]", (b, a)),
               "b": _nested(bias, src, f"biases[{i}]", (b, 1)).reshape(b)}
              for i, (w, bias, a, b) in enumerate(zip(d["weights"], d["biases"], sizes, sizes[1:]))]
    return spec, params, None


def _read_network3(d: dict, src: str) -> tuple[dict, list[dict], int]:
    if d["format"] == BUNDLE_FORMAT:
        raise error(src, "", "an ensemble bundle of several networks, not one network "
                             "(nn3.load and nn3 evaluate read it)")
    if not isinstance(d["format"], str) or d["format"] != FORMAT:
        raise error(src, "format", f"unknown format {describe(d['format'])} (this reads '{FORMAT}')")
    if "version" not in d:
        raise error(src, "", "missing key 'version'")
    if integer(d["version"], src, "version", 0, MAX_SIZE) != VERSION:  # before the keys: they may change
        raise error(src, "version", f"version {d['version']} is not supported (this reads {VERSION})")
    require_keys(d, src, "", NETWORK3_KEYS, META_KEYS)
    batch = integer(d["mini_batch_size"], src, "mini_batch_size")
    spec = validate({"layers": d["layers"], "cost": d["cost"]}, src, extra=("weights", "biases"))
    params = []
    for i, (layer, x) in enumerate(zip(spec["layers"], d["layers"])):
        p = f"layers[{i}]"
        conv = layer["type"] == "ConvPoolLayer"
        if conv and layer["image_shape"][0] != batch:
            raise error(src, f"{p}.image_shape[0]", f"{layer['image_shape'][0]} differs from mini_batch_size {batch}")
        w_shape, b_shape = param_shapes(layer)
        w = _nested(x["weights"], src, f"{p}.weights", w_shape if conv else w_shape[::-1])
        params.append({"w": w if conv else np.ascontiguousarray(w.T),
                       "b": _nested(x["biases"], src, f"{p}.biases", b_shape)})
    return spec, params, batch


def from_json_dict(d: Any, source: str = "<memory>") -> tuple[dict, list[dict], int | None]:
    """``(spec, params, mini_batch_size)`` from a parsed document (None for network2's)."""
    return _from_json_dict(d, source)[:3]


def from_document(d: Any, source: str = "<memory>") -> tuple[dict, list[dict], int | None, dict]:
    """``(spec, params, mini_batch_size, meta)`` from a parsed document (``read_document``'s)."""
    return _from_json_dict(d, source)


def _from_json_dict(d: Any, source: str) -> tuple[dict, list[dict], int | None, dict]:
    if not isinstance(d, dict):
        raise error(source, "", f"expected a JSON object at the top level, got {describe(d)}")
    if "format" in d:
        return (*_read_network3(d, source), _meta(d, source))
    if "sizes" in d:
        return (*_read_network2(d, source), _meta(d, source))
    raise error(source, "", "neither network2's format (no key 'sizes') nor nn3-network3 (no key 'format')")


def dumps(spec: dict, params: list, mini_batch_size: int | None = None, seed: int | None = None) -> str:
    """The JSON text of ``to_json_dict``."""
    return json.dumps(to_json_dict(spec, params, mini_batch_size, seed), allow_nan=False, separators=(",", ":"))


def _pairs(pairs: list[tuple[str, Any]]) -> dict:
    """A JSON object's pairs as a dict; a key given twice is an ExportError naming it."""
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise ExportError(f"duplicate key {describe(k)}")
            seen.add(k)
    return d


def loads(text: str | bytes, source: str = "<string>") -> tuple[dict, list[dict], int | None]:
    """``from_json_dict`` of a JSON text, with the size, nesting and NaN guards."""
    return _loads(text, source)[:3]


def _loads(text: str | bytes, source: str) -> tuple[dict, list[dict], int | None, dict]:
    return _from_json_dict(parse(text, source), source)


def parse(text: str | bytes, source: str = "<string>") -> Any:
    """The JSON document in ``text``, with the size, nesting, duplicate-key and NaN guards
    (what every nn3 file is read through, a network or an ensemble bundle)."""
    if not isinstance(text, (str, bytes, bytearray)):
        raise error(source, "", f"expected JSON text, got {describe(text)}")
    if len(text) > MAX_FILE_BYTES:
        raise error(source, "", f"{len(text)} bytes, more than the limit {MAX_FILE_BYTES}")
    if not isinstance(text, str):
        try:
            text = bytes(text).decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise error(source, "", f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        return json.loads(text, parse_constant=NonFinite, object_pairs_hook=_pairs)
    except ExportError as e:
        raise error(source, "", str(e)) from None
    except RecursionError:
        raise error(source, "", "not a network file: nesting too deep") from None
    except ValueError as e:  # JSONDecodeError, and ints of more than 4300 digits
        raise error(source, "", f"not valid JSON: {e}") from None


def read_document(path: str | os.PathLike) -> tuple[Any, str]:
    """``(document, source)``: the parsed JSON of the file at ``path`` and its name for errors."""
    try:
        src = os.fsdecode(path)
    except TypeError:
        raise error(repr(path)[:80], "", "not a file path") from None
    try:
        info = os.stat(path)
        if stat.S_ISREG(info.st_mode) and info.st_size <= MAX_FILE_BYTES:
            with open(path, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        raise error(src, "", f"cannot read: {getattr(e, 'strerror', None) or e}") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(src, "", "not a regular file")
    if info.st_size > MAX_FILE_BYTES:
        raise error(src, "", f"{info.st_size} bytes, more than the limit {MAX_FILE_BYTES}")
    return parse(data, src), src


def load_json(path: str | os.PathLike) -> tuple[dict, list[dict], int | None, dict]:
    """``(spec, params, mini_batch_size, meta)`` from a network2 or nn3-network3 file;
    ``meta`` holds the file's optional keys: ``{"seed": n}`` or ``{}``."""
    d, src = read_document(path)
    return _from_json_dict(d, src)


def save_json(path: str | os.PathLike, spec: dict, params: list, mini_batch_size: int | None = None,
              seed: int | None = None) -> None:
    """Writes ``dumps(...)`` to ``path`` atomically (see ``write_atomic``)."""
    write_atomic(path, dumps(spec, params, mini_batch_size, seed).encode("utf-8"))


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (``files.atomic_write``).

    A failure is an ExportError naming ``path``, never the temp file the user did not ask for.
    """
    try:
        atomic_write(pathlib.Path(path), data)
    except OSError as e:
        raise error(os.fspath(path), "", f"cannot write: {e.strerror or e}") from None
