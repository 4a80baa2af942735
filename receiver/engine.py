"""Incident lifecycle and action planning.

Routing and rendering are pure (plans.py); runbook runs are journaled by runs.py.
`ingest` applies one notification to the journal in ONE transaction, so a
crash leaves either all of it or none of it, and Alertmanager's retry is safe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from receiver import runs
from receiver.alerts import Alert, Notification, format_timestamp
from receiver.config import Config
from receiver.matchers import route
from receiver.store.base import (
    NewIncident,
    NotificationRecord,
    Occurrence,
    Store,
    Transaction,
)

log = logging.getLogger(__name__)

CANCELLED_BY_RESOLUTION = "alert resolved before the action ran"
#: close_reason of an occurrence that a later one of its fingerprint replaced
SUPERSEDED = "superseded by the occurrence starting {}"
CANCELLED_BY_SUPERSEDING = (
    "alert no longer firing (superseded by the occurrence starting {}) before the action ran"
)


@dataclass
class IngestSummary:
    alerts: int = 0
    new_incidents: int = 0
    resolved: int = 0
    duplicates: int = 0
    actions_planned: int = 0
    actions_refused: int = 0
    actions_cancelled: int = 0
    unmatched: int = 0
    #: alerts journaled with an annotation cut or left out (alerts.TRUNCATION_MARKER)
    truncated: int = 0
    #: alerts refused alone, not journaled (listed in the answer's `rejected`)
    refused: int = 0
    #: alerts Alertmanager left out of the notification (its `truncatedAlerts`)
    truncated_alerts: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))  # flat ints: dataclasses.asdict's deep copy costs ~15% here

    def plus(self, other: IngestSummary) -> IngestSummary:
        """Both summaries added up, count by count (the chunks of one notification)."""
        return IngestSummary(**{name: n + getattr(other, name) for name, n in vars(self).items()})


# ---------------------------------------------------------------- ingest (journal)


def ingest(store: Store, config: Config, notification: Notification, now: float) -> IngestSummary:
    """Journal one notification, all of it or nothing (the transaction may be shared
    with other notifications arriving at the same moment: group commit); raises
    StoreUnavailable if it could not be written."""
    return store.write(journal_work(config, notification, now))


def journal_work(
    config: Config,
    notification: Notification,
    now: float,
    part: slice | None = None,
    before: IngestSummary | None = None,
) -> Callable[[Transaction], IngestSummary]:
    """What ingesting a notification writes, as work for one transaction (it may run
    twice: a shared transaction that fails is retried piece by piece).

    With `part` (a slice of `notification.alerts` with a stop) only those alerts are
    journaled: one chunk of a large notification, whose transaction is then bounded
    (see receiver/writer/process.py). Each alert is counted in
    `remediator_alerts_received_total` by the chunk that journals it; the chunk that
    reaches the end of the list also records the notification, its summary being
    `before` (the chunks committed earlier) plus its own, and counts its refused
    alerts and those Alertmanager left out (`remediator_alerts_rejected_total`,
    `remediator_alerts_truncated_total`); an alert journaled with a cut annotation is
    counted by the chunk that journals it. Returns this work's own
    summary. Chunks are safe to run again: an incident is keyed by (fingerprint,
    startsAt), so a journaled firing alert is then a duplicate that plans nothing."""
    alerts = notification.alerts if part is None else notification.alerts[part]
    last = part is None or part.stop >= len(notification.alerts)

    def journal(tx: Transaction) -> IngestSummary:
        summary = IngestSummary(alerts=len(alerts))
        for alert in alerts:
            if not _apply_alert(tx, config, alert, now, summary, notification.external_url):
                # another writer journaled its occurrence meanwhile: this look sees it
                _apply_alert(tx, config, alert, now, summary, notification.external_url)
        firing = sum(1 for alert in alerts if alert.status == "firing")
        tx.count_alerts(firing, len(alerts) - firing)
        summary.truncated = sum(1 for alert in alerts if alert.truncated)
        if last:
            summary.refused = len(notification.refused)
            summary.truncated_alerts = notification.truncated_alerts
            tx.count_intake(_rejections(notification, summary.truncated), summary.truncated_alerts)
        elif summary.truncated:
            tx.count_intake({"truncated": summary.truncated}, 0)
        if last:
            whole = summary if before is None else before.plus(summary)
            tx.insert_notification(_record(notification, now, whole))
        return summary

    return journal


def _apply_alert(
    tx: Transaction,
    config: Config,
    alert: Alert,
    now: float,
    summary: IngestSummary,
    external_url: str,
) -> bool:
    """Journal one alert. Alertmanager keeps one alert per fingerprint, so a new
    occurrence (a later startsAt) replaces the one before it, whose resolution may then
    never be sent: the older one still firing is closed as superseded at the new one's
    start. An occurrence older than one journaled (an HA twin lagging) opens nothing.

    With concurrent writers (replicas on PostgreSQL) another transaction may journal
    the same occurrence between this one's look and its insert: the insert then finds
    its key taken (after that transaction committed), and the alert is applied again,
    now seeing that occurrence: a duplicate, or its resolution.

    Returns False when an insert found its key taken: the caller then applies the alert
    again."""
    starts_at = alert.starts_at_text
    existing, latest = _occurrences(tx, alert, starts_at, now, summary)
    if alert.status == "firing":
        if existing is not None:  # a repeat, an HA twin, or a late firing after resolution
            tx.touch_incident(existing.id, now)
            summary.duplicates += 1
            if latest is not None and existing.status == "firing":
                _supersede(tx, existing, latest.starts_at, latest.starts_at_ts, now, summary)
            return True
        if latest is not None:  # replaced already: record it closed, act on nothing
            if not _record_superseded(tx, config, alert, starts_at, latest, now, external_url):
                return False
            summary.resolved += 1
            return True
        return _open_incident(tx, config, alert, starts_at, now, summary, external_url)
    ends_at = alert.ends_at or alert.starts_at
    if existing is None:  # resolved, never seen firing: record it closed, act on nothing
        recorded = tx.insert_incident(
            _new_incident(config, alert, starts_at, now, matched=False, external_url=external_url)
        )
        if recorded is None:
            return False
        summary.resolved += 1
        return True
    if existing.status == "resolved":
        summary.duplicates += 1
        return True
    duration = tx.resolve_incident(existing.id, format_timestamp(ends_at), ends_at.timestamp(), now)
    cancelled = tx.cancel_planned_actions(existing.id, CANCELLED_BY_RESOLUTION, now)
    summary.resolved += 1
    summary.actions_cancelled += len(cancelled)
    log.info(
        "incident resolved after %.1fs",
        duration,
        extra={"incident_id": existing.id, "cancelled_actions": cancelled},
    )
    return True


def _occurrences(
    tx: Transaction, alert: Alert, starts_at: str, now: float, summary: IngestSummary
) -> tuple[Occurrence | None, Occurrence | None]:
    """The alert's own occurrence if journaled, and the latest occurrence of its
    fingerprint that started after it, if any; the older ones still firing, which it
    replaced, are closed on the way."""
    start_ts = alert.starts_at.timestamp()
    related = tx.related_occurrences(alert.fingerprint, start_ts, starts_at)
    if not related:  # a fingerprint's first occurrence: most alerts
        return None, None
    existing = next((o for o in related if o.starts_at == starts_at), None)
    others = [o for o in related if o.starts_at != starts_at]
    for older in [o for o in others if o.status == "firing" and o.starts_at_ts < start_ts]:
        _supersede(tx, older, starts_at, start_ts, now, summary)
    newer = [o for o in others if o.starts_at_ts > start_ts]
    return existing, max(newer, key=lambda o: o.starts_at_ts) if newer else None


def _supersede(
    tx: Transaction,
    older: Occurrence,
    starts_at: str,
    start_ts: float,
    now: float,
    summary: IngestSummary,
) -> None:
    """Close a firing occurrence that the one starting at `starts_at` replaced: it ended
    then at the latest (never before its own start), and its planned actions are
    cancelled, as for a resolution (never act on an alert no longer firing)."""
    ends_ts = max(start_ts, older.starts_at_ts)
    reason = SUPERSEDED.format(starts_at)
    duration = tx.resolve_incident(older.id, starts_at, ends_ts, now, reason)
    cancelled = tx.cancel_planned_actions(older.id, CANCELLED_BY_SUPERSEDING.format(starts_at), now)
    summary.actions_cancelled += len(cancelled)
    log.info(
        "incident closed after %.1fs: %s",
        duration,
        reason,
        extra={"incident_id": older.id, "cancelled_actions": cancelled},
    )


def _record_superseded(
    tx: Transaction,
    config: Config,
    alert: Alert,
    starts_at: str,
    latest: Occurrence,
    now: float,
    external_url: str,
) -> bool:
    """A firing occurrence older than one journaled (an HA pair's lagging twin): record
    it closed when the later one started, with no action; never re-open anything.
    False when its key was journaled meanwhile (see _apply_alert)."""
    incident = _new_incident(
        config, alert, starts_at, now, matched=False, external_url=external_url
    )
    recorded = tx.insert_incident(
        replace(
            incident,
            status="resolved",
            ends_at=latest.starts_at,
            ends_at_ts=latest.starts_at_ts,
            close_reason=SUPERSEDED.format(latest.starts_at),
        )
    )
    return recorded is not None


def _open_incident(
    tx: Transaction,
    config: Config,
    alert: Alert,
    starts_at: str,
    now: float,
    summary: IngestSummary,
    external_url: str,
) -> bool:
    """Journal a new incident and start the runbook of each strategy it matches. The
    first action planned tells the opening in its log line; an incident with none
    planned (unmatched, refused) has a line of its own. False, planning nothing, when
    its key was journaled meanwhile (see _apply_alert)."""
    strategies = route(config.strategies, alert.labels)
    incident_id = tx.insert_incident(
        _new_incident(config, alert, starts_at, now, bool(strategies), external_url)
    )
    if incident_id is None:
        return False
    summary.new_incidents += 1
    if not strategies:
        summary.unmatched += 1
    opening: runs.Opening | None = runs.Opening(alert.alertname, alert.fingerprint)
    context = alert.template_context() if strategies else {}
    for strategy in strategies:
        planned = runs.start(tx, strategy, incident_id, context, now, opening=opening)
        summary.actions_planned += planned.actions
        summary.actions_refused += planned.refused
        if planned.actions:
            opening = None  # told
    if opening is not None:
        log.info(
            "incident opened: %s",
            alert.alertname,
            extra={"incident_id": incident_id, "fingerprint": alert.fingerprint},
        )
    return True


def _new_incident(
    config: Config,
    alert: Alert,
    starts_at: str,
    now: float,
    matched: bool,
    external_url: str = "",
) -> NewIncident:
    resolved = alert.status == "resolved"
    ends_at = (alert.ends_at or alert.starts_at) if resolved else None
    return NewIncident(
        fingerprint=alert.fingerprint,
        starts_at=starts_at,
        starts_at_ts=alert.starts_at.timestamp(),
        alertname=alert.alertname,
        service=config.service_of(alert.labels),
        status=alert.status,
        labels=alert.labels,
        annotations=alert.annotations,
        generator_url=alert.generator_url,
        seen_at=now,
        matched=matched,
        ends_at=format_timestamp(ends_at) if ends_at else None,
        ends_at_ts=ends_at.timestamp() if ends_at else None,
        external_url=external_url or None,
    )


def _rejections(notification: Notification, truncated: int) -> dict[str, int]:
    """remediator_alerts_rejected_total's increments by reason: the refused alerts and
    `truncated` alerts journaled cut."""
    counts = {"truncated": truncated} if truncated else {}
    for refusal in notification.refused:
        counts[refusal.reason] = counts.get(refusal.reason, 0) + 1
    return counts


def _record(notification: Notification, now: float, summary: IngestSummary) -> NotificationRecord:
    firing = sum(1 for alert in notification.alerts if alert.status == "firing")
    return NotificationRecord(
        received_at=now,
        group_key=notification.group_key,
        receiver=notification.receiver,
        status=notification.status,
        alerts=len(notification.alerts),
        firing=firing,
        resolved=len(notification.alerts) - firing,
        truncated_alerts=notification.truncated_alerts,
        external_url=notification.external_url,
        summary=summary.as_dict(),
    )
