"""The webhook and read API served by the real `remediator serve` (gunicorn) on SQLite."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import sqlite3
import time
from pathlib import Path

import pytest
import requests

from receiver.store.sqlite import SqliteStore
from tests.support.payloads import alert, notification
from tests.support.processes import remediator
from tests.support.receiver import CONFIG, MAX_BODY, TOKEN, hold_dispatcher, write_config


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("webhook")


@pytest.fixture(scope="module")
def server(workdir):
    config = write_config(workdir)
    with remediator(workdir, config, f"sqlite:///{workdir / 'journal.db'}") as running:
        hold_dispatcher(running.url)  # planned actions stay planned in this module
        yield running


@pytest.fixture
def journal(workdir) -> SqliteStore:
    return SqliteStore(f"sqlite:///{workdir / 'journal.db'}")


def quiet_counts(journal: SqliteStore) -> dict[str, int]:
    """The journal's row counts once no escalation is owed: a refused action's escalation
    is journaled by the dispatcher later, on its own time, and would otherwise land
    between a test's two counts (as it did in CI)."""

    def owed() -> int:
        with journal.transaction(write=False) as tx:
            return tx.execute(
                "SELECT COUNT(*) FROM runbook_runs WHERE escalation = 'pending'"
            ).fetchone()[0]

    deadline = time.monotonic() + 20
    while owed() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not owed(), "an escalation stayed owed for 20 s"
    return journal.counts()


def post(server, body, *, token: str | None = TOKEN, content_type="application/json", **kw):
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return requests.post(f"{server.url}/webhook", data=data, headers=headers, timeout=30, **kw)


def incidents(server, **params):
    return requests.get(f"{server.url}/api/v1/incidents", params=params, timeout=10).json()


def actions(server, **params):
    return requests.get(f"{server.url}/api/v1/actions", params=params, timeout=10).json()


# ---------------------------------------------------------------- accepted


def test_firing_alert_opens_incident_and_plans_action(server):
    body = notification(
        alert(service="checkout", severity="ticket", starts_at="2026-01-01T00:00:00Z")
    )
    response = post(server, body)
    assert response.status_code == 200
    summary = response.json()
    assert summary["new_incidents"] == 1
    assert summary["actions_planned"] == 1
    assert summary["duplicates"] == 0
    found = incidents(server, service="checkout")["data"]
    assert [(i["alertname"], i["status"]) for i in found] == [("ServiceDown", "firing")]
    planned = actions(server, incident_id=found[0]["id"])["data"]
    assert [(a["strategy"], a["target"], a["status"]) for a in planned] == [
        ("restart-web", "checkout", "planned")
    ]


def test_repeat_and_ha_twin_change_nothing(server, journal):
    body = notification(alert(service="cart", starts_at="2026-01-02T00:00:00Z"))
    assert post(server, body).json()["new_incidents"] == 1
    before = quiet_counts(journal)
    for _ in range(3):  # Alertmanager's repeat, then the HA peer's copy
        again = post(server, body).json()
        assert (again["new_incidents"], again["duplicates"], again["actions_planned"]) == (0, 1, 0)
    after = journal.counts()
    assert after["incidents"] == before["incidents"]
    assert after["actions"] == before["actions"]
    assert after["notifications"] == before["notifications"] + 3


def test_new_starts_at_is_a_new_incident(server):
    first = alert(service="search", starts_at="2026-01-03T00:00:00Z")
    second = alert(service="search", starts_at="2026-01-03T01:00:00Z")
    assert post(server, notification(first)).json()["new_incidents"] == 1
    assert post(server, notification(second)).json()["new_incidents"] == 1
    assert incidents(server, service="search")["total"] == 2


def test_resolution_closes_incident_records_duration_and_cancels_pending(server):
    firing = alert(service="pay", starts_at="2026-01-04T00:00:00Z")
    post(server, notification(firing))
    resolved = {**firing, "status": "resolved", "endsAt": "2026-01-04T00:02:30Z"}
    summary = post(server, notification(resolved)).json()
    assert summary["resolved"] == 1
    assert summary["actions_cancelled"] == 1
    incident = incidents(server, service="pay")["data"][0]
    assert incident["status"] == "resolved"
    assert incident["duration_seconds"] == pytest.approx(150.0)
    action = actions(server, incident_id=incident["id"])["data"][0]
    assert action["status"] == "cancelled"
    assert [e["status"] for e in action["events"]] == ["planned", "cancelled"]
    # the resolution re-sent is a duplicate, not a second closing
    assert post(server, notification(resolved)).json()["duplicates"] == 1


def test_resolved_never_seen_firing_is_recorded_closed_without_action(server):
    resolved = alert(
        service="ghost",
        status="resolved",
        starts_at="2026-01-05T00:00:00Z",
        ends_at="2026-01-05T00:01:00Z",
    )
    summary = post(server, notification(resolved)).json()
    assert (summary["new_incidents"], summary["resolved"], summary["actions_planned"]) == (0, 1, 0)
    incident = incidents(server, service="ghost")["data"][0]
    assert incident["status"] == "resolved"
    assert actions(server, incident_id=incident["id"])["total"] == 0


def test_late_firing_after_resolution_does_not_reopen(server):
    firing = alert(service="late", starts_at="2026-01-06T00:00:00Z")
    post(server, notification(firing))
    post(server, notification({**firing, "status": "resolved", "endsAt": "2026-01-06T00:01:00Z"}))
    summary = post(server, notification(firing)).json()
    assert (summary["duplicates"], summary["actions_planned"]) == (1, 0)
    assert incidents(server, service="late")["data"][0]["status"] == "resolved"


def test_continue_and_unmatched_and_refused(server):
    both = alert(service="api", severity="page", starts_at="2026-01-07T00:00:00Z")
    summary = post(server, notification(both)).json()
    assert summary["actions_planned"] == 1  # restart-web does not continue
    unmatched = alert("DiskFull", service="api", starts_at="2026-01-07T00:00:00Z")
    assert post(server, notification(unmatched)).json()["unmatched"] == 1
    hostile = alert(service="x; rm -rf /", starts_at="2026-01-07T00:00:00Z")
    summary = post(server, notification(hostile)).json()
    assert (summary["actions_planned"], summary["actions_refused"]) == (0, 1)
    refused = actions(server, status="skipped")["data"][0]
    assert refused["reason"].startswith("refused:")
    assert refused["target"] == ""


def test_read_api_filters_orders_and_paginates(server):
    for hour in range(5):
        post(server, notification(alert(service="pager", starts_at=f"2026-02-01T0{hour}:00:00Z")))
    page = incidents(server, service="pager", limit=2)
    assert page["total"] == 5
    assert [i["starts_at"][:13] for i in page["data"]] == ["2026-02-01T04", "2026-02-01T03"]
    assert page["next_offset"] == 2
    last = incidents(server, service="pager", limit=2, offset=4)
    assert [i["starts_at"][:13] for i in last["data"]] == ["2026-02-01T00"]
    assert last["next_offset"] is None
    for n in range(3):  # firing, each its own incident (the pager's supersede each other)
        post(server, notification(alert(service=f"filtered-{n}", starts_at="2026-02-02T00:00:00Z")))
    firing = incidents(server, alertname="ServiceDown", status="firing", limit=100)
    assert firing["total"] >= 3
    assert {(i["alertname"], i["status"]) for i in firing["data"]} == {("ServiceDown", "firing")}
    bad = requests.get(f"{server.url}/api/v1/incidents", params={"status": "bogus"}, timeout=5)
    assert bad.status_code == 400 and bad.json()["field"] == "status"
    assert requests.get(f"{server.url}/api/v1/actions?limit=0", timeout=5).status_code == 400


# ---------------------------------------------------------------- rejected


def _rejected(server, journal, expected_status, **kwargs):
    before = quiet_counts(journal)
    response = post(server, **kwargs)
    assert response.status_code == expected_status, response.text
    assert journal.counts() == before, "a rejected request must not change the journal"
    return response


def test_missing_or_wrong_credentials_are_401(server, journal):
    body = notification(alert(service="auth"))
    assert _rejected(server, journal, 401, body=body, token=None).headers["WWW-Authenticate"]
    _rejected(server, journal, 401, body=body, token="wrong")
    basic = base64.b64encode(f"user:{TOKEN}".encode()).decode()
    response = requests.post(
        f"{server.url}/webhook",
        json=body,
        headers={"Authorization": f"Basic {basic}"},
        timeout=10,
    )
    assert response.status_code == 401


def test_non_json_content_type_is_415(server, journal):
    _rejected(server, journal, 415, body="alerts", content_type="text/plain")


def test_other_methods_are_405_and_change_nothing(server, journal):
    before = quiet_counts(journal)
    for method in ("GET", "PUT", "DELETE"):
        response = requests.request(method, f"{server.url}/webhook", timeout=5)
        assert response.status_code == 405 and response.headers["Allow"] == "POST"
        assert response.json()["status"] == "error"
    assert journal.counts() == before


def test_a_content_length_that_is_not_a_number_is_400(server, journal):
    before = quiet_counts(journal)
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(
            b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n".encode()
            + b"Content-Length: 1e3\r\n\r\n{}"
        )
        head = sock.recv(4096).split(b"\r\n", 1)[0]
    assert head.split()[1] == b"400", head
    assert journal.counts() == before


def test_oversize_body_is_413(server, journal):
    huge = notification(alert(service="big", blob="x" * (MAX_BODY + 1)))
    _rejected(server, journal, 413, body=huge)


def test_oversize_chunked_body_is_413_without_reading_it_whole(server, journal):
    sent = []

    def chunks():
        for _ in range(64):  # 4 MiB offered, far beyond the 64 KiB limit
            sent.append(1)
            yield b"x" * 65536

    before = quiet_counts(journal)
    try:
        response = requests.post(
            f"{server.url}/webhook",
            data=chunks(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        assert response.status_code == 413
    except requests.ConnectionError:
        pass  # the server may close the connection once the limit is passed: also a refusal
    assert len(sent) < 64 or journal.counts() == before
    assert journal.counts() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "$"),
        ([], "$"),
        ({"alerts": "nope"}, "alerts"),
        (
            {
                "alerts": [
                    {"status": "firing", "labels": {"a": 1}, "startsAt": "2026-01-01T00:00:00Z"}
                ]
            },
            "alerts[0].labels.a",
        ),
        (
            {"alerts": [{"status": "firing", "labels": {"a": "b"}, "startsAt": "yesterday"}]},
            "alerts[0].startsAt",
        ),
        ({"version": "3", "alerts": []}, "version"),
    ],
)
def test_invalid_payload_is_400_naming_the_field(server, journal, body, field):
    response = _rejected(server, journal, 400, body=body)
    assert response.json()["field"] == field


def test_one_bad_alert_is_refused_alone_never_its_group(server, journal):
    """Issue 12: the good alert is journaled, the bad one named in the answer; only a
    notification of which no alert can be journaled is a 400 that changes nothing."""
    good = alert(service="atomic", starts_at="2026-03-01T00:00:00Z")
    bad = {**alert(service="atomic2"), "status": "exploded"}
    response = post(server, notification(good, bad))
    assert response.status_code == 200, response.text
    assert (response.json()["new_incidents"], response.json()["refused"]) == (1, 1)
    assert [r["field"] for r in response.json()["rejected"]] == ["alerts[1].status"]
    response = _rejected(server, journal, 400, body=notification(bad, bad))
    assert response.json()["field"] == "alerts[0].status"


def test_store_that_cannot_write_is_503_then_recovers(server, workdir, journal):
    body = notification(alert(service="locked", starts_at="2026-03-02T00:00:00Z"))
    before = quiet_counts(journal)
    blocker = sqlite3.connect(workdir / "journal.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock past the busy timeout
    try:
        response = post(server, body)
        assert response.status_code == 503
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert journal.counts() == before
    assert post(server, body).json()["new_incidents"] == 1  # Alertmanager's retry succeeds


# ---------------------------------------------------------------- admin


def test_health_and_readiness(server):
    assert requests.get(f"{server.url}/-/healthy", timeout=5).status_code == 200
    assert requests.get(f"{server.url}/-/ready", timeout=5).status_code == 200


def test_unknown_route_is_json_404(server):
    response = requests.get(f"{server.url}/nope", timeout=5)
    assert response.status_code == 404
    assert response.json()["status"] == "error"


def test_logs_carry_incident_and_action_ids(server):
    post(server, notification(alert(service="logged", starts_at="2026-03-03T00:00:00Z")))
    lines = [line for line in server.output().splitlines() if "action planned" in line]
    assert any("incident_id=" in line and "action_id=" in line for line in lines)


def status(server):
    return requests.get(f"{server.url}/api/v1/status", timeout=5).json()


def reload(server, token=TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{server.url}/-/reload", headers=headers, timeout=10)


def test_reload_applies_valid_config_and_refuses_invalid(tmp_path):
    config = write_config(tmp_path)
    with remediator(tmp_path, config, f"sqlite:///{tmp_path / 'j.db'}") as server:
        assert status(server)["strategies"] == [
            "hold-the-only-slot",
            "restart-web",
            "note-everything",
        ]
        assert reload(server, token=None).status_code == 401
        config.write_text(CONFIG.replace("note-everything", "page-someone"))
        response = reload(server)
        assert response.status_code == 200, response.text
        assert status(server)["strategies"][1:] == ["restart-web", "page-someone"]

        config.write_text(CONFIG.replace("executor: logger", "executor: missing", 1))
        refused = reload(server)
        assert refused.status_code == 400
        assert "no executor named 'missing'" in refused.json()["problems"]
        assert status(server)["strategies"][1:] == ["restart-web", "page-someone"]


def test_sighup_reloads_and_keeps_old_config_when_invalid(tmp_path):
    config = write_config(tmp_path)
    with remediator(
        tmp_path, config, f"sqlite:///{tmp_path / 'j.db'}", "--log-format", "json"
    ) as s:
        config.write_text(CONFIG.replace("note-everything", "after-hup"))
        s.process.send_signal(signal.SIGHUP)
        _eventually(lambda: "after-hup" in status(s)["strategies"])
        sha = status(s)["config_sha256"]
        config.write_text("strategies: [{name: broken}]")
        s.process.send_signal(signal.SIGHUP)
        _eventually(lambda: "reload refused" in s.output())
        assert status(s)["config_sha256"] == sha
        assert s.process.poll() is None
        assert any('"level": "error"' in line for line in s.output().splitlines())


def test_restart_on_same_store_keeps_every_incident(tmp_path):
    config = write_config(tmp_path)
    store = f"sqlite:///{tmp_path / 'j.db'}"
    bodies = [
        notification(alert(service=f"svc{i}", starts_at="2026-04-01T00:00:00Z")) for i in range(5)
    ]
    with remediator(tmp_path, config, store) as first:
        for body in bodies:
            assert post(first, body).status_code == 200
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
    with remediator(tmp_path, config, store, log_name="second.log") as second:
        assert incidents(second)["total"] == 5
        assert actions(second)["total"] == 5
        assert post(second, bodies[0]).json()["duplicates"] == 1


def test_serve_refuses_invalid_config_with_exit_1(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.yml"
    bad.write_text("strategies: 5\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "receiver.cli",
            "serve",
            "--config",
            str(bad),
            "--listen",
            f"127.0.0.1:{_unused_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ},
    )
    assert result.returncode == 1
    assert "strategies" in result.stderr


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _eventually(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")
