"""Flask application: the read API and the admin endpoints, with the webhook in front.

The webhook (receiver/webhook.py, at the WSGI layer) only validates and journals;
nothing is executed inside a request, so Alertmanager always gets a fast answer and a
slow executor can never back it up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from werkzeug.exceptions import HTTPException

from receiver import approvals, fleetrun
from receiver.alerts import PayloadError
from receiver.auth import challenge, may_change, signed_in_person
from receiver.config import Config, ConfigError, load_config, with_overrides
from receiver.console import console
from receiver.crossorigin import cross_origin_refusal
from receiver.executors import require_usable_executors
from receiver.intake import Intake, LocalIntake
from receiver.metrics import HttpMetrics, JournalCollector, http_metrics, register_build_info
from receiver.openapi import document_json
from receiver.stats import orchestrator_stats
from receiver.store import Store, StoreUnavailable
from receiver.store import approvals as approval_journal
from receiver.store.base import ACTION_STATUSES, INCIDENT_STATUSES, storable
from receiver.store.listing import PageBounds
from receiver.version import build_info
from receiver.webconfig import WebAuth
from receiver.webhook import WebhookEndpoint

log = logging.getLogger(__name__)

MAX_PAGE = 1000
#: the largest row id the journal can hold (a signed 64-bit integer, in both stores)
MAX_ID = 2**63 - 1
#: Changing these needs a process restart; a reload applies the rest and says so.
RESTART_KEYS: dict[str, Callable[[Config], Any]] = {
    "store": lambda c: c.store,
    "server.listen": lambda c: c.server.listen,
    "server.threads": lambda c: c.server.threads,
    # the worker's event loop (receiver.httpworker) is built with these
    "limits.read_timeout": lambda c: c.limits.read_timeout,
    "limits.max_connections": lambda c: c.limits.max_connections,
    "limits.max_connections_per_peer": lambda c: c.limits.max_connections_per_peer,
}


@dataclass
class AppState:
    """The running config (swapped atomically on reload) and the journal.

    `started` is the config the process started with (`config` unless given): the
    RESTART_KEYS of it are what the server really runs until a restart, whatever was
    reloaded since, so a reload's `restart_required` is judged against it."""

    config: Config
    store: Store
    config_path: str | None = None
    overrides: dict[str, str] = field(default_factory=dict)  # from the command line
    intake: Intake | None = None  # who decodes and journals webhook bodies (create_app
    # makes it LocalIntake; `remediator serve` uses the journal writer process)
    loaded_at: float = field(default_factory=time.time)
    #: why the process is not making progress, or None (`/-/healthy` answers 503 then);
    #: `remediator serve` watches its journal writer with it
    liveness: Callable[[], str | None] | None = None
    started: Config | None = None
    #: `--web.config.file`: who may use the API, /metrics and the probes (not the webhook)
    web: WebAuth | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.started is None:
            self.started = self.config

    def reload(self) -> dict[str, Any]:
        """Load the config file again; on any problem keep the old one and raise.

        Returns {"status": "reloaded", "sha256": hex of the file, "restart_required":
        the RESTART_KEYS whose value in the file differs from the one the process started
        with}: a change reloaded twice is listed both times, and one reverted is not.
        Raises ConfigError (the running config is then unchanged)."""
        if not self.config_path:
            raise ConfigError([], "no config file to reload")
        with self._lock:
            new = with_overrides(load_config(self.config_path), self.overrides)
            require_usable_executors(new)  # before the writer: it runs the dispatcher
            web = self.web.load() if self.web is not None else None  # both or neither
            if self.intake is not None:
                self.intake.reload(new)  # the writer takes it too, or neither does
            pending = restart_required(self.started or self.config, new)
            self.config = new  # one reference swap: requests see the old or the new, whole
            self.loaded_at = time.time()
            self.store.apply_limits(new.limits)
            if self.web is not None and web is not None:
                self.web.apply(web)
        seed_metrics(self.store, new)
        log.info("configuration reloaded from %s (sha256 %s)", self.config_path, new.sha256[:12])
        if pending:
            log.warning(
                "these keys differ from what the process started with and need a restart to "
                "apply: %s",
                ", ".join(pending),
            )
        return {"status": "reloaded", "sha256": new.sha256, "restart_required": pending}


def restart_required(running: Config, new: Config) -> list[str]:
    """The RESTART_KEYS whose value in `new` differs from `running` (the config the
    process started with), in RESTART_KEYS order."""
    return [key for key, get in RESTART_KEYS.items() if get(new) != get(running)]


def seed_metrics(store: Store, config: Config) -> None:
    """Give every configured strategy its zero series (best effort: the journal may be
    briefly unavailable, and the series then appear with the first event instead)."""
    try:
        store.seed_metrics(
            sorted({(s.name, step.action) for s in config.strategies for step in s.steps or (s,)}),
            [(s.name, len(s.steps) or 1) for s in config.strategies],
            [s.name for s in config.strategies if s.fleet and s.fleet.analysis],
        )
    except StoreUnavailable as exc:
        log.error("journal unavailable, could not seed metric series: %s", exc)


def state() -> AppState:
    return current_app.extensions["remediator"]


def error(status: int, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"status": "error", "error": message, **extra}), status


# ---------------------------------------------------------------- auth


def require_auth() -> tuple[Response, int] | None:
    """The write endpoints' check: the webhook's credentials (server.auth), unless a
    web config lists users, who then guard every endpoint but the webhook (guard_web)."""
    auth = state().config.server.auth
    if may_change(state().web, auth, request.headers.get("Authorization", "")):
        return None
    response, status = error(401, "missing or invalid credentials")
    response.headers["WWW-Authenticate"] = challenge(auth)
    return response, status


def guard_web() -> tuple[Response, int] | None:
    """Every request Flask serves (all but the webhook, answered in front of Flask)
    needs a user of the web config, as Prometheus's web config guards all its endpoints:
    401 with a Basic challenge otherwise."""
    web = state().web
    if web is None or web.authorized(request.headers.get("Authorization", "")):
        return None
    response, status = error(401, "missing or invalid credentials")
    response.headers["WWW-Authenticate"] = 'Basic realm="remediator"'
    return response, status


def refuse_cross_origin() -> tuple[Response, int] | None:
    """403 for a state-changing request a browser sends on behalf of another site
    (receiver/crossorigin.py): its Basic credentials would otherwise go with it."""
    refusal = cross_origin_refusal(request.method, request.headers)
    return error(403, refusal) if refusal else None


# ---------------------------------------------------------------- read API

api = Blueprint("api", __name__, url_prefix="/api/v1")


def _page_args(default: int = 100) -> tuple[int, int, PageBounds]:
    """limit and offset of a listing, and the bounds of its page: at most `limit` rows
    and limits.max_page_bytes of JSON, fields cut at limits.max_field_bytes."""
    limit = request.args.get("limit", str(default))
    offset = request.args.get("offset", "0")
    if not _whole(limit) or not _whole(offset) or not 0 < int(limit) <= MAX_PAGE:
        raise PayloadError("limit", f"limit must be 1..{MAX_PAGE} and offset a whole number")
    limits = state().config.limits
    bounds = PageBounds(int(limit), limits.max_page_bytes, limits.max_field_bytes)
    return int(limit), int(offset), bounds


def _whole(text: str) -> bool:
    """True for a whole number the journal can compare with: ASCII digits (not any
    Unicode digit that int() takes), at most MAX_ID (the drivers refuse larger ones).
    Its length is checked first: int() refuses (ValueError) texts of 4,300 digits."""
    return text.isascii() and text.isdigit() and len(text) <= 19 and int(text) <= MAX_ID


def _choice(name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.args.get(name)
    if value is not None and value not in allowed:
        raise PayloadError(name, f"must be one of {', '.join(allowed)}")
    return value


def _page_response(page: Any) -> Response:
    """The page with where to go on: a page full in bytes holds fewer rows than `limit`
    asked, so clients must follow next_offset (null on the last page)."""
    next_offset = page.offset + len(page.items)
    return jsonify(
        {
            "data": page.items,
            "total": page.total,
            "limit": page.limit,
            "offset": page.offset,
            "next_offset": next_offset if next_offset < page.total else None,
        }
    )


@api.get("/incidents")
def incidents() -> Response:
    limit, offset, bounds = _page_args()
    return _page_response(
        state().store.list_incidents(
            status=_choice("status", INCIDENT_STATUSES),
            service=request.args.get("service"),
            alertname=request.args.get("alertname"),
            limit=limit,
            offset=offset,
            bounds=bounds,
        )
    )


@api.get("/incidents/<incident_id>")
def incident(incident_id: str) -> tuple[Response, int]:
    """One incident with its runbook trail: its `runs`, and its `actions` oldest first,
    each with its step, run, waiting reason and events. The answer is bounded like a
    page: `limit` and `offset` page the actions (`actions_total`, `actions_next_offset`).
    400 for an id that is not a whole number, 404 for an unknown one."""
    if not incident_id.isascii() or not incident_id.isdigit():
        raise PayloadError("id", "incident id must be a whole number")
    _, offset, bounds = _page_args(default=MAX_PAGE)
    # past the journal's 64-bit ids there is no such incident (and the drivers refuse it)
    found = _whole(incident_id)
    detail = state().store.incident_detail(int(incident_id), bounds, offset) if found else None
    if detail is None:
        return error(404, f"no incident {incident_id[:32]}")
    return jsonify(detail), 200


@api.get("/actions")
def actions() -> Response:
    limit, offset, bounds = _page_args()
    incident = request.args.get("incident_id")
    if incident is not None and not _whole(incident):
        raise PayloadError("incident_id", f"must be a whole number up to {MAX_ID}")
    return _page_response(
        state().store.list_actions(
            status=_choice("status", ACTION_STATUSES),
            strategy=request.args.get("strategy"),
            incident_id=int(incident) if incident else None,
            limit=limit,
            offset=offset,
            bounds=bounds,
        )
    )


@api.get("/actions/<action_id>")
def action(action_id: str) -> tuple[Response, int]:
    """One action with its events and its `approval` (null when it never awaited one).
    400 for an id that is not a whole number, 404 for an unknown one."""
    if not _whole(action_id):
        raise PayloadError("id", f"action id must be a whole number up to {MAX_ID}")
    _, _, bounds = _page_args(default=MAX_PAGE)
    detail = state().store.action_detail(int(action_id), bounds)
    if detail is None:
        return error(404, f"no action {action_id[:32]}")
    return jsonify(detail), 200


@api.post("/actions/<action_id>/approve")
def approve(action_id: str) -> tuple[Response, int]:
    """Approve an action awaiting approval (approvals.py); see _decide."""
    return _decide(action_id, approvals.APPROVED)


@api.post("/actions/<action_id>/deny")
def deny(action_id: str) -> tuple[Response, int]:
    """Deny an action awaiting approval: it ends skipped "denied by X"; see _decide."""
    return _decide(action_id, approvals.DENIED)


def _decide(action_id: str, decision: str) -> tuple[Response, int]:
    """Journal a person's decision (store/approvals.py record_decision, as the console
    does). Optional JSON body {"by": str, "comment": str}; who decided is the
    authenticated basic-auth user when there is one, else `by`, else "anonymous". 200
    with the approval, 400 bad id or body, 401 bad credentials, 404 unknown action, 409
    an action not awaiting approval."""
    denied = require_auth()
    if denied:
        return denied
    if not _whole(action_id):
        raise PayloadError("id", f"action id must be a whole number up to {MAX_ID}")
    by, comment = _decision_body()
    try:
        decided = approval_journal.record_decision(
            state().store, int(action_id), decision, by, comment, time.time()
        )
    except approvals.NotAwaiting as exc:
        return error(409, f"action {action_id} is not awaiting approval: {exc}")
    if decided is None:
        return error(404, f"no action {action_id[:32]}")
    return jsonify(
        {"status": decision, "action_id": int(action_id), **approval_journal.as_dict(decided)}
    ), 200


def _decision_body() -> tuple[str, str]:
    """(by, comment) of a decision: the body is optional, a JSON object when given."""
    body: Any = {}
    if request.get_data(cache=True):
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            raise PayloadError("body", 'expected a JSON object such as {"by": "alice"}')
    for name in ("by", "comment"):
        if name in body and not isinstance(body[name], str):
            raise PayloadError(name, f"{name} must be a string")
        if name in body and not storable(body[name]):
            raise PayloadError(name, f"{name} must be valid UTF-8 without NUL characters")
    comment = body.get("comment", "")
    user = request.authorization.username if request.authorization else None
    person = signed_in_person(state().web, state().config.server.auth, user)
    return person or body.get("by") or "anonymous", comment


@api.get("/notifications")
def notifications() -> Response:
    """Webhook notifications as journaled, newest first (optionally of one `group_key`):
    how many alerts each carried, how many Alertmanager left out (`truncated_alerts`),
    and what ingesting it did (`summary`)."""
    limit, offset, bounds = _page_args()
    return _page_response(
        state().store.list_notifications(
            group_key=request.args.get("group_key"), limit=limit, offset=offset, bounds=bounds
        )
    )


@api.get("/breakers")
def breakers() -> Response:
    limit, offset, bounds = _page_args(default=MAX_PAGE)
    return _page_response(state().store.breakers_page(limit, offset, bounds))


@api.post("/breakers/<path:key>/reset")
def reset_breaker(key: str) -> tuple[Response, int]:
    """key is `strategy/target` as listed by GET /api/v1/breakers."""
    denied = require_auth()
    if denied:
        return denied
    strategy, sep, target = key.partition("/")
    if not sep or not target:
        return error(400, "breaker key must be <strategy>/<target>", field="key")
    if not state().store.reset_breaker(strategy, target, time.time()):
        return error(404, f"no breaker for strategy {strategy!r} and target {target!r}")
    log.warning("breaker reset by API", extra={"strategy": strategy, "target": target})
    return jsonify({"status": "reset", "key": key, "state": "closed"}), 200


@api.get("/fleets")
def list_fleets() -> Response:
    """Fleets as journaled (fleets.py, fleetrun.py): size, in flight, the wave with its
    stage and verdicts, the latest analyses with their judgements, the fleet's breaker
    and its escalation."""
    _, offset, bounds = _page_args()
    config = state().config
    strategies = {s.name: s for s in config.strategies}
    now = time.time()
    page = state().store.look(lambda tx: fleetrun.page(tx, strategies, bounds, offset, now))
    return _page_response(page)


@api.get("/targets")
def targets() -> Response:
    limit, offset, bounds = _page_args(default=MAX_PAGE)
    return _page_response(state().store.targets_page(limit, offset, bounds))


@api.get("/stats")
def stats() -> Response:
    app_state = state()
    return jsonify(orchestrator_stats(app_state.store, app_state.config, time.time()))


@api.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document of this HTTP API (receiver/openapi.py)."""
    return Response(document_json(), mimetype="application/json")


@api.get("/status")
def status() -> Response:
    app_state = state()
    config = app_state.config
    return jsonify(
        {
            "config_file": app_state.config_path,
            "config_sha256": config.sha256,
            "config_loaded_at": app_state.loaded_at,
            "store": _redacted(app_state.store.url),
            "strategies": [s.name for s in config.strategies],
            "executors": {name: e.type for name, e in config.executors.items()},
        }
    )


def _redacted(url: str) -> str:
    """Never echo a database password back over HTTP."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


# ---------------------------------------------------------------- admin

admin = Blueprint("admin", __name__)


@admin.get("/metrics")
def metrics() -> Response:
    registry = current_app.extensions["remediator.registry"]
    try:
        body = generate_latest(registry)
    except StoreUnavailable as exc:
        log.error("journal unavailable for /metrics: %s", exc)
        return Response("journal unavailable\n", status=503, mimetype="text/plain")
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


def _text(body: str, status: int) -> Response:
    """A plain-text answer (as Prometheus' own /-/healthy and /-/ready), not Flask's
    default text/html for a returned string."""
    return Response(body, status=status, mimetype="text/plain")


@admin.get("/-/healthy")
def healthy() -> Response:
    """200 while the process makes progress; 503 with the reason once it does not (a
    liveness probe then restarts the pod). Never touches the journal: see /-/ready."""
    liveness = state().liveness
    problem = liveness() if liveness is not None else None
    if problem:
        return _text(f"Remediator is not healthy: {problem}\n", 503)
    return _text("Remediator is Healthy.\n", 200)


@admin.get("/-/ready")
def ready() -> Response:
    """200 "Remediator is Ready." then the version line (`remediator 0.1.0 (Python
    3.12.3)`) when the journal and the journal writer answer; 503 with the reason when
    not (a readiness probe then takes the pod out of its Service)."""
    app_state = state()
    try:
        app_state.store.ping()
        app_state.intake.ping()
    except StoreUnavailable as exc:
        return _text(f"Remediator is not ready: journal unavailable: {exc}\n", 503)
    # The first line stays as it is: probes and scripts compare it.
    return _text(f"Remediator is Ready.\n{build_info()}\n", 200)


@admin.post("/-/reload")
def reload() -> tuple[Response, int]:
    denied = require_auth()
    if denied:
        return denied
    try:
        return jsonify(state().reload()), 200
    except ConfigError as exc:
        log.error("reload refused, keeping the running config:\n%s", exc)
        return error(400, "reload refused, the running config is unchanged", problems=str(exc))


# ---------------------------------------------------------------- factory


def _json_errors(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(PayloadError)
    def payload_error(exc: PayloadError) -> tuple[Response, int]:
        return error(400, exc.message, field=exc.field)

    @app.errorhandler(StoreUnavailable)
    def store_error(exc: StoreUnavailable) -> tuple[Response, int]:
        log.error("journal unavailable for %s %s: %s", request.method, request.path, exc)
        return error(503, "journal unavailable, retry later")


def _instrument(app: Flask, figures: HttpMetrics) -> None:
    """Count and time every request Flask serves (the webhook counts its own)."""

    @app.before_request
    def start_timer() -> None:
        request.environ["remediator.start"] = time.perf_counter()

    @app.after_request
    def observe(response: Response) -> Response:
        handler = request.url_rule.rule if request.url_rule else "unmatched"
        started = request.environ.get("remediator.start", time.perf_counter())
        figures.observe(
            handler, request.method, response.status_code, time.perf_counter() - started
        )
        return response


def create_app(app_state: AppState) -> Flask:
    # No static route: Flask's default would serve files from `static/` under whatever
    # directory the server runs in, a path nobody documented or meant to publish.
    app = Flask("remediator", static_folder=None)
    app.json.sort_keys = False
    app.extensions["remediator"] = app_state
    app_state.store.apply_limits(app_state.config.limits)
    if app_state.intake is None:
        app_state.intake = LocalIntake(app_state.store, lambda: app_state.config)
    seed_metrics(app_state.store, app_state.config)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JournalCollector(app_state.store, lambda: app_state.config))
    app.extensions["remediator.registry"] = registry
    register_build_info(registry, build_info())
    figures = http_metrics(registry)
    _instrument(app, figures)
    app.before_request(guard_web)
    app.before_request(refuse_cross_origin)
    for blueprint in (api, admin, console):
        app.register_blueprint(blueprint)
    _json_errors(app)
    app.wsgi_app = WebhookEndpoint(app.wsgi_app, app_state, figures)  # type: ignore[method-assign]
    return app
