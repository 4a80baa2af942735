"""The alertmanager executor against a real Alertmanager (API v2)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
import requests

from receiver.config import Config, Endpoint, ExecutorConfig
from receiver.executors import AlertmanagerExecutor, ExecutorError, build_executors
from tests.support.actions import action_request
from tests.support.processes import Running, alertmanager, alertmanager_config, free_port

pytestmark = pytest.mark.integration

LABELS = {
    "alertname": "HighLatency",
    "service": "web",
    "severity": "page",
    "remediation": "auto",
}


def executor(url: str | None = None, shared: str | None = None, **settings) -> AlertmanagerExecutor:
    own = {"url": url} if url else {}
    config = Config(
        alertmanager=Endpoint(shared) if shared else None,
        executors={"am": ExecutorConfig("am", "alertmanager", {**own, **settings})},
    )
    built = build_executors(config)["am"]
    assert isinstance(built, AlertmanagerExecutor)
    return built


@pytest.fixture(scope="module")
def am(tmp_path_factory) -> Iterator[Running]:
    # Nothing listens on the webhook port: notifications are irrelevant here.
    webhook = f"http://127.0.0.1:{free_port()}/webhook"
    workdir = tmp_path_factory.mktemp("alertmanager")
    with alertmanager(workdir, alertmanager_config(webhook)) as running:
        yield running


def find_alerts(url: str, alertname: str, timeout: float = 5.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = requests.get(
            f"{url}/api/v2/alerts", params={"filter": f'alertname="{alertname}"'}, timeout=5
        )
        response.raise_for_status()
        if response.json():
            return response.json()
        time.sleep(0.1)
    return []


def silence_state(url: str, silence_id: str) -> dict:
    response = requests.get(f"{url}/api/v2/silence/{silence_id}", timeout=5)
    response.raise_for_status()
    return response.json()


def test_escalate_posts_an_alert_without_the_routing_label(am):
    ex = executor(shared=am.url)  # url from the top-level alertmanager section
    request = action_request(
        "escalate",
        "web",
        labels=LABELS,
        annotations={"summary": "p99 latency above 2s"},
        reason="breaker open after 3 consecutive failures",
        strategy="restart-web",
    )
    result = ex.execute(request)
    assert result.ok, result.detail
    assert result.detail == f"escalated as RemediationFailed for HighLatency on web to {am.url}"
    [alert] = find_alerts(am.url, "RemediationFailed")
    assert alert["labels"] == {
        "alertname": "RemediationFailed",
        "service": "web",
        "severity": "page",
        "original_alertname": "HighLatency",
        "remediation_strategy": "restart-web",
        "remediation_target": "web",
    }
    assert alert["annotations"]["summary"] == "Remediation failed for HighLatency on web"
    assert alert["annotations"]["reason"] == "breaker open after 3 consecutive failures"
    assert alert["annotations"]["original_summary"] == "p99 latency above 2s"
    assert alert["status"]["state"] == "active"


def test_escalate_uses_the_configured_alertname(am):
    ex = executor(am.url, alertname="RemediatorGaveUp")
    result = ex.escalate({"alertname": "DiskFull"}, {}, "script failed", "clean", "db-1")
    assert result.ok, result.detail
    [alert] = find_alerts(am.url, "RemediatorGaveUp")
    assert alert["labels"]["original_alertname"] == "DiskFull"
    assert alert["labels"]["remediation_target"] == "db-1"


def test_silence_then_expire(am):
    ex = executor(am.url)
    silence_id = ex.silence({"alertname": "HighLatency", "service": "web"}, 300, "remediating")
    silence = silence_state(am.url, silence_id)
    assert silence["status"]["state"] == "active"
    assert silence["createdBy"] == "remediator"
    assert silence["comment"] == "remediating"
    assert sorted(
        (m["name"], m["value"], m["isRegex"], m.get("isEqual", True)) for m in silence["matchers"]
    ) == [("alertname", "HighLatency", False, True), ("service", "web", False, True)]

    ex.expire_silence(silence_id)
    assert silence_state(am.url, silence_id)["status"]["state"] == "expired"


def test_alertmanager_rejection_is_an_executor_error(am):
    with pytest.raises(ExecutorError, match=r"answered HTTP 400"):
        executor(am.url).silence({"not a label": "x"}, 60, "bad matcher name")
    with pytest.raises(ExecutorError, match="invalid silence id"):
        executor(am.url).expire_silence("../../api/v2/status")


def test_unreachable_alertmanager_fails_clearly():
    url = f"http://127.0.0.1:{free_port()}"
    ex = executor(url)
    result = ex.execute(action_request("escalate", "web", labels=LABELS, reason="x"))
    assert not result.ok
    assert result.detail == (
        f"escalation not delivered: cannot reach Alertmanager at {url}: Connection refused"
    )
    with pytest.raises(ExecutorError, match=re.escape(f"cannot reach Alertmanager at {url}")):
        ex.silence({"alertname": "HighLatency"}, 60, "x")
    with pytest.raises(ExecutorError, match=re.escape(f"cannot reach Alertmanager at {url}")):
        ex.expire_silence("0b8f2c9e-1d7e-4f33-9d36-6f0c8a1b2c3d")


def test_no_url_anywhere_is_a_build_error():
    with pytest.raises(ExecutorError, match=r"needs a url here or a top-level alertmanager\.url"):
        executor()


def test_other_actions_are_refused_without_raising():
    result = executor("http://127.0.0.1:1").execute(action_request("restart", "web"))
    assert (result.ok, result.detail) == (False, "alertmanager executor 'am' cannot restart")
