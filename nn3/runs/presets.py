"""The book's experiments by name, with the settings it used and the result it reported.

    >>> from nn3.runs import presets
    >>> p = presets.get("dbl_conv_relu")
    >>> p.sgd["eta"], p.sgd["lmbda"], p.book
    (0.03, 0.1, '99.23% test')

    >>> presets.for_network(presets.get("ch1").spec)[0]     # an imported net's settings
    'ch1'

A preset is data: a network spec, the ``SGDConfig`` fields, the initialisation and
which of the book's programs it comes from (``style``), which decides what a run
prints. ``nn3 train NAME`` starts one; its flags override the fields.
"""
from __future__ import annotations

import dataclasses

from nn3.engine.spec import mlp_spec

__all__ = ["PRESETS", "Preset", "data_words", "for_network", "get", "table", "with_mini_batch"]


@dataclasses.dataclass(frozen=True)
class Preset:
    """One of the book's experiments: its network, how it trains, and what the book got."""

    name: str
    style: str            # "network" | "network2" | "network3": whose lines a run prints
    spec: dict
    init: str
    sgd: dict             # SGDConfig fields
    book: str             # the book's figure for it
    about: str


def _conv(nf: int, cin: int, side: int, act: str, mb: int = 10) -> dict:
    return {"type": "ConvPoolLayer", "filter_shape": [nf, cin, 5, 5], "image_shape": [mb, cin, side, side],
            "poolsize": [2, 2], "activation_fn": act}


def _fc(n_in: int, n_out: int, act: str, p: float = 0.0) -> dict:
    return {"type": "FullyConnectedLayer", "n_in": n_in, "n_out": n_out, "activation_fn": act, "p_dropout": p}


def _softmax(n_in: int, p: float = 0.0) -> dict:
    return {"type": "SoftmaxLayer", "n_in": n_in, "n_out": 10, "p_dropout": p}


def _net3(layers: list[dict]) -> dict:
    return {"layers": layers, "cost": "LogLikelihoodCost"}


_N3 = {"mini_batch_size": 10, "l2": "batch", "shuffle": False, "drop_remainder": True}


def _dbl(act: str, fc: list[dict]) -> list[dict]:
    return [_conv(20, 1, 28, act), _conv(40, 20, 12, act)] + fc


def _dropout_net() -> dict:
    return _net3(_dbl("ReLU", [_fc(640, 1000, "ReLU", 0.5), _fc(1000, 1000, "ReLU", 0.5), _softmax(1000, 0.5)]))


PRESETS = {p.name: p for p in [
    Preset("ch1", "network", mlp_spec([784, 30, 10], "QuadraticCost"), "normal",
           {"epochs": 30, "mini_batch_size": 10, "eta": 3.0}, "95.42% test (best of 3)",
           "chapter 1: [784, 30, 10] sigmoid, quadratic cost, eta 3.0"),
    Preset("ch1_100", "network", mlp_spec([784, 100, 10], "QuadraticCost"), "normal",
           {"epochs": 30, "mini_batch_size": 10, "eta": 3.0}, "96.59% test",
           "chapter 1: [784, 100, 10]"),
    Preset("ch3", "network2", mlp_spec([784, 30, 10], "CrossEntropyCost"), "scaled",
           {"epochs": 30, "mini_batch_size": 10, "eta": 0.5, "lmbda": 5.0}, "96.49% test",
           "chapter 3: [784, 30, 10], cross-entropy, L2 lmbda 5.0, eta 0.5"),
    Preset("ch3_100", "network2", mlp_spec([784, 100, 10], "CrossEntropyCost"), "scaled",
           {"epochs": 30, "mini_batch_size": 10, "eta": 0.5, "lmbda": 5.0}, "97.92% validation",
           "chapter 3: [784, 100, 10], cross-entropy, L2 lmbda 5.0, eta 0.5"),
    Preset("ch3_large_init", "network2", mlp_spec([784, 30, 10], "CrossEntropyCost"), "normal",
           {"epochs": 30, "mini_batch_size": 10, "eta": 0.5}, "95.49% test",
           "chapter 3: [784, 30, 10], cross-entropy, the large (chapter-1) initialisation, eta 0.5"),
    Preset("ch3_large_init_100", "network2", mlp_spec([784, 100, 10], "CrossEntropyCost"), "normal",
           {"epochs": 30, "mini_batch_size": 10, "eta": 0.5}, "96.82% test",
           "chapter 3: [784, 100, 10], cross-entropy, the large initialisation, eta 0.5"),
    Preset("ch3_100_60", "network2", mlp_spec([784, 100, 10], "CrossEntropyCost"), "scaled",
           {"epochs": 60, "mini_batch_size": 10, "eta": 0.1, "lmbda": 5.0}, "98.04% validation",
           "chapter 3: [784, 100, 10], cross-entropy, L2 lmbda 5.0, eta 0.1, 60 epochs"),
    Preset("shallow", "network3", _net3([_fc(784, 100, "sigmoid"), _softmax(100)]), "network3",
           {**_N3, "epochs": 60, "eta": 0.1}, "97.80% test", "chapter 6: FC 100 sigmoid + softmax"),
    Preset("basic_conv", "network3",
           _net3([_conv(20, 1, 28, "sigmoid"), _fc(2880, 100, "sigmoid"), _softmax(100)]), "network3",
           {**_N3, "epochs": 60, "eta": 0.1}, "98.78% test", "chapter 6: ConvPool 20x5x5 + FC 100 + softmax"),
    Preset("omit_fc", "network3", _net3([_conv(20, 1, 28, "sigmoid"), _softmax(2880)]), "network3",
           {**_N3, "epochs": 60, "eta": 0.1}, "(not in the table)", "chapter 6: ConvPool + softmax"),
    Preset("dbl_conv", "network3", _net3(_dbl("sigmoid", [_fc(640, 100, "sigmoid"), _softmax(100)])),
           "network3", {**_N3, "epochs": 60, "eta": 0.1}, "99.06% test", "chapter 6: two ConvPool + FC 100"),
    Preset("dbl_conv_relu", "network3", _net3(_dbl("ReLU", [_fc(640, 100, "ReLU"), _softmax(100)])),
           "network3", {**_N3, "epochs": 60, "eta": 0.03, "lmbda": 0.1}, "99.23% test",
           "chapter 6: two ConvPool ReLU + FC 100, eta 0.03, lmbda 0.1"),
    Preset("expanded", "network3", _net3(_dbl("ReLU", [_fc(640, 100, "ReLU"), _softmax(100)])),
           "network3", {**_N3, "epochs": 60, "eta": 0.03, "lmbda": 0.1, "augment": "expand"}, "99.37% test",
           "chapter 6: dbl_conv_relu on the expanded data, made on the fly"),
    Preset("expanded_300", "network3", _net3(_dbl("ReLU", [_fc(640, 300, "ReLU"), _softmax(300)])),
           "network3", {**_N3, "epochs": 60, "eta": 0.03, "lmbda": 0.1, "augment": "expand"}, "99.46% test",
           "chapter 6: expanded, FC 300"),
    Preset("expanded_1000", "network3", _net3(_dbl("ReLU", [_fc(640, 1000, "ReLU"), _softmax(1000)])),
           "network3", {**_N3, "epochs": 60, "eta": 0.03, "lmbda": 0.1, "augment": "expand"}, "99.43% test",
           "chapter 6: expanded, FC 1000"),
    Preset("expanded_double_fc", "network3",
           _net3(_dbl("ReLU", [_fc(640, 100, "ReLU"), _fc(100, 100, "ReLU"), _softmax(100)])),
           "network3", {**_N3, "epochs": 60, "eta": 0.03, "lmbda": 0.1, "augment": "expand"}, "99.43% test",
           "chapter 6: expanded, two FC layers of 100"),
    Preset("dropout", "network3", _dropout_net(), "network3",
           {**_N3, "epochs": 40, "eta": 0.03, "augment": "expand"}, "99.60% test",
           "chapter 6: FC 1000 + FC 1000 with dropout 0.5, expanded data, 40 epochs"),
    # Past the book (``nn3 book --beyond``): what the book itself suggests next. The same
    # dropout net; eta halved after 10 epochs without a new best validation accuracy,
    # stopping at eta/128 (chapter 3's schedule), so ``epochs`` is a ceiling.
    Preset("dropout_plateau", "network3", _dropout_net(), "network3",
           {**_N3, "epochs": 60, "eta": 0.03, "augment": "expand", "schedule": "plateau"},
           "(past the book)",
           "past the book: dropout on the expanded data with eta halved on a plateau, up to 60 epochs"),
    # nn3's ``affine``: each epoch's 50,000 images freshly rotated (up to 10 degrees),
    # skewed and shifted (up to 2 pixels, which covers the book's 1-pixel expansion); 200
    # such epochs see as many images as the book's 40 expanded ones.
    Preset("beyond", "network3", _dropout_net(), "network3",
           {**_N3, "epochs": 200, "eta": 0.03, "augment": "affine", "schedule": "plateau"},
           "(aims at 99.65% test)",
           "past the book: dropout net, random rotations/skews/shifts on the fly, eta halved on a plateau"),
]}


def get(name: str) -> Preset:
    """The preset called ``name``; a ValueError lists the known ones."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})") from None


def with_mini_batch(spec: dict, mini_batch_size: int) -> dict:
    """``spec`` with every conv layer's image_shape carrying ``mini_batch_size`` (network3's habit)."""
    layers = [dict(layer, image_shape=[mini_batch_size] + list(layer["image_shape"][1:]))
              if layer["type"] == "ConvPoolLayer" else dict(layer) for layer in spec["layers"]]
    return {**spec, "layers": layers}


def _same_network(a: dict, b: dict) -> bool:
    return with_mini_batch(a, 1) == with_mini_batch(b, 1)


def for_network(spec: dict) -> tuple[str, dict, str]:
    """How to train a network that came from elsewhere (``nn3 import``): (preset, overrides, why).

    The first preset whose network ``spec`` is (the mini-batch size in conv image shapes
    aside) gives its settings. Otherwise the book's plain settings for the program the
    net belongs to, with no regularisation or augmentation: network.py's for a
    quadratic-cost MLP (ch1), network2.py's for a cross-entropy one (ch3 without L2),
    network3.py's for a log-likelihood one (shallow).
    """
    match = next((p for p in PRESETS.values() if _same_network(p.spec, spec)), None)
    if match is not None:
        return match.name, {}, f"the network of preset {match.name}, so its settings"
    family = {"QuadraticCost": "ch1", "CrossEntropyCost": "ch3"}.get(str(spec.get("cost")), "shallow")
    return family, {"lmbda": 0.0, "augment": "none"}, \
        f"a network no preset has, so {PRESETS[family].style}.py's plain settings ({family}'s without L2)"


def data_words(sgd: dict) -> str:
    """The training data of settings ``sgd`` in words: "mnist, expanded on the fly"."""
    augment = str(sgd.get("augment", "none"))
    return {"none": "mnist", "expand": "mnist, expanded on the fly", "affine": "mnist, affine on the fly"}.get(
        augment, augment)


def table() -> list[str]:
    """``nn3 presets``: one line per preset with what training it uses (epochs, eta, lmbda, data)."""
    head = f"{'name':19s} {'epochs':>6s} {'eta':>5s} {'lmbda':>5s}  {'data':26s} {'book':24s} about"
    rows = [f"{p.name:19s} {p.sgd['epochs']:6d} {p.sgd['eta']:5g} {p.sgd.get('lmbda', 0.0):5g}  "
            f"{data_words(p.sgd):26s} {p.book:24s} {p.about}" for p in PRESETS.values()]
    return [head] + rows
