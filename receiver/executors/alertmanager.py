"""Talk back to Alertmanager (API v2): escalate to humans and silence alerts being fixed.

Escalation is an alert of its own (default `RemediationFailed`) so it reaches people via
the routes, receivers and inhibitions operators already maintain. It carries the original
labels minus `remediation`, the label operators use to route alerts to Remediator, so the
escalation can never be routed back to us and loop.

Label names may be UTF-8 (`k8s.pod.name`), which Alertmanager 0.27+ takes and older
ones (0.25, Debian's) refuse with HTTP 400 ("invalid label set: invalid name"), for an
alert or a silence matcher alike. So an escalation or silence carrying such a name is
sent as it is first; refused with 400, it is sent again with classic names only, and the
executor remembers that this Alertmanager refuses them. An escalation renames each such
label as Prometheus translates OpenTelemetry names (`k8s.pod.name` -> `k8s_pod_name`),
unless that name is taken; a silence drops those matchers, since that Alertmanager holds
no alert with such a label anyway. Each time, a WARNING log and the result say which.
"""

from __future__ import annotations

import logging
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
from receiver.matchers import LABEL_NAME

log = logging.getLogger(__name__)

DEFAULT_ALERTNAME = "RemediationFailed"
DEFAULT_TIMEOUT = 10.0
#: Silence length when the dispatcher does not say; it expires the silence when done.
DEFAULT_SILENCE_DURATION = 3600.0
#: Label that routes alerts to Remediator; dropped from escalations to prevent loops.
ROUTING_LABEL = "remediation"
_SILENCE_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_NOTHING_CLASSIC = "refuses UTF-8 label names, and the alert has no other label to silence by"


class RefusedError(ExecutorError):
    """Alertmanager answered HTTP 400: it refused what was sent (e.g. a UTF-8 name)."""


def classic_name(name: str) -> str:
    """`name` as a classic label name: each character outside [a-zA-Z0-9_] becomes `_`,
    and `_` goes in front of a leading digit (`k8s.pod.name` -> `k8s_pod_name`)."""
    mapped = re.sub(r"[^a-zA-Z0-9_]", "_", name)
    return f"_{mapped}" if mapped[:1].isdigit() else mapped


def classic_labels(labels: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """(labels with classic names only, notes on each name changed), for an
    Alertmanager that refuses UTF-8 names. Classic names are kept as they are; the
    others, in code-point order, take their classic_name unless it is already taken,
    then they are dropped: the outcome never depends on the payload's order."""
    kept = {k: v for k, v in labels.items() if LABEL_NAME.fullmatch(k)}
    notes = []
    for name in sorted(k for k in labels if k not in kept):
        renamed = classic_name(name)
        if renamed in kept:
            notes.append(f"{name!r} dropped ({renamed!r} taken)")
        else:
            kept[renamed] = labels[name]
            notes.append(f"{name!r} -> {renamed!r}")
    return kept, notes


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
    details: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The alert posted for an escalation (pure, so explain and tests can show it);
    `details` are added to its annotations (a runbook's `runbook_trail`, `runbook_run`)."""
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
    notes.update(details or {})
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
        #: set once this Alertmanager refused a UTF-8 label name (before 0.27)
        self.classic_names_only = False

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
        details: Mapping[str, str] | None = None,
    ) -> ExecutionResult:
        """Post the escalation alert (`details`: extra annotations); failures come back as
        ok=False, never raised."""
        alert = escalation_alert(
            labels, annotations, reason, strategy, target, alertname=self.alertname, details=details
        )
        try:
            note = self._send_alert(alert, timeout)
        except ExecutorError as exc:
            return ExecutionResult(False, f"escalation not delivered: {exc}")
        original = alert["labels"].get("original_alertname", "an alert")
        return ExecutionResult(
            True,
            f"escalated as {self.alertname} for {original} on {target} to {self.url}{note}",
        )

    def post_alert(self, alert: dict[str, Any], timeout: float | None = None) -> str:
        """Post one alert as it is (API v2 shape: labels, annotations, startsAt, endsAt),
        e.g. approvals.awaiting_alert; returns what was changed ("" when nothing).
        Raises ExecutorError when it is not delivered."""
        return self._send_alert(alert, timeout)

    def _send_alert(self, alert: dict[str, Any], timeout: float | None) -> str:
        """Post one alert, again with classic names if UTF-8 ones are refused; return
        what was changed ("" when nothing). Raises ExecutorError."""
        classic, notes = classic_labels(alert["labels"])
        if notes and not self.classic_names_only:
            try:
                self._call("POST", "/api/v2/alerts", [alert], timeout)
                return ""
            except RefusedError as exc:
                self._refuses_utf8(exc, [k for k in alert["labels"] if k not in classic])
        if notes:
            self._call("POST", "/api/v2/alerts", [{**alert, "labels": classic}], timeout)
            return self._changed("escalation", notes)
        self._call("POST", "/api/v2/alerts", [alert], timeout)
        return ""

    def _refuses_utf8(self, exc: RefusedError, names: list[str]) -> None:
        """Note that this Alertmanager refuses UTF-8 names, or re-raise `exc` when its
        400 is about something else (the answer names none of `names`)."""
        text = str(exc)
        if not any(name in text for name in names) and "invalid label name" not in text:
            raise exc
        self.classic_names_only = True
        log.warning(
            "Alertmanager at %s refuses UTF-8 label names (%s): escalations and silences "
            "sent to it carry classic names only from now on",
            self.url,
            exc,
        )

    def _changed(self, what: str, notes: list[str]) -> str:
        text = ", ".join(notes)
        log.warning("%s to Alertmanager at %s without UTF-8 label names: %s", what, self.url, text)
        return f" (UTF-8 label names refused there: {text})"

    def silence(self, labels: Mapping[str, str], duration: float, comment: str) -> str:
        """Silence alerts equal on every given (non-empty) label; return the silence id.

        An Alertmanager that refuses UTF-8 names gets the silence without the matchers
        on such names (it holds no alert with them). Raises ExecutorError."""
        matchers = [
            {"name": name, "value": value, "isRegex": False, "isEqual": True}
            for name, value in sorted(labels.items())
            if value
        ]
        classic = [m for m in matchers if LABEL_NAME.fullmatch(m["name"])]
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
        answer = None
        if len(classic) == len(matchers) or not self.classic_names_only:
            try:
                answer = self._call("POST", "/api/v2/silences", body)
            except RefusedError as exc:
                if len(classic) == len(matchers):
                    raise
                self._refuses_utf8(exc, [m["name"] for m in matchers if m not in classic])
                if not classic:
                    raise ExecutorError(f"{exc}; {_NOTHING_CLASSIC}") from exc
        if answer is None:
            answer = self._silence_classic({**body, "matchers": classic}, matchers)
        try:
            return str(answer.json()["silenceID"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ExecutorError(f"Alertmanager at {self.url} returned no silenceID") from exc

    def _silence_classic(
        self, body: dict[str, Any], matchers: list[dict[str, Any]]
    ) -> requests.Response:
        if not body["matchers"]:
            raise ExecutorError(f"Alertmanager at {self.url} {_NOTHING_CLASSIC}")
        self._changed("silence", _dropped(matchers, body["matchers"]))
        return self._call("POST", "/api/v2/silences", body)

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
            refused = RefusedError if response.status_code == 400 else ExecutorError
            raise refused(
                f"Alertmanager {method} {path} answered HTTP {response.status_code}: {text}"
            )
        return response


def _dropped(matchers: list[dict[str, Any]], kept: list[dict[str, Any]]) -> list[str]:
    return [f"matcher on {m['name']!r} dropped" for m in matchers if m not in kept]
