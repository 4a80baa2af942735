"""UTF-8 label names from real senders (issue 12, item 2).

Alertmanager 0.27+ and Prometheus 3 take any UTF-8 label name (OpenTelemetry's
`k8s.pod.name`), and Grafana's Alertmanager already sends them. The issue's case: one
notification, two `ServiceDown` alerts of services `cart` and `search`, the first also
labelled `k8s.pod.name="cart-7d9f"`. It used to be refused whole (400, nothing
journaled, and Alertmanager does not retry a 4xx); expected: 200, two incidents, two
actions planned.

Debian's Alertmanager (0.25) cannot deliver that notification: it refuses such an alert
with 400 (`test_alertmanager_0_25_cannot_carry_utf8_names` shows it), so the case is
POSTed by a real `remediator serve`'s client as Grafana's Alertmanager sends it (its
extra fields included). Escalations and silences sent to that 0.25 carry classic names
instead, which the last tests check against it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from receiver.executors import AlertmanagerExecutor
from tests.integration.test_executor_alertmanager import executor, find_alerts, silence_state
from tests.support.http_server import Reply, scripted_server
from tests.support.journal import all_actions, all_incidents, open_journal, post_webhook, wait_for
from tests.support.payloads import alert, notification
from tests.support.processes import (
    Running,
    alertmanager,
    alertmanager_config,
    free_port,
    remediator,
)
from tests.support.receiver import write_config

POD = "k8s.pod.name"

CONFIG = """
server:
  auth: {bearer_token_file: token}
defaults: {cooldown: 0s}
executors:
  logger: {type: log}
strategies:
  - name: restart-service
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: logger
    target: '{{ labels.service }}'
  - name: restart-pod
    matchers: ['alertname="PodDown"', '"k8s.pod.name"=~"cart-.*"']
    action: restart
    executor: logger
    target: '{{ labels["k8s.pod.name"] }}'
"""


def grafana_alert(service: str, **extra: str) -> dict:
    """One alert as Grafana's Alertmanager sends it: Alertmanager's fields and its own."""
    body = alert("ServiceDown", service=service, starts_at="2026-11-29T10:00:00Z", **extra)
    body.update(
        silenceURL="http://grafana.example/alerting/silence/new",
        dashboardURL="",
        panelURL="",
        values={"A": 0},
        valueString="[ var='A' labels={} value=0 ]",
    )
    return body


def the_issues_case() -> dict:
    body = notification(grafana_alert("cart", **{POD: "cart-7d9f"}), grafana_alert("search"))
    body.update(orgId=1, title="[FIRING:2] ServiceDown", state="alerting", message="")
    return body


def test_a_notification_with_a_utf8_label_name_is_journaled_and_planned(
    tmp_path: Path, store_url: str
) -> None:
    config = write_config(tmp_path, CONFIG)
    with remediator(tmp_path, config, store_url) as server:
        response = post_webhook(server.url, the_issues_case())
        journal = open_journal(store_url)
        actions = wait_for(lambda: len(all_actions(journal)) == 2 and all_actions(journal))
        incidents = all_incidents(journal)

    assert response.status_code == 200, response.text
    assert len(incidents) == 2
    by_service = {i["labels"]["service"]: i["labels"] for i in incidents}
    assert by_service["cart"][POD] == "cart-7d9f"
    assert POD not in by_service["search"]
    assert sorted(a["target"] for a in actions) == ["cart", "search"]
    assert all(a["strategy"] == "restart-service" for a in actions)


def test_a_quoted_utf8_matcher_routes_and_a_subscript_renders_the_target(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, CONFIG)
    store = f"sqlite:///{tmp_path / 'journal.db'}"
    pods = [
        alert("PodDown", service="cart", starts_at="2026-11-29T10:00:00Z", **{POD: "cart-7d9f"}),
        alert("PodDown", service="search", starts_at="2026-11-29T10:00:00Z", **{POD: "srch-1"}),
    ]
    with remediator(tmp_path, config, store) as server:
        response = post_webhook(server.url, notification(*pods))
        journal = open_journal(store)
        wait_for(lambda: len(all_incidents(journal)) == 2, what="two incidents")
        actions = wait_for(lambda: all_actions(journal), what="the pod's action")

    assert response.status_code == 200, response.text
    assert [(a["strategy"], a["target"]) for a in actions] == [("restart-pod", "cart-7d9f")]


def test_explain_takes_and_shows_a_utf8_label(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = write_config(tmp_path, CONFIG)
    argv = [sys.executable, "-m", "receiver.cli", "explain", "--config", str(config)]
    labels = ["alertname=PodDown", f"{POD}=cart-7d9f"]
    done = subprocess.run([*argv, *labels], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"{POD}='cart-7d9f'" in done.stdout
    assert "restart-pod" in done.stdout
    assert '"k8s.pod.name"=~"cart-.*"' in done.stdout
    assert "cart-7d9f" in done.stdout.split("restart-pod", 1)[1]


# ---------------------------------------------------------------- Alertmanager 0.25


@pytest.fixture(scope="module")
def am(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """Debian's Alertmanager 0.25; nothing listens on its webhook (irrelevant here)."""
    webhook = f"http://127.0.0.1:{free_port()}/webhook"
    with alertmanager(tmp_path_factory.mktemp("am"), alertmanager_config(webhook)) as running:
        yield running


def test_alertmanager_0_25_cannot_carry_utf8_names(am: Running) -> None:
    """Why the case above is POSTed as Grafana sends it, not delivered by this one."""
    labels = {"alertname": "ServiceDown", "service": "cart", POD: "cart-7d9f"}
    response = requests.post(f"{am.url}/api/v2/alerts", json=[{"labels": labels}], timeout=10)
    assert response.status_code == 400
    assert POD in response.text


ORIGINAL = {
    "alertname": "ServiceDown",
    "service": "cart",
    POD: "cart-7d9f",
    "remediation": "auto",
}


def test_an_escalation_reaches_alertmanager_0_25_with_classic_names(
    am: Running, caplog: pytest.LogCaptureFixture
) -> None:
    ex = executor(url=am.url, alertname="RemediationFailedUtf8")
    result = ex.escalate(ORIGINAL, {}, "restart failed", "restart-service", "cart")
    held = find_alerts(am.url, "RemediationFailedUtf8")

    assert result.ok, result.detail
    assert "'k8s.pod.name' -> 'k8s_pod_name'" in result.detail
    assert [a["labels"].get("k8s_pod_name") for a in held] == ["cart-7d9f"]
    assert held[0]["labels"]["original_alertname"] == "ServiceDown"
    assert ex.classic_names_only
    assert "refuses UTF-8 label names" in caplog.text


def test_a_silence_reaches_alertmanager_0_25_without_utf8_matchers(am: Running) -> None:
    ex = executor(url=am.url)
    silence_id = ex.silence(ORIGINAL, 600, "utf8 test")
    matchers = silence_state(am.url, silence_id)["matchers"]
    ex.expire_silence(silence_id)

    kept = {k: v for k, v in ORIGINAL.items() if k != POD}
    assert {m["name"]: m["value"] for m in matchers} == kept
    assert ex.classic_names_only


def test_a_utf8_alertmanager_gets_the_names_as_they_are() -> None:
    """An Alertmanager 0.27+ takes UTF-8 names: a local server answering 200 stands in
    for it (none runs here), and receives the original name, sent once."""
    with scripted_server() as server:
        server.default = Reply.json(200, {"silenceID": "abc-1"})
        ex: AlertmanagerExecutor = executor(url=server.url)
        result = ex.escalate(ORIGINAL, {}, "restart failed", "restart-service", "cart")
        silence_id = ex.silence(ORIGINAL, 600, "utf8 test")
        sent = [r.json() for r in server.received]

    assert result.ok and silence_id == "abc-1"
    assert len(sent) == 2
    assert sent[0][0]["labels"][POD] == "cart-7d9f"
    assert {m["name"] for m in sent[1]["matchers"]} == set(ORIGINAL)
    assert not ex.classic_names_only


def test_a_400_about_something_else_is_not_taken_for_a_utf8_refusal() -> None:
    with scripted_server() as server:
        server.default = Reply(400, json.dumps("startsAt must be before endsAt").encode())
        ex = executor(url=server.url)
        result = ex.escalate(ORIGINAL, {}, "restart failed", "restart-service", "cart")
        tries = len(server.received)

    assert not result.ok and "HTTP 400" in result.detail
    assert tries == 1 and not ex.classic_names_only


def test_the_service_label_may_be_an_opentelemetry_name(tmp_path: Path) -> None:
    """`defaults.service_label: [service.name, service]`: OpenTelemetry's service label
    first; the journal's service is its value, or `service` where it is missing."""
    text = "defaults: {cooldown: 0s, service_label: [service.name, service]}\n"
    config = write_config(tmp_path, CONFIG.replace("defaults: {cooldown: 0s}\n", text))
    store = f"sqlite:///{tmp_path / 'journal.db'}"
    body = notification(
        alert("ServiceDown", starts_at="2026-11-29T10:00:00Z", **{"service.name": "cart"}),
        alert("ServiceDown", service="search", starts_at="2026-11-29T10:00:00Z"),
    )
    with remediator(tmp_path, config, store) as server:
        response = post_webhook(server.url, body)
        journal = open_journal(store)
        incidents = wait_for(lambda: len(all_incidents(journal)) == 2 and all_incidents(journal))

    assert response.status_code == 200, response.text
    assert sorted(i["service"] for i in incidents) == ["cart", "search"]
