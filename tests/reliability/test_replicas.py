"""Three real `remediator serve` replicas on PostgreSQL behind two clustered Alertmanagers.

The first check of issue 18. Each Alertmanager of the pair sends its webhooks to a
different replica (tests/support/replicas.py); the third replica receives nothing and
only claims. Alerts are posted to both Alertmanagers (API v2), as Prometheus does with
an HA pair, so every alert runs through both notification pipelines and usually reaches
two replicas. The strategy runs a real command that appends `start/end TARGET PID TIME`
to one file, so "exactly once" is read from the side effects as well as the journal.

1. A storm: 120 distinct alerts at once. One incident per (fingerprint, startsAt), one
   action each, each target's command run exactly once; the global concurrency cap
   (`max_concurrent_actions`) held across the replicas (never more commands at once).
2. kill -9 one replica while its actions run: another replica adopts them by the crash
   rule (README, Crash rule): it waits for the orphan's command, still running, to end
   and, the strategy not being idempotent, journals it failed without running it again.
3. PostgreSQL restarted mid-storm (`pg_ctlcluster ... restart` of a private cluster made
   for the test; the machine's shared server is never touched): the webhook answers 503
   meanwhile (Alertmanager retries), then everything accepted is journaled and acted on
   exactly once.

The journal is read by the test itself (a store opened on the same URL), never through a
replica's answers.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from receiver.store import StoreUnavailable
from tests.support.journal import (
    FINAL,
    all_actions,
    iso,
    open_journal,
    post_webhook,
    wait_for,
)
from tests.support.payloads import alert, notification
from tests.support.postgres import postgres_schema
from tests.support.processes import Running
from tests.support.replicas import (
    ReplicaSet,
    actions_by_target,
    adopters,
    alertmanager_pair,
    post_alerts,
    postgres_unavailable,
    private_postgres,
    quiet_deliveries,
    replica_set,
)

MAX_CONCURRENT = 6  # defaults.max_concurrent_actions: the global cap, and threads per replica
STORM = 120
STORM_SECONDS = "0.3"  # each command sleeps this long, so that actions overlap
KILLED = 8
KILLED_SECONDS = "16"  # outlives the crash rule's 10 s, so its step 0 has to wait for it


def storm_alerts(name: str, count: int, seconds: str, prefix: str) -> list[dict[str, Any]]:
    """`count` distinct firing alerts (API v2 shape), started a minute ago."""
    started = iso(datetime.now(UTC) - timedelta(minutes=1))
    return [
        {
            "labels": {"alertname": name, "instance": f"{prefix}{n:03d}", "seconds": seconds},
            "annotations": {"summary": "replica test"},
            "startsAt": started,
        }
        for n in range(count)
    ]


def command_recorded(action: dict[str, Any]) -> bool:
    """True once the action journaled the process group its command started in."""
    return any(e["reason"].startswith("command started: ") for e in action["events"])


def adopted_at(action: dict[str, Any]) -> float:
    """When the action was adopted after a crash (epoch seconds, from its event)."""
    at = next(e["at"] for e in action["events"] if e["reason"].startswith("adopted by "))
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


def incidents_named(journal: Any, name: str) -> list[dict[str, Any]]:
    incidents: list[dict[str, Any]] = []
    while True:
        page = journal.list_incidents(alertname=name, limit=1000, offset=len(incidents))
        incidents.extend(page.items)
        if not page.items or len(incidents) >= page.total:
            return incidents


def actions_of(journal: Any, incidents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = {i["id"] for i in incidents}
    return [a for a in all_actions(journal) if a["incident_id"] in ids]


def settle_incidents(
    journal: Any, name: str, expected: int, timeout: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Wait until `expected` incidents named `name` exist and each one's actions are all
    final; return (incidents, their actions)."""

    def done() -> tuple[list, list] | None:
        try:
            incidents = incidents_named(journal, name)
            actions = actions_of(journal, incidents)
        except StoreUnavailable:  # the test's own connection, cut by a server restart
            return None
        if len(incidents) < expected:
            return None
        if len(actions) < expected or any(a["status"] not in FINAL for a in actions):
            return None
        return incidents, actions

    try:
        return wait_for(done, timeout, f"{expected} {name} incidents with final actions")
    except AssertionError:
        incidents = incidents_named(journal, name)
        left = [(a["id"], a["status"], a["reason"]) for a in actions_of(journal, incidents)]
        unsettled = [a for a in left if a[1] not in FINAL]
        raise AssertionError(
            f"{len(incidents)} incidents, {len(left)} actions, unsettled: {unsettled}"
        ) from None


def assert_one_incident_and_action_each(
    sent: list[dict[str, Any]], incidents: list[dict[str, Any]], actions: list[dict[str, Any]]
) -> None:
    """The journal's half of "exactly once": one incident per alert and key, one action
    per incident."""
    keys = Counter((i["fingerprint"], i["starts_at"]) for i in incidents)
    assert max(keys.values()) == 1, "an alert got two incidents"
    assert sorted(i["labels"]["instance"] for i in incidents) == sorted(
        a["labels"]["instance"] for a in sent
    )
    per_incident = Counter(a["incident_id"] for a in actions)
    assert per_incident == Counter({i["id"]: 1 for i in incidents}), "not one action each"


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ReplicaSet, list[Running], Any]]:
    """Three replicas on a throwaway schema of the machine's PostgreSQL, the clustered
    Alertmanager pair in front of the first two, and the test's own view of the journal."""
    workdir = tmp_path_factory.mktemp("replicas")
    with (
        postgres_schema() as url,
        replica_set(workdir, url, max_concurrent_actions=MAX_CONCURRENT) as replicas,
        alertmanager_pair(workdir, replicas.replicas[:2]) as pair,
    ):
        journal = open_journal(url)
        yield replicas, pair, journal
        journal.close()


# ---------------------------------------------------------------- 1. storm


def test_storm_through_both_alertmanagers_gets_exactly_one_action_per_incident(
    cluster: tuple[ReplicaSet, list[Running], Any],
) -> None:
    replicas, pair, journal = cluster
    sent = storm_alerts("ReplicaStorm", STORM, STORM_SECONDS, "storm-")
    before = [am_delivered for am_delivered, _ in quiet_deliveries(pair)]
    notifications_before = journal.counts()["notifications"]

    post_alerts(pair, sent)
    incidents, actions = settle_incidents(journal, "ReplicaStorm", STORM, timeout=90)
    deliveries = quiet_deliveries(pair)

    assert_one_incident_and_action_each(sent, incidents, actions)
    assert {a["status"] for a in actions} == {"succeeded"}, Counter(a["status"] for a in actions)
    # the side effects: each target's command ran exactly once, start to end
    effects = replicas.side_effects()
    targets = {a["labels"]["instance"] for a in sent}
    assert {t: effects.starts[t] for t in targets} == dict.fromkeys(targets, 1)
    assert {t: effects.ends[t] for t in targets} == dict.fromkeys(targets, 1)
    # the global cap held across the replicas, and the actions did overlap
    assert 1 < effects.peak_overlap() <= MAX_CONCURRENT
    # every delivery was accepted and journaled; both members delivered, and some alerts
    # twice (one copy to each replica): the duplicates the journal had to recognise
    delivered = [attempted - b for (attempted, _), b in zip(deliveries, before, strict=True)]
    assert [failed for _, failed in deliveries] == [0, 0]
    assert all(count > 0 for count in delivered), delivered
    assert sum(delivered) > STORM, f"no alert reached two replicas: {delivered}"
    assert journal.counts()["notifications"] - notifications_before == sum(delivered)
    # the work was shared: more than one replica's dispatcher carried out actions
    claimers = {a["claimed_by"] for a in actions}
    owners = {owner.name for c in claimers if (owner := replicas.owner(c)) is not None}
    assert len(owners) >= 2, claimers


# ---------------------------------------------------------------- 2. kill -9


def test_kill_9_of_a_replica_running_actions_leaves_them_to_another_replica_once(
    cluster: tuple[ReplicaSet, list[Running], Any],
) -> None:
    replicas, pair, journal = cluster
    sent = storm_alerts("ReplicaKill", KILLED, KILLED_SECONDS, "kill-")
    post_alerts(pair, sent)

    def running_by_owner() -> dict[str, list[dict[str, Any]]] | None:
        """The running ReplicaKill actions per replica, once some run and every one of
        them has journaled its command's process group (the crash rule's step 0 needs
        it: a kill in the instant between a spawn and that commit leaves a command the
        next dispatcher cannot see); None until then."""
        ids = {i["id"] for i in incidents_named(journal, "ReplicaKill")}
        running = [
            a
            for a in journal.list_actions(status="running", limit=1000).items
            if a["incident_id"] in ids
        ]
        if not running or not all(command_recorded(a) for a in running):
            return None
        owned: dict[str, list[dict[str, Any]]] = {}
        for action in running:
            owner = replicas.owner(action["claimed_by"])
            if owner is not None:
                owned.setdefault(owner.name, []).append(action)
        return owned or None

    owned = wait_for(running_by_owner, 30, "ReplicaKill actions to run")
    victim_name = max(owned, key=lambda name: len(owned[name]))
    victim = next(r for r in replicas.replicas if r.name == victim_name)
    victim_claims = {a["claimed_by"] for a in owned[victim_name]}  # its dispatcher's name
    victim.kill9()
    orphans = {
        a["id"]
        for a in journal.list_actions(status="running", limit=1000).items
        if a["claimed_by"] in victim_claims
    }
    assert orphans, "the victim held no running action when it was killed"
    survivors = [r for r in replicas.replicas if r is not victim]

    incidents, actions = settle_incidents(journal, "ReplicaKill", KILLED, timeout=120)

    assert_one_incident_and_action_each(sent, incidents, actions)
    effects = replicas.side_effects()
    targets = {a["labels"]["instance"] for a in sent}
    # nothing ran twice, and every command ran to its end (the kill spared the commands)
    assert {t: effects.starts[t] for t in targets} == dict.fromkeys(targets, 1)
    assert {t: effects.ends[t] for t in targets} == dict.fromkeys(targets, 1)
    by_target = actions_by_target(actions)
    assert all(len(found) == 1 for found in by_target.values())
    waited = 0  # orphans whose command the adopter found still running
    for action in actions:
        where = f"action {action['id']} on {action['target']}: {action['reason']}"
        if action["id"] not in orphans:
            assert action["status"] == "succeeded", where
            assert not adopters(action), where
            continue
        # adopted by a surviving replica's dispatcher, which resolved it by the crash rule:
        # step 0 waited for its command if it still ran (it outlives the crash rule's 10 s
        # unless the machine is slow), then, `run` not being idempotent, failed it without
        # running it again
        taken_by = adopters(action)
        assert len(taken_by) == 1, where
        assert any(r.owns(taken_by[0]) for r in survivors), (where, taken_by)
        assert action["claimed_by"] == taken_by[0], where
        assert action["status"] == "failed", where
        not_rerun = "interrupted by a crash; not re-run (not idempotent)"
        if effects.ended_at(action["target"]) > adopted_at(action):
            assert action["reason"].startswith(f"{not_rerun}; its command (process group "), where
            assert "was still running after the crash; it ended" in action["reason"], where
            waited += 1
        else:
            assert action["reason"] == not_rerun, where
    assert waited >= 1, "no adopted command outlived the crash: step 0 was not exercised"


# ---------------------------------------------------------------- 3. PostgreSQL restart

RESTART_WAVES = 3
RESTART_WAVE = 20
PROBE_EVERY = 0.05  # seconds between the probe's notifications


class Probe(threading.Thread):
    """Posts a fresh one-alert notification straight to a replica's webhook again and
    again, retrying each until it gets a 200, as Alertmanager does; records every
    answer (status code, or the exception's name)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.answers: Counter = Counter()
        self.acked: list[str] = []  # instances whose notification got a 200
        self.error: str | None = None

    def run(self) -> None:
        started = iso(datetime.now(UTC) - timedelta(minutes=1))
        number = 0
        while not self.stop.is_set():
            instance = f"probe-{number:03d}"
            body = notification(
                alert("ReplicaProbe", starts_at=started, instance=instance, seconds="0.2"),
                group_key=f'{{}}:{{instance="{instance}"}}',
            )
            deadline = time.monotonic() + 60
            while True:
                try:
                    status = post_webhook(self.url, body, timeout=30).status_code
                except requests.RequestException as exc:
                    status = type(exc).__name__
                self.answers[status] += 1
                if status == 200:
                    self.acked.append(instance)
                    break
                if time.monotonic() > deadline:
                    self.error = f"{instance} got no 200 within 60 s"
                    return
                time.sleep(PROBE_EVERY)
            number += 1
            time.sleep(PROBE_EVERY)


def test_postgres_restart_mid_storm_answers_503_then_journals_and_acts_once(
    tmp_path: Path,
) -> None:
    reason = postgres_unavailable()
    if reason:
        pytest.skip(f"restarting PostgreSQL needs a private cluster: {reason}")
    with (
        private_postgres() as postgres,
        replica_set(tmp_path, postgres.url, max_concurrent_actions=MAX_CONCURRENT) as replicas,
        alertmanager_pair(tmp_path, replicas.replicas[:2]) as pair,
    ):
        journal = open_journal(postgres.url)
        sent = storm_alerts("ReplicaRestart", RESTART_WAVES * RESTART_WAVE, "0.5", "restart-")
        waves = [sent[n : n + RESTART_WAVE] for n in range(0, len(sent), RESTART_WAVE)]
        probe = Probe(replicas[2].url)  # the replica no Alertmanager sends to
        probe.start()
        try:
            post_alerts(pair, waves[0])
            wait_for(lambda: incidents_named(journal, "ReplicaRestart"), 30, "the first wave")
            post_alerts(pair, waves[1])  # under way while the server restarts
            postgres.restart()
            post_alerts(pair, waves[2])  # sent once it is back: Alertmanager retries
            acked = len(probe.acked)
            wait_for(lambda: len(probe.acked) >= acked + 5, 60, "the probe to get 200s again")
        finally:
            probe.stop.set()
            probe.join(90)
        assert probe.error is None, probe.error
        incidents, actions = settle_incidents(journal, "ReplicaRestart", len(sent), timeout=120)
        probe_incidents, probe_actions = settle_incidents(
            journal, "ReplicaProbe", len(probe.acked), timeout=60
        )
        deliveries = quiet_deliveries(pair)
        effects = replicas.side_effects()
        statuses = Counter(a["status"] for a in actions + probe_actions)
        journal.close()

    # while PostgreSQL restarted the webhook answered 503 (and nothing else went wrong)
    assert probe.answers[503] >= 1, probe.answers
    assert set(probe.answers) <= {200, 503}, probe.answers
    # afterwards everything accepted was journaled, once, and acted on, once
    assert_one_incident_and_action_each(sent, incidents, actions)
    assert sorted(i["labels"]["instance"] for i in probe_incidents) == sorted(probe.acked)
    assert Counter(a["incident_id"] for a in probe_actions) == Counter(
        {i["id"]: 1 for i in probe_incidents}
    )
    targets = [a["labels"]["instance"] for a in sent] + probe.acked
    trails = {
        a["target"]: [(e["status"], e["reason"]) for e in a["events"]]
        for a in actions + probe_actions
        if effects.starts[a["target"]] != 1 or a["status"] != "succeeded"
    }
    assert {t: effects.starts[t] for t in targets} == dict.fromkeys(targets, 1), trails
    assert statuses == Counter({"succeeded": len(targets)}), trails
    assert all(attempted > 0 for attempted, _ in deliveries), deliveries
