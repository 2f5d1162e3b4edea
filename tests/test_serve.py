"""nn3 serve: the drawing's MNIST-style preprocessing, and the server run in-process on 127.0.0.1."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("werkzeug")

import children  # noqa: E402
from nn3.runs import config as run_config, inspect, session  # noqa: E402
from nn3.engine import evaluation, layers  # noqa: E402
from nn3.engine.train import Loop  # noqa: E402
from nn3.store.rundir import RunDir  # noqa: E402
from nn3.serve import app, digits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ the drawing

def _bbox(img):
    rows, cols = np.flatnonzero(img.any(1)), np.flatnonzero(img.any(0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def test_a_drawing_fills_a_20_box_centred_by_mass():
    ink = np.zeros((280, 300))
    ink[30:250, 40:100] = 1.0    # a tall stroke, off to the left
    ink[30:60, 40:200] = 1.0     # and a bar along the top: a "7"-ish shape, mass off-centre
    x = digits.mnist_style(ink).reshape(28, 28)
    assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    h, w = _bbox(x > 0)
    assert max(h, w) == 20 and abs(w - round(160 * 20 / 220)) <= 1  # aspect ratio kept
    assert np.all(np.abs(digits.centre_of_mass(x) - 14) <= 0.5)
    assert np.isclose(x.sum() * (220 / 20) * (160 / w), ink.sum(), rtol=1e-5)  # area resampling keeps the ink


def test_a_small_dot_is_scaled_up_and_a_blank_drawing_refused():
    ink = np.zeros((100, 100))
    ink[10:14, 80:84] = 1.0
    x = digits.mnist_style(ink).reshape(28, 28)
    assert _bbox(x > 0) == (20, 20) and np.allclose(x[x > 0], 1.0)
    with pytest.raises(ValueError, match="blank"):
        digits.mnist_style(np.zeros((50, 50)))


def test_area_weights_average_what_each_output_pixel_covers():
    w = digits._area_weights(7, 3)
    assert np.allclose(w.sum(1), 1.0) and np.allclose(w.sum(0), 3 / 7)
    assert np.allclose(w[0], [3 / 7, 3 / 7, 1 / 7, 0, 0, 0, 0])


# ------------------------------------------------------------------ the server, in-process

def _made_run(path, data_path=None):
    """A run with one checkpoint of a freshly drawn network (no data needed to make it;
    its test-digit views read ``data_path``, or the real MNIST when None)."""
    config = run_config.make_config("shallow", epochs=1, limit=300, data_path=data_path)
    run = RunDir.create(path, config)
    net = layers.build(config["spec"], seed=3, init=config["init"])
    run.save(30, {"params": layers.get_params(net)},
             {"epoch": 0, "step": 30, "loop": Loop(epoch=1, step=30).to_json(), "validation_accuracy": 0.5})
    run.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, runs folder): ``made`` has a checkpoint, ``empty`` only its config."""
    root = tmp_path_factory.mktemp("served")
    _made_run(root / "made")
    RunDir.create(root / "empty", run_config.make_config("shallow", epochs=1)).close()
    (root / "secret.txt").write_text("not for the page", encoding="utf-8")
    server = app.make_server([root], port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.port}", root
    server.shutdown()
    server.server_close()


MEMBER_SPEC = {"layers": [
    {"type": "FullyConnectedLayer", "n_in": 784, "n_out": 12, "activation_fn": "sigmoid", "p_dropout": 0.0},
    {"type": "SoftmaxLayer", "n_in": 12, "n_out": 10, "p_dropout": 0.0}], "cost": "LogLikelihoodCost"}
MEMBER_SEEDS = [3, 0, 7]


@pytest.fixture(scope="module")
def member_served(synthetic_mnist, tmp_path_factory):
    """(base URL, run dir) of a 3-member run (nn3 train --seeds 3,0,7), trained 2 epochs on synthetic data."""
    root = tmp_path_factory.mktemp("members")
    config = run_config.make_config("shallow", spec=MEMBER_SPEC, data_path=synthetic_mnist.path, members=MEMBER_SEEDS,
                              epochs=2, eta=0.5, mini_batch_size=10)
    run, _, _ = session.start(config, root / "many")
    run.close()
    _made_run(root / "lone", data_path=synthetic_mnist.path)
    server = app.make_server([root], port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.port}", root / "many"
    server.shutdown()
    server.server_close()


def _api(url, **kw):
    status, body = _get(url, **kw)
    return status, json.loads(body)


def test_a_member_run_is_listed_and_its_curves_hold_each_member_and_the_vote(member_served):
    base, d = member_served
    status, listed = _api(f"{base}/api/runs")
    many = {r["name"]: r for r in listed["runs"]}["many"]
    assert status == 200 and "error" not in many and many["done"] == 2
    status, summary = _api(f"{base}/api/runs/many/summary")
    assert status == 200 and [m["seed"] for m in summary["members"]] == MEMBER_SEEDS
    assert [r["params"] for r in summary["layers"]] == [784 * 12 + 12, 12 * 10 + 10]
    status, progress = _api(f"{base}/api/runs/many/progress")
    lines = [json.loads(t) for t in (d / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert status == 200 and progress["records"] == lines and len(lines) == 2
    assert all(len(r["members"]) == 3 and r["validation_accuracy"] is not None for r in progress["records"])
    assert "member" not in _api(f"{base}/api/runs/lone/summary")[1] and "members" not in _api(f"{base}/api/runs/lone/summary")[1]


@pytest.mark.parametrize("member", [None, 2])
def test_a_member_runs_checkpoint_views_show_one_member_as_replay_does(member_served, member):
    """Errors, filters, a digit and a drawing are member K's network (member 0 unless asked), named as such."""
    base, d = member_served
    k = 0 if member is None else member
    ask = "" if member is None else f"&member={member}"
    status, wrong = _api(f"{base}/api/runs/many/wrong?step=best{ask}")
    replayed = inspect.replay(d, best=True, member=k)
    assert status == 200 and (wrong["member"], wrong["seed"]) == (k, MEMBER_SEEDS[k])
    assert (wrong["correct"], wrong["n"], wrong["recorded"]) == (replayed["correct"], replayed["n"], replayed["recorded"])
    assert wrong["step"] == replayed["step"] and wrong["count"] == wrong["n"] - wrong["correct"]
    net = inspect.load(d, best=True, member=k)
    status, filters = _api(f"{base}/api/runs/many/filters?step=best{ask}")
    assert status == 200 and filters["member"] == k and filters["kind"] == "units"
    assert filters["images"]["hi"] == pytest.approx(float(np.abs(np.asarray(net.layers[0].w[...])[:40]).max()))
    status, digit = _api(f"{base}/api/runs/many/digit?step=best&index=5{ask}")
    x, _ = evaluation.as_arrays(run_config.load_splits(RunDir.read_config(d))[2])
    assert status == 200 and digit["member"] == k and digit["prediction"] == int(evaluation.predict(net, x[5:6])[0])
    ink = np.zeros((140, 140))
    ink[20:120, 60:80] = 255
    status, drawn = _api(f"{base}/api/runs/many/draw?step=latest{ask}", data=_draw_body(ink), headers=JSON, method="POST")
    assert status == 200 and drawn["member"] == k and drawn["seed"] == MEMBER_SEEDS[k] and len(drawn["outputs"]) == 10


def test_a_member_that_is_not_there_is_a_404_and_a_bad_one_a_400(member_served):
    base, _ = member_served
    status, body = _api(f"{base}/api/runs/many/wrong?member=3")
    assert status == 404 and body["error"] == "many: no member 3 (a run of 3 members: 0 to 2)"
    status, body = _api(f"{base}/api/runs/many/filters?member=-1")
    assert status == 400 and body["error"].startswith("member: expected a member number")
    status, body = _api(f"{base}/api/runs/lone/wrong?member=0")
    assert status == 404 and body["error"] == "lone: a run of one network has no members"
    status, body = _api(f"{base}/api/runs/lone/wrong")
    assert status == 200 and "member" not in body and "seed" not in body


def _get(url, data=None, headers=None, method=None):
    """(status, body bytes) of a request; 4xx/5xx are answers here, not errors."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _draw_body(ink: np.ndarray) -> bytes:
    h, w = ink.shape
    ink = base64.b64encode(ink.astype(np.uint8).tobytes()).decode()
    return json.dumps({"width": w, "height": h, "ink": ink}).encode()


JSON = {"Content-Type": "application/json"}


def test_the_index_lists_the_runs_it_was_given(served):
    base, _ = served
    status, body = _get(base + "/api/runs")
    assert status == 200
    assert sorted(r["name"] for r in json.loads(body)["runs"]) == ["empty", "made"]
    status, body = _get(base + "/")
    assert status == 200 and b"/static/index.js" in body
    assert _get(base + "/run/made")[0] == 200


@pytest.mark.parametrize("path", [
    "/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py", "/static/%2e%2e%2f%2e%2e%2fcli.py",
    "/run/../secret.txt", "/run/..%2fsecret.txt", "/api/runs/..%2fmade/summary", "/api/runs/made/../../secret.txt",
    "/secret.txt", "/static//etc/passwd", "/static/%2fetc%2fpasswd", "/api/runs/%2ftmp/summary",
])
def test_paths_outside_the_served_runs_get_404(served, path):
    base, root = served
    status, body = _get(base + path)
    assert status == 404, (path, body)
    assert b"not for the page" not in body and b"Traceback" not in body and b"import" not in body
    assert len(body) < 300


def test_a_run_that_is_not_served_is_named_in_a_404(served):
    base, _ = served
    status, body = _get(base + "/api/runs/nope/summary")
    assert status == 404 and json.loads(body) == {"error": "no run called 'nope' is served here"}
    assert _get(base + "/run/nope")[0] == 404


def test_a_run_without_a_checkpoint_says_so(served):
    base, _ = served
    status, body = _get(base + "/api/runs/empty/filters")
    assert status == 404 and "no checkpoint saved yet" in json.loads(body)["error"]


@pytest.mark.parametrize("query, message", [
    ("filters?step=x", "step: expected best, latest"), ("filters?step=-1", "step: expected"),
    ("filters?step=99999999999999999999", "step: expected"), ("filters?step=7", "no checkpoint at step 7"),
    ("digit?index=abc", "index: expected"), ("digit?index=", "index: expected"),
])
def test_bad_queries_get_a_4xx_with_one_line(served, query, message):
    base, _ = served
    status, body = _get(f"{base}/api/runs/made/{query}")
    assert 400 <= status < 500 and message in json.loads(body)["error"]


@pytest.mark.parametrize("body, headers, message", [
    (b"{", JSON, "draw: expected"),
    (b"[]", JSON, "draw: expected"),
    (b'{"width": 2, "height": 2, "ink": "!!!"}', JSON, "draw: expected"),
    (b'{"width": 2, "height": 2, "ink": "AAAA"}', JSON, "ink has 3 bytes, 2x2 needs 4"),
    (b'{"width": true, "height": 2, "ink": "AAA="}', JSON, "width and height must be integers"),
    (b'{"width": 5000, "height": 1, "ink": ""}', JSON, "width and height must be integers"),
    (b'{"width": 1, "height": 1, "ink": "AA=="}', {"Content-Type": "text/plain"}, "send JSON"),
    (_draw_body(np.zeros((20, 20))), JSON, "the drawing is blank"),
])
def test_bad_drawings_get_400(served, body, headers, message):
    base, _ = served
    status, got = _get(base + "/api/runs/made/draw", body, headers)
    assert status == 400 and message in json.loads(got)["error"]


def test_a_huge_upload_gets_413_without_being_read(served):
    base, _ = served
    status, body = _get(base + "/api/runs/made/draw", b"x" * (app.MAX_BODY + 1), JSON)
    assert status == 413 and len(body) < 300


def test_a_draw_must_be_posted_and_a_foreign_host_is_refused(served):
    base, _ = served
    assert _get(base + "/api/runs/made/draw")[0] == 405
    status, body = _get(base + "/api/runs", headers={"Host": "evil.example:80"})
    assert status == 400 and b"127.0.0.1" in body


def test_a_drawing_is_answered_through_the_replay_path(served):
    base, root = served
    ink = np.zeros((140, 140))
    ink[20:120, 60:75] = 255
    status, body = _get(base + "/api/runs/made/draw?step=best", _draw_body(ink), JSON)
    assert status == 200
    got = json.loads(body)
    net = inspect.load(root / "made", best=True)
    x = digits.mnist_style(ink / 255.0)
    assert got["step"] == 30 and got["prediction"] == int(evaluation.predict(net, x[None])[0])
    assert np.allclose(got["outputs"], np.asarray(net(x[None]))[0], atol=1e-6)
    assert np.isclose(sum(got["outputs"]), 1.0, atol=1e-5) and got["softmax"] is True
    sent = np.frombuffer(base64.b64decode(got["input"]["data"]), np.uint8) / 255.0
    assert np.allclose(sent, x, atol=0.5 / 255 + 1e-7)  # the 28x28 input the page shows is the one the net saw


def test_stopping_waits_for_a_request_in_flight_and_refuses_new_ones(tmp_path, monkeypatch):
    """A process that exits while a request thread is inside XLA aborts; so Ctrl-C waits for it."""
    from werkzeug.test import Client

    from nn3.serve import runview
    _made_run(tmp_path / "made")
    entered, release, answers = threading.Event(), threading.Event(), []
    summary = runview.RunView.summary

    def held(self):  # a request that stays inside the app until the test lets it go
        entered.set()
        release.wait()
        return summary(self)
    monkeypatch.setattr(runview.RunView, "summary", held)
    server = app.make_server([tmp_path], port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    request = threading.Thread(target=lambda: answers.append(
        _get(f"http://127.0.0.1:{server.port}/api/runs/made/summary")))
    request.start()
    try:
        assert entered.wait(60)
        server.shutdown()  # what Ctrl-C does to serve_forever
        assert server.app.close(timeout=0) is False  # one request is still in flight
        assert Client(server.app).get("/api/runs").status_code == 503
    finally:
        release.set()
    assert server.app.close(timeout=60) is True
    request.join(60)
    server.server_close()
    assert answers[0][0] == 200


# ------------------------------------------------------------------ the command

def _nn3(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "nn3", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def test_serve_prints_its_url_answers_and_stops_cleanly_on_ctrl_c(served):
    _, root = served
    proc = children.popen(["serve", str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # printed once the socket listens
        assert line.startswith("nn3 serve: 2 runs at http://127.0.0.1:"), line
        url = line.split(" at ")[1].split()[0]
        assert _get(url + "api/runs")[0] == 200
        children.send(proc, children.CTRL_C)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "stopped" in out and "Traceback" not in err, err


@pytest.mark.parametrize("args, message", [
    (["serve", "/no/such/dir"], f"nn3: error: {Path('/no/such/dir')}: no such run or directory of runs"),  # \no\such\dir on Windows
    (["serve", ".", "--port", "70000"], "nn3: error: --port: 70000 is not a port number"),
])
def test_serve_faults_are_one_line(args, message):
    proc = _nn3(*args)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and err.startswith(message), err
    assert len(err.strip().splitlines()) == 1


def test_misclassified_digits_are_replays_numbers(shallow_real_run):
    from nn3.serve.runview import RunView
    view = RunView(shallow_real_run)
    wrong = view.wrong("best")
    replayed = inspect.replay(shallow_real_run, best=True)
    assert (wrong["correct"], wrong["n"], wrong["step"]) == (replayed["correct"], replayed["n"], replayed["step"])
    assert wrong["count"] == wrong["n"] - wrong["correct"] and wrong["label"] != wrong["prediction"]
    d = view.digit("best", wrong["index"][0])
    assert d["prediction"] == wrong["prediction"][0] and d["label"] == wrong["label"][0]


def test_the_pages_need_nothing_from_elsewhere():
    """Offline: every file a page names is in the package, and nothing is fetched from another host."""
    import fnmatch
    import re
    import tomllib
    static = app.STATIC
    for page in static.glob("*.html"):
        text = page.read_text(encoding="utf-8")
        for name in re.findall(r'(?:src|href)="/static/([^"]+)"', text):
            assert (static / name).is_file(), (page.name, name)
    for f in static.iterdir():
        text = f.read_text(encoding="utf-8").replace('"http://www.w3.org/2000/svg"', "")  # SVG's namespace: a name, not a fetch
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), f.name
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]  # setuptools' patterns: fnmatch's
    packages = [".".join(d.relative_to(ROOT).parts) for d in (ROOT / "nn3").rglob("*") if (d / "__init__.py").is_file()]
    packages.append("nn3")
    assert "nn3.serve" in packages and "nn3.engine" in packages
    assert [p for p in packages if not any(fnmatch.fnmatchcase(p, pattern) for pattern in include)] == []
    assert project["tool"]["setuptools"]["package-data"]["nn3.serve"] == ["static/*"]


@pytest.mark.parametrize("name", ["nn3.serve", "nn3.serve.app", "nn3.serve.catalog", "nn3.serve.digits",
                                  "nn3.serve.runview"])
def test_synopsis_runs(name):
    import doctest
    import importlib
    assert doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS).failed == 0


@pytest.mark.parametrize("raw", [b"GARBAGE\r\n\r\n", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
                                 b"POST /api/runs/made/draw HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n"])
def test_malformed_http_gets_a_4xx(served, raw):
    import re
    import socket
    base, _ = served
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=60) as s:
        s.sendall(raw)
        answer = s.recv(4096)
    # http.server answers a request line it cannot parse as HTTP/0.9 would: no status line, "Error code: 400"
    assert re.match(rb"HTTP/1\.[01] 4\d\d |<!DOCTYPE HTML>.*Error code: 4\d\d", answer, re.S), answer[:300]
    assert b"Traceback" not in answer
