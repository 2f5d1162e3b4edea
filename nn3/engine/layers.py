"""The book's layers as Flax NNX modules, and a network built from a JSON-able spec.

    >>> import jax.numpy as jnp
    >>> from nn3.engine import layers
    >>> from nn3.engine.spec import mlp_spec
    >>> net = layers.build(mlp_spec([784, 30, 10]), seed=0)
    >>> net(jnp.zeros((5, 784))).shape
    (5, 10)

A spec is ``{"layers": [...], "cost": name}``; each layer is a dict with ``"type"``
(``FullyConnectedLayer``, ``ConvPoolLayer``, ``SoftmaxLayer``) and network3.py's
constructor arguments (nn3.engine.spec says what it may hold and checks it). Parameters
are kept in these layouts (float32):

- fully connected and softmax: ``w`` (n_out, n_in), ``b`` (n_out,) -- the (out, in)
  layout of network.py, which is also the faster one for ``x @ w.T`` on CPU;
- conv-pool: ``w`` (n_filters, n_in_maps, h, w), ``b`` (n_filters,) -- network3's.

Images travel between conv layers as NHWC; they are flattened in network3's (C, H, W)
order before a fully connected layer, so exported weights mean what they meant there.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nn3.engine import backend, conv
from nn3.engine.activations import FUNCTIONS
from nn3.engine.spec import INITS, SOFTMAX, input_size, is_mlp, validate

__all__ = ["CLASSES", "ConvPoolLayer", "FullyConnectedLayer", "Network", "SoftmaxLayer", "build", "dense",
           "get_params", "set_params"]


def _normal(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> jax.Array:
    # numpy's generator: it draws without compiling anything, where jax.random would
    # first compile its sampler (a replay or a resume builds a net with no compile).
    return jnp.asarray((std * rng.standard_normal(shape)).astype(np.float32))


@jax.custom_vjp
def _dense_cpu(x, w):
    return x @ w.T


def _dense_cpu_fwd(x, w):
    return x @ w.T, (x, w)


def _dense_cpu_bwd(res, g):
    x, w = res
    # The weight gradient g.T @ x with g.T materialised first: XLA:CPU then hands the
    # product to its faster kernel (bench/README.md). The barrier keeps XLA from
    # folding the transpose back in.
    gt = jax.lax.optimization_barrier(g.T.copy())
    return g @ w, gt @ x


_dense_cpu.defvjp(_dense_cpu_fwd, _dense_cpu_bwd)


def dense(x: jax.Array, w: jax.Array) -> jax.Array:
    """``x @ w.T``; on CPU with the weight gradient arranged as above.

    Args:
      x: (batch, in) float32.
      w: (out, in) float32.

    Returns:
      (batch, out) float32.
    """
    return _dense_cpu(x, w) if backend.choices().dense_transposed_grad else x @ w.T


class FullyConnectedLayer(nnx.Module):
    """A dense layer with network3's dropout: a mask in training, (1-p) at evaluation."""

    def __init__(self, n_in: int, n_out: int, activation_fn: str = "sigmoid", p_dropout: float = 0.0, *,
                 rng: np.random.Generator, init: str):
        """``rng``: the numpy Generator the layer draws its initial weights from; ``init``
        one of spec.INITS."""
        std = {"normal": 1.0, "scaled": 1.0 / math.sqrt(n_in), "network3": math.sqrt(1.0 / n_out)}[init]
        self.w = nnx.Param(_normal(rng, (n_out, n_in), std))  # (out, in)
        self.b = nnx.Param(_normal(rng, (n_out,), 1.0))
        self.activation_fn = activation_fn
        self.p_dropout = float(p_dropout)

    def weighted_input(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """The weighted input ``z``, with dropout when ``key`` is given.

        Args:
          x: (batch, n_in) float32, or conv maps (batch, H, W, C) with H*W*C == n_in.
          key: a PRNG key for the dropout mask (training); None evaluates, scaling
            the weighted inputs by (1 - p_dropout) as network3 does.

        Returns:
          (batch, n_out) float32.
        """
        if x.ndim == 4:
            x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)  # network3's (C, H, W) order
        w, b, p = self.w[...], self.b[...][None, :], self.p_dropout
        if p == 0.0:
            return dense(x, w) + b
        if key is None:
            return (1.0 - p) * dense(x, w) + b
        keep = jax.random.bernoulli(key, 1.0 - p, x.shape)
        return dense(x * keep, w) + b  # no rescaling, as network3

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        return FUNCTIONS[self.activation_fn](self.weighted_input(x, key))


class SoftmaxLayer(FullyConnectedLayer):
    """network3's output layer: starts at zero; its activation is the softmax."""

    def __init__(self, n_in: int, n_out: int, p_dropout: float = 0.0, *, rng: np.random.Generator, init: str):
        del rng, init
        self.w = nnx.Param(jnp.asarray(np.zeros((n_out, n_in), np.float32)))
        self.b = nnx.Param(jnp.asarray(np.zeros((n_out,), np.float32)))
        self.activation_fn = SOFTMAX
        self.p_dropout = float(p_dropout)


class ConvPoolLayer(nnx.Module):
    """Valid convolution, max-pooling, THEN bias and activation, as network3.

    ``formulation`` (nn3.engine.conv's "fused", "im2col" or "xla"; None: the backend's choice)
    is a static attribute: part of the graph that jit-compiled steps key on.
    """

    def __init__(self, filter_shape: Sequence[int], image_shape: Sequence[int], poolsize: Sequence[int] = (2, 2),
                 activation_fn: str = "sigmoid", *, rng: np.random.Generator, init: str,
                 formulation: str | None = None):
        nf, _, fh, fw = filter_shape
        n_out = nf * fh * fw / math.prod(poolsize)
        std = {"normal": 1.0, "scaled": 1.0 / math.sqrt(math.prod(filter_shape[1:])),
               "network3": math.sqrt(1.0 / n_out)}[init]
        self.w = nnx.Param(_normal(rng, tuple(filter_shape), std))
        self.b = nnx.Param(_normal(rng, (nf,), 1.0))
        self.image_shape = tuple(image_shape)
        self.poolsize = tuple(poolsize)
        self.activation_fn = activation_fn
        self.formulation = conv.resolve(formulation)

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """(batch, H', W', n_filters) float32 for (batch, H, W, C) maps or (batch, C*H*W) rows."""
        del key  # network3 applies no dropout in conv layers
        if x.ndim == 2:
            _, c, h, w = self.image_shape
            x = x.reshape(x.shape[0], c, h, w).transpose(0, 2, 3, 1)  # NCHW rows -> NHWC
        pooled = conv.conv_pool(x, self.w[...], self.poolsize, self.formulation)  # (batch, H', W', n_filters)
        return FUNCTIONS[self.activation_fn](pooled + self.b[...][None, None, None, :])


# One class for each of spec.LAYER_TYPES.
CLASSES = {"FullyConnectedLayer": FullyConnectedLayer, "ConvPoolLayer": ConvPoolLayer, "SoftmaxLayer": SoftmaxLayer}


class Network(nnx.Module):
    """A stack of the book's layers, built from a spec.

    ``formulation`` picks the conv layers' formulation (None: the backend's choice); it
    is no part of the spec: the same spec trains and replays on any backend.
    """

    def __init__(self, spec: dict, *, seed: int = 0, init: str | None = None, formulation: str | None = None):
        spec = validate(spec)
        init = init or ("scaled" if is_mlp(spec) else "network3")
        if init not in INITS:
            raise ValueError(f"unknown initialisation {init!r} (known: {', '.join(INITS)})")
        made = []
        for i, layer in enumerate(spec["layers"]):
            args = {k: v for k, v in layer.items() if k != "type"}
            cls = CLASSES[layer["type"]]
            if cls is ConvPoolLayer:
                args["formulation"] = formulation
            # Layer i's weights then biases come from its own stream of (seed, i).
            made.append(cls(**args, rng=np.random.default_rng([seed, i]), init=init))
        self.layers = nnx.List(made)
        self.spec_json = json.dumps(spec, sort_keys=True)
        self.n_in = input_size(spec)
        self.n_out = spec["layers"][-1]["n_out"]

    @property
    def spec(self) -> dict:
        """The validated spec the network was built from (a fresh copy)."""
        return json.loads(self.spec_json)

    def logits(self, x: jax.Array | np.ndarray, key: jax.Array | None = None) -> jax.Array:
        """The output layer's weighted input ``z``.

        Args:
          x: (batch, n_in) float32.
          key: a PRNG key that switches on dropout (training); layer ``i`` draws from
            ``fold_in(key, i)``. None: evaluation.

        Returns:
          (batch, n_out) float32.

        Raises:
          ValueError: ``x`` is not (batch, n_in).
        """
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"network input: expected (batch, {self.n_in}), got {tuple(x.shape)}")
        with backend.precision():  # full float32 on a GPU too (nn3.engine.backend)
            for i, layer in enumerate(self.layers[:-1]):
                x = layer(x, None if key is None else jax.random.fold_in(key, i))
            last = self.layers[-1]
            return last.weighted_input(x, None if key is None else jax.random.fold_in(key, len(self.layers) - 1))

    def __call__(self, x: jax.Array | np.ndarray, key: jax.Array | None = None) -> jax.Array:
        """The output activations (batch, n_out) float32: ``logits`` through the last layer's activation."""
        z = self.logits(x, key)
        last = self.layers[-1]
        return FUNCTIONS[last.activation_fn](z)

    @property
    def output_activation(self) -> str:
        """The output layer's activation: "softmax" for a SoftmaxLayer."""
        return self.layers[-1].activation_fn


def build(spec: dict, seed: int = 0, init: str | None = None, formulation: str | None = None) -> Network:
    """A freshly initialised network for ``spec``.

    Args:
      spec: a network spec (nn3.engine.spec; validated here).
      seed: layer ``i``'s weights, then biases, are drawn from numpy's generator
        seeded with ``[seed, i]``.
      init: "normal", "scaled" or "network3" (spec.INITS); None: "scaled" for a
        sigmoid MLP, "network3" otherwise.
      formulation: the conv layers' (nn3.engine.conv); None takes the backend's choice.

    Returns:
      The network, its parameters float32 in the layouts above.
    """
    return Network(spec, seed=seed, init=init, formulation=formulation)


def get_params(net: Network) -> list[dict[str, np.ndarray]]:
    """The parameters as numpy copies.

    Returns:
      One ``{"w", "b"}`` dict of float32 arrays per layer: ``w`` (n_out, n_in) or
      (n_filters, n_in_maps, h, w), ``b`` (n_out,) or (n_filters,).
    """
    return [{"w": np.asarray(layer.w[...]), "b": np.asarray(layer.b[...])} for layer in net.layers]


def set_params(net: Network, params: Sequence[Mapping[str, Any]]) -> None:
    """Fill ``net`` from a params list.

    Args:
      net: the network to fill, in place.
      params: one ``{"w", "b"}`` mapping of arrays per layer, ``get_params``' shapes
        exactly; the values are cast to float32.

    Raises:
      ValueError: the number of layers or a shape differs.
    """
    if len(params) != len(net.layers):
        raise ValueError(f"params: {len(params)} layers given, the network has {len(net.layers)}")
    for i, (layer, p) in enumerate(zip(net.layers, params)):
        for name in ("w", "b"):
            old = getattr(layer, name)
            new = jnp.asarray(p[name], jnp.float32)
            if new.shape != old.shape:
                raise ValueError(f"params: layers[{i}].{name} has shape {new.shape}, expected {old.shape}")
            old[...] = new
