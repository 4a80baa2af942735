"""Alertmanager v4 webhook payloads, shaped like the real thing."""

from __future__ import annotations

from typing import Any

from receiver.alerts import fingerprint_of

ZERO_TIME = "0001-01-01T00:00:00Z"


def alert(
    alertname: str = "ServiceDown",
    *,
    status: str = "firing",
    starts_at: str = "2026-11-21T10:00:00.123456789Z",
    ends_at: str = ZERO_TIME,
    fingerprint: str | None = None,
    **labels: str,
) -> dict[str, Any]:
    all_labels = {"alertname": alertname, **labels}
    return {
        "status": status,
        "labels": all_labels,
        "annotations": {"summary": f"{alertname} on {labels.get('service', '?')}"},
        "startsAt": starts_at,
        "endsAt": ends_at,
        "generatorURL": "http://prometheus.example/graph?g0.expr=up",
        "fingerprint": fingerprint or fingerprint_of(all_labels),
    }


def notification(*alerts: dict[str, Any], group_key: str = '{}:{alertname="ServiceDown"}'):
    firing = [a for a in alerts if a["status"] == "firing"]
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": "remediator",
        "groupLabels": {"alertname": alerts[0]["labels"]["alertname"]} if alerts else {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example",
        "alerts": list(alerts),
        "someFutureField": {"ignored": True},
    }
