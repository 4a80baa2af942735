"""The HTTP API against its OpenAPI document (issue 17: "OpenAPI 3.1 document for the
whole HTTP API, served at /api/v1/openapi.json, kept true by a test that runs
schemathesis against the real server (every documented status, no 5xx except 503 for a
store outage)").

A real `remediator serve` (gunicorn, SQLite journal) is seeded with real incidents first:
a two-step runbook whose failing first step opens its breaker, a scale target and a
fleet, so that every listing answers rows, not only empty pages; then actions that wait
for a person, so that approve and deny can answer 200 (their run draws some action ids
from those, the rest as schemathesis generates them, and must see a 200 that the
journal then shows as the decision). schemathesis then loads
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection

from receiver.openapi import document
from tests.support.journal import bearer, post_webhook
from tests.support.payloads import alert, notification
from tests.support.processes import Running, remediator
from tests.support.receiver import write_config

pytestmark = pytest.mark.integration

#: a runbook that fails its first step (its breaker opens at the first failure), a scale
#: decided from an alert annotation (the log executor records the target), and a fleet
SEEDED = """
server:
  auth: {bearer_token_file: token}
defaults: {cooldown: 0s, escalation_executor: logger}
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
  - name: careful
    matchers: ['alertname="Careful"']
    action: restart
    executor: logger
    target: '{{ labels.instance }}'
    approval: {required: true, timeout: 1h}
"""

#: Actions of `careful` left awaiting approval by the seed: approve draws from half of
#: them, deny from the other half (a decided action answers 409 to the next decision).
AWAITING = 12
#: The decision each of the two operations journals.
DECISIONS = {
    "/api/v1/actions/{action_id}/approve": "approved",
    "/api/v1/actions/{action_id}/deny": "denied",
}

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


def seed_awaiting(server: Running) -> list[int]:
    """Fire AWAITING alerts of `careful` (one target each) and return the ids of their
    actions once every one awaits approval."""
    body = notification(
        *(alert("Careful", instance=f"c-{n}", service="ledger") for n in range(AWAITING))
    )
    assert post_webhook(server.url, body).status_code == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listed = requests.get(f"{server.url}/api/v1/actions", timeout=5).json()["data"]
        held = [a["id"] for a in listed if a["waiting"] == "awaiting_approval"]
        if len(held) == AWAITING:
            return sorted(held)
        time.sleep(0.2)
    raise AssertionError(f"the seeded actions do not all await approval: {listed}")


@dataclass(frozen=True)
class Seeded:
    """The seeded server, its config file, the ids of the actions it left awaiting
    approval, and the first incident's trail as the seed left it (schemathesis's own
    webhook posts may supersede that incident later, cancelling its run)."""

    server: Running
    config: Path
    awaiting: list[int]
    first_trail: dict[str, Any]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    workdir = tmp_path_factory.mktemp("openapi")
    config = write_config(workdir, SEEDED)
    with remediator(workdir, config, f"sqlite:///{workdir / 'journal.db'}") as running:
        seed(running)
        trail = requests.get(f"{running.url}/api/v1/incidents/1", timeout=5).json()
        yield Seeded(running, config, seed_awaiting(running), trail)


@pytest.fixture(scope="module")
def server(seeded: Seeded) -> Running:
    return seeded.server


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
    action_ids: Sequence[int] = (),
) -> list[int]:
    """MAX_EXAMPLES requests to one operation in one mode, each answer checked by all of
    schemathesis's checks but those EXCLUDED_CHECKS names: status documented, content
    type, headers, body valid against its schema, data that fits accepted, data that
    does not refused, no 5xx but 503; returns the statuses answered. `credentials`: the
    Authorization header (default: the seeded server's bearer token). `action_ids`:
    ids of existing actions that about half the requests take as their `action_id`
    instead of the generated one (data that fits only: any id fits the document)."""
    operation = api_schema[path][method]
    excluded = [CHECKS[name] for name in EXCLUDED_CHECKS.get((method, path), [])]
    cases = operation.as_strategy(generation_mode=mode)
    if action_ids:
        assert mode == GenerationMode.POSITIVE, "a chosen id would make misfit data fit"
        cases = st.one_of(cases, st.tuples(cases, st.sampled_from(list(action_ids))).map(_with_id))
    statuses: list[int] = []

    @given(case=cases)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,  # a real server on a shared machine: no timing in tests
        derandomize=True,  # the same requests every run: a failure reproduces
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(case: Any) -> None:
        response = case.call_and_validate(headers=credentials or bearer(), excluded_checks=excluded)
        statuses.append(response.status_code)

    call()
    return statuses


def _with_id(drawn: tuple[Any, int]) -> Any:
    """A generated case with its `action_id` replaced by an existing action's id."""
    case, action_id = drawn
    case.path_parameters = {**(case.path_parameters or {}), "action_id": action_id}
    return case


@pytest.mark.parametrize(("method", "path"), operations())
def test_data_that_fits_the_document_gets_documented_answers(
    seeded: Seeded, api_schema: Any, method: str, path: str
) -> None:
    """Approve and deny also reach their 200 on actions the seed left awaiting approval
    (approve on the even positions of the seeded ids, deny on the odd ones), and the
    journal shows each decision so answered."""
    if path not in DECISIONS:
        exchange(api_schema, method, path, GenerationMode.POSITIVE)
        return
    held = seeded.awaiting[list(DECISIONS).index(path) :: 2]
    statuses = exchange(api_schema, method, path, GenerationMode.POSITIVE, action_ids=held)
    assert 200 in statuses, f"{path}: no 200 among {sorted(set(statuses))}"
    url = seeded.server.url
    approvals = [
        requests.get(f"{url}/api/v1/actions/{action_id}", timeout=5).json()["approval"]
        for action_id in seeded.awaiting
    ]
    # every 200 journaled its decision (approve never denies, deny never approves)
    decided = [a for a in approvals if a["decision"] == DECISIONS[path]]
    assert len(decided) == statuses.count(200), (statuses, approvals)


@pytest.mark.parametrize(("method", "path"), operations(misfits=True))
def test_data_that_does_not_fit_is_refused_with_documented_answers(
    api_schema: Any, method: str, path: str
) -> None:
    exchange(api_schema, method, path, GenerationMode.NEGATIVE)


def test_the_seeded_journal_fills_every_listing(seeded: Seeded) -> None:
    """The run above validated rows, not only empty pages: each listing holds some."""
    for path in ("incidents", "actions", "notifications", "breakers", "targets", "fleets"):
        page = requests.get(f"{seeded.server.url}/api/v1/{path}", timeout=5).json()
        assert page["total"] > 0, path
    trail = seeded.first_trail
    assert [a["step"] for a in trail["actions"]][:2] == [1, 2], trail
    assert trail["runs"][0]["status"] == "uncured", trail


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
BEARER_AUTH = "auth: {bearer_token_file: token}"
BASIC_AUTH = f"auth: {{basic_auth: {{username: {BASIC_USER}, password_file: password}}}}"
BASIC = "Basic " + base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()


@pytest.fixture(scope="module")
def basic_server(seeded: Seeded) -> Iterator[Running]:
    """The seeded server with `server.auth` turned to basic auth by a reload (the
    credentials are reloadable), instead of a second server to start; turned back to
    the bearer token afterwards."""
    server, config = seeded.server, seeded.config
    assert BEARER_AUTH in SEEDED
    (config.parent / "password").write_text(BASIC_PASSWORD + "\n")
    config.write_text(SEEDED.replace(BEARER_AUTH, BASIC_AUTH))
    reloaded = requests.post(f"{server.url}/-/reload", headers=bearer(), timeout=10)
    assert reloaded.status_code == 200, reloaded.text
    yield server
    config.write_text(SEEDED)
    headers = {"Authorization": BASIC}
    reloaded = requests.post(f"{server.url}/-/reload", headers=headers, timeout=10)
    assert reloaded.status_code == 200, reloaded.text


@pytest.mark.parametrize(("method", "path"), [op for op in operations() if op[0] == "POST"])
def test_the_post_endpoints_under_basic_auth_answer_as_documented(
    basic_server: Running, api_schema: Any, method: str, path: str
) -> None:
    """The same checks with the credentials of the `basic` scheme; without them, the
    documented 401 with its `Basic` challenge."""
    exchange(api_schema, method, path, GenerationMode.POSITIVE, {"Authorization": BASIC})
    url = basic_server.url + path.replace("{strategy}/{target}", "fix-web/web")
    refused = requests.post(url, json={}, headers=bearer(), timeout=5)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Basic realm="remediator"'
