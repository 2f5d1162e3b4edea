"""The web application of ``nn3 serve``: pages, their static files and a small JSON API, on werkzeug.

    >>> from nn3.serve import app
    >>> server = app.make_server(["checkpoints"], port=0)   # doctest: +SKIP
    >>> server.serve_forever()                              # doctest: +SKIP

Routes (RUN is a name from the catalog, STEP is ``best``, ``latest`` or a saved step):

    GET  /                          the index of runs          GET /api/runs
    GET  /run/RUN                   the page of a run          GET /api/runs/RUN/summary | progress
    GET  /api/runs/RUN/wrong?step=STEP                         misclassified test digits
    GET  /api/runs/RUN/digit?step=STEP&index=I                 one test digit, outputs, feature maps
    GET  /api/runs/RUN/filters?step=STEP                       first-layer weights
    POST /api/runs/RUN/draw?step=STEP   {"width", "height", "ink": base64 bytes}   a drawn digit

Untrusted input: the request names a run only by a catalog name, static files are
served by werkzeug's ``send_from_directory`` (which refuses paths outside the folder),
bodies past ``MAX_BODY`` get 413, and any fault becomes a 4xx with one line of text (an
unexpected one a 500 saying so; its traceback goes to the server's log, not the page).
Bound to a loopback address, requests must also name a loopback Host, so a web page
elsewhere cannot reach the server through a DNS name pointed at 127.0.0.1.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import pathlib
import sys
import threading
import traceback
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from werkzeug.exceptions import BadRequest, HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer
from werkzeug.serving import make_server as _werkzeug_server
from werkzeug.utils import send_from_directory
from werkzeug.wrappers import Request, Response

from nn3.serve import runview
from nn3.serve.catalog import Catalog
from nn3.store import metrics
from nn3.store.metrics import MetricsError
from nn3.store.rundir import RunDirError

__all__ = ["HEADERS", "LOOPBACK", "MAX_BODY", "MAX_SIDE", "ROUTES", "STATIC", "App", "make_server"]

STATIC = pathlib.Path(__file__).parent / "static"
MAX_BODY = 1 << 20        # a 1024x1024 drawing as base64 is 1.4 MB; the page sends 280x280 (105 kB)
MAX_SIDE = 1024
LOOPBACK = ("127.0.0.1", "localhost", "::1")
HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}

ROUTES = Map([
    Rule("/", endpoint="index_page"),
    Rule("/run/<path:run>", endpoint="run_page"),
    Rule("/static/<path:name>", endpoint="static"),
    Rule("/api/runs", endpoint="runs"),
    Rule("/api/runs/<path:run>/summary", endpoint="summary"),
    Rule("/api/runs/<path:run>/progress", endpoint="progress"),
    Rule("/api/runs/<path:run>/wrong", endpoint="wrong"),
    Rule("/api/runs/<path:run>/digit", endpoint="digit"),
    Rule("/api/runs/<path:run>/filters", endpoint="filters"),
    Rule("/api/runs/<path:run>/draw", endpoint="draw", methods=["POST"]),
], strict_slashes=False, merge_slashes=False)


class _Request(Request):
    max_content_length = MAX_BODY
    max_form_memory_size = MAX_BODY


def _json(value: Any, status: int = 200) -> Response:
    return Response(json.dumps(runview.clean(value), allow_nan=False), status, mimetype="application/json",
                    headers={"Cache-Control": "no-store"})


def _step(request: Request) -> str | int:
    text = request.args.get("step", "latest")
    if text in ("best", "latest"):
        return text
    if text.isdigit() and len(text) < 12:
        return int(text)
    raise BadRequest(f"step: expected best, latest or a saved step number, got {text[:40]!r}")


def _member(request: Request) -> int | None:
    """The ``member`` asked for (an index), or None: a member run then shows member 0."""
    text = request.args.get("member")
    if text is None:
        return None
    if text.isdigit() and len(text) < 6:
        return int(text)
    raise BadRequest(f"member: expected a member number (0, 1, ...), got {text[:40]!r}")


def _ink(request: Request) -> np.ndarray:
    """The drawing of a draw request, (height, width) in [0, 1]."""
    if request.mimetype != "application/json":
        raise BadRequest("draw: send JSON (Content-Type: application/json)")
    try:
        body = json.loads(request.get_data(cache=False))
        width, height, raw = body["width"], body["height"], base64.b64decode(body["ink"], validate=True)
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError):
        raise BadRequest('draw: expected {"width": int, "height": int, "ink": base64 of width*height bytes}') from None
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SIDE for v in (width, height)):
        raise BadRequest(f"draw: width and height must be integers from 1 to {MAX_SIDE}")
    if len(raw) != width * height:
        raise BadRequest(f"draw: ink has {len(raw)} bytes, {width}x{height} needs {width * height}")
    return np.frombuffer(raw, np.uint8).reshape(height, width) / 255.0


class App:
    """The WSGI application over a catalog of runs."""

    def __init__(self, paths: Sequence[str | os.PathLike[str]], *, loopback_only: bool = True):
        """Serve the runs at ``paths``; ``loopback_only``: answer only requests whose Host is a loopback name."""
        self.catalog = Catalog(paths)
        self.loopback_only = loopback_only
        self._views: dict[str, runview.RunView] = {}  # path -> RunView (its test data loaded once)
        # Requests in flight. The server's threads are daemons: a process that exits while one
        # of them is inside XLA aborts ("terminate called ..."), so stopping waits for them.
        self._busy, self._closing = 0, False
        self._idle = threading.Condition()

    def close(self, timeout: float | None = None) -> bool:
        """Refuse new requests (503) and wait for those in flight; False if ``timeout`` ran out first."""
        with self._idle:
            self._closing = True
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def view(self, name: str) -> runview.RunView:
        """The run called ``name`` in the catalog; a 404 when there is none."""
        path = self.catalog.get(name)
        if path is None:
            raise NotFound(f"no run called {name[:80]!r} is served here")
        key = str(path.resolve())
        if key not in self._views:
            self._views[key] = runview.RunView(path)
        return self._views[key]

    # ---------------------------------------------------------------- endpoints

    def on_index_page(self, request: Request) -> Response:
        return send_from_directory(STATIC, "index.html", request.environ)

    def on_run_page(self, request: Request, run: str) -> Response:
        self.view(run)
        return send_from_directory(STATIC, "run.html", request.environ)

    def on_static(self, request: Request, name: str) -> Response:
        return send_from_directory(STATIC, name, request.environ)

    def on_runs(self, request: Request) -> Response:
        listed: list[dict[str, Any]] = []
        for name in self.catalog.runs():
            try:
                view = self.view(name)
                records = metrics.read(view.path)  # the log alone: no checkpoint manager per listed run
            except (RunDirError, MetricsError, OSError, runview.NotFound) as e:  # listed, with why it has no page
                listed.append({"name": name, "error": str(e).splitlines()[0]})
                continue
            best = max((r for r in records if r.get("validation_accuracy") is not None),
                       key=lambda r: r["validation_accuracy"], default=None)
            listed.append({"name": name, "preset": view.config.get("preset"), "done": len(records),
                           "epochs": view.config.get("sgd", {}).get("epochs"),
                           "validation": best and best.get("validation_accuracy"),
                           "test": best and best.get("test_accuracy"),
                           "params": view.summary()["params"]})
        return _json({"runs": listed})

    def on_summary(self, request: Request, run: str) -> Response:
        return _json({"name": run, **self.view(run).summary()})

    def on_progress(self, request: Request, run: str) -> Response:
        return _json(self.view(run).progress())

    def on_wrong(self, request: Request, run: str) -> Response:
        return _json(self.view(run).wrong(_step(request), _member(request)))

    def on_digit(self, request: Request, run: str) -> Response:
        text = request.args.get("index", "")
        if not (text.isdigit() and len(text) < 12):
            raise BadRequest(f"index: expected a test digit number, got {text[:40]!r}")
        return _json(self.view(run).digit(_step(request), int(text), _member(request)))

    def on_filters(self, request: Request, run: str) -> Response:
        return _json(self.view(run).filters(_step(request), _member(request)))

    def on_draw(self, request: Request, run: str) -> Response:
        view = self.view(run)
        return _json(view.draw(_step(request), _ink(request), _member(request)))

    # ---------------------------------------------------------------- dispatch

    def dispatch(self, request: Request) -> Response:
        """The response of the endpoint the request's path names; HTTP faults are raised."""
        if self.loopback_only and urllib.parse.urlsplit("//" + request.host).hostname not in LOOPBACK:
            raise BadRequest("this server answers only requests addressed to 127.0.0.1 or localhost")
        adapter = ROUTES.bind_to_environ(request.environ)
        endpoint, values = adapter.match()
        return getattr(self, f"on_{endpoint}")(request, **values)

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = _Request(environ)
        with self._idle:
            closing = self._closing
            self._busy += not closing
        if closing:
            return self._error(request, 503, "the server is stopping")(environ, start_response)
        try:
            response = self.dispatch(request)
        except HTTPException as e:
            response = self._error(request, e.code or 500, e.description or e.name)
        except runview.NotFound as e:
            response = self._error(request, 404, str(e))
        except (RunDirError, MetricsError) as e:  # a damaged or half-written run: its own message names it
            response = self._error(request, 409, str(e))
        except ValueError as e:  # a drawing or request the network cannot take (blank, wrong size)
            response = self._error(request, 400, str(e))
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            response = self._error(request, 500,
                                   f"internal error ({type(e).__name__}); the server's log has the traceback")
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()
        response.headers.extend(HEADERS)
        return response(environ, start_response)

    @staticmethod
    def _error(request: Request, code: int, message: object) -> Response:
        line = str(message).splitlines()[0] if str(message) else "error"
        if request.path.startswith("/api/"):
            return Response(json.dumps({"error": line}), code, mimetype="application/json")
        return Response(line + "\n", code, mimetype="text/plain")


def make_server(paths: Sequence[str | os.PathLike[str]], host: str = "127.0.0.1", port: int = 0) -> BaseWSGIServer:
    """A threaded werkzeug server for the runs at ``paths`` (not yet serving); ``server.port`` is its port."""
    import logging
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    app = App(paths, loopback_only=host in LOOPBACK)
    return _werkzeug_server(host, port, app, threaded=True)
