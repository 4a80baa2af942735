"""Fuzzing with Hypothesis: the parsers of untrusted or hand-written input, and the webhook.

- `parse_matcher` raises MatcherError or returns a Matcher that prints back to itself;
- `parse_config` raises ConfigError or returns a Config;
- the webhook (the Flask app gunicorn serves, on a tmp SQLite journal, for speed; then
  fewer examples against a real `remediator serve`) answers only documented statuses,
  never 5xx (no store outage here, so not even 503), exactly the status the input calls
  for where that is determined, and a rejected request leaves the journal unchanged.

Inputs: valid payloads, payloads with one field mutated, deleted or blown past its limits,
truncated and corrupted bytes, wrong types, huge label sets and values, unicode, and
nesting deep enough to exhaust a recursive parser (see tests/support/fuzzing.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from receiver.config import Config, ConfigError, parse_config
from receiver.matchers import Matcher, MatcherError, parse_matcher
from receiver.store.sqlite import SqliteStore
from tests.support.fuzzing import (
    EXAMPLE_CONFIG,
    Body,
    config_texts,
    matcher_strings,
    webhook_bodies,
)
from tests.support.processes import Running, remediator
from tests.support.receiver import TOKEN, write_config

MAX_BODY = 65536
CONFIG = f"""
server:
  auth: {{bearer_token_file: token}}
  max_body_bytes: {MAX_BODY}
executors:
  logger: {{type: log}}
  local: {{type: command}}
strategies:
  - name: any-service
    matchers: ['service=~".+"']
    action: run
    executor: EXECUTOR
    target: '{{{{ labels.service }}}}'
    command: ['/bin/true', '{{{{ labels.service }}}}']
  - name: by-alertname
    matchers: []
    action: escalate
    executor: logger
    target: '{{{{ labels.alertname }}}}'
"""
STATUSES = {200, 400, 401, 413, 415}
SUMMARY_KEYS = {
    "alerts", "new_incidents", "resolved", "duplicates", "actions_planned",
    "actions_refused", "actions_cancelled", "unmatched",
}  # fmt: skip

# ---------------------------------------------------------------- matchers


@settings(max_examples=400, deadline=None)
@given(matcher_strings())
@example('a=~"x{99999999999}"')  # re: OverflowError, not re.error
@example('a=~"' + "(" * 1200 + ")" * 1200 + '"')  # re: RecursionError
@example('alertname="a\\"b\\\\c\\nd"')
def test_matcher_parser_raises_only_matcher_error(text: str) -> None:
    try:
        matcher = parse_matcher(text)
    except MatcherError as exc:
        assert str(exc)
        return
    assert isinstance(matcher, Matcher)
    assert matcher.op in ("=", "!=", "=~", "!~")
    again = parse_matcher(str(matcher))  # what `explain` and the journal print parses back
    assert (again.name, again.op, again.value) == (matcher.name, matcher.op, matcher.value)
    assert isinstance(matcher.matches({}), bool)
    assert isinstance(matcher.matches({matcher.name: "x"}), bool)


# ---------------------------------------------------------------- configs


@settings(max_examples=200, deadline=None)
@given(config_texts)
@example("[" * 5000 + "]" * 5000)  # yaml: RecursionError
@example("strategies: [{name: a, matchers: ['a=~\"x{99999999999}\"'], action: run}]")
@example("defaults: {safe_pattern: 'x{99999999999}'}")  # re: OverflowError
@example("defaults: {safe_pattern: '" + "(" * 1200 + ")" * 1200 + "'}")
@example(
    "executors: {l: {type: log}}\nstrategies: [{name: a, matchers: [], action: run, "
    "executor: l, target: '{{" + "(" * 3000 + "1" + ")" * 3000 + "}}'}]"
)  # jinja: RecursionError
def test_config_parser_raises_only_config_error(text: str) -> None:
    try:
        config = parse_config(text, "fuzz.yml", base_dir=EXAMPLE_CONFIG.parent)
    except ConfigError as exc:
        assert exc.problems, "a ConfigError must say what is wrong"
        assert all(str(problem) for problem in exc.problems)
        return
    assert isinstance(config, Config)
    assert config.sha256 == hashlib.sha256(text.encode()).hexdigest()
    names = [strategy.name for strategy in config.strategies]
    assert len(names) == len(set(names))
    assert all(strategy.executor in config.executors for strategy in config.strategies)


def test_example_config_is_valid_so_mutations_start_from_a_good_file() -> None:
    text = EXAMPLE_CONFIG.read_text()
    assert parse_config(text, base_dir=EXAMPLE_CONFIG.parent).strategies


# ---------------------------------------------------------------- webhook

headers_for = st.fixed_dictionaries(
    {
        "auth": st.sampled_from(["good"] * 8 + ["none", "wrong"]),
        "type": st.sampled_from(["application/json"] * 8 + ["text/plain", ""]),
    }
)


def expected_status(body: Body, how: dict[str, str]) -> int | None:
    """The status the request must get, or None where 200 and 400 are both right (a
    mutation may happen to leave a valid payload)."""
    if how["auth"] != "good":
        return 401
    if how["type"] != "application/json":
        return 415
    if len(body.raw) > MAX_BODY:
        return 413
    return 200 if body.valid else None


def request_headers(how: dict[str, str]) -> dict[str, str]:
    headers = {"Content-Type": how["type"]} if how["type"] else {}
    if how["auth"] == "good":
        headers["Authorization"] = f"Bearer {TOKEN}"
    elif how["auth"] == "wrong":
        headers["Authorization"] = f"Bearer {TOKEN}x"
    return headers


def check_answer(
    status: int, answer: Any, body: Body, how: dict[str, str], before: dict, after: dict
) -> None:
    event(f"status {status}")  # shown by --hypothesis-show-statistics
    assert status in STATUSES, f"{status}: {answer}"
    wanted = expected_status(body, how)
    if wanted is not None:
        assert status == wanted, f"wanted {wanted}, got {status}: {answer}"
    else:
        assert status in (200, 400), f"{status}: {answer}"
    assert isinstance(answer, dict)
    if status != 200:
        assert answer["status"] == "error" and answer["error"]
        assert after == before, "a rejected request changed the journal"
        if status == 400:
            assert isinstance(answer["field"], str)
        return
    assert answer["status"] == "ok" and set(answer) >= SUMMARY_KEYS
    if body.valid:
        assert answer["alerts"] == body.alerts
    assert answer["new_incidents"] + answer["duplicates"] + answer["resolved"] == answer["alerts"]
    assert after["notifications"] == before["notifications"] + 1
    added = after["incidents"] - before["incidents"]
    assert answer["new_incidents"] <= added <= answer["new_incidents"] + answer["resolved"]
    assert after["actions"] - before["actions"] == (
        answer["actions_planned"] + answer["actions_refused"]
    )


@pytest.fixture(scope="module")
def app_client(inprocess) -> Any:
    return inprocess(CONFIG.replace("EXECUTOR", "local"))


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(body=webhook_bodies, how=headers_for)
@example(body=Body(b"[" * 100000, False), how={"auth": "good", "type": "application/json"})
@example(
    body=Body(b'{"alerts": ' + b"[" * 50000 + b"]" * 50000 + b"}", False),
    how={"auth": "good", "type": "application/json"},
)
def test_webhook_in_process_answers_only_documented_statuses(
    app_client, body: Body, how: dict[str, str]
) -> None:
    client, store = app_client
    before = store.counts()
    response = client.post("/webhook", data=body.raw, headers=request_headers(how))
    check_answer(response.status_code, response.get_json(), body, how, before, store.counts())


# ---------------------------------------------------------------- against the real server


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, Path]]:
    workdir = tmp_path_factory.mktemp("fuzz-server")
    config = write_config(workdir, CONFIG.replace("EXECUTOR", "logger"))
    with remediator(workdir, config, f"sqlite:///{workdir / 'journal.db'}") as server:
        yield server, workdir


def journal_rows(store: SqliteStore) -> dict[str, int]:
    """Rows only ingest writes (the dispatcher adds action events concurrently)."""
    counts = store.counts()
    return {key: counts[key] for key in ("notifications", "incidents", "actions")}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(body=webhook_bodies, how=headers_for)
@example(
    body=Body(b"[" * 5000 + b"]" * 5000, False), how={"auth": "good", "type": "application/json"}
)
def test_webhook_on_real_server_answers_only_documented_statuses(
    real_server, body: Body, how: dict[str, str]
) -> None:
    server, workdir = real_server
    store = SqliteStore(f"sqlite:///{workdir / 'journal.db'}")
    try:
        before = journal_rows(store)
        response = requests.post(
            f"{server.url}/webhook", data=body.raw, headers=request_headers(how), timeout=30
        )
        after = journal_rows(store)
    finally:
        store.close()
    check_answer(response.status_code, response.json(), body, how, before, after)
    assert server.process.poll() is None, server.output()[-3000:]


def test_real_server_survived_the_fuzzing(real_server) -> None:
    server, _ = real_server
    assert server.process.poll() is None
    assert requests.get(f"{server.url}/-/ready", timeout=5).status_code == 200
    assert "Traceback" not in server.output(), server.output()[-5000:]
