"""Tests for nn3.store.export: round trips, the book's network2 files, a catalogue of bad files, fuzz."""
from __future__ import annotations

import ast
import copy
import json
import os
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nn3.store import export
from nn3.store.export import ExportError
from nn3.engine.spec import ACTIVATIONS, LAYER_ARGS, is_mlp, mlp_spec, validate

CONV_SPEC = {
    "layers": [
        {"type": "ConvPoolLayer", "filter_shape": [20, 1, 5, 5], "image_shape": [10, 1, 28, 28],
         "poolsize": [2, 2], "activation_fn": "ReLU"},
        {"type": "FullyConnectedLayer", "n_in": 2880, "n_out": 100, "activation_fn": "ReLU",
         "p_dropout": 0.5},
        {"type": "SoftmaxLayer", "n_in": 100, "n_out": 10, "p_dropout": 0.0},
    ],
    "cost": "LogLikelihoodCost",
}
SMALL_CONV_SPEC = {  # the same shape of net, small enough to fuzz
    "layers": [
        {"type": "ConvPoolLayer", "filter_shape": [2, 1, 3, 3], "image_shape": [4, 1, 6, 6],
         "poolsize": [2, 2], "activation_fn": "tanh"},
        {"type": "FullyConnectedLayer", "n_in": 8, "n_out": 3, "activation_fn": "sigmoid",
         "p_dropout": 0.25},
        {"type": "SoftmaxLayer", "n_in": 3, "n_out": 2, "p_dropout": 0.0},
    ],
    "cost": "LogLikelihoodCost",
}


def random_params(spec, seed=0):
    """nn3-layout float32 params for a spec, drawn from N(0, 1)."""
    rng = np.random.default_rng(seed)
    out = []
    for layer in spec["layers"]:
        if layer["type"] == "ConvPoolLayer":
            w_shape, b_shape = tuple(layer["filter_shape"]), (layer["filter_shape"][0],)
        else:
            w_shape, b_shape = (layer["n_out"], layer["n_in"]), (layer["n_out"],)
        out.append({"w": rng.standard_normal(w_shape).astype(np.float32),
                    "b": rng.standard_normal(b_shape).astype(np.float32)})
    return out


def book_feedforward(weights, biases, x):
    """network2.py's feedforward: a = sigmoid(w @ a + b) with column vectors, in float64."""
    a = np.asarray(x, np.float64).reshape(-1, 1)
    for w, b in zip(weights, biases):
        a = 1.0 / (1.0 + np.exp(-(np.asarray(w, np.float64) @ a + np.asarray(b, np.float64).reshape(-1, 1))))
    return a


def assert_params_identical(a, b):
    assert len(a) == len(b)
    for pa, pb in zip(a, b):
        assert set(pa) == set(pb) == {"w", "b"}
        for k in "wb":
            assert pb[k].dtype == np.float32 and pb[k].shape == pa[k].shape
            assert pa[k].tobytes() == pb[k].tobytes()  # bit-identical


# --- round trips ----------------------------------------------------------------------


def test_mlp_round_trip_is_bit_identical():
    spec = mlp_spec([784, 30, 10], "QuadraticCost")
    params = random_params(spec)
    text = json.dumps(export.to_json_dict(spec, params))
    spec2, params2, mbs = export.from_json_dict(json.loads(text), "mlp.json")
    assert spec2 == spec and mbs is None
    assert_params_identical(params, params2)


def test_conv_round_trip_is_bit_identical():
    params = random_params(CONV_SPEC, seed=1)
    d = export.to_json_dict(CONV_SPEC, params)
    assert d["format"] == "nn3-network3" and d["version"] == 1 and d["mini_batch_size"] == 10
    assert np.array_equal(np.array(d["layers"][1]["weights"], np.float32), params[1]["w"].T)  # (n_in, n_out)
    assert np.array(d["layers"][0]["weights"]).shape == (20, 1, 5, 5)
    spec2, params2, mbs = export.loads(json.dumps(d), "conv.json")
    assert spec2 == CONV_SPEC and mbs == 10
    assert_params_identical(params, params2)


def test_save_and_load_file_atomically(tmp_path):
    path = tmp_path / "net.json"
    path.write_text("old", encoding="utf-8")
    params = random_params(SMALL_CONV_SPEC)
    export.save_json(path, SMALL_CONV_SPEC, params, mini_batch_size=4)
    assert os.listdir(tmp_path) == ["net.json"]  # no temp file left behind
    spec2, params2, mbs, _ = export.load_json(str(path))
    assert spec2 == SMALL_CONV_SPEC and mbs == 4
    assert_params_identical(params, params2)


def test_non_conv_nets_default_mini_batch_and_mlp_detection():
    mlp = mlp_spec([3, 4, 2])
    assert is_mlp(mlp)
    relu = copy.deepcopy(mlp)
    relu["layers"][0]["activation_fn"] = "ReLU"
    assert not is_mlp(relu) and not is_mlp({"nonsense": 1})
    d = export.to_json_dict(relu, random_params(relu))
    assert d["mini_batch_size"] == 10 and d["layers"][0]["type"] == "FullyConnectedLayer"
    assert export.from_json_dict(d)[0] == relu


def test_export_rejects_bad_specs_and_params():
    params = random_params(SMALL_CONV_SPEC)
    with pytest.raises(ExportError, match=r"mini_batch_size: 5 differs"):
        export.to_json_dict(SMALL_CONV_SPEC, params, mini_batch_size=5)
    bad = copy.deepcopy(params)
    bad[1]["w"] = bad[1]["w"].T
    with pytest.raises(ExportError, match=r"<params>: params\[1\]\.w: expected shape \(3, 8\)"):
        export.to_json_dict(SMALL_CONV_SPEC, bad)
    bad[1]["w"] = np.full((3, 8), np.nan, np.float32)
    with pytest.raises(ExportError, match=r"params\[1\]\.w: non-finite"):
        export.validate_params(SMALL_CONV_SPEC, bad)
    with pytest.raises(ExportError, match=r"sizes\[1\]"):
        mlp_spec([3, 0, 2])
    with pytest.raises(ExportError, match=r"cost"):
        mlp_spec([3, 2], "LogLikelihoodCost")
    chain = copy.deepcopy(SMALL_CONV_SPEC)
    chain["layers"][1]["n_in"] = 9
    with pytest.raises(ExportError, match=r"layers\[1\]\.n_in: 9 does not match the 8 outputs"):
        validate(chain, "cfg.json")


# --- the book's network2 files ----------------------------------------------------------


def test_file_written_by_book_network2_save_loads(tmp_path):
    rng = np.random.default_rng(2)
    sizes = [784, 30, 10]
    weights = [rng.standard_normal((y, x)) / np.sqrt(x) for x, y in zip(sizes[:-1], sizes[1:])]
    biases = [rng.standard_normal((y, 1)) for y in sizes[1:]]
    path = tmp_path / "book.json"
    with open(path, "w", encoding="utf-8") as f:  # as network2.Network.save writes it
        json.dump({"sizes": sizes, "weights": [w.tolist() for w in weights],
                   "biases": [b.tolist() for b in biases], "cost": str("CrossEntropyCost")}, f)
    spec, params, mbs, _ = export.load_json(path)
    assert spec == mlp_spec(sizes, "CrossEntropyCost") and mbs is None
    assert [p["b"].shape for p in params] == [(30,), (10,)]
    for x in rng.random((5, 784)):
        ours = book_feedforward([p["w"] for p in params], [p["b"] for p in params], x)
        np.testing.assert_allclose(ours, book_feedforward(weights, biases, x), rtol=1e-5, atol=1e-6)


def test_our_mlp_file_is_read_by_a_book_style_loader(tmp_path):
    spec = mlp_spec([20, 7, 3], "QuadraticCost")
    params = random_params(spec, seed=3)
    path = tmp_path / "ours.json"
    export.save_json(path, spec, params)
    with open(path, encoding="utf-8") as f:  # what network2.load does, minus building the Network
        data = json.load(f)
    assert set(data) == {"sizes", "weights", "biases", "cost"}
    assert data["sizes"] == [20, 7, 3] and data["cost"] == "QuadraticCost"
    weights = [np.array(w) for w in data["weights"]]
    biases = [np.array(b) for b in data["biases"]]
    assert [w.shape for w in weights] == [(7, 20), (3, 7)] and [b.shape for b in biases] == [(7, 1), (3, 1)]
    assert all(a.dtype == np.float64 for a in weights + biases)
    x = np.random.default_rng(4).random(20)
    np.testing.assert_allclose(book_feedforward(weights, biases, x),
                               book_feedforward([p["w"] for p in params], [p["b"] for p in params], x),
                               rtol=1e-6)


# --- a catalogue of bad files ------------------------------------------------------------


def mlp_doc():
    return json.loads(json.dumps(export.to_json_dict(mlp_spec([4, 3, 2]),
                                                     random_params(mlp_spec([4, 3, 2])))))


def conv_doc():
    return json.loads(json.dumps(export.to_json_dict(SMALL_CONV_SPEC, random_params(SMALL_CONV_SPEC))))


def mlp_text():
    return json.dumps(mlp_doc(), separators=(",", ":"))


def edit(make, fn):
    def text():
        d = make()
        fn(d)
        return json.dumps(d)
    return text


def put(path, value):
    """An edit that sets d[path[0]][path[1]]... = value."""
    def fn(d):
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return fn


def raw(make, path, token):
    """A file with ``token`` (NaN, Infinity: not JSON values) written at ``path``."""
    return lambda: edit(make, put(path, "@TOKEN@"))().replace('"@TOKEN@"', token)


BAD_FILES = [
    ("not json", lambda: "{'sizes': [1, 2]}", "not valid JSON"),
    ("not an object", lambda: "[1, 2, 3]", "expected a JSON object at the top level"),
    ("neither format", lambda: "{}", "neither network2's format"),
    ("missing key", edit(mlp_doc, lambda d: d.pop("biases")), "missing key 'biases'"),
    ("missing layer key", edit(conv_doc, lambda d: d["layers"][1].pop("p_dropout")),
     "layers[1]: missing key 'p_dropout'"),
    ("extra key", edit(mlp_doc, put(["eta"], 0.5)), "unknown key 'eta'"),
    ("extra layer key", edit(conv_doc, put(["layers", 2, "bias"], [])), "layers[2]: unknown key 'bias'"),
    ("unknown cost", edit(mlp_doc, put(["cost"], "os.system")), "cost: unknown network2 cost 'os.system'"),
    ("network3 cost in network2", edit(mlp_doc, put(["cost"], "LogLikelihoodCost")), "cost: unknown"),
    ("cost does not fit output", edit(conv_doc, put(["cost"], "CrossEntropyCost")),
     "cost: CrossEntropyCost does not fit a softmax output layer"),
    ("unknown layer type", edit(conv_doc, put(["layers", 0, "type"], "__import__")),
     "layers[0].type: unknown layer type '__import__'"),
    ("unknown activation", edit(conv_doc, put(["layers", 1, "activation_fn"], "softplus")),
     "layers[1].activation_fn: unknown activation"),
    ("unknown format", edit(conv_doc, put(["format"], "network4")), "format: unknown format"),
    ("future version", edit(conv_doc, lambda d: d.update(version=2, new_key=1)), "version: version 2 is not supported"),
    ("wrong weight shape", edit(mlp_doc, put(["weights", 0], np.zeros((4, 3)).tolist())),
     "weights[0]: expected 3 entries"),
    ("transposed fc weights", edit(conv_doc, put(["layers", 1, "weights"], np.zeros((3, 8)).tolist())),
     "layers[1].weights: expected 8 entries"),
    ("wrong bias shape", edit(mlp_doc, put(["biases", 1], [1.0, 2.0])), "biases[1][0]: expected a list of 1"),
    ("too few layers", edit(mlp_doc, lambda d: d["weights"].pop()), "weights: expected a list of 2"),
    ("sizes do not chain", edit(conv_doc, put(["layers", 1, "n_in"], 9)), "layers[1].n_in: 9 does not match"),
    ("maps do not chain", edit(conv_doc, put(["layers", 0, "filter_shape", 1], 3)),
     "layers[0].filter_shape[1]: 3 input maps, image_shape[1] is 1"),
    ("pool does not fit", edit(conv_doc, put(["layers", 0, "poolsize"], [5, 2])),
     "layers[0].poolsize[0]: filter 3 and pool 5 do not fit in 6"),
    ("batch differs", edit(conv_doc, put(["mini_batch_size"], 3)),
     "layers[0].image_shape[0]: 4 differs from mini_batch_size 3"),
    ("conv output layer", edit(conv_doc, lambda d: d.update(layers=d["layers"][:1], cost="QuadraticCost")),
     "layers[0].type: a ConvPoolLayer cannot be the output layer"),
    ("softmax in the middle", edit(conv_doc, lambda d: [d["layers"][1].pop(k) for k in ("activation_fn", "type")]
                                   and d["layers"][1].update(type="SoftmaxLayer")),
     "layers[1].type: a SoftmaxLayer must be the last layer"),
    ("NaN", raw(mlp_doc, ["biases", 1, 1, 0], "NaN"), "biases[1][1][0]: expected a number, got NaN"),
    ("NaN weight", raw(mlp_doc, ["weights", 0, 2, 3], "NaN"), "weights[0][2][3]: expected a number, got NaN"),
    ("Infinity", raw(mlp_doc, ["weights", 1, 0, 0], "-Infinity"), "weights[1][0][0]: expected a number, got -Infinity"),
    ("overflowing float", edit(mlp_doc, put(["weights", 1, 0, 0], 1e39)),
     "weights[1][0][0]: 1e+39 is not finite or is outside float32 range"),
    ("NaN dropout", raw(conv_doc, ["layers", 1, "p_dropout"], "NaN"), "layers[1].p_dropout: expected a number"),
    ("dropout of 1", edit(conv_doc, put(["layers", 1, "p_dropout"], 1.0)), "layers[1].p_dropout: must be in [0, 1)"),
    ("huge nesting", lambda: "[" * 100_000 + "]" * 100_000, "nesting too deep"),
    ("huge object nesting", lambda: '{"a":' * 100_000 + "0" + "}" * 100_000, "nesting too deep"),
    ("nested garbage in weights", edit(mlp_doc, put(["weights", 0, 0, 0], [[[[1.0]]]])),
     "weights[0][0][0]: expected a number, got a list of 1"),
    ("bool where int", edit(mlp_doc, put(["sizes", 0], True)), "sizes[0]: expected an int, got true (bool)"),
    ("bool version", edit(conv_doc, put(["version"], True)), "version: expected an int, got true"),
    ("float where int", edit(conv_doc, put(["layers", 0, "poolsize", 1], 2.0)),
     "layers[0].poolsize[1]: expected an int, got 2.0"),
    ("bool in weights", edit(mlp_doc, put(["weights", 1, 1, 2], False)), "weights[1][1][2]: expected a number"),
    ("string in weights", edit(mlp_doc, put(["biases", 0, 2, 0], "1")), "biases[0][2][0]: expected a number"),
    ("ragged list", edit(mlp_doc, lambda d: d["weights"][0][1].pop()), "weights[0][1]: expected 4 entries"),
    ("negative size", edit(mlp_doc, put(["sizes", 1], -3)), "sizes[1]: must be in [1, 16777216], got -3"),
    ("huge size", edit(conv_doc, put(["layers", 2, "n_out"], 10**30)), "layers[2].n_out: must be in"),
    ("too many parameters", edit(mlp_doc, put(["sizes"], [60000, 60000, 2])), "sizes: 3600180002 parameters"),
    ("huge int", lambda: mlp_text().replace("[4,", "[" + "9" * 5000 + ",", 1), "not valid JSON"),
    ("duplicate key", lambda: mlp_text().replace('"cost":', '"cost":"QuadraticCost","cost":'),
     "duplicate key 'cost'"),
]


@pytest.mark.parametrize("name,make,message", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_file_is_one_line_naming_the_key(tmp_path, name, make, message):
    path = tmp_path / "bad.json"
    path.write_text(make(), encoding="utf-8")
    with pytest.raises(ExportError) as info:
        export.load_json(path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{path}: ")
    assert message in text


def test_file_level_faults(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError) as missing:  # the OS's own words: "No such file or directory"
        os.stat(tmp_path / "missing.json")         # on POSIX, "The system cannot find the file specified" on Windows
    with pytest.raises(ExportError, match=re.escape(f"missing.json: cannot read: {missing.value.strerror}")):
        export.load_json(tmp_path / "missing.json")
    with pytest.raises(ExportError, match=r"not a regular file"):
        export.load_json(tmp_path)
    path = tmp_path / "net.json"
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(ExportError, match=r"net\.json: not UTF-8"):
        export.load_json(path)
    export.save_json(path, mlp_spec([4, 3, 2]), random_params(mlp_spec([4, 3, 2])))
    monkeypatch.setattr(export, "MAX_FILE_BYTES", 100)
    with pytest.raises(ExportError, match=r"net\.json: \d+ bytes, more than the limit 100"):
        export.load_json(path)


# --- fuzz ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def paths(d, prefix=()):
    """Every key path into a document (into weights only a little way)."""
    out = [prefix]
    items = d.items() if isinstance(d, dict) else enumerate(d[:3]) if isinstance(d, list) else ()
    for k, v in items:
        out += paths(v, prefix + (k,))
    return out


def import_any(d):
    """Imports through both entry points; only ExportError may come out."""
    for call in (lambda: export.from_json_dict(d, "fuzz"),
                 lambda: export.loads(json.dumps(d, allow_nan=True), "fuzz")):
        try:
            spec, params, _ = call()
        except ExportError as e:
            assert "\n" not in str(e) and str(e).startswith("fuzz")
            continue
        assert export.validate_params(spec, params, "fuzz")[0]["w"].dtype == np.float32


ints = st.integers(-1, 9)
NEAR = {"n_in": ints, "n_out": ints, "p_dropout": st.floats(-0.5, 1.5),
        "activation_fn": st.sampled_from([*ACTIVATIONS, "softmax"]),
        "filter_shape": st.lists(ints, min_size=4, max_size=4), "image_shape": st.lists(ints, min_size=4, max_size=4),
        "poolsize": st.lists(ints, min_size=2, max_size=2),
        "weights": st.lists(st.lists(st.floats(), max_size=3), max_size=3), "biases": st.lists(st.floats(), max_size=3)}


@st.composite
def layer_like(draw):
    """A layer object of a known type whose values are often nearly right."""
    kind = draw(st.sampled_from(sorted(LAYER_ARGS)))
    keys = ["type", *LAYER_ARGS[kind], "weights", "biases"]
    if draw(st.integers(0, 9)) == 0:
        keys.remove(draw(st.sampled_from(keys)))
    if draw(st.integers(0, 9)) == 0:
        keys.append("extra")
    return {k: kind if k == "type" else draw(st.one_of(NEAR.get(k, json_values), json_values)) for k in keys}


# FUZZ_N=5000 runs the fuzz tests longer.
@settings(max_examples=int(os.environ.get("FUZZ_N", 60)), deadline=None, suppress_health_check=list(HealthCheck))
@given(json_values, st.lists(layer_like(), min_size=1, max_size=3))
def test_fuzz_random_json(value, layers):
    import_any(value)
    import_any({"format": "nn3-network3", "version": 1, "mini_batch_size": 4, "cost": "QuadraticCost",
                "layers": layers})
    import_any({"sizes": value, "weights": value, "biases": value, "cost": "QuadraticCost"})


DOCS = {"mlp": mlp_doc(), "conv": conv_doc()}


@settings(max_examples=int(os.environ.get("FUZZ_N", 140)), deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(sorted(DOCS)), st.data())
def test_fuzz_mutated_documents(which, data):
    d = copy.deepcopy(DOCS[which])
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths(d)[1:]))
        target = d
        for k in path[:-1]:
            target = target[k]
        if data.draw(st.booleans()) and isinstance(target, dict):
            del target[path[-1]]
        else:
            target[path[-1]] = data.draw(json_values)
    import_any(d)


def test_export_module_needs_no_jax():
    tree = ast.parse(open(export.__file__, encoding="utf-8").read())
    mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert mods <= {"__future__", "json", "os", "pathlib", "stat", "typing", "numpy", "nn3.engine.spec", "nn3.store.files"}
