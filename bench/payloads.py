"""Alertmanager v4 webhook bodies for the benchmarks, shaped like the real thing.

Every alert is distinct (its own labels, hence its own fingerprint), so each one is a
new incident: real work for the journal, never a duplicate. Fingerprints are 16 hex
digits whose first 12 name the notification that carried the alert, so the journal
can be reconciled with what the load generator saw answered.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def alert(
    fingerprint: str,
    *,
    alertname: str,
    service: str,
    instance: str,
    starts_at: str,
    status: str = "firing",
    ends_at: str = ZERO_TIME,
) -> dict[str, Any]:
    labels = {
        "alertname": alertname,
        "service": service,
        "instance": instance,
        "job": service,
        "severity": "page",
    }
    return {
        "status": status,
        "labels": labels,
        "annotations": {
            "summary": f"{alertname} on {instance}",
            "description": f"{service} instance {instance} is not healthy",
        },
        "startsAt": starts_at,
        "endsAt": ends_at,
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1",
        "fingerprint": fingerprint,
    }


def notification(alerts: list[dict[str, Any]], group_key: str) -> dict[str, Any]:
    firing = [a for a in alerts if a["status"] == "firing"]
    name = alerts[0]["labels"]["alertname"]
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": "remediator",
        "groupLabels": {"alertname": name},
        "commonLabels": {"alertname": name, "severity": "page"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": alerts,
    }


def encode(payload: dict[str, Any]) -> bytes:
    """Compact JSON, as Alertmanager (Go's encoding/json) sends it."""
    return json.dumps(payload, separators=(",", ":")).encode()


def template(size: int, alertname: str, starts_at: str) -> str:
    """A body for wrk with placeholders: @RUN@ (2 hex digits, one wrk run), @TID@ (2 hex
    digits, the wrk thread) and @SEQ@ (8 hex digits, the thread's request number). Each
    substitution gives a distinct notification of `size` distinct alerts."""
    request_id = "@RUN@@TID@@SEQ@"
    alerts = [
        alert(
            f"{request_id}{i:04x}",
            alertname=alertname,
            service=f"svc-{i % 10}",
            instance=f"host-{request_id}-{i:04x}:9100",
            starts_at=starts_at,
        )
        for i in range(size)
    ]
    group_key = f'{{}}:{{alertname="{alertname}",req="{request_id}"}}'
    return encode(notification(alerts, group_key)).decode()


def now_rfc3339(offset_seconds: float = 0.0) -> str:
    return rfc3339(datetime.now(UTC) + timedelta(seconds=offset_seconds))
