"""A network as a JSON-able spec: the names it may use, its validation, shapes and work.

    >>> from nn3.engine import spec
    >>> s = spec.mlp_spec([784, 30, 10], "QuadraticCost")
    >>> spec.validate(s) == s, spec.is_mlp(s), spec.forward_macs(s)
    (True, True, 23820)
    >>> conv = {"type": "ConvPoolLayer", "filter_shape": [20, 1, 5, 5],
    ...         "image_shape": [10, 1, 28, 28], "poolsize": [2, 2], "activation_fn": "ReLU"}
    >>> spec.output_shape(conv)                              # network3's (maps, H, W)
    (20, 12, 12)
    >>> spec.validate({"layers": [conv], "cost": "LogLikelihoodCost"}, "net.json")
    Traceback (most recent call last):
    ...
    nn3.engine.spec.SpecError: net.json: layers[0].type: a ConvPoolLayer cannot be the output layer

A spec is ``{"layers": [...], "cost": name}``. Each layer is a dict with ``"type"`` (a
key of ``LAYER_ARGS``) and every one of network3.py's constructor arguments for that
type (no defaults: a spec says all it means). The same dict builds a network
(nn3.engine.layers), goes into every run's config.json, and is the skeleton of every
exported file (nn3.store.export). This module is the one place that names layer types,
activations, costs and initialisations, and the one rule for what fits together; the JAX
functions behind the names (nn3.engine.activations, nn3.engine.costs) are keyed by them.

numpy and the standard library only: ``nn3 presets``, ``nn3 --help`` and reading a network file
start without JAX. Validation is strict, for specs that come from files: exact key
sets, ints that are ints (not bools, not floats), sizes in [1, MAX_SIZE], names from
the registries only, layers that chain, a cost that fits the output layer, at most
MAX_PARAMS parameters. Every fault is one ``SpecError`` line naming the source, the
key path (``layers[1].n_in``) and what is wrong.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["ACTIVATIONS", "COSTS", "COST_OUTPUTS", "INITS", "LAYER_ARGS", "LAYER_TYPES", "MAX_LAYERS", "MAX_PARAMS",
           "MAX_SIZE", "MLP_COSTS", "OUTPUT_ACTIVATIONS", "SOFTMAX", "NonFinite", "SpecError", "describe", "error",
           "forward_macs", "has_conv", "input_size", "integer", "is_mlp", "mlp_sizes", "mlp_spec", "name",
           "output_activation", "output_shape", "param_shapes", "require_keys", "validate"]

# A hidden layer's ``activation_fn``; a SoftmaxLayer's output activation is "softmax".
ACTIVATIONS = ("sigmoid", "tanh", "ReLU", "linear")
SOFTMAX = "softmax"
OUTPUT_ACTIVATIONS = ACTIVATIONS + (SOFTMAX,)
# The book's three costs, each with the output activations it is defined for.
COST_OUTPUTS = {
    "QuadraticCost": OUTPUT_ACTIVATIONS,
    "CrossEntropyCost": ("sigmoid",),
    "LogLikelihoodCost": (SOFTMAX,),
}
COSTS = tuple(COST_OUTPUTS)
MLP_COSTS = ("QuadraticCost", "CrossEntropyCost")  # network.py's and network2.py's
# Layer types with network3.py's constructor arguments, all required in a spec.
LAYER_ARGS = {
    "FullyConnectedLayer": ("n_in", "n_out", "activation_fn", "p_dropout"),
    "ConvPoolLayer": ("filter_shape", "image_shape", "poolsize", "activation_fn"),
    "SoftmaxLayer": ("n_in", "n_out", "p_dropout"),
}
LAYER_TYPES = tuple(LAYER_ARGS)
# Initial weights: chapter 1's N(0, 1), chapter 3's N(0, 1/n_in), network3's N(0, 1/n_out).
INITS = ("normal", "scaled", "network3")

MAX_SIZE = 1 << 24  # any one size (units, maps, pixels, mini-batch)
MAX_PARAMS = 1 << 28
MAX_LAYERS = 256


class SpecError(ValueError):
    """A spec, or a file holding one (nn3.store.export), that nn3 cannot use."""


class NonFinite:
    """What a strict JSON parse (nn3.store.export) puts where a text says NaN or Infinity."""

    def __init__(self, name: str):
        self.name = name


def error(source: str, path: str, what: str) -> SpecError:
    """``source: path: what`` as one line (a newline in a file's key is shown escaped)."""
    msg = f"{source}: {path}: {what}" if path else f"{source}: {what}"
    return SpecError(msg.replace("\n", "\\n").replace("\r", "\\r"))


def describe(v: Any) -> str:
    """A short description of a value from a file, safe for any input."""
    if isinstance(v, NonFinite):
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


def require_keys(obj: Any, source: str, path: str, required: tuple, optional: tuple = ()) -> None:
    """``obj`` is a dict with every key of ``required`` and none outside ``optional``."""
    if not isinstance(obj, dict):
        raise error(source, path, f"expected an object, got {describe(obj)}")
    for k in obj:
        if k not in required and k not in optional:
            raise error(source, path, f"unknown key {describe(k)} (expected {', '.join(required + optional)})")
    for k in required:
        if k not in obj:
            raise error(source, path, f"missing key '{k}'")


def integer(v: Any, source: str, path: str, lo: int = 1, hi: int = MAX_SIZE) -> int:
    """``v`` as an int in [lo, hi]; a bool or a float is a fault."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise error(source, path, f"expected an int, got {describe(v)}")
    if not lo <= int(v) <= hi:
        raise error(source, path, f"must be in [{lo}, {hi}], got {describe(v)}")
    return int(v)


def _integers(v: Any, source: str, path: str, n: int) -> list[int]:
    if not isinstance(v, (list, tuple)) or len(v) != n:
        raise error(source, path, f"expected a list of {n} ints, got {describe(v)}")
    return [integer(x, source, f"{path}[{i}]") for i, x in enumerate(v)]


def name(v: Any, source: str, path: str, allowed: tuple, what: str) -> str:
    """``v`` when it is one of ``allowed`` (a registry above); else a fault naming them."""
    if not isinstance(v, str) or v not in allowed:
        raise error(source, path, f"unknown {what} {describe(v)} (known: {', '.join(allowed)})")
    return str(v)


def _probability(v: Any, source: str, path: str) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise error(source, path, f"expected a number, got {describe(v)}")
    if not (math.isfinite(float(v)) and 0.0 <= float(v) < 1.0):
        raise error(source, path, f"must be in [0, 1), got {describe(v)}")
    return float(v)


def _layer(layer: Any, source: str, path: str, extra: tuple) -> dict:
    """One layer, checked and copied; ``extra`` keys are allowed and left out of the copy."""
    if not isinstance(layer, dict):
        raise error(source, path, f"expected an object, got {describe(layer)}")
    if "type" not in layer:
        raise error(source, path, "missing key 'type'")
    kind = name(layer["type"], source, f"{path}.type", LAYER_TYPES, "layer type")
    require_keys(layer, source, path, ("type", *LAYER_ARGS[kind], *extra))
    out: dict[str, Any] = {"type": kind}
    for k in LAYER_ARGS[kind]:
        v, p = layer[k], f"{path}.{k}"
        if k in ("n_in", "n_out"):
            out[k] = integer(v, source, p)
        elif k == "activation_fn":
            out[k] = name(v, source, p, ACTIVATIONS, "activation")
        elif k == "p_dropout":
            out[k] = _probability(v, source, p)
        else:
            out[k] = _integers(v, source, p, 2 if k == "poolsize" else 4)
    if kind == "ConvPoolLayer":
        (_, maps, h, w), (_, in_maps, rows, cols) = out["filter_shape"], out["image_shape"]
        if maps != in_maps:
            raise error(source, f"{path}.filter_shape[1]", f"{maps} input maps, image_shape[1] is {in_maps}")
        for i, (f, n, pool) in enumerate(zip((h, w), (rows, cols), out["poolsize"])):
            if n - f + 1 < pool:  # a valid conv leaves n - f + 1; pooling drops the border
                raise error(source, f"{path}.poolsize[{i}]", f"filter {f} and pool {pool} do not fit in {n}")
    return out


def output_shape(layer: dict) -> tuple[int, ...]:
    """What a layer hands on: ``(n_out,)``, or a conv layer's (maps, H', W') in network3's order.

    H' is the valid convolution's height divided by the pool's, the border dropped.
    """
    if layer["type"] != "ConvPoolLayer":
        return (layer["n_out"],)
    (n_filters, _, h, w), (_, _, rows, cols), (ph, pw) = (
        layer["filter_shape"], layer["image_shape"], layer["poolsize"])
    return (n_filters, (rows - h + 1) // ph, (cols - w + 1) // pw)


def param_shapes(layer: dict) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """nn3's (w, b) shapes for a layer: fully connected (n_out, n_in); conv as network3's filters."""
    if layer["type"] == "ConvPoolLayer":
        return tuple(layer["filter_shape"]), (layer["filter_shape"][0],)
    return (layer["n_out"], layer["n_in"]), (layer["n_out"],)


def output_activation(spec: dict) -> str:
    """The activation of a spec's output layer ("softmax" for a SoftmaxLayer)."""
    last = spec["layers"][-1]
    return SOFTMAX if last["type"] == "SoftmaxLayer" else last["activation_fn"]


def _check_net(layers: list[dict], cost: str, source: str, where: str) -> None:
    """What a single layer cannot check: chaining, one mini-batch, output vs cost, size."""
    batch = None
    for i, layer in enumerate(layers):
        p = f"layers[{i}]"
        if layer["type"] == "SoftmaxLayer" and i != len(layers) - 1:
            raise error(source, f"{p}.type", "a SoftmaxLayer must be the last layer")
        if layer["type"] == "ConvPoolLayer":
            batch = layer["image_shape"][0] if batch is None else batch
            if layer["image_shape"][0] != batch:
                raise error(source, f"{p}.image_shape[0]", f"mini-batch {layer['image_shape'][0]} differs "
                            f"from {batch} in an earlier ConvPoolLayer")
        if i == 0:
            continue
        prev = output_shape(layers[i - 1])
        if layer["type"] == "ConvPoolLayer":
            need = tuple(layer["image_shape"][1:])
            # after a conv layer the maps must match; after a flat one only the count
            if (need != prev) if len(prev) == 3 else (math.prod(need) != prev[0]):
                raise error(source, f"{p}.image_shape", f"{list(need)} does not match the output "
                            f"{list(prev)} of layers[{i - 1}]")
        elif layer["n_in"] != math.prod(prev):
            raise error(source, f"{p}.n_in", f"{layer['n_in']} does not match the {math.prod(prev)} "
                        f"outputs {list(prev)} of layers[{i - 1}]")
    if layers[-1]["type"] == "ConvPoolLayer":
        raise error(source, f"layers[{len(layers) - 1}].type", "a ConvPoolLayer cannot be the output layer")
    out = output_activation({"layers": layers})
    if out not in COST_OUTPUTS[cost]:
        raise error(source, "cost", f"{cost} does not fit a {out} output layer")
    n = sum(math.prod(w) + math.prod(b) for w, b in map(param_shapes, layers))
    if n > MAX_PARAMS:
        raise error(source, where, f"{n} parameters, more than the limit {MAX_PARAMS}")


def validate(spec: Any, source: str = "<spec>", *, extra: tuple = ()) -> dict:
    """``spec`` checked; returns a clean copy (lists, Python ints, float p_dropout).

    ``source`` names where the spec came from in a fault (a file, a flag); ``extra`` is
    keys a layer may also carry, left out of the copy (a file's weights and biases).
    """
    require_keys(spec, source, "", ("layers", "cost"))
    cost = name(spec["cost"], source, "cost", COSTS, "cost")
    layers = spec["layers"]
    if not isinstance(layers, (list, tuple)) or not 1 <= len(layers) <= MAX_LAYERS:
        raise error(source, "layers", f"expected a list of 1 to {MAX_LAYERS} layers, got {describe(layers)}")
    out = [_layer(x, source, f"layers[{i}]", extra) for i, x in enumerate(layers)]
    _check_net(out, cost, source, "layers")
    return {"layers": out, "cost": cost}


def mlp_spec(sizes: Any, cost: str = "CrossEntropyCost", source: str = "<mlp_spec>") -> dict:
    """The spec of network.py's / network2.py's ``Network(sizes)``: sigmoid all the way.

    Faults name ``sizes[i]`` and ``cost`` in ``source`` (network2's file keys).
    """
    if not isinstance(sizes, (list, tuple)) or not 2 <= len(sizes) <= MAX_LAYERS + 1:
        raise error(source, "sizes", f"expected a list of 2 to {MAX_LAYERS + 1} ints, got {describe(sizes)}")
    sizes = [integer(n, source, f"sizes[{i}]") for i, n in enumerate(sizes)]
    cost = name(cost, source, "cost", MLP_COSTS, "network2 cost")
    layers = [{"type": "FullyConnectedLayer", "n_in": a, "n_out": b, "activation_fn": "sigmoid",
               "p_dropout": 0.0} for a, b in zip(sizes[:-1], sizes[1:])]
    _check_net(layers, cost, source, "sizes")
    return {"layers": layers, "cost": cost}


def has_conv(spec: dict) -> bool:
    """Whether ``spec`` has a ConvPoolLayer (a chapter-6 conv net)."""
    return any(layer.get("type") == "ConvPoolLayer" for layer in spec.get("layers", ()))


def is_mlp(spec: Any) -> bool:
    """Whether ``spec`` is a chapter-1/3 sigmoid MLP: what network2's file format holds."""
    if not isinstance(spec, dict) or spec.get("cost") not in MLP_COSTS:
        return False
    layers = spec.get("layers")
    return isinstance(layers, (list, tuple)) and len(layers) > 0 and all(
        isinstance(x, dict) and x.get("type") == "FullyConnectedLayer" and x.get("activation_fn") == "sigmoid"
        and x.get("p_dropout") == 0 for x in layers)


def mlp_sizes(spec: dict) -> list[int]:
    """An MLP's ``sizes``, as network.py's ``Network(sizes)`` takes them."""
    return [spec["layers"][0]["n_in"]] + [x["n_out"] for x in spec["layers"]]


def input_size(spec: dict) -> int:
    """The length of one example's input row (784 for MNIST)."""
    first = spec["layers"][0]
    if first["type"] == "ConvPoolLayer":
        return math.prod(first["image_shape"][1:])
    return first["n_in"]


def forward_macs(spec: dict) -> int:
    """Multiply-adds of one example's forward pass (conv layers before pooling)."""
    total = 0
    for layer in spec["layers"]:
        if layer["type"] == "ConvPoolLayer":
            nf, cin, fh, fw = layer["filter_shape"]
            _, _, h, w = layer["image_shape"]
            total += nf * cin * fh * fw * (h - fh + 1) * (w - fw + 1)
        else:
            total += int(layer["n_in"]) * int(layer["n_out"])
    return total
