"""The console's Flask blueprint and what every page shares: rendering with the security
headers, the signed-in user, form tokens (csrf.py) and the check every form post passes.

Pages live in the modules beside this one (one per part of the console) and register
their routes on `console`. Views stay thin (STYLE.md): read the journal, hand plain
values to a template; a page's figures come from the same store functions as the API.

Every console answer carries a strict Content-Security-Policy: scripts, styles and
images only from this server (`/console/static/`), no inline script or style, no
framing, forms only to this server. The console works without JavaScript; the one
vendored script only shows times in the viewer's timezone and asks before a button acts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, render_template, request, send_from_directory
from werkzeug.exceptions import HTTPException

from receiver.auth import challenge, may_change
from receiver.console import csrf
from receiver.console.queries import BadQuery
from receiver.store import StoreUnavailable
from receiver.store import secrets as journal_secrets
from receiver.version import build_info

STATIC = Path(__file__).parent / "static"
#: The policy every console answer carries (see the module docstring).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
#: Cached per process: the journal's console key (store/secrets.py).
KEY_EXTENSION = "remediator.console_key"

console = Blueprint("console", __name__, template_folder="templates")

F = TypeVar("F", bound=Callable[..., Any])


@console.after_request
def _secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@console.get("/console/static/<path:name>")
def static(name: str) -> Response:
    """The vendored script and stylesheet (send_from_directory refuses paths that leave
    the folder: 404)."""
    response = send_from_directory(STATIC, name, max_age=3600)
    return response


def app_state() -> Any:
    """The running AppState (receiver.app): config, journal, web config."""
    return current_app.extensions["remediator"]


def signed_in_user() -> str:
    """The basic-auth user of this request, "" when there is none."""
    return request.authorization.username if request.authorization else ""


def console_key() -> bytes:
    """The journal's key for form tokens, read (or made) once per process.
    Raises StoreUnavailable when the journal is."""
    key = current_app.extensions.get(KEY_EXTENSION)
    if key is None:
        key = app_state().store.change(
            lambda tx: journal_secrets.shared_key(tx, journal_secrets.CONSOLE_CSRF)
        )
        current_app.extensions[KEY_EXTENSION] = key
    return key


def form_token() -> str:
    """A token for a form rendered now, for the signed-in user (templates:
    `{{ csrf_field() }}`)."""
    return csrf.issue(console_key(), signed_in_user(), time.time())


#: The nav bar: (endpoint, label) in order; an entry shows once its page is registered.
NAV = (
    ("console.overview", "Overview"),
    ("console.incidents", "Incidents"),
    ("console.actions", "Actions"),
    ("console.breakers", "Breakers"),
    ("console.strategies", "Strategies"),
)


@console.app_template_global()
def nav_links() -> list[tuple[str, str]]:
    """NAV's entries whose pages this app serves."""
    return [(endpoint, label) for endpoint, label in NAV if endpoint in current_app.view_functions]


def page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    """Render a console template with what every page shows: the build line and the
    signed-in user. Returns (html, status) for a view to return."""
    return render_template(template, build=build_info(), user=signed_in_user(), **context), status


def form_post(view: F) -> F:
    """Decorate a view that changes state from a console form: the request must carry
    the credentials the API's writes need (auth.may_change: a web config user, or
    `server.auth`) and a valid form token for its user, else 401 / 403 pages that say
    why, and nothing changes."""

    @wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Any:
        auth = app_state().config.server.auth
        if not may_change(app_state().web, auth, request.headers.get("Authorization", "")):
            body, status = page("error.html", 401, title="Not signed in", reason=_why_401())
            return Response(body, status, headers={"WWW-Authenticate": challenge(auth)})
        refusal = csrf.check(
            console_key(), signed_in_user(), request.form.get(csrf.FIELD), time.time()
        )
        if refusal is not None:
            return page("error.html", 403, title="Form refused", reason=refusal)
        return view(*args, **kwargs)

    return checked  # type: ignore[return-value]


def _why_401() -> str:
    if app_state().config.server.auth.bearer_token is not None:
        return (
            "Changes need the API's bearer token, which a browser cannot send: sign in "
            "through a --web.config.file user to act from the console."
        )
    return "Wrong or missing credentials."


@console.app_template_global()
def csrf_field() -> Any:
    """The hidden input every state-changing form carries."""
    from markupsafe import Markup, escape

    return Markup(f'<input type="hidden" name="{csrf.FIELD}" value="{escape(form_token())}">')


@console.app_template_filter("utc")
def utc(epoch: float | None) -> str:
    """Epoch seconds as `2026-11-30 08:15:02 UTC` ("-" for none): the text shown before
    the script turns it into the viewer's time."""
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@console.app_template_filter("iso")
def iso(epoch: float | None) -> str:
    """Epoch seconds as ISO 8601 in UTC (a <time datetime=...> attribute), "" for none."""
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


@console.errorhandler(StoreUnavailable)
def _store_down(exc: StoreUnavailable) -> tuple[str, int]:
    current_app.logger.error("journal unavailable for %s %s: %s", request.method, request.path, exc)
    return page("error.html", 503, title="Journal unavailable", reason="Retry in a moment.")


@console.errorhandler(BadQuery)
def _bad_query(exc: BadQuery) -> tuple[str, int]:
    """Every refused query, form or URL value: a 400 page titled `Bad <field>`."""
    return page("error.html", 400, title=f"Bad {exc.field}", reason=exc.why)


@console.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[str, int]:
    code = exc.code or 500
    return page("error.html", code, title=exc.name, reason=exc.description or "")
