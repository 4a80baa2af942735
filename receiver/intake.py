"""From a webhook body to the journal: decode, validate, ingest, and the answer to give.

The webhook hands the body over and sends back what it is given. Under `remediator
serve` the work is done by the journal writer process (receiver/writer/), so that
decoding and journaling run beside the HTTP worker instead of inside it; the app on
its own (tests, embedding) does it in process with LocalIntake. Both give the same
answers, built here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from receiver.alerts import (
    INDEXED_LABELS,
    Notification,
    ParsedAlerts,
    PayloadError,
    parse_alerts,
    parse_envelope,
    with_alerts,
)
from receiver.config import Config
from receiver.engine import IngestSummary, ingest
from receiver.store import Store, StoreUnavailable

log = logging.getLogger(__name__)

UNAVAILABLE = "journal unavailable, retry later"
#: refused alerts listed in an answer (the count, `rejected`, is always complete)
MAX_LISTED_REFUSALS = 20
T = TypeVar("T")


@dataclass(frozen=True)
class Answer:
    """What the webhook answers: the status, the JSON body, and whether the dispatcher
    has new work."""

    status: int
    body: bytes
    actions_planned: int = 0


def error_body(message: str, **extra: Any) -> bytes:
    return json.dumps({"status": "error", "error": message, **extra}).encode()


class Rejected(Exception):
    """The body is not a notification we accept: answer 400 and journal nothing."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def answer(self) -> Answer:
        return Answer(400, error_body(self.message, field=self.field))


def indexed_labels(config: Config) -> tuple[str, ...]:
    """The labels whose values the journal keeps in columns: alertname, the services."""
    return ("alertname", *config.defaults.service_labels)


def decode(body: bytes, indexed: tuple[str, ...] = INDEXED_LABELS) -> Notification:
    """The notification in a webhook body with its alerts judged one by one, or
    Rejected naming the first bad field (`indexed`: see parse_notification)."""
    envelope, items = decode_envelope(body, indexed)
    return complete(envelope, decode_alerts(items, 0, len(items), indexed))


def decode_envelope(
    body: bytes, indexed: tuple[str, ...] = INDEXED_LABELS
) -> tuple[Notification, list[Any]]:
    """A webhook body's notification without its alerts, and the alerts as decoded JSON
    (see parse_envelope); Rejected naming the first bad field."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Rejected(f"body is not valid JSON: {exc}", "$") from exc
    except RecursionError as exc:  # json.loads gives up on deep nesting with this
        raise Rejected("payload nested too deeply", "$") from exc
    return _validated(parse_envelope, payload, indexed)


def decode_alerts(
    items: list[Any], start: int, stop: int, indexed: tuple[str, ...] = INDEXED_LABELS
) -> ParsedAlerts:
    """`items[start:stop]` judged one by one (see parse_alerts)."""
    return _validated(parse_alerts, items, start, stop, indexed)


def complete(envelope: Notification, parsed: ParsedAlerts) -> Notification:
    """The notification with its judged alerts (alerts.with_alerts), or Rejected naming
    the first bad field when every alert was refused. Logs a WARNING, naming the group
    key, for each refused alert and for the alerts Alertmanager left out
    (`truncatedAlerts`): an operator's only sign of them besides the counters."""
    notification = _validated(with_alerts, envelope, parsed)
    for refusal in notification.refused[:MAX_LISTED_REFUSALS]:
        log.warning(
            "alert refused alone, the rest of its notification journaled: group key %r, "
            "alerts[%d], field %s: %s",
            notification.group_key,
            refusal.index,
            refusal.field,
            refusal.message,
        )
    if len(notification.refused) > MAX_LISTED_REFUSALS:
        log.warning(
            "%d more alerts refused in the notification of group key %r",
            len(notification.refused) - MAX_LISTED_REFUSALS,
            notification.group_key,
        )
    if notification.truncated_alerts:
        log.warning(
            "Alertmanager left %d alerts out of the notification of group key %r "
            "(max_alerts of its webhook config): they are not journaled",
            notification.truncated_alerts,
            notification.group_key,
        )
    return notification


def _validated(parse: Callable[..., T], *args: Any) -> T:
    """parse(*args), its PayloadError (or a RecursionError) told as Rejected."""
    try:
        return parse(*args)
    except PayloadError as exc:
        raise Rejected(exc.message, exc.field) from exc
    except RecursionError as exc:
        raise Rejected("payload nested too deeply", "$") from exc


def accepted(summary: IngestSummary, notification: Notification | None = None) -> Answer:
    """200 with the summary; with the notification, its refused alerts listed (at most
    MAX_LISTED_REFUSALS; the summary's `rejected` counts them all)."""
    body = json.dumps({"status": "ok", **summary.as_dict(), **refusals(notification)}).encode()
    return Answer(200, body, summary.actions_planned)


def refusals(notification: Notification | None) -> dict[str, Any]:
    """The answer's `rejected` list: {"index", "field", "reason"} per refused alert."""
    if notification is None or not notification.refused:
        return {}
    return {"rejected": [r.as_dict() for r in notification.refused[:MAX_LISTED_REFUSALS]]}


def failed(exc: BaseException) -> Answer:
    """503 when the journal could not write (Alertmanager retries); 500 for a bug."""
    if isinstance(exc, StoreUnavailable):
        log.error("journal unavailable, asking Alertmanager to retry: %s", exc)
        return Answer(503, error_body(UNAVAILABLE))
    return unexpected(exc)


def queued(
    summary: IngestSummary, queued_alerts: int, notification: Notification | None = None
) -> Answer:
    """The answer to a large notification whose chunk failed after it was
    spooled (receiver/store/spool.py): accepted, since every alert of it is durably in
    the journal, `summary.alerts` of them journaled and `queued_alerts` left in the
    spool for the journal writer to journal by itself. 200, so that Alertmanager does
    not send it again (it would be safe: the journaled alerts are duplicates then)."""
    said = (
        f"accepted: {summary.alerts} alerts journaled, the other {queued_alerts} queued "
        "durably; the receiver journals them itself"
    )
    body = {"status": "queued", "message": said, **summary.as_dict(), **refusals(notification)}
    body["queued_alerts"] = queued_alerts
    return Answer(200, json.dumps(body).encode(), summary.actions_planned)


def unexpected(exc: BaseException) -> Answer:
    """500 for an error no validation foresaw: logged with its traceback, and answered
    to the one request that met it (never the end of the process serving it)."""
    log.error("internal error handling a request", exc_info=exc)
    return Answer(500, error_body("internal error, see the receiver's log"))


class Intake(Protocol):
    def accept(self, body: bytes, received_at: float) -> Answer: ...
    def reload(self, config: Config) -> None: ...
    def ping(self) -> None: ...


class LocalIntake:
    """Decode and journal in the calling thread (concurrent calls share commits)."""

    def __init__(self, store: Store, config: Callable[[], Config]) -> None:
        self.store = store
        self.config = config

    def accept(self, body: bytes, received_at: float) -> Answer:
        config = self.config()
        try:
            notification = decode(body, indexed_labels(config))
            return accepted(ingest(self.store, config, notification, received_at), notification)
        except Rejected as rejected:
            return rejected.answer()
        except Exception as exc:  # every failure becomes an answer, never a lost request
            return failed(exc)

    def reload(self, config: Config) -> None:
        """Nothing to do: the config is read through `config` on every call."""

    def ping(self) -> None:
        self.store.ping()
