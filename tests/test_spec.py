"""Tests for nn3.engine.spec: validation, shapes, multiply-adds, the registries, and starting without JAX.

    .venv/bin/python -m pytest tests/test_spec.py -q
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nn3.runs import presets
from nn3.engine import spec
from nn3.engine.spec import SpecError, mlp_spec, validate

ROOT = Path(__file__).resolve().parent.parent

DBL_CONV = {  # chapter 6's double conv net, as network3 writes it
    "layers": [
        {"type": "ConvPoolLayer", "filter_shape": [20, 1, 5, 5], "image_shape": [10, 1, 28, 28],
         "poolsize": [2, 2], "activation_fn": "ReLU"},
        {"type": "ConvPoolLayer", "filter_shape": [40, 20, 5, 5], "image_shape": [10, 20, 12, 12],
         "poolsize": [2, 2], "activation_fn": "ReLU"},
        {"type": "FullyConnectedLayer", "n_in": 640, "n_out": 100, "activation_fn": "ReLU", "p_dropout": 0.0},
        {"type": "SoftmaxLayer", "n_in": 100, "n_out": 10, "p_dropout": 0.0},
    ],
    "cost": "LogLikelihoodCost",
}


def _fc(n_in, n_out, act="sigmoid", p=0.0):
    return {"type": "FullyConnectedLayer", "n_in": n_in, "n_out": n_out, "activation_fn": act, "p_dropout": p}


def _edit(base, path, value):
    out = copy.deepcopy(base)
    target = out
    for k in path[:-1]:
        target = target[k]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


# --------------------------------------------------------------------------- validation

BAD = {  # case: (spec, the one line's path and words)
    "sizes do not chain": (_edit(mlp_spec([6, 5, 3]), ["layers", 1, "n_in"], 6),
                           "layers[1].n_in: 6 does not match the 5 outputs"),
    "conv image does not match": (_edit(DBL_CONV, ["layers", 1, "image_shape"], [10, 20, 24, 24]),
                                  "layers[1].image_shape: [20, 24, 24] does not match the output [20, 12, 12]"),
    "fc width after convs": (_edit(DBL_CONV, ["layers", 2, "n_in"], 2880),
                             "layers[2].n_in: 2880 does not match the 640 outputs [40, 4, 4]"),
    "softmax not last": ({"layers": [{"type": "SoftmaxLayer", "n_in": 6, "n_out": 5, "p_dropout": 0.0}, _fc(5, 3)],
                          "cost": "QuadraticCost"}, "layers[0].type: a SoftmaxLayer must be the last layer"),
    "unknown activation": (_edit(mlp_spec([6, 5, 3]), ["layers", 0, "activation_fn"], "relu"),  # the book: ReLU
                           "layers[0].activation_fn: unknown activation 'relu'"),
    "cross-entropy with softmax": ({"layers": [{"type": "SoftmaxLayer", "n_in": 6, "n_out": 3, "p_dropout": 0.0}],
                                    "cost": "CrossEntropyCost"}, "cost: CrossEntropyCost does not fit a softmax"),
    "log-likelihood with sigmoid": ({"layers": [_fc(6, 3)], "cost": "LogLikelihoodCost"},
                                    "cost: LogLikelihoodCost does not fit a sigmoid"),
    "unknown cost": (_edit(mlp_spec([6, 3]), ["cost"], "HingeCost"), "cost: unknown cost 'HingeCost'"),
    "unknown layer": ({"layers": [{"type": "LSTM"}], "cost": "QuadraticCost"},
                      "layers[0].type: unknown layer type 'LSTM'"),
    "p_dropout 1": ({"layers": [_fc(6, 3, p=1.0)], "cost": "QuadraticCost"},
                    "layers[0].p_dropout: must be in [0, 1), got 1.0"),
    "no layers": ({"layers": [], "cost": "QuadraticCost"}, "layers: expected a list of 1 to 256 layers"),
    "conv last": ({"layers": DBL_CONV["layers"][:1], "cost": "QuadraticCost"},
                  "layers[0].type: a ConvPoolLayer cannot be the output layer"),
    "a key left out": (_edit(mlp_spec([6, 3]), ["layers", 0, "p_dropout"], KeyError),
                       "layers[0]: missing key 'p_dropout'"),
    "a key too many": (_edit(mlp_spec([6, 3]), ["layers", 0, "bias"], True), "layers[0]: unknown key 'bias'"),
    "a bool for a size": (_edit(mlp_spec([6, 3]), ["layers", 0, "n_out"], True),
                          "layers[0].n_out: expected an int, got true (bool)"),
    "a float for a size": (_edit(mlp_spec([6, 3]), ["layers", 0, "n_out"], 3.0),
                           "layers[0].n_out: expected an int, got 3.0 (float)"),
    "two mini-batches": (_edit(DBL_CONV, ["layers", 1, "image_shape", 0], 5),
                         "layers[1].image_shape[0]: mini-batch 5 differs from 10"),
    "filter maps": (_edit(DBL_CONV, ["layers", 1, "filter_shape", 1], 3),
                    "layers[1].filter_shape[1]: 3 input maps, image_shape[1] is 20"),
    "pool too big": (_edit(DBL_CONV, ["layers", 0, "poolsize"], [30, 2]),
                     "layers[0].poolsize[0]: filter 5 and pool 30 do not fit in 28"),
    "too many parameters": ({"layers": [_fc(1 << 15, 1 << 14)], "cost": "QuadraticCost"},
                            f"layers: {(1 << 29) + (1 << 14)} parameters, more than the limit {1 << 28}"),
    "not a dict": ([1, 2], "expected an object, got a list of 2"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_spec_is_one_line_naming_the_source_and_the_key(case):
    bad, words = BAD[case]
    with pytest.raises(SpecError) as e:
        validate(bad, "cfg.json")
    assert str(e.value).startswith("cfg.json: ") and words in str(e.value), str(e.value)
    assert "\n" not in str(e.value) and isinstance(e.value, ValueError)


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_every_preset_is_a_valid_spec_and_comes_back_unchanged(name):
    s = presets.get(name).spec
    assert validate(s) == s


def test_validate_returns_a_clean_copy():
    s = {"layers": ({"type": "FullyConnectedLayer", "n_in": np.int64(3), "n_out": 2, "activation_fn": "tanh",
                     "p_dropout": 0},), "cost": "QuadraticCost"}
    clean = validate(s)
    assert clean == {"layers": [{"type": "FullyConnectedLayer", "n_in": 3, "n_out": 2, "activation_fn": "tanh",
                                 "p_dropout": 0.0}], "cost": "QuadraticCost"}
    assert type(clean["layers"][0]["n_in"]) is int and type(clean["layers"][0]["p_dropout"]) is float
    clean["layers"][0]["n_out"] = 7
    assert s["layers"][0]["n_out"] == 2


def test_extra_layer_keys_are_allowed_when_asked_and_left_out():
    layer = {**_fc(4, 2), "weights": [[0.0] * 2] * 4, "biases": [0.0, 0.0]}
    with pytest.raises(SpecError, match="unknown key 'weights'"):
        validate({"layers": [layer], "cost": "QuadraticCost"})
    clean = validate({"layers": [layer], "cost": "QuadraticCost"}, extra=("weights", "biases"))
    assert clean["layers"] == [_fc(4, 2)]


# --------------------------------------------------------------------------- MLPs


def test_mlp_spec_is_the_books_sigmoid_network():
    s = mlp_spec([784, 30, 10], "QuadraticCost")
    assert s == {"layers": [_fc(784, 30), _fc(30, 10)], "cost": "QuadraticCost"}
    assert spec.is_mlp(s) and spec.mlp_sizes(s) == [784, 30, 10]
    assert not spec.is_mlp(DBL_CONV)
    assert not spec.is_mlp(_edit(s, ["layers", 0, "activation_fn"], "ReLU"))
    assert not spec.is_mlp(_edit(s, ["layers", 0, "p_dropout"], 0.5))
    assert not spec.is_mlp({"nonsense": 1}) and not spec.is_mlp(None) and not spec.is_mlp({"cost": "QuadraticCost"})


@pytest.mark.parametrize("sizes, cost, words", [
    ([3, 0, 2], "CrossEntropyCost", "<mlp_spec>: sizes[1]: must be in [1, 16777216], got 0 (int)"),
    ([3, 2.0], "CrossEntropyCost", "<mlp_spec>: sizes[1]: expected an int, got 2.0 (float)"),
    ([3], "CrossEntropyCost", "<mlp_spec>: sizes: expected a list of 2 to 257 ints, got a list of 1"),
    ([3, 2], "LogLikelihoodCost", "<mlp_spec>: cost: unknown network2 cost 'LogLikelihoodCost'"),
])
def test_mlp_spec_refuses_what_network2_could_not_hold(sizes, cost, words):
    with pytest.raises(SpecError) as e:
        mlp_spec(sizes, cost)
    assert str(e.value).startswith(words)


# --------------------------------------------------------------------------- shapes and work


def test_shapes_follow_the_book():
    conv1, conv2, fc, soft = DBL_CONV["layers"]
    assert spec.output_shape(conv1) == (20, 12, 12) and spec.output_shape(conv2) == (40, 4, 4)  # 28->24->12->8->4
    assert spec.output_shape(fc) == (100,) and spec.output_shape(soft) == (10,)
    assert spec.param_shapes(conv2) == ((40, 20, 5, 5), (40,))
    assert spec.param_shapes(fc) == ((100, 640), (100,))  # nn3's (out, in)
    assert spec.input_size(DBL_CONV) == 784 and spec.input_size(mlp_spec([5, 3])) == 5
    assert spec.output_activation(DBL_CONV) == "softmax" and spec.output_activation(mlp_spec([5, 3])) == "sigmoid"
    odd = _edit(conv1, ["image_shape"], [10, 1, 27, 27])  # 23 after the conv: pooling drops the last row
    assert spec.output_shape(odd) == (20, 11, 11)


def test_forward_macs_counts_conv_before_pooling_and_dense_layers():
    assert spec.forward_macs(mlp_spec([784, 30, 10])) == 784 * 30 + 30 * 10
    assert spec.forward_macs(presets.get("basic_conv").spec) == 20 * 25 * 24 * 24 + 20 * 12 * 12 * 100 + 100 * 10


# --------------------------------------------------------------------------- the registries


def test_registries_hold_the_books_names():
    assert spec.ACTIVATIONS == ("sigmoid", "tanh", "ReLU", "linear")
    assert set(spec.COSTS) == {"QuadraticCost", "CrossEntropyCost", "LogLikelihoodCost"}
    assert set(spec.MLP_COSTS) < set(spec.COSTS)
    assert all(set(outs) <= set(spec.OUTPUT_ACTIVATIONS) for outs in spec.COST_OUTPUTS.values())
    assert spec.LAYER_TYPES == ("FullyConnectedLayer", "ConvPoolLayer", "SoftmaxLayer")


def test_the_jax_modules_have_one_function_or_class_per_name():
    from nn3.engine import activations, costs, layers
    assert set(activations.FUNCTIONS) == set(spec.OUTPUT_ACTIVATIONS)
    assert set(costs.FUNCTIONS) == set(spec.COSTS)
    assert set(layers.CLASSES) == set(spec.LAYER_TYPES)


# --------------------------------------------------------------------------- no JAX


def _no_jax(code: str, tmp_path) -> str:
    """Run ``code`` in a fresh interpreter; it must not have imported JAX, Flax or orbax."""
    check = ("\nimport sys\nheavy = sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib', 'flax', "
             "'orbax'))\nassert not heavy, heavy[:5]\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code + check], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.parametrize("argv", [["presets"], ["--help"], ["--version"], ["train", "--help"]])
def test_the_cli_answers_without_jax(argv, tmp_path):
    out = _no_jax(f"from nn3 import cli\ntry:\n    cli.main({argv!r})\nexcept SystemExit:\n    pass\n", tmp_path)
    assert out.strip()
    if argv == ["presets"]:
        assert "dbl_conv_relu" in out


def test_python_m_nn3_presets_needs_no_jax(tmp_path):
    code = ("import runpy, sys\nsys.argv = ['nn3', 'presets']\n"
            "try:\n    runpy.run_module('nn3', run_name='__main__')\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n")
    assert "ch1" in _no_jax(code, tmp_path)


def test_reading_and_checking_network_files_needs_no_jax(tmp_path):
    from nn3.store import export
    rng = np.random.default_rng(0)
    for name, s in [("mlp.json", mlp_spec([784, 30, 10])), ("conv.json", presets.get("dbl_conv_relu").spec)]:
        params = [{"w": rng.standard_normal(w).astype(np.float32), "b": rng.standard_normal(b).astype(np.float32)}
                  for w, b in map(spec.param_shapes, s["layers"])]
        export.save_json(tmp_path / name, s, params)
    (tmp_path / "cfg.json").write_text(json.dumps(presets.get("dropout").spec), encoding="utf-8")
    out = _no_jax("import json, nn3\nfrom nn3.engine import spec\nfrom nn3.store import export\n"
                  "for f in ('mlp.json', 'conv.json'):\n    s, p, mb, _ = export.load_json(f)\n"
                  "    print(f, len(p), mb, spec.is_mlp(s))\n"
                  "print(spec.validate(json.load(open('cfg.json')), 'cfg.json')['cost'])\n", tmp_path)
    assert out.split() == ["mlp.json", "2", "None", "True", "conv.json", "4", "10", "False", "LogLikelihoodCost"]
