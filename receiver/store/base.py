"""The journal's interface: what the engine and the API need from any store.

SQLite is the default; PostgreSQL implements the same SQL (see sql.py). Driver errors
never escape: they become StoreUnavailable so that the webhook can answer 503 and
Alertmanager retries, instead of a 500 that it would not.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from receiver.config import Limits
    from receiver.store.listing import PageBounds

INCIDENT_STATUSES = ("firing", "resolved")
ACTION_STATUSES = (
    "planned",
    "running",
    "succeeded",
    "failed",
    "timed_out",
    "skipped",
    "cancelled",
)
T = TypeVar("T")
FINAL_ACTION_STATUSES = ("succeeded", "failed", "timed_out", "skipped", "cancelled")


class StoreUnavailable(RuntimeError):
    """The store cannot answer or cannot write right now; the caller may retry.

    `retryable`: the transaction was aborted only to break a deadlock or a serialization
    failure between concurrent writers (PostgreSQL replicas: store/locks.py); nothing
    of it was written and running it again, after retry_pause, is expected to succeed."""

    retryable = False


#: attempts in all of a transaction the store aborted as a deadlock victim or a
#: serialization failure (StoreUnavailable.retryable) before its error is reported
RETRIES = 3
#: the longest pause before a retryable transaction's second attempt (seconds); it
#: doubles before each later attempt
RETRY_PAUSE = 0.005


def retry_pause(attempt: int, draw: Callable[[], float] = random.random) -> float:
    """Seconds to wait before attempt number `attempt` (2, 3, ...) of a transaction
    aborted as a deadlock victim: a random share (`draw()`, in [0, 1)) of RETRY_PAUSE
    doubled per attempt after the second, "full jitter" (M. Brooker, "Exponential
    Backoff And Jitter", AWS Architecture Blog, 2015). Two transactions aborted together
    took their rows in opposite orders; started again at the same instant, they may meet
    in the same deadlock again (tests/integration/test_postgres_replicas.py saw a
    third attempt), and a random pause makes that rarer without adding to the usual
    retry's latency more than a few milliseconds."""
    return draw() * RETRY_PAUSE * 2 ** max(attempt - 2, 0)


def run_again(attempt: Callable[[], T]) -> T:
    """`attempt()` (one whole transaction), run again after retry_pause while the store
    aborts it as a deadlock victim (StoreUnavailable.retryable), RETRIES times in all.
    Raises the last attempt's StoreUnavailable, and anything else at once."""
    for number in range(1, RETRIES + 1):
        try:
            return attempt()
        except StoreUnavailable as exc:
            if number == RETRIES or not exc.retryable:
                raise
        time.sleep(retry_pause(number + 1))
    raise AssertionError("unreachable")


@dataclass
class IncidentRow:
    id: int
    fingerprint: str
    starts_at: str
    status: str
    ends_at: str | None = None


# NewIncident, NewAction and NotificationRecord are what ingest hands the journal to
# write, built once per row and read once by the insert: plain slotted dataclasses, as
# a frozen one's __init__ (object.__setattr__ per field) costs three times as much.


@dataclass(slots=True)
class NewIncident:
    fingerprint: str
    starts_at: str
    starts_at_ts: float
    alertname: str
    service: str
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str
    seen_at: float
    matched: bool
    ends_at: str | None = None
    ends_at_ts: float | None = None
    #: the notification's externalURL: which Alertmanager reconciliation may ask about it
    external_url: str | None = None
    #: why it was recorded closed when that was not a resolution (superseded, reconciled)
    close_reason: str | None = None


@dataclass(frozen=True)
class Occurrence:
    """A journaled incident of one fingerprint, as ingest compares occurrences."""

    id: int
    starts_at: str
    starts_at_ts: float  # seconds since the epoch
    status: str  # firing | resolved


@dataclass(slots=True)
class NewAction:
    incident_id: int
    strategy: str
    action: str
    executor: str
    target: str
    params: dict[str, Any]
    status: str
    reason: str
    dry_run: bool
    created_at: float
    #: the runbook step (1-based) and run (runbook_runs.id) it carries out
    step: int = 1
    run_id: int | None = None
    #: not claimed before (seconds since the epoch), and why it waits (a gate or `wait`)
    not_before: float | None = None
    waiting: str | None = None
    #: the fleet its target belongs to (fleets.fleet_key), when its strategy has `fleet`
    fleet: str | None = None


@dataclass(slots=True)
class NotificationRecord:
    received_at: float
    group_key: str
    receiver: str
    status: str
    alerts: int
    firing: int
    resolved: int
    truncated_alerts: int
    external_url: str
    summary: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int
    limit: int
    offset: int


class Transaction(Protocol):
    def find_incident(self, fingerprint: str, starts_at: str) -> IncidentRow | None: ...
    def insert_incident(self, incident: NewIncident) -> int | None: ...
    def touch_incident(self, incident_id: int, seen_at: float) -> None: ...
    def resolve_incident(
        self,
        incident_id: int,
        ends_at: str,
        ends_at_ts: float,
        seen_at: float,
        reason: str | None = None,
    ) -> float: ...
    def related_occurrences(
        self, fingerprint: str, starts_at_ts: float, starts_at: str
    ) -> list[Occurrence]: ...
    def insert_action(self, action: NewAction) -> int: ...
    def cancel_planned_actions(self, incident_id: int, reason: str, at: float) -> list[int]: ...
    def insert_notification(self, record: NotificationRecord) -> int: ...
    def count_alerts(self, firing: int, resolved: int) -> None: ...
    def count_intake(self, rejected: dict[str, int], dropped: int) -> None: ...


class Store(Protocol):
    url: str

    def transaction(self) -> AbstractContextManager[Transaction]: ...
    def write(self, work: Callable[[Transaction], T]) -> T: ...
    def ping(self) -> None: ...
    def list_incidents(
        self,
        *,
        status: str | None,
        service: str | None,
        alertname: str | None,
        limit: int,
        offset: int,
        bounds: PageBounds | None = None,
    ) -> Page: ...
    def list_actions(
        self,
        *,
        status: str | None,
        strategy: str | None,
        incident_id: int | None,
        limit: int,
        offset: int,
        bounds: PageBounds | None = None,
    ) -> Page: ...
    def incident_detail(
        self, incident_id: int, bounds: PageBounds, offset: int = 0
    ) -> dict[str, Any] | None: ...
    def waiting_counts(self) -> dict[str, int]: ...
    def breakers_page(self, limit: int, offset: int, bounds: PageBounds) -> Page: ...
    def list_notifications(
        self, *, group_key: str | None, limit: int, offset: int, bounds: PageBounds
    ) -> Page: ...
    def targets_page(self, limit: int, offset: int, bounds: PageBounds) -> Page: ...
    def apply_limits(self, limits: Limits) -> None: ...
    def admitted_label_values(self) -> dict[str, set[str]]: ...
    def counts(self) -> dict[str, int]: ...
    def seed_metrics(
        self, strategies: list[tuple[str, str]], runbooks: list[tuple[str, int]] = ()
    ) -> None: ...
    def close(self) -> None: ...


def storable(text: str) -> bool:
    """Whether every store's TEXT takes `text` (alerts.py): valid UTF-8 (JSON's `\\ud800`
    escapes make lone surrogates, which no UTF-8 encoder takes) and no NUL (PostgreSQL
    refuses it). A decision's `by` and `comment` must be (check before
    store/approvals.py record_decision), and so must a console filter."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text
