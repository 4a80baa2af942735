"""Talk back to Alertmanager (API v2): escalate to humans and silence alerts being fixed.

Escalation is an alert of its own (default `RemediationFailed`) so it reaches people via
the routes, receivers and inhibitions operators already maintain. It carries the original
labels minus `remediation`, the label operators use to route alerts to Remediator, so the
escalation can never be routed back to us and loop.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from receiver.config import Config, ExecutorConfig
from receiver.executors.base import (
    ActionRequest,
    ExecutionResult,
    Executor,
    ExecutorError,
    effective_timeout,
    seconds,
)
from receiver.executors.http import connection_reason

DEFAULT_ALERTNAME = "RemediationFailed"
DEFAULT_TIMEOUT = 10.0
#: Silence length when the dispatcher does not say; it expires the silence when done.
DEFAULT_SILENCE_DURATION = 3600.0
#: Label that routes alerts to Remediator; dropped from escalations to prevent loops.
ROUTING_LABEL = "remediation"
_SILENCE_ID = re.compile(r"[A-Za-z0-9-]{1,64}")


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC, as Alertmanager's API expects."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def escalation_alert(
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    reason: str,
    strategy: str,
    target: str,
    alertname: str = DEFAULT_ALERTNAME,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The alert posted for an escalation (pure, so explain and tests can show it)."""
    original = labels.get("alertname", "")
    kept = {k: v for k, v in labels.items() if k != ROUTING_LABEL and v}
    kept.update(
        {
            "alertname": alertname,
            "original_alertname": original,
            "remediation_strategy": strategy,
            "remediation_target": target,
        }
    )
    summary = f"Remediation failed for {original or 'an alert'} on {target}"
    notes = {"summary": summary, "reason": reason or "remediation failed"}
    if annotations.get("summary"):
        notes["original_summary"] = annotations["summary"]
    return {
        "labels": {k: v for k, v in kept.items() if v},
        "annotations": notes,
        "startsAt": timestamp(now or datetime.now(UTC)),
    }


class AlertmanagerExecutor(Executor):
    """`escalate` action, plus silence/expire used by the dispatcher around remediation."""

    type = "alertmanager"
    actions = frozenset({"escalate"})

    def __init__(self, config: ExecutorConfig, root: Config) -> None:
        super().__init__(config, root)
        own_url = self.settings.get("url")
        shared = root.alertmanager
        if not own_url and shared is None:
            raise ExecutorError(
                f"alertmanager executor {self.name!r} needs a url here or a top-level "
                "alertmanager.url"
            )
        self.url = str(own_url or shared.url).rstrip("/")
        fallback = shared.timeout if shared is not None and not own_url else DEFAULT_TIMEOUT
        self.timeout = float(self.settings.get("timeout", fallback))
        self.alertname = str(self.settings.get("alertname", DEFAULT_ALERTNAME))
        self.silence_duration = float(
            self.settings.get("silence_duration", DEFAULT_SILENCE_DURATION)
        )

    def execute(self, request: ActionRequest) -> ExecutionResult:
        if request.action not in self.actions:
            return self.unsupported(request)
        return self.escalate(
            request.labels,
            request.annotations,
            request.reason,
            request.strategy,
            request.target,
            timeout=effective_timeout(request.timeout, self.timeout),
        )

    def escalate(
        self,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        reason: str,
        strategy: str,
        target: str,
        *,
        timeout: float | None = None,
    ) -> ExecutionResult:
        """Post the escalation alert; failures come back as ok=False, never raised."""
        alert = escalation_alert(
            labels, annotations, reason, strategy, target, alertname=self.alertname
        )
        try:
            self._call("POST", "/api/v2/alerts", [alert], timeout)
        except ExecutorError as exc:
            return ExecutionResult(False, f"escalation not delivered: {exc}")
        original = alert["labels"].get("original_alertname", "an alert")
        return ExecutionResult(
            True, f"escalated as {self.alertname} for {original} on {target} to {self.url}"
        )

    def silence(self, labels: Mapping[str, str], duration: float, comment: str) -> str:
        """Silence alerts equal on every given (non-empty) label; return the silence id."""
        matchers = [
            {"name": name, "value": value, "isRegex": False, "isEqual": True}
            for name, value in sorted(labels.items())
            if value
        ]
        if not matchers:
            raise ExecutorError("cannot create a silence without any non-empty label")
        if duration <= 0:
            raise ExecutorError(f"silence duration must be positive, got {duration}")
        now = datetime.now(UTC)
        body = {
            "matchers": matchers,
            "startsAt": timestamp(now),
            "endsAt": timestamp(now + timedelta(seconds=duration)),
            "createdBy": "remediator",
            "comment": comment or "silenced by remediator while remediation runs",
        }
        answer = self._call("POST", "/api/v2/silences", body)
        try:
            return str(answer.json()["silenceID"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ExecutorError(f"Alertmanager at {self.url} returned no silenceID") from exc

    def expire_silence(self, silence_id: str) -> None:
        if not _SILENCE_ID.fullmatch(silence_id):
            raise ExecutorError(f"invalid silence id {silence_id!r}")
        self._call("DELETE", f"/api/v2/silence/{silence_id}")

    def _call(
        self, method: str, path: str, body: Any = None, timeout: float | None = None
    ) -> requests.Response:
        limit = timeout or self.timeout
        try:
            response = requests.request(
                method, self.url + path, json=body, timeout=limit, allow_redirects=False
            )
        except requests.Timeout as exc:
            message = f"Alertmanager at {self.url} did not answer within {seconds(limit)}"
            raise ExecutorError(message) from exc
        except requests.RequestException as exc:
            reason = connection_reason(exc)
            raise ExecutorError(f"cannot reach Alertmanager at {self.url}: {reason}") from exc
        if not 200 <= response.status_code < 300:
            text = " ".join(response.text.split())[:300]
            raise ExecutorError(
                f"Alertmanager {method} {path} answered HTTP {response.status_code}: {text}"
            )
        return response
