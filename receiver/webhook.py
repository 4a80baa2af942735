"""`POST /webhook`, served at the WSGI layer in front of the Flask app.

Why not a Flask view like the rest of the API: this is the one endpoint Alertmanager
hits at volume, and once decoding and journaling moved to the journal writer, Flask's
per-request machinery (request context, routing, hooks, a Response object) cost the
worker more than everything the webhook still does here: authenticate, check the
media type, read a bounded body, hand it over, answer. Every other path goes to Flask.

Answers (JSON bodies like the rest of the API): 401 without valid credentials, 405 for
another method, 413 for a body over `server.max_body_bytes` (refused unread when its
length is declared, cut off one byte past the limit when chunked), 415 when it is not
application/json, then whatever the intake answers: 200, 400, 503.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from receiver.auth import challenge, credentials_ok
from receiver.intake import error_body
from receiver.metrics import HttpMetrics

if TYPE_CHECKING:
    from receiver.app import AppState

PATH = "/webhook"
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Reply = tuple[int, bytes, list[tuple[str, str]]]


class WebhookEndpoint:
    """WSGI middleware: answers PATH itself and passes every other path to `inner`."""

    def __init__(self, inner: WSGIApp, app_state: AppState, figures: HttpMetrics) -> None:
        self.inner = inner
        self.app_state = app_state
        self.figures = figures

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH:
            return self.inner(environ, start_response)
        started = time.perf_counter()
        method = environ.get("REQUEST_METHOD", "")
        status, body, headers = self.handle(environ, method)
        self.figures.observe(PATH, method, status, time.perf_counter() - started)
        headers += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [body]

    def handle(self, environ: dict[str, Any], method: str) -> Reply:
        if method != "POST":
            return 405, error_body(f"method {method[:16]} not allowed"), [("Allow", "POST")]
        config = self.app_state.config
        auth = config.server.auth
        if not credentials_ok(auth, environ.get("HTTP_AUTHORIZATION", "")):
            body = error_body("missing or invalid credentials")
            return 401, body, [("WWW-Authenticate", challenge(auth))]
        mimetype = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        if mimetype != "application/json":
            return 415, error_body(f"expected Content-Type application/json, got {mimetype!r}"), []
        limit = config.server.max_body_bytes
        try:
            body = read_body(environ, limit)
        except ValueError as exc:
            return 400, error_body(str(exc), field="Content-Length"), [("Connection", "close")]
        if body is None:
            return 413, error_body(f"body larger than {limit} bytes"), [("Connection", "close")]
        answer = self.app_state.intake.accept(body, time.time())
        return answer.status, answer.body, []


def read_body(environ: dict[str, Any], limit: int) -> bytes | None:
    """The request body, or None when it is longer than limit; never reads more than
    limit + 1 bytes. Raises ValueError for a Content-Length that is not a number."""
    stream = environ["wsgi.input"]
    declared = environ.get("CONTENT_LENGTH", "")
    if declared:
        if not declared.isdigit():
            raise ValueError(f"invalid Content-Length {declared[:32]!r}")
        length = int(declared)
        if length > limit:
            return None  # refused unread
        return stream.read(length)
    if not environ.get("wsgi.input_terminated"):
        return b""  # no length and no chunked framing: WSGI says there is no body
    body = stream.read(limit + 1)  # chunked: the server ends the stream at the last chunk
    return None if len(body) > limit else body
