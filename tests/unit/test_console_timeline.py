"""The incident timeline (receiver/console/timeline.py): journal values in, entries in
the order things happened, each with the kind its own words say."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from receiver.console import timeline
from receiver.console.timeline import Entry, build, epoch, event_kind, rendered

T0 = datetime(2027, 1, 15, 8, 0, 0, tzinfo=UTC).timestamp()


def iso(seconds: float) -> str:
    """A time as the journal writes it (store/sql.py iso)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event(at: float, status: str, reason: str) -> dict:
    return {"at": iso(at), "status": status, "reason": reason}


def action(action_id: int, events: list[dict], **fields) -> dict:
    return {
        "id": action_id,
        "strategy": "fix",
        "action": "run",
        "executor": "local",
        "target": "web",
        "step": 1,
        "params": {"command": ["/bin/echo", "hi"]},
        "output": "",
        "dry_run": False,
        "events": events,
        **fields,
    }


def incident(actions: list[dict] = (), **fields) -> dict:
    return {
        "alertname": "ServiceDown",
        "status": "firing",
        "matched": True,
        "starts_at": iso(T0 - 30),
        "first_seen": iso(T0),
        "last_seen": iso(T0),
        "ends_at": None,
        "close_reason": None,
        "duration_seconds": None,
        "runs": [],
        "actions": list(actions),
        **fields,
    }


def notification(at: float, status: str = "firing") -> dict:
    return {
        "received_at": at,
        "status": status,
        "alerts": 1,
        "firing": 1 if status == "firing" else 0,
        "resolved": 0 if status == "firing" else 1,
        "group_key": '{}:{alertname="ServiceDown"}',
        "receiver": "remediator",
        "summary": {"alerts": 1, "new_incidents": 1, "duplicates": 0},
    }


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-21T10:00:00.123456Z",
        "2026-11-21T10:00:00.123456789Z",
        "2026-11-21T11:00:00.123456+01:00",
    ],
)
def test_journal_times_become_seconds_since_the_epoch(text):
    expected = datetime(2026, 11, 21, 10, 0, 0, 123456, tzinfo=UTC).timestamp()
    assert epoch(text) == pytest.approx(expected, abs=1e-6)


def test_no_time_is_none_and_a_bad_one_is_refused():
    assert epoch(None) is None
    assert epoch("") is None
    with pytest.raises(ValueError):
        epoch("yesterday")


@pytest.mark.parametrize(
    ("status", "reason", "kind"),
    [
        ("planned", "matched strategy fix: run 1, step 1", "planned"),
        ("planned", "waiting: cooldown: fix acted on web 10s ago (50s left)", "waiting"),
        (
            "planned",
            "waiting: awaiting_approval: a person must approve or deny within 10m",
            "approval",
        ),
        ("planned", "approved by alice: fine", "approval"),
        ("skipped", "denied by bob", "approval"),
        (
            "planned",
            "RemediationAwaitingApproval logged, not sent to Alertmanager (a `log` executor): x",
            "approval",
        ),
        ("running", "claimed by vm:1:ab: all gates passed", "gate"),
        ("planned", "fleet: admitted (canary)", "gate"),
        ("skipped", "breaker_open: fix on web is open", "gate"),
        ("skipped", "dry_run: would restart web", "gate"),
        ("skipped", "refused: interpolated value 'x y' does not match the safe pattern", "gate"),
        ("running", "command started: process group 7 on vm", "running"),
        ("running", "scale: value 9 vs target 5, 2 -> 4 (scale up)", "running"),
        ("running", "executed: exit status 0", "executed"),
        ("running", "verifying: up == 1", "verification"),
        ("running", "verification sample: 0 (false)", "verification"),
        ("succeeded", "exit status 0", "outcome"),
        ("failed", "exit status 0; verification failed: 'up == 1' not true within 5s", "outcome"),
        ("timed_out", "timed out after 30s", "outcome"),
        ("failed", "escalated via am: posted RemediationFailed", "escalation"),
        ("failed", "not escalated: no escalation_executor configured", "escalation"),
        ("cancelled", "alert resolved before the action ran", "cancelled"),
    ],
)
def test_an_event_is_classified_by_its_own_words(status, reason, kind):
    assert event_kind(status, reason) == kind
    assert kind in timeline.KINDS


def test_entries_are_in_time_order_and_ties_keep_journal_order():
    first = action(
        1,
        [
            event(T0, "planned", "matched strategy fix: run 1, step 1"),
            event(T0 + 1, "running", "claimed by w: all gates passed"),
            event(T0 + 1, "failed", "exit status 1"),
        ],
    )
    second = action(
        2,
        [
            event(T0 + 1, "planned", "waiting: step 1 failed: exit status 1; next step 2"),
            event(T0 + 31, "running", "claimed by w: all gates passed"),
            event(T0 + 31, "running", "executed: exit status 0"),
            event(T0 + 31, "succeeded", "exit status 0"),
        ],
        step=2,
        output="hello\n",
    )
    resolved_at = T0 + 60
    found = build(
        incident(
            [first, second],
            status="resolved",
            ends_at=iso(resolved_at),
            last_seen=iso(resolved_at + 1),
            duration_seconds=90.0,
        ),
        [notification(T0), notification(T0 + 40), notification(resolved_at + 1, "resolved")],
    )
    kinds = [(entry.kind, entry.action_id) for entry in found]
    assert kinds == [
        ("notification", None),
        ("opened", None),
        ("planned", 1),
        ("gate", 1),
        ("outcome", 1),
        ("planned", 2),  # an action's first event planned it, whatever its words
        ("gate", 2),
        ("executed", 2),
        ("output", 2),
        ("outcome", 2),
        ("notification", None),
        ("resolved", None),
        ("notification", None),
    ]
    ats = [entry.at for entry in found]
    assert ats == sorted(ats)
    assert found[-2].at == pytest.approx(resolved_at)
    assert found[-2].title == "resolved after 1m30s"


@pytest.mark.parametrize("fraction", [0.8503268, 0.1234564, 0.9999996, 0.0000004])
def test_a_notification_ties_with_the_incident_it_opened_past_the_microsecond(fraction):
    """Ingest journals the notification's received_at as a number and the incident's
    first_seen and its plan as ISO text (whole microseconds) from the same clock reading:
    the notification still comes first, whatever the digits past the microsecond."""
    now = T0 + fraction
    planned = action(1, [event(now, "planned", "matched strategy fix: run 1, step 1")])
    found = build(incident([planned], first_seen=iso(now)), [notification(now)])
    assert [entry.kind for entry in found] == ["notification", "opened", "planned"]
    assert found[0].at == found[1].at == found[2].at


def test_the_plan_shows_the_command_as_rendered_and_the_output_its_text():
    done = action(
        4,
        [
            event(T0, "planned", "matched strategy fix"),
            event(T0 + 1, "succeeded", "exit status 0"),
        ],
        params={"command": ["/usr/bin/clean", "<b>web</b>"], "params": {}},
        output="x" * (timeline.OUTPUT_CHARS + 5),
    )
    planned, output, outcome = build(incident([done]))[1:]
    assert planned.detail == 'run web via local\ncommand: ["/usr/bin/clean", "<b>web</b>"]'
    assert output.kind == "output"
    assert output.detail == "x" * timeline.OUTPUT_CHARS + "\n[... 5 more characters]"
    assert outcome.title == "action 4 (fix, step 1): exit status 0"
    assert outcome.status == "succeeded"


def test_an_http_request_is_rendered_with_its_method_url_and_body():
    request = {
        "method": "PUT",
        "url": "http://svc/restart",
        "headers": {"Authorization": "Bearer s3cret"},
        "body": {"why": "alert"},
    }
    text = rendered(
        {"action": "http", "target": "svc", "executor": "hook", "params": {"request": request}}
    )
    assert text.splitlines() == [
        "http svc via hook",
        "request: PUT http://svc/restart",
        'body: {"why": "alert"}',
    ]
    assert "s3cret" not in text


def test_runbook_runs_analyses_and_a_closing_reason_have_entries():
    run = {
        "strategy": "fix",
        "run": 1,
        "status": "uncured",
        "ended_at": iso(T0 + 5),
        "reason": "ended uncured: out of steps",
    }
    analysis = {
        "at": T0 + 3,
        "strategy": "fix",
        "fleet": "web",
        "stage": 0,
        "status": "done",
        "verdict": "fail",
        "reason": "halted: canary web-3 error ratio 0.31 vs baseline 0.04",
    }
    found = build(
        incident(
            runs=[run],
            status="resolved",
            ends_at=iso(T0 + 9),
            close_reason="superseded by the occurrence starting X",
        ),
        analyses=[analysis],
    )
    assert [(e.kind, e.at) for e in found] == [
        ("opened", T0),
        ("analysis", T0 + 3),
        ("outcome", T0 + 5),
        ("resolved", T0 + 9),
    ]
    assert found[1].detail == analysis["reason"]
    assert found[2].title == "runbook fix run 1 uncured"
    assert found[3].title.endswith(": superseded by the occurrence starting X")


def test_entries_are_plain_values():
    (opened,) = build(incident())
    assert opened == Entry("opened", T0, "incident opened: ServiceDown", opened.detail)
    assert "matched a strategy" in opened.detail


def test_the_strategies_of_an_incident_are_its_runs_then_its_actions_each_once():
    incident = {
        "runs": [{"strategy": "fix"}, {"strategy": "fix"}],
        "actions": [{"strategy": "heal"}, {"strategy": "fix"}, {"strategy": "heal"}],
    }
    assert timeline.strategies_of(incident) == ["fix", "heal"]


def test_an_incident_nothing_acted_on_has_no_strategies():
    assert timeline.strategies_of({"runs": [], "actions": []}) == []
    assert timeline.strategies_of({}) == []
