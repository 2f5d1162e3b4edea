"""What the page of a run shows, as JSON-able dicts: settings, network, curves, errors, filters, a drawn digit.

    >>> from nn3.serve.runview import RunView
    >>> view = RunView("checkpoints/demo")                 # doctest: +SKIP
    >>> view.summary()["layers"][0]["params"]              # doctest: +SKIP
    >>> view.wrong("best")["accuracy"]                     # doctest: +SKIP
    >>> view.draw("latest", ink)["prediction"]             # doctest: +SKIP
    >>> RunView("checkpoints/many").wrong("best", member=2)  # doctest: +SKIP

A member run (nn3 train --members) shows its curves per member and the vote; what is
shown at a checkpoint (errors, filters, a drawing) is one member's network, ``member`` K
(0 unless asked), and its answers name the member and its seed.

The network of a chosen step is rebuilt through nn3's replay path (``inspect.restore``);
accuracy and the predicted classes come from ``evaluation.evaluate`` and ``evaluation.predict``,
so the page shows the numbers ``nn3 replay`` prints. A restored network is kept per
(run, step) with its output function compiled on first load, so a drawn digit costs one
small forward pass. Images travel as base64 bytes (0-255 over a stated range), drawn by
the page onto canvases.
"""
from __future__ import annotations

import base64
import math
import os
import pathlib
import threading
from collections import OrderedDict
from functools import partial
from typing import Any

import jax
import numpy as np
from flax import nnx

from nn3.engine import evaluation
from nn3.engine.spec import forward_macs, output_shape, param_shapes
from nn3.runs import checkpoint, inspect
from nn3.runs import config as run_config
from nn3.serve import digits
from nn3.store import metrics
from nn3.store.rundir import RunDir

__all__ = ["KEPT_MODELS", "SHOWN_UNITS", "SHOWN_WRONG", "Model", "NotFound", "RunView", "clean", "network_summary",
           "pack"]

SHOWN_WRONG = 120   # misclassified digits sent to the page (the count says how many there are)
SHOWN_UNITS = 40    # first-layer units of a fully connected net drawn as 28x28 weight images
KEPT_MODELS = 8     # restored networks kept warm, all runs together


class NotFound(LookupError):
    """A step, digit or run the request names does not exist; the message says which."""


@partial(jax.jit, static_argnames=("graphdef",))
def _outputs(state: nnx.State, x: np.ndarray, *, graphdef: nnx.GraphDef) -> jax.Array:
    """The output layer's activations (batch, n_out): softmax probabilities, or sigmoids."""
    return nnx.merge(graphdef, state)(x)


@partial(jax.jit, static_argnames=("graphdef",))
def _first_maps(state: nnx.State, x: np.ndarray, *, graphdef: nnx.GraphDef) -> jax.Array:
    """The first conv layer's pooled, activated output (batch, H', W', n_filters)."""
    return nnx.merge(graphdef, state).layers[0](x)


def pack(a: np.ndarray, lo: float | None = None, hi: float | None = None) -> dict:
    """An array as 0-255 bytes over [lo, hi] (default: its own range), base64, with its shape."""
    a = np.asarray(a, np.float32)
    lo = float(a.min()) if lo is None else float(lo)
    hi = float(a.max()) if hi is None else float(hi)
    scaled = np.zeros(a.shape) if hi <= lo else (a - lo) / (hi - lo)
    data = np.round(np.clip(scaled, 0, 1) * 255).astype(np.uint8)
    return {"shape": list(a.shape), "lo": lo, "hi": hi, "data": base64.b64encode(data.tobytes()).decode()}


def network_summary(spec: dict) -> list[dict]:
    """One row per layer: type, activation, input and output shapes, parameter count."""
    rows = []
    for layer in spec["layers"]:
        if layer["type"] == "ConvPoolLayer":
            nf, _, fh, fw = layer["filter_shape"]
            _, c, h, w = layer["image_shape"]
            oc, oh, ow = output_shape(layer)
            rows.append({"type": layer["type"], "activation": layer.get("activation_fn", "sigmoid"),
                         "detail": f"{nf} filters {fh}x{fw}, pool {'x'.join(map(str, layer.get('poolsize', (2, 2))))}",
                         "input": [c, h, w], "output": [oc, oh, ow], "params": _count(layer)})
        else:
            act = "softmax" if layer["type"] == "SoftmaxLayer" else layer.get("activation_fn", "sigmoid")
            p = layer.get("p_dropout", 0.0)
            rows.append({"type": layer["type"], "activation": act, "detail": f"dropout {p}" if p else "",
                         "input": [layer["n_in"]], "output": [layer["n_out"]], "params": _count(layer)})
    return rows


def _count(layer: dict) -> int:
    return sum(math.prod(shape) for shape in param_shapes(layer))


class Model:
    """A run's network at one step, restored through inspect.restore, its forward passes compiled."""

    def __init__(self, path: pathlib.Path, step: int, member: int | None = None):
        """Restore the network of ``path`` at ``step`` (of a member run, member ``member``) and compile it."""
        run = RunDir.open(path, read_only=True)
        try:
            got = inspect.restore(run, step=step)
        finally:
            run.close()
        self.step, self.info = got.step, got.info
        self.net, self.loop = got.nets[member or 0], got.state.loops[member or 0]
        if member is not None:  # a member run: member K's network, loop and recorded accuracies
            self.info = (self.info.get("members") or [{}] * (member + 1))[member] or {}
        self.graphdef, self.state = nnx.split(self.net)
        self.is_conv = hasattr(self.net.layers[0], "poolsize")
        self.softmax = self.net.output_activation == "softmax"
        self.wrong: dict | None = None  # filled by RunView.wrong, once
        self.lock = threading.Lock()
        self.look(np.zeros(self.net.n_in, np.float32))  # compile now, not on the first stroke

    def look(self, x: np.ndarray) -> dict:
        """Outputs, prediction and (conv nets) first-layer feature maps for one input (n_in,)."""
        x = np.asarray(x, np.float32).reshape(1, -1)
        out = np.asarray(_outputs(self.state, x, graphdef=self.graphdef))[0]
        # The net's prediction is the argmax of these same outputs: no second forward pass.
        got = {"outputs": [float(v) for v in out], "prediction": int(np.argmax(out)),
               "softmax": self.softmax}
        if self.is_conv:
            maps = np.asarray(_first_maps(self.state, x, graphdef=self.graphdef))[0]
            maps = maps.transpose(2, 0, 1)  # (n_filters, H', W')
            # Each map on its own scale: a filter's bias shifts its whole map, which would hide its shape.
            lo, hi = maps.min(axis=(1, 2), keepdims=True), maps.max(axis=(1, 2), keepdims=True)
            got["maps"] = pack((maps - lo) / np.where(hi > lo, hi - lo, 1.0), 0, 1)
        return got


class RunView:
    """One served run: reads its directory on each call, restores networks through a shared cache."""

    # (path, step, member) -> Model, least recently used first
    _models: OrderedDict[tuple[str, int, int | None], Model] = OrderedDict()
    _models_lock = threading.Lock()

    def __init__(self, path: str | os.PathLike[str]):
        """The run at ``path``; its config.json is read now (a RunDirError if it cannot be)."""
        self.path = pathlib.Path(path)
        self.config = RunDir.read_config(self.path)
        self.seeds = run_config.member_seeds(self.config)  # None for a lone run
        self._test: tuple[np.ndarray, np.ndarray] | None = None

    def _member(self, member: int | None) -> int | None:
        """The member index to show (None for a lone run); a member run's default is member 0."""
        if self.seeds is None:
            if member is not None:
                raise NotFound(f"{self.path.name}: a run of one network has no members")
            return None
        member = 0 if member is None else member
        if not 0 <= member < len(self.seeds):
            raise NotFound(f"{self.path.name}: no member {member} (a run of {len(self.seeds)} members: "
                           f"0 to {len(self.seeds) - 1})")
        return member

    def _named(self, member: int | None) -> dict:
        """The fields that say which member an answer is about (none for a lone run)."""
        if member is None or self.seeds is None:
            return {}
        return {"member": member, "seed": self.seeds[member]}

    def summary(self) -> dict:
        """The run's settings and network: what the top of its page shows."""
        c = self.config
        rows = network_summary(c["spec"])
        return {"path": str(self.path), "preset": c.get("preset"), "dataset": c.get("dataset", "mnist"),
                "limit": c.get("limit"), "init": c.get("init"), "cost": c["spec"]["cost"], "sgd": c.get("sgd", {}),
                "imported_from": c.get("imported_from"), "layers": rows,
                "params": sum(r["params"] for r in rows), "macs": forward_macs(c["spec"]),
                **({} if self.seeds is None else {"members": self.config["members"]})}

    def progress(self) -> dict:
        """metrics.jsonl's records and the saved steps, as they are now (the run may be training)."""
        run = RunDir.open(self.path, read_only=True)
        try:
            return {"records": metrics.read(self.path), "steps": run.steps(), "best": run.best_step(),
                    "epochs": self.config.get("sgd", {}).get("epochs")}
        finally:
            run.close()

    def model(self, which: str | int, member: int | None = None) -> Model:
        """The network at ``which``: "best", "latest" or a saved step (an int); of a member run, member K's."""
        member = self._member(member)
        step: int | None
        run = RunDir.open(self.path, read_only=True)
        try:
            steps = run.steps()
            if which == "best":
                step = run.best_step()
            elif which == "latest":
                step = steps[-1] if steps else None
            else:
                step = which if isinstance(which, int) else None
        finally:
            run.close()
        if not steps:
            raise NotFound(f"{self.path.name}: no checkpoint saved yet")
        if step is None and which == "best":
            step = steps[-1]  # no validation accuracy recorded: the newest stands in
        if step is None or step not in steps:
            raise NotFound(f"{self.path.name}: no checkpoint at step {which} (saved: {', '.join(map(str, steps))})")
        key = (str(self.path.resolve()), step, member)
        with self._models_lock:  # one load per key; loads are rare, draws never wait here long
            model = self._models.pop(key, None)
            if model is None:
                model = Model(self.path, step, member)
            self._models[key] = model
            while len(self._models) > KEPT_MODELS:
                self._models.popitem(last=False)
        return model

    def test_data(self) -> tuple[np.ndarray, np.ndarray]:
        """The run's test split (x float32 (N, n_in), y int32 (N,)), loaded once."""
        if self._test is None:
            x, y = evaluation.as_arrays(run_config.load_splits(self.config)[2])
            self._test = (x, y)
        return self._test

    def wrong(self, which: str | int, member: int | None = None) -> dict:
        """The test digits the network at ``which`` gets wrong, with labels and predictions."""
        member = self._member(member)
        model = self.model(which, member)
        with model.lock:
            if model.wrong is None:
                x, y = self.test_data()
                right, _, n = evaluation.evaluate(model.net, (x, y))  # replay's numbers
                pred = evaluation.predict(model.net, x)
                idx = np.flatnonzero(pred != y)
                model.wrong = {"step": model.step, "position": checkpoint.position(model.loop),
                               "correct": right, "n": n,
                               "accuracy": right / n, "recorded": model.info.get("test_accuracy"),
                               "count": int(len(idx)),
                               "index": idx[:SHOWN_WRONG].tolist(), "label": y[idx[:SHOWN_WRONG]].tolist(),
                               "prediction": pred[idx[:SHOWN_WRONG]].tolist(),
                               "images": pack(x[idx[:SHOWN_WRONG]].reshape(-1, 28, 28), 0, 1),
                               **self._named(member)}
        return model.wrong

    def digit(self, which: str | int, index: int, member: int | None = None) -> dict:
        """Test digit ``index`` as the network at ``which`` sees it."""
        member = self._member(member)
        x, y = self.test_data()
        if not 0 <= index < len(y):
            raise NotFound(f"no test digit {index} (the run's test set has {len(y)})")
        model = self.model(which, member)
        return {"step": model.step, **self._named(member), "index": index, "label": int(y[index]),
                "image": pack(x[index].reshape(28, 28), 0, 1), **model.look(x[index])}

    def filters(self, which: str | int, member: int | None = None) -> dict:
        """The first layer's weights as images: conv filters, or a fully connected unit's 28x28 weights."""
        member = self._member(member)
        model = self.model(which, member)
        w = np.asarray(model.net.layers[0].w[...])
        if model.is_conv:
            images, kind = w[:, 0], "filters"  # (n_filters, h, w), first input map
        elif w.shape[1] == 784:
            images, kind = w[:SHOWN_UNITS].reshape(-1, 28, 28), "units"
        else:
            return {"step": model.step, **self._named(member), "kind": "none", "count": 0}
        m = float(np.abs(images).max()) or 1.0
        return {"step": model.step, **self._named(member), "kind": kind, "count": int(len(w)),
                "images": pack(images, -m, m)}

    def draw(self, which: str | int, ink: np.ndarray, member: int | None = None) -> dict:
        """A drawing (H, W) in [0, 1] made MNIST-style, and what the network at ``which`` says of it."""
        member = self._member(member)
        model = self.model(which, member)
        if model.net.n_in != digits.SIDE * digits.SIDE:
            raise ValueError(f"the network takes {model.net.n_in} inputs, not a {digits.SIDE}x{digits.SIDE} digit")
        x = digits.mnist_style(ink)
        return {"step": model.step, **self._named(member), "input": pack(x.reshape(28, 28), 0, 1), **model.look(x)}


def clean(value: Any) -> Any:
    """JSON has no NaN or infinity: a diverged run's costs go out as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value
