"""``nn3 serve``: a local page per run (settings, network, live learning curves, errors, filters, a digit to draw).

    >>> from nn3 import serve
    >>> serve.serve(["checkpoints"])          # doctest: +SKIP
    nn3 serve: 3 runs at http://127.0.0.1:38271/ (Ctrl-C stops)

The server is werkzeug's threaded WSGI server (nn3's ``web`` extra), bound to
127.0.0.1 on a free port unless told otherwise. The pages are static files in
``static/`` (plain HTML, CSS and JavaScript, nothing fetched from elsewhere) that ask
the JSON API of ``app`` for what to draw; ``runview`` makes those answers from the run
directories through nn3's replay path, and ``digits`` turns a drawing into an MNIST
input.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from werkzeug.serving import BaseWSGIServer

__all__ = ["app", "catalog", "digits", "runview", "serve", "url"]

STOP_WAIT_S = 120  # at most this long for requests in flight at Ctrl-C (a cold model load and evaluation)


def _werkzeug() -> None:
    try:
        import werkzeug  # noqa: F401
    except ImportError:
        raise ModuleNotFoundError("nn3 serve needs werkzeug, which nn3's web extra installs",
                                  name="werkzeug") from None


def url(server: BaseWSGIServer) -> str:
    """The address of a server ``app.make_server`` made, e.g. ``http://127.0.0.1:38271/``."""
    host = server.host if ":" not in server.host else f"[{server.host}]"
    return f"http://{host}:{server.port}/"


def serve(paths: Sequence[str | os.PathLike[str]], host: str = "127.0.0.1", port: int = 0, *,
          say: Callable[[str], object] = print) -> None:
    """Serve the runs at ``paths`` until Ctrl-C; ``say`` gets the URL line (and the stop line)."""
    _werkzeug()
    from nn3.serve.app import App, make_server
    try:
        server = make_server(paths, host, port)
    except OSError as e:
        raise OSError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    app = server.app
    assert isinstance(app, App)  # make_server's
    n = len(app.catalog.runs())
    say(f"nn3 serve: {n} run{'s' * (n != 1)} at {url(server)} (Ctrl-C stops)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        say(f"nn3 serve: listening on {host}: other machines can reach these pages")
    try:
        server.serve_forever()  # werkzeug's returns on Ctrl-C
    except KeyboardInterrupt:
        pass
    finally:
        app.close(timeout=STOP_WAIT_S)  # lets a request inside a forward pass finish
        server.server_close()
    say("nn3 serve: stopped")
