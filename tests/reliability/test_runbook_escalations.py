"""No failed incident left unescalated (issue 14's 30-target case).

Before runbooks, 30 firing alerts on 30 targets with one strategy whose verification
cannot pass and the default breaker (3 consecutive failures, per target) ended with 30
failed actions and 0 escalations: no breaker opened, so nobody was told. Now every
incident's runbook must finish `uncured` and escalate exactly once, delivered to a real
Alertmanager: 30 runs with escalation `sent`, 30 in the journal's
`remediator_escalations_total{outcome="sent"}`, 30 alerts received by Alertmanager and
30 distinct RemediationFailed alerts held there, each carrying its runbook trail.

And none is lost to a crash: an escalation whose delivery failed is still owed by the
journal after a kill -9, and the next process delivers it once.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from receiver.breaker import BreakerSettings
from receiver.store.totals import ESCALATIONS_METRIC, RUNS_METRIC
from tests.support.journal import all_actions, open_journal, post_webhook, wait_for
from tests.support.payloads import alert, notification
from tests.support.processes import Running, alertmanager, free_port, remediator
from tests.support.receiver import AM_CONFIG, write_config
from tests.support.restartable import restartable_remediator
from tests.support.runbooks import all_runs, runs_of, total

TARGETS = 30
NEVER = "vector(0) == 1"  # no sample: the verification cannot pass
STARTS = "2026-09-02T00:00:00Z"


def config_text(prometheus_url: str, am_url: str, steps: int) -> str:
    """One strategy whose verification never passes, as one action or as `steps` steps;
    default breaker and cooldown; escalations to the real Alertmanager."""
    verify = f"verify: {{query: '{NEVER}', timeout: 1s, interval: 250ms}}"
    if steps == 1:
        action = f"    action: restart\n    executor: logger\n    {verify}\n"
    else:
        action = "    executor: logger\n    steps:\n" + "".join(
            f"      - {{name: try-{n}, action: restart, {verify}}}\n" for n in range(1, steps + 1)
        )
    return f"""
server: {{auth: {{bearer_token_file: token}}}}
prometheus: {{url: '{prometheus_url}'}}
alertmanager: {{url: '{am_url}'}}
defaults: {{escalation_executor: am}}
executors:
  logger: {{type: log}}
  am: {{type: alertmanager}}
strategies:
  - name: cannot-cure
    matchers: ['alertname="Unfixable"']
    target: '{{{{ labels.instance }}}}'
{action}"""


def firing_group() -> dict[str, Any]:
    """One notification carrying the whole group of 30 firing alerts, as Alertmanager
    groups them by service."""
    alerts = [
        alert(
            "Unfixable",
            service="fleet",
            instance=f"node-{n:02d}",
            starts_at=f"2026-09-01T00:00:{n:02d}Z",
        )
        for n in range(TARGETS)
    ]
    return notification(*alerts, group_key='{}:{service="fleet"}')


def held_escalations(am: Running) -> list[dict[str, Any]]:
    response = requests.get(
        f"{am.url}/api/v2/alerts", params={"filter": 'alertname="RemediationFailed"'}, timeout=5
    )
    response.raise_for_status()
    return response.json()


def received_by(am: Running) -> float:
    """Alerts Alertmanager has received through its API (its own counter)."""
    text = requests.get(f"{am.url}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "alertmanager_alerts_received"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("status") == "firing"
    )


@pytest.mark.parametrize(
    ("steps", "replicas"),
    [(1, 1), (2, 1), (2, 2)],
    ids=["one-action", "two-steps", "two-steps-two-replicas"],
)
def test_thirty_failing_incidents_are_each_escalated_exactly_once(
    tmp_path: Path, store_url: str, prometheus_server, steps: int, replicas: int
) -> None:
    """With two replicas on one journal, both dispatchers claim steps and escalations:
    still one escalation per run (the journal leases each to one process)."""
    with alertmanager(tmp_path / "am", AM_CONFIG) as am, ExitStack() as servers:
        config = write_config(tmp_path, config_text(prometheus_server.url, am.url, steps))
        journal = open_journal(store_url)
        urls = [
            servers.enter_context(
                remediator(tmp_path, config, store_url, log_name=f"remediator-{replica}.log")
            ).url
            for replica in range(replicas)
        ]
        body = firing_group()
        assert post_webhook(urls[0], body).status_code == 200

        def all_escalated() -> list[dict[str, Any]] | None:
            runs = all_runs(journal)
            done = len(runs) == TARGETS and all(r["escalation"] == "sent" for r in runs)
            return runs if done else None

        runs = wait_for(all_escalated, 120, f"{TARGETS} runs escalated")
        # Alertmanager re-sends the group (to the other replica, if any): refreshed
        # incidents, nothing new planned
        assert post_webhook(urls[-1], body).status_code == 200
        actions = all_actions(journal)
        held = wait_for(
            lambda: (found := held_escalations(am)) and len(found) >= TARGETS and found,
            30,
            f"{TARGETS} RemediationFailed alerts in Alertmanager",
        )
        received = received_by(am)
        exported = {
            sample.labels["outcome"]: sample.value
            for family in text_string_to_metric_families(
                requests.get(f"{urls[0]}/metrics", timeout=10).text
            )
            for sample in family.samples
            if sample.name == f"{ESCALATIONS_METRIC}_total" or sample.name == ESCALATIONS_METRIC
        }

    # /metrics says what the journal says: 30 sent, nothing else
    assert exported == {"sent": TARGETS, "undeliverable": 0, "retrying": 0}
    # every incident's runbook finished uncured, one run each, every step tried and failed
    assert sorted(r["status"] for r in runs) == ["uncured"] * TARGETS
    assert len({r["incident_id"] for r in runs}) == TARGETS
    assert len(actions) == TARGETS * steps
    assert {a["status"] for a in actions} == {"failed"}
    assert all("verification failed" in a["reason"] for a in actions)
    assert total(journal, RUNS_METRIC, strategy="cannot-cure", status="uncured") == TARGETS

    # exactly once each: 30 sent, none retried or undeliverable, 30 received, 30 held
    assert total(journal, ESCALATIONS_METRIC, outcome="sent") == TARGETS
    assert total(journal, ESCALATIONS_METRIC, outcome="retrying") == 0
    assert total(journal, ESCALATIONS_METRIC, outcome="undeliverable") == 0
    assert received == TARGETS
    assert len(held) == TARGETS
    assert len({a["fingerprint"] for a in held}) == TARGETS
    assert sorted(a["labels"]["remediation_target"] for a in held) == [
        f"node-{n:02d}" for n in range(TARGETS)
    ]
    for escalation in held:
        trail = escalation["annotations"]["runbook_trail"].splitlines()
        assert trail[0].endswith(": uncured"), trail
        assert len(trail) == 1 + steps, trail
        assert all(": failed: " in line and NEVER in line for line in trail[1:]), trail


def one_failing_step(am_url: str) -> str:
    return f"""
server: {{auth: {{bearer_token_file: token}}}}
alertmanager: {{url: '{am_url}'}}
defaults: {{escalation_executor: am}}
executors:
  local: {{type: command}}
  am: {{type: alertmanager, timeout: 2s}}
strategies:
  - name: cannot-cure
    matchers: ['alertname="Unfixable"']
    action: run
    executor: local
    target: '{{{{ labels.instance }}}}'
    command: ['/bin/sh', '-c', 'exit 3']
"""


def test_escalation_not_delivered_before_a_kill9_is_delivered_once_after_it(
    tmp_path: Path, store_url: str
) -> None:
    """The escalation is an outbox row: Alertmanager unreachable, the server killed, the
    next process delivers it (after the failed attempt's lease), once."""
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = write_config(tmp_path, one_failing_step(nowhere))
    journal = open_journal(store_url)
    with (
        alertmanager(tmp_path / "am", AM_CONFIG) as am,
        restartable_remediator(tmp_path, config, store_url) as server,
    ):
        body = notification(
            alert("Unfixable", service="fleet", instance="node-00", starts_at=STARTS)
        )
        assert post_webhook(server.url, body).status_code == 200
        wait_for(
            lambda: total(journal, ESCALATIONS_METRIC, outcome="retrying") >= 1,
            30,
            "a failed delivery",
        )
        (action,) = all_actions(journal)
        (run,) = runs_of(journal, action["incident_id"])
        assert (run["status"], run["escalation"]) == ("uncured", "pending"), run
        assert "will retry" in run["escalation_note"], run
        server.kill9()

        write_config(tmp_path, one_failing_step(am.url))
        server.start()

        def sent() -> dict[str, Any] | None:
            (run,) = runs_of(journal, action["incident_id"])
            return run if run["escalation"] == "sent" else None

        run = wait_for(sent, 60, "the escalation to be delivered after the restart")
        (held,) = held_escalations(am)
        received = received_by(am)

    assert received == 1
    assert held["labels"]["remediation_target"] == "node-00"
    assert total(journal, ESCALATIONS_METRIC, outcome="sent") == 1
    assert total(journal, ESCALATIONS_METRIC, outcome="undeliverable") == 0
    assert run["status"] == "uncured"


def test_thirty_incidents_of_one_target_open_its_breaker_and_are_each_escalated_once(
    tmp_path: Path, prometheus_server
) -> None:
    """The same 30 alerts acting on ONE target (the service): the lock serializes them,
    the default breaker opens after 3 failures, the 27 others are skipped breaker_open.
    Before runbooks that sent one escalation (the breaker opening) for 30 incidents."""
    store_url = f"sqlite:///{tmp_path / 'journal.db'}"
    with alertmanager(tmp_path / "am", AM_CONFIG) as am:
        text = config_text(prometheus_server.url, am.url, 1)
        text = text.replace("labels.instance", "labels.service")
        text = text.replace("escalation_executor: am}", "escalation_executor: am, cooldown: 0s}")
        config = write_config(tmp_path, text)
        journal = open_journal(store_url)
        with remediator(tmp_path, config, store_url) as server:
            assert post_webhook(server.url, firing_group()).status_code == 200

            def all_escalated() -> list[dict[str, Any]] | None:
                runs = all_runs(journal)
                done = len(runs) == TARGETS and all(r["escalation"] == "sent" for r in runs)
                return runs if done else None

            runs = wait_for(all_escalated, 120, f"{TARGETS} runs escalated")
            actions = all_actions(journal)
            held = wait_for(
                lambda: (found := held_escalations(am)) and len(found) >= TARGETS and found,
                30,
                f"{TARGETS} RemediationFailed alerts in Alertmanager",
            )
            received = received_by(am)

    threshold = BreakerSettings().failure_threshold  # the default breaker's
    statuses = [a["status"] for a in actions]
    assert statuses.count("failed") == threshold, statuses
    skipped = [a for a in actions if a["status"] == "skipped"]
    assert len(skipped) == TARGETS - threshold
    assert all(a["reason"].startswith("breaker_open: ") for a in skipped)
    assert sorted(r["status"] for r in runs) == ["uncured"] * TARGETS
    assert total(journal, ESCALATIONS_METRIC, outcome="sent") == TARGETS
    assert received == TARGETS
    # one escalation per incident: the original alerts differ by instance
    assert sorted(a["labels"]["instance"] for a in held) == [
        f"node-{n:02d}" for n in range(TARGETS)
    ]


def test_steps_refused_by_a_hostile_label_end_uncured_and_escalate_once(
    tmp_path: Path, store_url: str
) -> None:
    """A label that fails the safe pattern refuses both steps at rendering (journaled
    `skipped`, never claimed): the run ends uncured and is escalated once, on either
    journal (the refused rows' trail once broke the escalation's claim)."""
    text = one_failing_step("http://unused").replace(
        "    action: run\n    executor: local\n    target: '{{ labels.instance }}'\n"
        "    command: ['/bin/sh', '-c', 'exit 3']\n",
        "    target: '{{ labels.instance }}'\n    executor: local\n    steps:\n"
        "      - {name: one, action: run, command: ['echo', '{{ labels.instance }}']}\n"
        "      - {name: two, action: run, command: ['echo', '{{ labels.instance }}']}\n",
    )
    with alertmanager(tmp_path / "am", AM_CONFIG) as am:
        config = write_config(tmp_path, text.replace("http://unused", am.url))
        journal = open_journal(store_url)
        with remediator(tmp_path, config, store_url) as server:
            body = notification(
                alert("Unfixable", service="fleet", instance="node;00", starts_at=STARTS)
            )
            assert post_webhook(server.url, body).status_code == 200
            (run,) = wait_for(
                lambda: [r for r in all_runs(journal) if r["escalation"] == "sent"],
                30,
                "the escalation",
            )
            (held,) = held_escalations(am)
            actions = all_actions(journal)
    assert run["status"] == "uncured"
    assert [(a["status"], a["reason"][:9]) for a in actions] == [("skipped", "refused: ")] * 2
    trail = held["annotations"]["runbook_trail"].splitlines()
    assert [line.split(" at ")[0] for line in trail[1:]] == ["step 1 (one)", "step 2 (two)"]
    assert total(journal, ESCALATIONS_METRIC, outcome="sent") == 1
