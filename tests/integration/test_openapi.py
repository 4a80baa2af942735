"""The HTTP API against its OpenAPI document (issue 17: "OpenAPI 3.1 document for the
whole HTTP API, served at /api/v1/openapi.json, kept true by a test that runs
schemathesis against the real server (every documented status, no 5xx except 503 for a
store outage)").

A real `remediator serve` (gunicorn, SQLite journal) is seeded with real incidents first:
a two-step runbook whose failing first step opens its breaker, a scale target and a
fleet, so that every listing answers rows, not only empty pages. schemathesis then loads
the document the server itself serves and drives every operation in it, with data that
fits the document and data that does not; every answer must have a documented status
and content type, a body valid against its schema, and never a 5xx other than 503.

Nothing is excluded: the operations that change state (POST /-/reload reloads the same
file, POST /api/v1/breakers/{key}/reset closes a breaker, POST /webhook journals
whatever it accepts) act on this throwaway server only.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection

from receiver.openapi import document
from tests.support.journal import bearer, post_webhook
from tests.support.payloads import alert, notification
from tests.support.processes import Running, remediator
from tests.support.receiver import LOG_RESTART, write_config

pytestmark = pytest.mark.integration

#: a runbook that fails its first step (its breaker opens at the first failure), a scale
#: decided from an alert annotation (the log executor records the target), and a fleet
SEEDED = """
server:
  auth: {bearer_token_file: token}
defaults: {cooldown: 0s}
executors:
  logger: {type: log, current_replicas: 2}
  local: {type: command}
strategies:
  - name: fix-web
    matchers: ['alertname="ServiceDown"']
    target: '{{ labels.service }}'
    breaker: {failure_threshold: 1, recovery_timeout: 1h}
    steps:
      - {name: try, action: run, executor: local, command: ['false'], timeout: 5s}
      - {name: restart, action: restart, executor: logger}
  - name: scale-api
    matchers: ['alertname="HighLoad"']
    action: scale
    executor: logger
    target: '{{ labels.service }}'
    scale: {annotation: value, target_value: 0.5, min_replicas: 1, max_replicas: 4}
  - name: restart-fleet
    matchers: ['alertname="DownA"']
    action: restart
    executor: logger
    target: '{{ labels.instance }}'
    fleet: {max_in_flight: 1}
"""

CHECKS = {"negative_data_rejection": negative_data_rejection}

#: examples per operation and phase: enough to reach every documented status of each
#: operation (the whole run takes well under a minute on two cores)
MAX_EXAMPLES = 25


def seed(server: Running) -> None:
    """Fire one notification of four alerts and wait until their actions have ended."""
    load = alert("HighLoad", service="api")
    load["annotations"]["value"] = "0.9"
    body = notification(
        alert(service="web"),
        load,
        alert("DownA", instance="a-1", service="catalog"),
        alert("DownA", instance="a-2", service="catalog"),
    )
    assert post_webhook(server.url, body).status_code == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listed = requests.get(f"{server.url}/api/v1/actions", timeout=5).json()["data"]
        if len(listed) == 5 and all(a["status"] not in ("planned", "running") for a in listed):
            return
        time.sleep(0.2)
    raise AssertionError(f"the seeded actions did not end: {listed}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    workdir = tmp_path_factory.mktemp("openapi")
    config = write_config(workdir, SEEDED)
    with remediator(workdir, config, f"sqlite:///{workdir / 'journal.db'}") as running:
        seed(running)
        yield running


def schemathesis_config(base_url: str) -> dict[str, Any]:
    return {
        "base-url": base_url,
        # a 503 is the one 5xx allowed: the journal cannot answer, so clients retry
        "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]}},
    }


@pytest.fixture(scope="module")
def api_schema(server: Running) -> Any:
    """The document as the server serves it (GET /api/v1/openapi.json)."""
    config = schemathesis.Config.from_dict(schemathesis_config(server.url))
    return schemathesis.openapi.from_url(f"{server.url}/api/v1/openapi.json", config=config)


#: Operations that take input, but none a request can carry that does not fit the
#: document: POST /api/v1/breakers/{strategy}/{target}/reset takes two non-empty path
#: segments, and every URL that reaches it has two (an empty one is another route).
NO_MISFIT = {("POST", "/api/v1/breakers/{strategy}/{target}/reset")}


def operations(*, misfits: bool = False) -> list[tuple[str, str]]:
    """(METHOD, path) of every operation of the document, read from the package (the
    file the server serves), so that pytest names one test per operation before any
    server runs. `misfits`: only those to which data that does not fit the document can
    be sent: those with parameters or a body, less NO_MISFIT."""
    found = [
        (method.upper(), path)
        for path, item in document()["paths"].items()
        for method, operation in item.items()
        if not misfits or operation.get("parameters") or operation.get("requestBody")
    ]
    return [op for op in found if not misfits or op not in NO_MISFIT]


#: Checks left out for one operation, each with why (every other check runs everywhere).
#: POST /webhook refuses one bad alert ALONE (DESIGN.md "Limits"): a notification
#: holding an alert the document calls invalid beside valid ones is rightly accepted
#: (200, the bad one listed in `rejected`), which negative_data_rejection would call a
#: failure. Bodies whose every alert or whose envelope is invalid still get 400, and the
#: status and body of every answer are still checked.
EXCLUDED_CHECKS = {("POST", "/webhook"): ["negative_data_rejection"]}


def exchange(
    api_schema: Any,
    method: str,
    path: str,
    mode: GenerationMode,
    credentials: dict[str, str] | None = None,
) -> None:
    """MAX_EXAMPLES requests to one operation in one mode, each answer checked by all of
    schemathesis's checks but those EXCLUDED_CHECKS names: status documented, content
    type, headers, body valid against its schema, data that fits accepted, data that
    does not refused, no 5xx but 503. `credentials`: the Authorization header (default:
    the seeded server's bearer token)."""
    operation = api_schema[path][method]
    excluded = [CHECKS[name] for name in EXCLUDED_CHECKS.get((method, path), [])]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,  # a real server on a shared machine: no timing in tests
        derandomize=True,  # the same requests every run: a failure reproduces
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(case: Any) -> None:
        case.call_and_validate(headers=credentials or bearer(), excluded_checks=excluded)

    call()


@pytest.mark.parametrize(("method", "path"), operations())
def test_data_that_fits_the_document_gets_documented_answers(
    api_schema: Any, method: str, path: str
) -> None:
    exchange(api_schema, method, path, GenerationMode.POSITIVE)


@pytest.mark.parametrize(("method", "path"), operations(misfits=True))
def test_data_that_does_not_fit_is_refused_with_documented_answers(
    api_schema: Any, method: str, path: str
) -> None:
    exchange(api_schema, method, path, GenerationMode.NEGATIVE)


def test_the_seeded_journal_fills_every_listing(server: Running) -> None:
    """The run above validated rows, not only empty pages: each listing holds some."""
    for path in ("incidents", "actions", "notifications", "breakers", "targets", "fleets"):
        page = requests.get(f"{server.url}/api/v1/{path}", timeout=5).json()
        assert page["total"] > 0, path
    trail = requests.get(f"{server.url}/api/v1/incidents/1", timeout=5).json()
    assert [a["step"] for a in trail["actions"]][:2] == [1, 2]
    assert trail["runs"][0]["status"] == "uncured"


def test_the_webhook_and_reload_refuse_missing_credentials(server: Running) -> None:
    """The 401 the document promises for POST endpoints, with its challenge."""
    for path in ("/webhook", "/-/reload", "/api/v1/breakers/fix-web/web/reset"):
        response = requests.post(f"{server.url}{path}", json={}, timeout=5)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="remediator"'
    assert post_webhook(server.url, notification(), token=None).status_code == 401
    ok = requests.post(f"{server.url}/-/reload", headers=bearer(), timeout=10)
    assert ok.status_code == 200


#: `server.auth` with basic auth instead of a bearer token: the document's `basic` scheme
BASIC_USER, BASIC_PASSWORD = "sre", "pa55-word"
BASIC_AUTH = f"""server:
  auth: {{basic_auth: {{username: {BASIC_USER}, password_file: password}}}}
{LOG_RESTART}"""


@pytest.fixture(scope="module")
def basic_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    workdir = tmp_path_factory.mktemp("openapi-basic")
    (workdir / "password").write_text(BASIC_PASSWORD + "\n")
    config = write_config(workdir, BASIC_AUTH)
    with remediator(workdir, config, f"sqlite:///{workdir / 'journal.db'}") as running:
        yield running


@pytest.mark.parametrize(("method", "path"), [op for op in operations() if op[0] == "POST"])
def test_the_post_endpoints_under_basic_auth_answer_as_documented(
    basic_server: Running, method: str, path: str
) -> None:
    """The same checks with the credentials of the `basic` scheme; without them, the
    documented 401 with its `Basic` challenge."""
    config = schemathesis.Config.from_dict(schemathesis_config(basic_server.url))
    api_schema = schemathesis.openapi.from_url(
        f"{basic_server.url}/api/v1/openapi.json", config=config
    )
    token = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
    exchange(api_schema, method, path, GenerationMode.POSITIVE, {"Authorization": f"Basic {token}"})
    url = basic_server.url + path.replace("{strategy}/{target}", "fix-web/web")
    refused = requests.post(url, json={}, headers=bearer(), timeout=5)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Basic realm="remediator"'
