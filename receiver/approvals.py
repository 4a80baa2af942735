"""Human approval of an action before it runs (pure).

A strategy (or a runbook step) with `approval: {required: true}` holds each of its
actions until a person decides, the alert resolves, or the timeout passes:

    planned ──(claim: approval gate)──► awaiting_approval ──approve──► gates ──► running
                                              │  ──deny──────────────► skipped "denied by X"
                                              │  ──timeout, skip─────► skipped "approval timed out"
                                              │  ──timeout, run──────► gates ──► running
                                              └──alert resolved──────► cancelled

Waiting for approval is a DELAY (DESIGN.md "Gates delay or end"): the action stays
planned, its `waiting` is `awaiting_approval` and it is looked at again at its deadline.
A decision is a fact journaled on its own (who, when, comment); the next claim acts on
it, so approval opens only the approval gate: the lock, cooldown, budget, concurrency
cap and breaker still judge the action afterwards (gates.py).

People hear of a pending approval where they already listen: an alert
`RemediationAwaitingApproval` posted to Alertmanager's API v2 (`awaiting_alert`), ended
(endsAt now) once the approval is decided, cancelled or timed out (`ended_alert`). It
links to the action's console page under the external URL (`action_url`, and its
`generatorURL`, which Alertmanager's UI and most notification templates show as the
alert's source), and names the API resource too (`api_url`, approve, deny).

The caller reads the journaled `ApprovalState` (None before the first look), calls
`judge` with its `now` (epoch seconds), and persists the state the judgement carries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from receiver.durations import format_duration
from receiver.links import ACTION_API, ACTION_PAGE, console_url

#: The gate (and the action's `waiting`) of an action held for a person.
AWAITING = "awaiting_approval"
ALERTNAME = "RemediationAwaitingApproval"
SKIP_ON_TIMEOUT, RUN_ON_TIMEOUT = "skip", "run"
ON_TIMEOUT = (SKIP_ON_TIMEOUT, RUN_ON_TIMEOUT)
#: Decisions as journaled.
APPROVED, DENIED, TIMED_OUT = "approved", "denied", "timed_out"
DEFAULT_TIMEOUT = 15 * 60.0
#: Judgements.
PROCEED, WAIT, SKIP = "proceed", "wait", "skip"
#: Where a person looks at the action and decides: its console page (approve and deny
#: buttons), under the external URL (links.py).
ACTION_PATH = ACTION_PAGE
#: Longest rendered command/request carried in the alert's annotation (characters).
MAX_WHAT_CHARS = 2000


@dataclass(frozen=True)
class ApprovalSettings:
    """`approval:` of a strategy or step: `required`, `timeout` (seconds a decision is
    awaited, > 0) and `on_timeout` (`skip` ends the action, `run` proceeds as if
    approved). Raises ValueError for anything else."""

    required: bool = True
    timeout: float = DEFAULT_TIMEOUT
    on_timeout: str = SKIP_ON_TIMEOUT

    def __post_init__(self) -> None:
        if not self.timeout > 0 or self.timeout == float("inf"):
            raise ValueError(f"timeout must be a positive duration, got {self.timeout!r}")
        if self.on_timeout not in ON_TIMEOUT:
            raise ValueError(f"on_timeout must be skip or run, got {self.on_timeout!r}")

    def describe(self) -> str:
        """One line for `check` and `explain`."""
        then = "skipped" if self.on_timeout == SKIP_ON_TIMEOUT else "run as if approved"
        return f"waits up to {format_duration(self.timeout)} for a person, then {then}"


@dataclass(frozen=True)
class ApprovalState:
    """One action's approval as journaled: when it was requested, its `deadline` and
    `on_timeout` (fixed at request: a reload does not change a pending approval), and
    the decision (`approved` | `denied` | `timed_out`, None while awaited) with who made
    it (`decided_by`), when (`decided_at`, epoch seconds) and the person's `comment`."""

    requested_at: float
    deadline: float
    on_timeout: str = SKIP_ON_TIMEOUT
    decision: str | None = None
    decided_by: str = ""
    decided_at: float | None = None
    comment: str = ""

    @property
    def awaiting(self) -> bool:
        return self.decision is None


@dataclass(frozen=True)
class Judgement:
    """What the approval gate says: `outcome` proceed | wait | skip, the `reason` for the
    journal, the `state` to persist (None: nothing changed) and, of a wait, when to
    look again (`not_before`, epoch seconds: the deadline)."""

    outcome: str
    reason: str
    state: ApprovalState | None = None
    not_before: float | None = None


class NotAwaiting(Exception):
    """A decision for an action whose approval is not awaited (decided or ended)."""


def request(settings: ApprovalSettings, now: float) -> ApprovalState:
    """A new approval requested at `now`."""
    return ApprovalState(now, now + settings.timeout, settings.on_timeout)


def judge(state: ApprovalState | None, settings: ApprovalSettings, now: float) -> Judgement:
    """The approval gate for one action at `now`: request it (first look), keep waiting,
    act on the decision, or on the timeout (`state.on_timeout`, as requested)."""
    if state is None:
        state = request(settings, now)
        return Judgement(WAIT, _waiting_reason(state), state, state.deadline)
    if state.decision == APPROVED:
        return Judgement(PROCEED, f"approved by {state.decided_by}")
    if state.decision == DENIED:
        return Judgement(SKIP, denied_reason(state))
    if state.decision == TIMED_OUT:
        if state.on_timeout == RUN_ON_TIMEOUT:
            return Judgement(PROCEED, "approval timed out: running")
        return Judgement(SKIP, _timed_out_reason(state))
    if now < state.deadline:
        return Judgement(WAIT, _waiting_reason(state), None, state.deadline)
    timed_out = replace(state, decision=TIMED_OUT, decided_by="timeout", decided_at=now)
    if state.on_timeout == RUN_ON_TIMEOUT:
        return Judgement(PROCEED, "approval timed out: running", timed_out)
    return Judgement(SKIP, _timed_out_reason(state), timed_out)


def decide(
    state: ApprovalState | None, decision: str, by: str, comment: str, now: float
) -> ApprovalState:
    """A person's decision (`approved` or `denied`) by `by` at `now`. Raises NotAwaiting
    when the approval is not awaited (never requested, decided, or past its deadline:
    the timeout decided it), ValueError for another decision."""
    if decision not in (APPROVED, DENIED):
        raise ValueError(f"decision must be approved or denied, got {decision!r}")
    if state is None:
        raise NotAwaiting("not awaiting approval")
    if not state.awaiting:
        raise NotAwaiting(f"already {state.decision} by {state.decided_by}")
    if now >= state.deadline:
        raise NotAwaiting("approval timed out")
    return replace(state, decision=decision, decided_by=by, decided_at=now, comment=comment)


def decision_note(state: ApprovalState) -> str:
    """The journal's line for a person's decision: `approved by alice: looks safe`."""
    note = f"{state.decision} by {state.decided_by}"
    return f"{note}: {state.comment}" if state.comment else note


def denied_reason(state: ApprovalState) -> str:
    return f"denied by {state.decided_by}" + (f": {state.comment}" if state.comment else "")


def _timed_out_reason(state: ApprovalState) -> str:
    waited = format_duration(state.deadline - state.requested_at)
    return f"approval timed out after {waited}"


def _waiting_reason(state: ApprovalState) -> str:
    then = "skipped" if state.on_timeout == SKIP_ON_TIMEOUT else "run"
    left = format_duration(state.deadline - state.requested_at)
    return f"{AWAITING}: a person must approve or deny within {left}, else {then}"


def what_would_run(action: str, target: str, params: dict[str, Any]) -> str:
    """The rendered command or request an action would carry out, as one line for
    people (cut at MAX_WHAT_CHARS)."""
    if params.get("command"):
        what = json.dumps(params["command"])
    elif params.get("request"):
        req = params["request"]
        what = f"{req.get('method', 'POST')} {req.get('url', '')}"
        if req.get("body") not in (None, "", {}):
            what += f" {json.dumps(req['body'], sort_keys=True)}"
    else:
        what = f"{action} {target}"
    return what if len(what) <= MAX_WHAT_CHARS else what[: MAX_WHAT_CHARS - 1] + "…"


def awaiting_alert(
    action_id: int,
    strategy: str,
    action: str,
    target: str,
    params: dict[str, Any],
    labels: dict[str, str],
    annotations: dict[str, str],
    state: ApprovalState,
    *,
    external_url: str,
) -> dict[str, Any]:
    """The `RemediationAwaitingApproval` alert (Alertmanager API v2 shape) for one
    action: the original labels (its alertname as `original_alertname`), the strategy,
    target and action id; annotations say what would be run, where to decide and the
    deadline: `action_url` the action's console page `<external_url>/actions/<id>`
    (also the alert's `generatorURL`), `api_url` its API resource, `approve`/`deny` the
    requests that decide. `external_url` is the validated URL people reach Remediator
    at (links.py). `endsAt` is the deadline, so the alert ends by itself even if its end
    is never posted."""
    original = labels.get("alertname", "")
    kept = {k: v for k, v in labels.items() if v and k != "alertname"}
    kept.update(
        {
            "alertname": ALERTNAME,
            "original_alertname": original,
            "remediation_strategy": strategy,
            "remediation_target": target,
            "remediation_action_id": str(action_id),
        }
    )
    page = console_url(external_url, ACTION_PATH.format(id=action_id))
    api = console_url(external_url, ACTION_API.format(id=action_id))
    notes = {
        "summary": f"Approval needed: {action} {target} for {original or 'an alert'}",
        "would_run": what_would_run(action, target, params),
        "action_url": page,
        "api_url": api,
        "approve": f"POST {api}/approve",
        "deny": f"POST {api}/deny",
        "deadline": _rfc3339(state.deadline),
        "on_timeout": state.on_timeout,
    }
    if annotations.get("summary"):
        notes["original_summary"] = annotations["summary"]
    return {
        "labels": {k: v for k, v in kept.items() if v},
        "annotations": notes,
        "startsAt": _rfc3339(state.requested_at),
        "endsAt": _rfc3339(state.deadline),
        "generatorURL": page,
    }


def ended_alert(alert: dict[str, Any], now: float) -> dict[str, Any]:
    """The same alert ended at `now` (Alertmanager resolves it)."""
    return {**alert, "endsAt": _rfc3339(now)}


def _rfc3339(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def logged_note(alert: dict[str, Any], firing: bool) -> str:
    """What the journal and the log say of the awaiting alert when the escalation
    executor is `log` (nothing is posted): the alert's own words, so a person reading the
    log can act (where to decide, what would run, by when). `alert` as awaiting_alert
    built it."""
    if not firing:
        return f"{ALERTNAME} ended (logged, not sent to Alertmanager: a `log` executor)"
    notes = alert.get("annotations", {})
    return (
        f"{ALERTNAME} logged, not sent to Alertmanager (a `log` executor): "
        f"{notes.get('summary', '')}; approve or deny at {notes.get('action_url', '')} "
        f"by {notes.get('deadline', '')} (then {notes.get('on_timeout', '')}); "
        f"would run: {notes.get('would_run', '')}"
    )
