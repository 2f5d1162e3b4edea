"""Network files: network2.py's JSON for sigmoid MLPs, the same style for network3's nets.

    >>> import numpy as np
    >>> from nn3 import export
    >>> spec = export.mlp_spec([2, 3, 1])
    >>> params = [{"w": np.ones((3, 2), np.float32), "b": np.zeros(3, np.float32)},
    ...           {"w": np.ones((1, 3), np.float32), "b": np.zeros(1, np.float32)}]
    >>> sorted(export.to_json_dict(spec, params))
    ['biases', 'cost', 'sizes', 'weights']
    >>> spec2, params2, _ = export.loads(export.dumps(spec, params))
    >>> spec2 == spec and np.array_equal(params2[1]["w"], params[1]["w"])
    True

Works on a spec and a params list only (numpy + json): no JAX here.

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

Reading is strict: exact key sets (``"seed"`` the one optional key); names from allow-lists only (costs, activations,
layer types; nothing is looked up by a name from the file); ints are ints (not bools),
positive and at most ``MAX_SIZE``; shapes match the declared sizes and chain from
layer to layer (a conv layer's output is the valid convolution, then pooling with the
borders dropped); numbers are finite and within float32 range; the cost fits the
output layer; at most ``MAX_PARAMS`` parameters and ``MAX_FILE_BYTES`` of file; no
duplicate keys. Every fault is one ``ExportError`` line: the file, the key path
(``layers[1].weights[3]``) and what is wrong.
"""
from __future__ import annotations

import json
import math
import os
import stat
import uuid
from typing import Any

import numpy as np

MAX_FILE_BYTES = 256 << 20
MAX_SIZE = 1 << 24  # any one size (units, maps, pixels, mini-batch)
MAX_PARAMS = 1 << 28
MAX_LAYERS = 256
FORMAT, VERSION = "nn3-network3", 1
DEFAULT_MINI_BATCH = 10  # the book's, for nets without a ConvPoolLayer to say otherwise

ACTIVATIONS = ("sigmoid", "tanh", "ReLU", "linear")
COSTS = ("QuadraticCost", "CrossEntropyCost", "LogLikelihoodCost")
MLP_COSTS = ("QuadraticCost", "CrossEntropyCost")
# Output activations each cost is defined for (mirrors nn3.costs.COST_OUTPUTS).
COST_OUTPUTS = {
    "QuadraticCost": ("sigmoid", "tanh", "ReLU", "linear", "softmax"),
    "CrossEntropyCost": ("sigmoid",),
    "LogLikelihoodCost": ("softmax",),
}
LAYER_ARGS = {
    "FullyConnectedLayer": ("n_in", "n_out", "activation_fn", "p_dropout"),
    "ConvPoolLayer": ("filter_shape", "image_shape", "poolsize", "activation_fn"),
    "SoftmaxLayer": ("n_in", "n_out", "p_dropout"),
}
NETWORK2_KEYS = ("sizes", "weights", "biases", "cost")
NETWORK3_KEYS = ("format", "version", "mini_batch_size", "cost", "layers")
META_KEYS = ("seed",)  # optional in both formats
MAX_SEED = 2**32 - 1   # jax.random.key takes seeds below 2**32 apart


class ExportError(ValueError):
    """A network file, spec or params list that nn3 cannot read or write."""


class _Constant:
    """What the parser puts where a file says NaN, Infinity or -Infinity."""

    def __init__(self, name: str):
        self.name = name


def _err(src: str, path: str, what: str) -> ExportError:
    msg = f"{src}: {path}: {what}" if path else f"{src}: {what}"
    return ExportError(msg.replace("\n", "\\n").replace("\r", "\\r"))


def _show(v: Any) -> str:
    """A short description of a value from a file, safe for any input."""
    if isinstance(v, _Constant):
        return f"{v.name} (non-finite numbers are not allowed)"
    if v is None:
        return "null"
    if isinstance(v, (bool, np.bool_)):
        return f"{str(bool(v)).lower()} (bool)"
    if isinstance(v, (int, np.integer)):
        v = int(v)
        return f"{v} (int)" if v.bit_length() <= 64 else f"an int of {v.bit_length()} bits"
    if isinstance(v, (float, np.floating)):
        return f"{float(v)!r} (float)"
    if isinstance(v, str):
        return repr(v[:32] + ("..." if len(v) > 32 else ""))
    if isinstance(v, (list, tuple)):
        return f"a list of {len(v)}"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _keys(obj: Any, src: str, path: str, required: tuple, optional: tuple = ()) -> None:
    if not isinstance(obj, dict):
        raise _err(src, path, f"expected an object, got {_show(obj)}")
    for k in obj:
        if k not in required and k not in optional:
            raise _err(src, path, f"unknown key {_show(k)} (expected {', '.join(required + optional)})")
    for k in required:
        if k not in obj:
            raise _err(src, path, f"missing key '{k}'")


def _int(v: Any, src: str, path: str, lo: int = 1, hi: int = MAX_SIZE) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise _err(src, path, f"expected an int, got {_show(v)}")
    if not lo <= int(v) <= hi:
        raise _err(src, path, f"must be in [{lo}, {hi}], got {_show(v)}")
    return int(v)


def _ints(v: Any, src: str, path: str, n: int) -> list[int]:
    if not isinstance(v, (list, tuple)) or len(v) != n:
        raise _err(src, path, f"expected a list of {n} ints, got {_show(v)}")
    return [_int(x, src, f"{path}[{i}]") for i, x in enumerate(v)]


def _name(v: Any, src: str, path: str, allowed: tuple, what: str) -> str:
    if not isinstance(v, str) or v not in allowed:
        raise _err(src, path, f"unknown {what} {_show(v)} (known: {', '.join(allowed)})")
    return str(v)


def _prob(v: Any, src: str, path: str) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise _err(src, path, f"expected a number, got {_show(v)}")
    if not (math.isfinite(float(v)) and 0.0 <= float(v) < 1.0):
        raise _err(src, path, f"must be in [0, 1), got {_show(v)}")
    return float(v)


def _layer(layer: Any, src: str, path: str, extra: tuple = ()) -> dict:
    """One layer's spec, checked and copied; ``extra`` keys are allowed and ignored."""
    if not isinstance(layer, dict):
        raise _err(src, path, f"expected an object, got {_show(layer)}")
    if "type" not in layer:
        raise _err(src, path, "missing key 'type'")
    kind = _name(layer["type"], src, f"{path}.type", tuple(LAYER_ARGS), "layer type")
    _keys(layer, src, path, ("type", *LAYER_ARGS[kind], *extra))
    out: dict[str, Any] = {"type": kind}
    for k in LAYER_ARGS[kind]:
        v, p = layer[k], f"{path}.{k}"
        if k in ("n_in", "n_out"):
            out[k] = _int(v, src, p)
        elif k == "activation_fn":
            out[k] = _name(v, src, p, ACTIVATIONS, "activation")
        elif k == "p_dropout":
            out[k] = _prob(v, src, p)
        else:
            out[k] = _ints(v, src, p, 2 if k == "poolsize" else 4)
    if kind == "ConvPoolLayer":
        (_, maps, h, w), (_, in_maps, rows, cols) = out["filter_shape"], out["image_shape"]
        if maps != in_maps:
            raise _err(src, f"{path}.filter_shape[1]", f"{maps} input maps, image_shape[1] is {in_maps}")
        for i, (f, n, pool) in enumerate(zip((h, w), (rows, cols), out["poolsize"])):
            if n - f + 1 < pool:  # a valid conv leaves n - f + 1; pooling drops the border
                raise _err(src, f"{path}.poolsize[{i}]", f"filter {f} and pool {pool} do not fit in {n}")
    return out


def _out_shape(layer: dict) -> tuple[int, ...]:
    if layer["type"] != "ConvPoolLayer":
        return (layer["n_out"],)
    (n_filters, _, h, w), (_, _, rows, cols), (ph, pw) = (
        layer["filter_shape"], layer["image_shape"], layer["poolsize"])
    return (n_filters, (rows - h + 1) // ph, (cols - w + 1) // pw)  # (maps, H', W')


def _shapes(layer: dict) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """nn3's internal (w, b) shapes for a layer."""
    if layer["type"] == "ConvPoolLayer":
        return tuple(layer["filter_shape"]), (layer["filter_shape"][0],)
    return (layer["n_out"], layer["n_in"]), (layer["n_out"],)


def _check_net(layers: list[dict], cost: str, src: str, where: str = "layers") -> None:
    """What a single layer cannot check: chaining, batch, output vs cost, size."""
    batch = None
    for i, layer in enumerate(layers):
        p = f"layers[{i}]"
        if layer["type"] == "SoftmaxLayer" and i != len(layers) - 1:
            raise _err(src, f"{p}.type", "a SoftmaxLayer must be the last layer")
        if layer["type"] == "ConvPoolLayer":
            batch = layer["image_shape"][0] if batch is None else batch
            if layer["image_shape"][0] != batch:
                raise _err(src, f"{p}.image_shape[0]", f"mini-batch {layer['image_shape'][0]} differs "
                           f"from {batch} in an earlier ConvPoolLayer")
        if i == 0:
            continue
        prev = _out_shape(layers[i - 1])
        if layer["type"] == "ConvPoolLayer":
            need = tuple(layer["image_shape"][1:])
            # after a conv layer the maps must match; after a flat one only the count
            if (need != prev) if len(prev) == 3 else (math.prod(need) != prev[0]):
                raise _err(src, f"{p}.image_shape", f"{list(need)} does not match the output "
                           f"{list(prev)} of layers[{i - 1}]")
        elif layer["n_in"] != math.prod(prev):
            raise _err(src, f"{p}.n_in", f"{layer['n_in']} does not match the {math.prod(prev)} "
                       f"outputs {list(prev)} of layers[{i - 1}]")
    last = layers[-1]
    if last["type"] == "ConvPoolLayer":
        raise _err(src, f"layers[{len(layers) - 1}].type", "a ConvPoolLayer cannot be the output layer")
    out = "softmax" if last["type"] == "SoftmaxLayer" else last["activation_fn"]
    if out not in COST_OUTPUTS[cost]:
        raise _err(src, "cost", f"{cost} does not fit a {out} output layer")
    n = sum(math.prod(w) + math.prod(b) for w, b in map(_shapes, layers))
    if n > MAX_PARAMS:
        raise _err(src, where, f"{n} parameters, more than the limit {MAX_PARAMS}")


def validate_spec(spec: Any, source: str = "<spec>") -> dict:
    """Checks a spec as the importer does; returns a clean copy (lists, float p_dropout)."""
    _keys(spec, source, "", ("layers", "cost"))
    cost = _name(spec["cost"], source, "cost", COSTS, "cost")
    layers = spec["layers"]
    if not isinstance(layers, (list, tuple)) or not 1 <= len(layers) <= MAX_LAYERS:
        raise _err(source, "layers", f"expected a list of 1 to {MAX_LAYERS} layers, got {_show(layers)}")
    out = [_layer(x, source, f"layers[{i}]") for i, x in enumerate(layers)]
    _check_net(out, cost, source)
    return {"layers": out, "cost": cost}


def _array(v: Any, src: str, path: str, shape: tuple) -> np.ndarray:
    if not (isinstance(v, np.ndarray) or hasattr(v, "__array__")):
        raise _err(src, path, f"expected an array, got {_show(v)}")
    a = np.asarray(v)
    if a.dtype.kind != "f":
        raise _err(src, path, f"expected a float array, got dtype {a.dtype}")
    if a.shape != shape:
        raise _err(src, path, f"expected shape {shape}, got {a.shape}")
    a = a.astype(np.float32)  # a copy, always
    if not np.isfinite(a).all():
        raise _err(src, path, f"non-finite value at {tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])}")
    return a


def validate_params(spec: dict, params: Any, source: str = "<params>") -> list[dict]:
    """Checks params (nn3's layouts) against a spec; returns float32 copies."""
    layers = validate_spec(spec, source)["layers"]
    if not isinstance(params, (list, tuple)) or len(params) != len(layers):
        raise _err(source, "params", f"expected a list of {len(layers)} layers' params, got {_show(params)}")
    out = []
    for i, (p, layer) in enumerate(zip(params, layers)):
        _keys(p, source, f"params[{i}]", ("w", "b"))
        w_shape, b_shape = _shapes(layer)
        out.append({"w": _array(p["w"], source, f"params[{i}].w", w_shape),
                    "b": _array(p["b"], source, f"params[{i}].b", b_shape)})
    return out


def _mlp(sizes: Any, cost: Any, src: str) -> tuple[dict, list[int]]:
    if not isinstance(sizes, (list, tuple)) or not 2 <= len(sizes) <= MAX_LAYERS + 1:
        raise _err(src, "sizes", f"expected a list of 2 to {MAX_LAYERS + 1} ints, got {_show(sizes)}")
    sizes = [_int(n, src, f"sizes[{i}]") for i, n in enumerate(sizes)]
    cost = _name(cost, src, "cost", MLP_COSTS, "network2 cost")
    layers = [{"type": "FullyConnectedLayer", "n_in": a, "n_out": b, "activation_fn": "sigmoid",
               "p_dropout": 0.0} for a, b in zip(sizes[:-1], sizes[1:])]
    _check_net(layers, cost, src, "sizes")
    return {"layers": layers, "cost": cost}, sizes


def mlp_spec(sizes: Any, cost: str = "CrossEntropyCost") -> dict:
    """The spec of network.py's / network2.py's ``Network(sizes)``: sigmoid all the way."""
    return _mlp(sizes, cost, "<mlp_spec>")[0]


def spec_is_mlp(spec: Any) -> bool:
    """Whether a spec is a chapter-1/3 sigmoid MLP, i.e. is saved in network2's format."""
    try:
        spec = validate_spec(spec)
    except ExportError:
        return False
    return spec["cost"] in MLP_COSTS and all(
        x["type"] == "FullyConnectedLayer" and x["activation_fn"] == "sigmoid" and x["p_dropout"] == 0
        for x in spec["layers"])


def to_json_dict(spec: dict, params: list, mini_batch_size: int | None = None, seed: int | None = None) -> dict:
    """The JSON document for a net: network2's for sigmoid MLPs (``mini_batch_size``
    unused), nn3-network3's otherwise (``mini_batch_size`` defaults to the conv layers'
    ``image_shape[0]``, else 10). ``seed``, when given, is recorded."""
    spec = validate_spec(spec)
    params = validate_params(spec, params)
    meta = {} if seed is None else {"seed": _int(seed, "<to_json_dict>", "seed", 0, MAX_SEED)}
    layers = spec["layers"]
    if spec_is_mlp(spec):
        return {"sizes": [layers[0]["n_in"]] + [x["n_out"] for x in layers],
                "weights": [p["w"].tolist() for p in params],  # float32 -> exact Python floats
                "biases": [p["b"].reshape(-1, 1).tolist() for p in params],
                "cost": spec["cost"], **meta}
    batches = {x["image_shape"][0] for x in layers if x["type"] == "ConvPoolLayer"}
    if mini_batch_size is None:
        mini_batch_size = batches.pop() if batches else DEFAULT_MINI_BATCH
    mini_batch_size = _int(mini_batch_size, "<to_json_dict>", "mini_batch_size")
    if batches - {mini_batch_size}:
        raise _err("<to_json_dict>", "mini_batch_size", f"{mini_batch_size} differs from the "
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
            raise _err(src, p, f"expected a list of {shape[depth]} (shape {shape}), got {_show(x)}")
        if len(x) != shape[depth]:
            raise _err(src, p, f"expected {shape[depth]} entries (shape {shape}), got {len(x)}")
        if depth + 1 < len(shape):
            for j, e in enumerate(x):
                walk(e, depth + 1, f"{p}[{j}]")
        elif not all(type(e) in _NUMBER for e in x):
            j = next(j for j, e in enumerate(x) if type(e) not in _NUMBER)
            raise _err(src, f"{p}[{j}]", f"expected a number, got {_show(x[j])}")

    walk(v, 0, path)
    try:
        a = np.array(v, dtype=np.float64)
    except (OverflowError, ValueError, TypeError):
        raise _err(src, path, "a number too large for float64") from None
    with np.errstate(over="ignore"):
        a32 = a.astype(np.float32)
    bad = ~np.isfinite(a32)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        at = path + "".join(f"[{i}]" for i in idx)
        raise _err(src, at, f"{float(a[idx])!r} is not finite or is outside float32 range")
    return a32.reshape(shape)


def _meta(d: dict, src: str) -> dict:
    return {"seed": _int(d["seed"], src, "seed", 0, MAX_SEED)} if "seed" in d else {}


def _read_network2(d: dict, src: str) -> tuple[dict, list[dict], None]:
    _keys(d, src, "", NETWORK2_KEYS, META_KEYS)
    spec, sizes = _mlp(d["sizes"], d["cost"], src)
    n = len(sizes) - 1
    for key in ("weights", "biases"):
        if not isinstance(d[key], list) or len(d[key]) != n:
            raise _err(src, key, f"expected a list of {n} (one per layer after the input), got {_show(d[key])}")
    params = [{"w": _nested(w, src, f"weights[{i}]", (b, a)),
               "b": _nested(bias, src, f"biases[{i}]", (b, 1)).reshape(b)}
              for i, (w, bias, a, b) in enumerate(zip(d["weights"], d["biases"], sizes, sizes[1:]))]
    return spec, params, None


def _read_network3(d: dict, src: str) -> tuple[dict, list[dict], int]:
    if not isinstance(d["format"], str) or d["format"] != FORMAT:
        raise _err(src, "format", f"unknown format {_show(d['format'])} (this reads '{FORMAT}')")
    if "version" not in d:
        raise _err(src, "", "missing key 'version'")
    if _int(d["version"], src, "version", 0, MAX_SIZE) != VERSION:  # before the keys: they may change
        raise _err(src, "version", f"version {d['version']} is not supported (this reads {VERSION})")
    _keys(d, src, "", NETWORK3_KEYS, META_KEYS)
    batch = _int(d["mini_batch_size"], src, "mini_batch_size")
    cost = _name(d["cost"], src, "cost", COSTS, "cost")
    raw = d["layers"]
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_LAYERS:
        raise _err(src, "layers", f"expected a list of 1 to {MAX_LAYERS} layers, got {_show(raw)}")
    layers = [_layer(x, src, f"layers[{i}]", ("weights", "biases")) for i, x in enumerate(raw)]
    _check_net(layers, cost, src)
    params = []
    for i, (layer, x) in enumerate(zip(layers, raw)):
        p = f"layers[{i}]"
        conv = layer["type"] == "ConvPoolLayer"
        if conv and layer["image_shape"][0] != batch:
            raise _err(src, f"{p}.image_shape[0]", f"{layer['image_shape'][0]} differs from mini_batch_size {batch}")
        w_shape, b_shape = _shapes(layer)
        w = _nested(x["weights"], src, f"{p}.weights", w_shape if conv else w_shape[::-1])
        params.append({"w": w if conv else np.ascontiguousarray(w.T),
                       "b": _nested(x["biases"], src, f"{p}.biases", b_shape)})
    return {"layers": layers, "cost": cost}, params, batch


def from_json_dict(d: Any, source: str = "<memory>") -> tuple[dict, list[dict], int | None]:
    """``(spec, params, mini_batch_size)`` from a parsed document (None for network2's)."""
    return _from_json_dict(d, source)[:3]


def _from_json_dict(d: Any, source: str) -> tuple[dict, list[dict], int | None, dict]:
    if not isinstance(d, dict):
        raise _err(source, "", f"expected a JSON object at the top level, got {_show(d)}")
    if "format" in d:
        return (*_read_network3(d, source), _meta(d, source))
    if "sizes" in d:
        return (*_read_network2(d, source), _meta(d, source))
    raise _err(source, "", "neither network2's format (no key 'sizes') nor nn3-network3 (no key 'format')")


def dumps(spec: dict, params: list, mini_batch_size: int | None = None, seed: int | None = None) -> str:
    """The JSON text of ``to_json_dict``."""
    return json.dumps(to_json_dict(spec, params, mini_batch_size, seed), allow_nan=False, separators=(",", ":"))


def _pairs(pairs: list) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ExportError(f"duplicate key {_show(dup)}")
    return d


def loads(text: str | bytes, source: str = "<string>") -> tuple[dict, list[dict], int | None]:
    """``from_json_dict`` of a JSON text, with the size, nesting and NaN guards."""
    return _loads(text, source)[:3]


def _loads(text: str | bytes, source: str) -> tuple[dict, list[dict], int | None, dict]:
    if not isinstance(text, (str, bytes, bytearray)):
        raise _err(source, "", f"expected JSON text, got {_show(text)}")
    if len(text) > MAX_FILE_BYTES:
        raise _err(source, "", f"{len(text)} bytes, more than the limit {MAX_FILE_BYTES}")
    if not isinstance(text, str):
        try:
            text = bytes(text).decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise _err(source, "", f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        d = json.loads(text, parse_constant=_Constant, object_pairs_hook=_pairs)
    except ExportError as e:
        raise _err(source, "", str(e)) from None
    except RecursionError:
        raise _err(source, "", "not a network file: nesting too deep") from None
    except ValueError as e:  # JSONDecodeError, and ints of more than 4300 digits
        raise _err(source, "", f"not valid JSON: {e}") from None
    return _from_json_dict(d, source)


def load_json(path: str | os.PathLike) -> tuple[dict, list[dict], int | None]:
    """``(spec, params, mini_batch_size)`` from a network2 or nn3-network3 file."""
    return load_json_meta(path)[:3]


def load_json_meta(path: str | os.PathLike) -> tuple[dict, list[dict], int | None, dict]:
    """``load_json`` and the file's optional keys: ``{"seed": n}`` or ``{}``."""
    try:
        src = os.fsdecode(path)
    except TypeError:
        raise _err(repr(path)[:80], "", "not a file path") from None
    try:
        info = os.stat(path)
        if stat.S_ISREG(info.st_mode) and info.st_size <= MAX_FILE_BYTES:
            with open(path, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        raise _err(src, "", f"cannot read: {getattr(e, 'strerror', None) or e}") from None
    if not stat.S_ISREG(info.st_mode):
        raise _err(src, "", "not a regular file")
    if info.st_size > MAX_FILE_BYTES:
        raise _err(src, "", f"{info.st_size} bytes, more than the limit {MAX_FILE_BYTES}")
    return _loads(data, src)


def save_json(path: str | os.PathLike, spec: dict, params: list, mini_batch_size: int | None = None,
              seed: int | None = None) -> None:
    """Writes ``dumps(...)`` to ``path`` atomically (a temp file, then ``os.replace``).

    A failure is an ExportError naming ``path``, never the temp file the user did not ask for.
    """
    data = dumps(spec, params, mini_batch_size, seed).encode("utf-8")
    path = os.fspath(path)
    tmp = f"{path}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        # O_BINARY: Windows opens a raw fd in text mode, which would write each \n as \r\n
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _err(path, "", f"cannot write: {e.strerror or e}") from None
        raise
