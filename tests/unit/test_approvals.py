"""The approval state machine (receiver/approvals.py): plain values, `now` injected."""

from __future__ import annotations

import pytest

from receiver import approvals
from receiver.approvals import ApprovalSettings, ApprovalState

T0 = 1_800_000_000.0
SKIP_15M = ApprovalSettings(True, 900.0, "skip")
RUN_2S = ApprovalSettings(True, 2.0, "run")
EXTERNAL = "https://ops.example.test/remediator"


def requested(settings: ApprovalSettings = SKIP_15M) -> ApprovalState:
    judgement = approvals.judge(None, settings, T0)
    assert judgement.state is not None
    return judgement.state


def test_first_look_requests_approval_and_waits_until_the_deadline():
    judgement = approvals.judge(None, SKIP_15M, T0)
    assert judgement.outcome == approvals.WAIT
    assert judgement.state == ApprovalState(T0, T0 + 900.0, "skip")
    assert judgement.not_before == T0 + 900.0
    assert judgement.reason.startswith("awaiting_approval:")


def test_before_the_deadline_an_undecided_approval_keeps_waiting_and_changes_nothing():
    judgement = approvals.judge(requested(), SKIP_15M, T0 + 899.0)
    assert (judgement.outcome, judgement.state, judgement.not_before) == (
        approvals.WAIT,
        None,
        T0 + 900.0,
    )


def test_approved_proceeds_to_the_other_gates():
    state = approvals.decide(requested(), "approved", "alice", "", T0 + 10)
    judgement = approvals.judge(state, SKIP_15M, T0 + 11)
    assert (judgement.outcome, judgement.reason) == (approvals.PROCEED, "approved by alice")


def test_denied_skips_with_who_and_why():
    state = approvals.decide(requested(), "denied", "bob", "not during the sale", T0 + 10)
    judgement = approvals.judge(state, SKIP_15M, T0 + 11)
    assert (judgement.outcome, judgement.reason) == (
        approvals.SKIP,
        "denied by bob: not during the sale",
    )


def test_timeout_with_skip_ends_the_action_and_journals_the_timeout():
    judgement = approvals.judge(requested(), SKIP_15M, T0 + 900.0)
    assert (judgement.outcome, judgement.reason) == (
        approvals.SKIP,
        "approval timed out after 15m",
    )
    assert judgement.state is not None and judgement.state.decision == approvals.TIMED_OUT


def test_timeout_with_run_proceeds_as_if_approved():
    state = requested(RUN_2S)
    judgement = approvals.judge(state, RUN_2S, T0 + 2.0)
    assert (judgement.outcome, judgement.reason) == (
        approvals.PROCEED,
        "approval timed out: running",
    )
    # journaled once: a later look (a gate delayed it meanwhile) proceeds without a change
    later = approvals.judge(judgement.state, RUN_2S, T0 + 60.0)
    assert (later.outcome, later.state) == (approvals.PROCEED, None)


def test_on_timeout_is_the_one_in_force_when_requested_not_after_a_reload():
    state = requested(SKIP_15M)
    judgement = approvals.judge(state, ApprovalSettings(True, 900.0, "run"), T0 + 900.0)
    assert judgement.outcome == approvals.SKIP


@pytest.mark.parametrize(
    ("state", "now", "why"),
    [
        (None, T0, "not awaiting approval"),
        (approvals.decide(requested(), "denied", "bob", "", T0 + 1), T0 + 2, "already denied"),
        (requested(), T0 + 900.0, "approval timed out"),
    ],
)
def test_a_decision_on_an_approval_not_awaited_is_refused(state, now, why):
    with pytest.raises(approvals.NotAwaiting, match=why):
        approvals.decide(state, "approved", "alice", "", now)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout": 0.0}, "timeout must be a positive duration"),
        ({"timeout": float("nan")}, "timeout must be a positive duration"),
        ({"on_timeout": "maybe"}, "on_timeout must be skip or run"),
    ],
)
def test_settings_reject_nonsense(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ApprovalSettings(**kwargs)


def test_awaiting_alert_carries_the_original_labels_what_would_run_and_the_link():
    state = requested()
    alert = approvals.awaiting_alert(
        42,
        "fix-disk",
        "run",
        "db-1",
        {"command": ["/usr/bin/clean", "db-1"]},
        {"alertname": "DiskFilling", "service": "db", "severity": "page"},
        {"summary": "disk 95% full"},
        state,
        external_url=EXTERNAL,
    )
    assert alert["labels"] == {
        "alertname": "RemediationAwaitingApproval",
        "original_alertname": "DiskFilling",
        "service": "db",
        "severity": "page",
        "remediation_strategy": "fix-disk",
        "remediation_target": "db-1",
        "remediation_action_id": "42",
    }
    notes = alert["annotations"]
    assert notes["would_run"] == '["/usr/bin/clean", "db-1"]'
    # the console page under the external URL; the API resource and the decisions too
    assert notes["action_url"] == f"{EXTERNAL}/actions/42"
    assert alert["generatorURL"] == notes["action_url"]
    assert notes["api_url"] == f"{EXTERNAL}/api/v1/actions/42"
    assert notes["approve"] == f"POST {EXTERNAL}/api/v1/actions/42/approve"
    assert notes["deny"] == f"POST {EXTERNAL}/api/v1/actions/42/deny"
    assert notes["original_summary"] == "disk 95% full"
    assert alert["endsAt"] == notes["deadline"]  # it ends by itself at the deadline
    ended = approvals.ended_alert(alert, T0 + 5)
    assert ended["labels"] == alert["labels"]
    assert ended["endsAt"] == "2027-01-15T08:00:05.000Z"
    assert ended["generatorURL"] == alert["generatorURL"]


def test_what_would_run_names_an_http_request():
    params = {"request": {"method": "POST", "url": "http://api/restart", "body": {"a": 1}}}
    assert approvals.what_would_run("http", "web", params) == 'POST http://api/restart {"a": 1}'
    assert approvals.what_would_run("restart", "web", {"params": {}}) == "restart web"
