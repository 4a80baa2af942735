"""An incident's timeline: what the journal holds about one incident, as one list of
entries in the order things happened (pure: plain values in, entries out).

    notifications ─┐
    the incident ──┼──► entries (kind, at, title, detail) ──► sorted by `at`, ties in
    its actions ───┤                                           journal order
    runbook runs ──┤
    analyses ──────┘

Sources and kinds (`Entry.kind`, the words the console shows and tests select by):

- each webhook `notification` of the incident's group received while it was open;
- `opened` (first journaled), `resolved` (the alert's endsAt; "closed" with its reason
  when no resolution closed it: superseded, reconciled);
- per action, its journaled events, classified by their own words (the dispatcher's,
  gates.py's, approvals.py's): `planned` (its first event: "matched strategy ...", or
  the wait of a step the one before planned; the rendered command or request in the
  detail), `waiting` ("waiting: ..." a DELAY gate or a step's wait),
  `approval` (awaiting, approved, denied, timed out, the alert that tells people),
  `gate` (a verdict: claimed past the gates, a skip by dry_run, budget, breaker_open,
  precondition, halted, when; a fleet admission), `running` (command started, scale
  decision, silence, crash recovery), `executed`, `verification` ("verifying: ..." and
  each "verification sample: ..."), `escalation` (how an escalation went), `cancelled`,
  and `outcome` (the action's final status). An action with output gets an `output`
  entry just before its outcome;
- per runbook run that ended, an `outcome` (cured, uncured, cancelled, with its reason);
- per canary `analysis` of the incident's fleet, its verdict and reason.

Times: the journal's ISO 8601 texts (UTC, "Z") become seconds since the epoch, and the
times it keeps as numbers are rounded to the same whole microseconds. Entries with the same
time keep the order the journal wrote them in: notification, opened,
actions by id with their events in order, runs, analyses, resolved.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from receiver.durations import format_duration

KINDS = (
    "notification",
    "opened",
    "planned",
    "waiting",
    "gate",
    "approval",
    "running",
    "executed",
    "output",
    "verification",
    "analysis",
    "outcome",
    "escalation",
    "cancelled",
    "resolved",
)
#: Final action statuses: an event in one of them is the action's outcome.
FINAL = ("succeeded", "failed", "timed_out", "skipped")
#: Verdict words of gates.py (and the step machine's `when`) that start an event's reason.
GATE_WORDS = (
    "dry_run:",
    "locked:",
    "cooldown:",
    "budget:",
    "concurrency:",
    "breaker_open:",
    "precondition:",
    "halted:",
    "when:",
    "fleet:",
    "refused:",
)
APPROVAL_WORDS = (
    "approved by",
    "denied by",
    "approval timed out",
    "remediationawaitingapproval",
    "waiting: awaiting_approval",
)
#: Characters of an action's output shown in its `output` entry (the rest is cut).
OUTPUT_CHARS = 4000


@dataclass(frozen=True)
class Entry:
    """One thing that happened: `kind` (one of KINDS), `at` (seconds since the epoch),
    a one-line `title` and a longer `detail` (plain text, "" for none; never HTML), and
    the action it belongs to (None for the incident's own entries) with its `status`
    word at that moment (the badge)."""

    kind: str
    at: float
    title: str
    detail: str = ""
    action_id: int | None = None
    status: str = ""


def epoch(text: str | None) -> float | None:
    """Seconds since the epoch of an ISO 8601 time as the journal writes it
    (`2026-11-21T10:00:00.123456Z`, up to nanoseconds, or with an offset); None for
    None or "". Raises ValueError for a text that is no such time."""
    if not text:
        return None
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    head, dot, rest = value.partition(".")
    if dot:  # Python takes at most 6 fractional digits: keep microseconds
        digits = len(rest) - len(rest.lstrip("0123456789"))
        value = f"{head}.{rest[:digits][:6]}{rest[digits:]}"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def journal_seconds(value: float) -> float:
    """Seconds since the epoch at the precision of the journal's ISO texts (whole
    microseconds, as store/sql.py iso writes them): a time the journal keeps as a number
    (a notification's `received_at`, an analysis's `at`) and the same moment written as
    text then compare equal, so their tie keeps journal order."""
    return datetime.fromtimestamp(value, UTC).timestamp()


def event_kind(status: str, reason: str) -> str:
    """The timeline kind of one journaled action event (its status then, its reason)."""
    lowered = reason.lower()
    if status == "cancelled":
        return "cancelled"
    if "escalat" in lowered.split(":", 1)[0]:
        return "escalation"
    if lowered.startswith(APPROVAL_WORDS):
        return "approval"
    if status in FINAL:
        return "gate" if reason.startswith(GATE_WORDS) else "outcome"
    if reason.startswith("matched strategy"):
        return "planned"
    if reason.startswith("waiting:"):
        return "waiting"
    if reason.startswith(("verifying:", "verification sample:")):
        return "verification"
    if reason.startswith("executed:"):
        return "executed"
    if reason.startswith(("claimed by", *GATE_WORDS)):
        return "gate"
    return "running"


def rendered(action: Mapping[str, Any]) -> str:
    """What an action does, as rendered from the alert: `restart web via procs`, with
    the command's argv or the HTTP request (method, URL, body; never its headers, which
    may carry credentials) and the other rendered parameters (queries, `params`)."""
    params = action.get("params")
    params = params if isinstance(params, dict) else {}
    lines = [
        f"{action.get('action', '')} {action.get('target', '')} via {action.get('executor', '')}"
    ]
    command = params.get("command")
    if isinstance(command, list):
        lines.append("command: " + json.dumps(command, ensure_ascii=False))
    request = params.get("request")
    if isinstance(request, dict):
        lines.append(f"request: {request.get('method', 'POST')} {request.get('url', '')}".rstrip())
        if request.get("body") is not None:  # headers are not shown: they may hold secrets
            lines.append("body: " + json.dumps(request["body"], ensure_ascii=False))
    for name, value in sorted(params.items()):
        if name in ("command", "request") or value in ({}, [], None, ""):
            continue
        lines.append(f"{name}: {json.dumps(value, ensure_ascii=False, sort_keys=True)}")
    if action.get("dry_run"):
        lines.append("dry run: nothing is changed")
    return "\n".join(lines)


def build(
    incident: Mapping[str, Any],
    notifications: Iterable[Mapping[str, Any]] = (),
    analyses: Iterable[Mapping[str, Any]] = (),
) -> list[Entry]:
    """The incident's entries in order (see the module docstring).

    incident: as store.incident_detail returns it (`first_seen`, `ends_at`, `status`,
    `close_reason`, `runs`, `actions` with their `events`; times ISO text).
    notifications: dicts with `received_at` (seconds), `status`, `alerts`, `firing`,
    `resolved`, `group_key`, `receiver`, `summary` (store/trail.py notifications).
    analyses: dicts with `at` (seconds), `strategy`, `fleet`, `stage`, `status`,
    `verdict` and `reason` (store/trail.py analyses).
    Raises ValueError for a time that is not ISO 8601."""
    entries: list[Entry] = []
    for note in notifications:
        entries.append(_notification(note))
    opened = epoch(incident.get("first_seen"))
    if opened is not None:
        entries.append(_opened(incident, opened))
    for action in incident.get("actions", []):
        entries.extend(_action_entries(action))
    for run in incident.get("runs", []):
        ended = epoch(run.get("ended_at"))
        if ended is not None:
            status = str(run.get("status", ""))
            entries.append(
                Entry(
                    "outcome",
                    ended,
                    f"runbook {run.get('strategy', '')} run {run.get('run', '')} {status}",
                    str(run.get("reason") or ""),
                    status=status,
                )
            )
    for analysis in analyses:
        entries.append(_analysis(analysis))
    closed = _resolved(incident)
    if closed is not None:
        entries.append(closed)
    return sorted(entries, key=lambda entry: entry.at)  # stable: ties keep journal order


def _notification(note: Mapping[str, Any]) -> Entry:
    count = int(note.get("alerts") or 0)
    title = (
        f"notification {note.get('status', '')}: {count} alert{'s' if count != 1 else ''} "
        f"({note.get('firing', 0)} firing, {note.get('resolved', 0)} resolved)"
    )
    summary = note.get("summary")
    did = ""
    if isinstance(summary, dict):
        did = ", ".join(f"{name} {value}" for name, value in sorted(summary.items()) if value)
    detail = f"group {note.get('group_key', '')} to receiver {note.get('receiver', '')}"
    if did:
        detail += f"\ningest: {did}"
    if note.get("truncated_alerts"):
        detail += f"\nAlertmanager left out {note['truncated_alerts']} alerts (truncatedAlerts)"
    return Entry("notification", journal_seconds(float(note["received_at"])), title, detail)


def _opened(incident: Mapping[str, Any], at: float) -> Entry:
    matched = "matched a strategy" if incident.get("matched") else "matched no strategy"
    detail = f"firing since {incident.get('starts_at', '')}; {matched}"
    if incident.get("status") == "resolved" and epoch(incident.get("ends_at")) == epoch(
        incident.get("starts_at")
    ):
        detail = f"recorded closed: {incident.get('close_reason') or 'resolved, never seen firing'}"
    return Entry("opened", at, f"incident opened: {incident.get('alertname', '')}", detail)


def _action_entries(action: Mapping[str, Any]) -> list[Entry]:
    action_id = action.get("id")
    step = action.get("step")
    name = f"action {action_id} ({action.get('strategy', '')}, step {step})"
    entries: list[Entry] = []
    output = str(action.get("output") or "")
    shown_output = False
    for index, event in enumerate(action.get("events", [])):
        at = epoch(event.get("at"))
        if at is None:
            continue
        status, reason = str(event.get("status", "")), str(event.get("reason", ""))
        # an action's first event planned it ("matched strategy", or the wait of a step
        # planned by the one before): that is where its rendered command is shown
        first = index == 0 and status == "planned" and not action.get("omitted", {}).get("events")
        kind = "planned" if first else event_kind(status, reason)
        detail = ""
        if kind == "planned":
            detail = rendered(action)
        if kind == "outcome" and output and not shown_output:
            cut = output[:OUTPUT_CHARS]
            if len(output) > OUTPUT_CHARS:
                cut += f"\n[... {len(output) - OUTPUT_CHARS} more characters]"
            entries.append(Entry("output", at, f"{name} output", cut, action_id, status))
            shown_output = True
        entries.append(Entry(kind, at, f"{name}: {reason}", detail, action_id, status))
    return entries


def _analysis(analysis: Mapping[str, Any]) -> Entry:
    verdict = str(analysis.get("verdict") or analysis.get("status") or "")
    title = (
        f"canary analysis of fleet {analysis.get('fleet', '')} ({analysis.get('strategy', '')}), "
        f"stage {analysis.get('stage', '')}: {verdict}"
    )
    return Entry(
        "analysis",
        journal_seconds(float(analysis["at"])),
        title,
        str(analysis.get("reason") or ""),
        None,
        verdict,
    )


def _took(seconds: float) -> str:
    """Seconds as `4m59s` (whole seconds past a minute, milliseconds below one)."""
    return format_duration(round(seconds) if seconds >= 60 else max(0.0, seconds))


def _resolved(incident: Mapping[str, Any]) -> Entry | None:
    if incident.get("status") != "resolved":
        return None
    at = epoch(incident.get("ends_at")) or epoch(incident.get("last_seen"))
    if at is None:
        return None
    reason = incident.get("close_reason")
    duration = incident.get("duration_seconds")
    took = f" after {_took(duration)}" if isinstance(duration, int | float) else ""
    if reason:
        return Entry("resolved", at, f"closed{took}: {reason}", "", None, "resolved")
    return Entry("resolved", at, f"resolved{took}", "", None, "resolved")


def strategies_of(incident: Mapping[str, Any]) -> list[str]:
    """The strategies that acted on the incident, as its page shows them: the names of
    its runbook `runs` and of the `actions` on the page (store.incident_detail), each
    once, in the order first met (runs first: a run is journaled before its actions)."""
    names = [run.get("strategy") for run in incident.get("runs", [])]
    names += [action.get("strategy") for action in incident.get("actions", [])]
    return list(dict.fromkeys(name for name in names if isinstance(name, str) and name))
