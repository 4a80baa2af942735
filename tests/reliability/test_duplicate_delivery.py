"""Duplicate delivery: an HA pair of real Alertmanagers sends to one receiver.

Alerts are posted to BOTH Alertmanagers, as Prometheus does with an HA pair. Clustered,
the pair gossips its notification log and usually lets one of them deliver; when the
gossip is late or cut (a partition), both deliver. Either way each incident must get
exactly one action, and its command (a real one, that appends a line per run) runs once.
The alerts come in two waves, so that Alertmanager itself re-sends the first wave with
the second (a group is always sent whole): duplicates reach the receiver in every mode.
A third test makes the duplicate race as tight as it gets: identical notifications
posted at the same instant by several threads, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.journal import (
    all_incidents,
    iso,
    open_journal,
    post_webhook,
    read_runs,
    settle,
    wait_for,
    write_recorder,
)
from tests.support.payloads import alert, notification
from tests.support.processes import (
    Running,
    alertmanager,
    alertmanager_config,
    cluster_args,
    cluster_peers,
    free_port,
    remediator,
    webhook_deliveries,
)
from tests.support.receiver import write_config

PEER_TIMEOUT = 1.0  # seconds the second peer waits for the first one's notification log


def ha_config(recorder: Path, runs: Path) -> str:
    fingerprint = "{{ alert.fingerprint }}"
    return f"""
server:
  auth: {{bearer_token_file: token}}
defaults:
  cooldown: 0s
executors:
  local: {{type: command}}
strategies:
  - name: heal
    matchers: ['alertname="HaDown"']
    action: run
    executor: local
    target: '{{{{ labels.instance }}}}'
    command: ['/bin/sh', '{recorder}', '{runs}', '{fingerprint}', '0']
"""


def ha_alerts(started: datetime) -> list[dict[str, Any]]:
    return [
        {
            "labels": {
                "alertname": "HaDown",
                "service": service,
                "instance": f"{service}-{number}",
            },
            "annotations": {"summary": "down"},
            "startsAt": iso(started),
        }
        for service in ("cart", "search")
        for number in range(3)
    ]


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[Running, Any, Path]]:
    runs = tmp_path / "runs.log"
    config = write_config(tmp_path, ha_config(write_recorder(tmp_path), runs))
    store_url = f"sqlite:///{tmp_path / 'journal.db'}"
    with remediator(tmp_path, config, store_url) as server:
        yield server, open_journal(store_url), runs


@pytest.mark.parametrize("clustered", [True, False], ids=["clustered", "partitioned"])
def test_ha_pair_posting_the_same_alerts_gets_one_action_per_incident(
    tmp_path: Path, receiver: tuple[Running, Any, Path], clustered: bool
) -> None:
    server, journal, runs_file = receiver
    am_config = alertmanager_config(f"{server.url}/webhook", credentials_file=tmp_path / "token")
    ports = (free_port(), free_port())
    with ExitStack() as stack:
        pair = [
            stack.enter_context(
                alertmanager(
                    tmp_path / f"am{index}",
                    am_config,
                    extra_args=cluster_args(
                        ports[index], ports[1 - index] if clustered else None, PEER_TIMEOUT
                    ),
                )
            )
            for index in (0, 1)
        ]
        if clustered:
            wait_for(
                lambda: all(cluster_peers(am) == 2 for am in pair), 20, "the pair to see each other"
            )
        sent = ha_alerts(datetime.now(UTC) - timedelta(minutes=1))
        # two waves: when the second one joins a group, Alertmanager sends the whole group
        # again, so the first wave's alerts reach the receiver a second time by design
        for wave in (sent[::2], sent):
            for am in pair:  # Prometheus sends every alert to every Alertmanager of the pair
                response = requests.post(f"{am.url}/api/v2/alerts", json=wave, timeout=5)
                assert response.status_code == 200, response.text
            wait_for(lambda w=wave: len(all_incidents(journal)) >= len(w), 30, "the incidents")

        actions = settle(journal, expected=len(sent), timeout=30)

        # deliveries are over once both members' webhook counters stop moving after the
        # second member's peer timeout; then the journal must hold every one of them
        def delivered() -> tuple[float, float]:
            figures = [webhook_deliveries(am) for am in pair]
            return sum(f[0] for f in figures), sum(f[1] for f in figures)

        last: list[tuple[float, float]] = []

        def stable() -> bool:
            last.append(delivered())
            return len(last) >= (PEER_TIMEOUT + 2) / 0.2 and len(set(last[-10:])) == 1

        wait_for(stable, 30, "Alertmanager deliveries to stop")
        attempted, failed = last[-1]
        per_member = [webhook_deliveries(am)[0] for am in pair]

    incidents = all_incidents(journal)
    assert len(incidents) == len(sent)
    assert {i["labels"]["instance"] for i in incidents} == {a["labels"]["instance"] for a in sent}
    assert Counter(a["incident_id"] for a in actions) == Counter({i["id"]: 1 for i in incidents})
    assert all(a["status"] == "succeeded" for a in actions), actions
    runs = read_runs(runs_file)
    assert runs.starts == Counter({a["id"]: 1 for a in actions}), "a command ran twice"
    assert {v for values in runs.values.values() for v in values} == {
        i["fingerprint"] for i in incidents
    }
    # every delivery either member made was accepted and journaled (a duplicate is a 200)
    assert failed == 0
    assert journal.counts()["notifications"] == attempted
    assert attempted >= 4  # two groups (cart, search), each sent again for the second wave
    if not clustered:  # without gossip BOTH delivered both groups: real duplicates
        assert all(count >= 2 for count in per_member), per_member


def test_identical_notifications_racing_in_parallel_make_one_incident(
    tmp_path: Path, store_url: str
) -> None:
    """Eight copies of one notification hit the server at the same instant."""
    runs_file = tmp_path / "runs.log"
    config = write_config(tmp_path, ha_config(write_recorder(tmp_path), runs_file))
    copies = 8
    body = notification(
        alert("HaDown", service="race", instance="race-1", starts_at="2026-06-01T00:00:00Z"),
        alert("HaDown", service="race", instance="race-2", starts_at="2026-06-01T00:00:00Z"),
    )
    barrier = threading.Barrier(copies)
    answers: list[requests.Response] = []

    with remediator(tmp_path, config, store_url) as server:

        def deliver() -> None:
            barrier.wait()
            answers.append(post_webhook(server.url, body))

        threads = [threading.Thread(target=deliver) for _ in range(copies)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        journal = open_journal(store_url)
        actions = settle(journal, expected=2, timeout=30)

    assert [a.status_code for a in answers] == [200] * copies, [a.text for a in answers]
    summaries = [a.json() for a in answers]
    assert sum(s["new_incidents"] for s in summaries) == 2
    assert sum(s["duplicates"] for s in summaries) == 2 * (copies - 1)
    assert sum(s["actions_planned"] for s in summaries) == 2
    assert journal.counts()["notifications"] == copies
    assert len(all_incidents(journal)) == 2
    assert sorted(a["target"] for a in actions) == ["race-1", "race-2"]
    assert read_runs(runs_file).starts == Counter({a["id"]: 1 for a in actions})
