"""Incident lifecycle and action planning.

`plan_for` is pure: labels in, rendered plans out (also what `remediator explain`
shows). `ingest` applies one notification to the journal in ONE transaction, so a
crash leaves either all of it or none of it, and Alertmanager's retry is safe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from receiver.alerts import Alert, Notification, format_timestamp
from receiver.config import Config, Precondition, Strategy
from receiver.matchers import Matcher, route
from receiver.store.base import (
    NewAction,
    NewIncident,
    NotificationRecord,
    Occurrence,
    Store,
    Transaction,
)
from receiver.templates import RenderError, Template, UnsafeValueError, check_safe

log = logging.getLogger(__name__)

CANCELLED_BY_RESOLUTION = "alert resolved before the action ran"
#: close_reason of an occurrence that a later one of its fingerprint replaced
SUPERSEDED = "superseded by the occurrence starting {}"
CANCELLED_BY_SUPERSEDING = (
    "alert no longer firing (superseded by the occurrence starting {}) before the action ran"
)


@dataclass(frozen=True)
class Plan:
    """What a strategy would do for one alert, rendered; `refused` says why it won't."""

    strategy: Strategy
    target: str
    params: dict[str, Any]
    refused: str | None = None


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


# ---------------------------------------------------------------- planning (pure)


def plan_for(config: Config, alert: Alert) -> list[Plan]:
    """Route an alert to its strategies and render each one's target and parameters."""
    return [
        render_plan(s, alert.template_context()) for s in route(config.strategies, alert.labels)
    ]


def render_plan(strategy: Strategy, context: dict[str, Any]) -> Plan:
    """The strategy's target and parameters rendered for one alert, or a refused plan
    saying why (a template error, an unsafe value). A refused plan keeps its target
    when the target itself rendered safely, so the journal says where it was refused."""
    safe_target = ""
    try:
        rendered = _render(strategy.target, context, strategy)
        target = check_safe(rendered, strategy.safe_pattern, "target")
        if "\x00" in target:  # even a permissive pattern: the journal's column refuses it
            raise UnsafeValueError(f"target {target[:80]!r} contains a NUL character")
        safe_target = target
        params = _render_params(strategy, {**context, "target": target})
    except (RenderError, UnsafeValueError) as exc:
        reason = f"refused: {exc}".replace("\x00", "\\x00")  # the reason is a column too
        return Plan(strategy, safe_target, {}, refused=reason)
    return Plan(strategy, target, params)


def _render(template: Template, context: dict[str, Any], strategy: Strategy) -> str:
    return template.render(context, strategy.safe_pattern)


def _render_params(strategy: Strategy, context: dict[str, Any]) -> dict[str, Any]:
    """Render everything an executor will need now, while the alert is at hand, so the
    journal shows exactly what will be run and the dispatcher never re-reads labels."""
    params = {name: _render(t, context, strategy) for name, t in strategy.params.items()}
    context = {**context, "params": params}
    rendered: dict[str, Any] = {"params": params}
    if strategy.command:
        rendered["command"] = [_render(arg, context, strategy) for arg in strategy.command]
    if strategy.request:
        request = strategy.request
        rendered["request"] = {
            "method": request.method,
            "url": _render(request.url, context, strategy),
            "headers": {k: _render(v, context, strategy) for k, v in request.headers.items()},
            "body": _render_body(request.body, context, strategy),
        }
    if strategy.verify:
        rendered["verify_query"] = _render(strategy.verify.query, context, strategy)
    if strategy.scale and strategy.scale.query:
        rendered["scale_query"] = _render(strategy.scale.query, context, strategy)
    queries = [_render(p.query, context, strategy) for p in strategy.preconditions if p.query]
    if queries:
        rendered["precondition_queries"] = queries
    silencing = [_render_matchers(p, context, strategy) for p in strategy.preconditions]
    if any(silencing):
        rendered["precondition_alerts"] = [m for m in silencing if m]
    return rendered


def _render_matchers(
    precondition: Precondition, context: dict[str, Any], strategy: Strategy
) -> list[str]:
    """`alert_not_firing` matcher values may name the alert's own labels."""
    return [
        str(Matcher(m.name, m.op, _render(template, context, strategy)))
        for m, template in zip(
            precondition.alert_not_firing, precondition.value_templates, strict=True
        )
    ]


def _render_body(body: Any, context: dict[str, Any], strategy: Strategy) -> Any:
    if isinstance(body, Template):
        return _render(body, context, strategy)
    if isinstance(body, dict):
        return {k: _render_body(v, context, strategy) for k, v in body.items()}
    if isinstance(body, list):
        return [_render_body(v, context, strategy) for v in body]
    return body


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
) -> None:
    """Journal one alert. Alertmanager keeps one alert per fingerprint, so a new
    occurrence (a later startsAt) replaces the one before it, whose resolution may then
    never be sent: the older one still firing is closed as superseded at the new one's
    start. An occurrence older than one journaled (an HA twin lagging) opens nothing."""
    starts_at = format_timestamp(alert.starts_at)
    existing, latest = _occurrences(tx, alert, starts_at, now, summary)
    if alert.status == "firing":
        if existing is not None:  # a repeat, an HA twin, or a late firing after resolution
            tx.touch_incident(existing.id, now)
            summary.duplicates += 1
            if latest is not None and existing.status == "firing":
                _supersede(tx, existing, latest.starts_at, latest.starts_at_ts, now, summary)
            return
        if latest is not None:  # replaced already: record it closed, act on nothing
            _record_superseded(tx, config, alert, starts_at, latest, now, external_url)
            summary.resolved += 1
            return
        _open_incident(tx, config, alert, starts_at, now, summary, external_url)
        return
    ends_at = alert.ends_at or alert.starts_at
    if existing is None:  # resolved, never seen firing: record it closed, act on nothing
        tx.insert_incident(
            _new_incident(config, alert, starts_at, now, matched=False, external_url=external_url)
        )
        summary.resolved += 1
        return
    if existing.status == "resolved":
        summary.duplicates += 1
        return
    duration = tx.resolve_incident(existing.id, format_timestamp(ends_at), ends_at.timestamp(), now)
    cancelled = tx.cancel_planned_actions(existing.id, CANCELLED_BY_RESOLUTION, now)
    summary.resolved += 1
    summary.actions_cancelled += len(cancelled)
    log.info(
        "incident resolved after %.1fs",
        duration,
        extra={"incident_id": existing.id, "cancelled_actions": cancelled},
    )


def _occurrences(
    tx: Transaction, alert: Alert, starts_at: str, now: float, summary: IngestSummary
) -> tuple[Occurrence | None, Occurrence | None]:
    """The alert's own occurrence if journaled, and the latest occurrence of its
    fingerprint that started after it, if any; the older ones still firing, which it
    replaced, are closed on the way."""
    start_ts = alert.starts_at.timestamp()
    related = tx.related_occurrences(alert.fingerprint, start_ts, starts_at)
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
) -> None:
    """A firing occurrence older than one journaled (an HA pair's lagging twin): record
    it closed when the later one started, with no action; never re-open anything."""
    incident = _new_incident(
        config, alert, starts_at, now, matched=False, external_url=external_url
    )
    tx.insert_incident(
        replace(
            incident,
            status="resolved",
            ends_at=latest.starts_at,
            ends_at_ts=latest.starts_at_ts,
            close_reason=SUPERSEDED.format(latest.starts_at),
        )
    )


def _open_incident(
    tx: Transaction,
    config: Config,
    alert: Alert,
    starts_at: str,
    now: float,
    summary: IngestSummary,
    external_url: str,
) -> None:
    plans = plan_for(config, alert)
    incident_id = tx.insert_incident(
        _new_incident(config, alert, starts_at, now, bool(plans), external_url)
    )
    summary.new_incidents += 1
    if not plans:
        summary.unmatched += 1
    log.info(
        "incident opened: %s",
        alert.alertname,
        extra={"incident_id": incident_id, "fingerprint": alert.fingerprint},
    )
    for plan in plans:
        action_id = tx.insert_action(_new_action(incident_id, plan, now))
        if plan.refused:
            summary.actions_refused += 1
            log.warning(
                "action refused: %s",
                plan.refused,
                extra={"incident_id": incident_id, "action_id": action_id},
            )
        else:
            summary.actions_planned += 1
            log.info(
                "action planned: %s %s on %s",
                plan.strategy.name,
                plan.strategy.action,
                plan.target,
                extra={"incident_id": incident_id, "action_id": action_id},
            )


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


def _new_action(incident_id: int, plan: Plan, now: float) -> NewAction:
    strategy = plan.strategy
    return NewAction(
        incident_id=incident_id,
        strategy=strategy.name,
        action=strategy.action,
        executor=strategy.executor,
        target=plan.target,
        params=plan.params,
        status="skipped" if plan.refused else "planned",
        reason=plan.refused or "matched strategy " + strategy.name,
        dry_run=strategy.dry_run,
        created_at=now,
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
