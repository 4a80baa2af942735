"""console/queries.py: what the actions, breakers and strategies pages take from a
request, and the rows they show."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from receiver.config import parse_config
from receiver.console import queries
from receiver.store.base import ACTION_STATUSES


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({}, queries.ActionFilters()),
        ({"status": "", "strategy": "", "incident_id": "", "page": ""}, queries.ActionFilters()),
        ({"status": "skipped"}, queries.ActionFilters(status="skipped")),
        ({"strategy": "fix web"}, queries.ActionFilters(strategy="fix web")),
        ({"incident_id": "42", "page": "3"}, queries.ActionFilters(incident_id=42, page=3)),
    ],
)
def test_action_filters_are_read_with_empty_fields_as_absent(args, expected):
    assert queries.parse_action_filters(args) == expected


@pytest.mark.parametrize("status", ACTION_STATUSES)
def test_every_action_status_is_a_filter(status):
    assert queries.parse_action_filters({"status": status}).status == status


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"status": "awaiting"}, "status"),
        ({"incident_id": "12a"}, "incident_id"),
        ({"incident_id": "٣"}, "incident_id"),  # a Unicode digit int() would take
        ({"incident_id": str(queries.MAX_ID + 1)}, "incident_id"),
        ({"strategy": "a\x00b"}, "strategy"),
        ({"strategy": "x" * (queries.MAX_NAME + 1)}, "strategy"),
        ({"page": "0"}, "page"),
        ({"page": "-1"}, "page"),
        ({"page": str(queries.MAX_PAGE + 1)}, "page"),
    ],
)
def test_a_bad_filter_names_its_field(args, field):
    with pytest.raises(queries.BadQuery) as refused:
        queries.parse_action_filters(args)
    assert refused.value.field == field and refused.value.why


def test_the_offset_of_a_page_counts_the_rows_before_it():
    assert queries.ActionFilters(page=1).offset == 0
    assert queries.ActionFilters(page=3).offset == 2 * queries.PAGE_ROWS
    # the last page allowed still has an offset the journal takes
    assert queries.ActionFilters(page=queries.MAX_PAGE).offset <= queries.MAX_ID


def test_the_pager_keeps_only_the_filters_that_are_set():
    found = queries.ActionFilters(status="failed", incident_id=7, page=2)
    assert found.args() == {"status": "failed", "incident_id": 7}


@pytest.mark.parametrize(
    ("offset", "shown", "total", "more"),
    [(0, 25, 30, True), (25, 5, 30, False), (0, 0, 0, False), (50, 0, 30, False)],
)
def test_a_next_page_exists_while_rows_follow(offset, shown, total, more):
    assert queries.has_next(offset, shown, total) is more


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fix/web", ("fix", "web")),
        ("fix/fleet:web/eu", ("fix", "fleet:web/eu")),  # the first / splits
    ],
)
def test_a_breaker_key_is_strategy_slash_target(text, expected):
    assert queries.breaker_key(text) == expected


@pytest.mark.parametrize("text", [None, "", "fix", "/web", "fix/", "fix/a\x00"])
def test_a_bad_breaker_key_is_refused(text):
    with pytest.raises(queries.BadQuery, match="key"):
        queries.breaker_key(text)


@pytest.mark.parametrize("text", ["1", "9223372036854775807"])
def test_an_action_id_is_a_whole_number(text):
    assert queries.action_id(text) == int(text)


@pytest.mark.parametrize("text", ["abc", "-1", "1.0", "9223372036854775808", "\uff11"])
def test_an_action_id_that_is_not_a_whole_number_is_refused(text):
    with pytest.raises(queries.BadQuery):
        queries.action_id(text)


def test_journal_times_become_epoch_seconds():
    moment = datetime(2026, 11, 30, 8, 15, 2, 250000, tzinfo=UTC)
    assert queries.epoch_of("2026-11-30T08:15:02.250000Z") == moment.timestamp()
    assert queries.epoch_of(None) is None
    assert queries.epoch_of("not a time") is None
    assert queries.epoch_of("2026-11-30T08:15:02") is None  # no zone: not the journal's


def test_rows_get_epochs_beside_their_times_and_events():
    row = {
        "created_at": "2026-11-30T08:00:00.000000Z",
        "updated_at": None,
        "events": [{"at": "2026-11-30T08:00:01.000000Z", "status": "planned"}],
    }
    shown = queries.with_epochs(row)
    base = datetime(2026, 11, 30, 8, tzinfo=UTC).timestamp()
    assert shown["created_at_epoch"] == base and shown["updated_at_epoch"] is None
    assert shown["events"][0]["at_epoch"] == base + 1
    assert "created_at_epoch" not in row  # the row itself is left as it was


def test_params_are_shown_as_indented_json_and_text_as_it_is():
    assert queries.pretty_json({"command": ["ä"]}) == '{\n  "command": [\n    "ä"\n  ]\n}'
    assert queries.pretty_json("[... truncated, 5 bytes]") == "[... truncated, 5 bytes]"


CONFIG = parse_config(
    """
executors: {logger: {type: log}}
strategies:
  - name: fix
    matchers: ['alertname="X"']
    action: restart
    executor: logger
    target: '{{ labels.service }}'
    breaker: {recovery_timeout: 15m}
"""
)


def breaker(state: str, opened_at: float | None) -> dict:
    return {
        "key": "fix/web",
        "strategy": "fix",
        "target": "web",
        "state": state,
        "consecutive_failures": 3,
        "opened_at": opened_at,
        "half_open_in_flight": 0,
        "half_open_successes": 0,
        "calls": [[1.0, False], [2.0, True], [3.0, False]],
        "updated_at": "2026-11-30T08:00:00.000000Z",
        "truncated": False,
    }


def test_an_open_breaker_half_opens_after_its_strategys_recovery_timeout():
    row = queries.breaker_row(breaker("open", 1000.0), CONFIG.strategy_named("fix"))
    assert row.half_open_at == 1000.0 + 15 * 60
    assert (row.calls, row.failed_calls) == (3, 2)


@pytest.mark.parametrize(
    ("state", "opened_at", "strategy"),
    [("closed", None, "fix"), ("half_open", 1000.0, "fix"), ("open", 1000.0, "gone")],
)
def test_half_open_at_is_shown_only_for_an_open_breaker_of_a_configured_strategy(
    state, opened_at, strategy
):
    row = queries.breaker_row(breaker(state, opened_at), CONFIG.strategy_named(strategy))
    assert row.half_open_at is None


@pytest.mark.parametrize("what", ["incident", "action"])
@pytest.mark.parametrize("text", ["abc", "-1", "1.5", "", str(queries.MAX_ID + 1), "٣"])
def test_a_row_id_that_is_no_whole_number_is_refused_as_bad_id(what, text):
    parse = queries.incident_id if what == "incident" else queries.action_id
    with pytest.raises(queries.BadQuery) as refused:
        parse(text)
    assert refused.value.field == "id"
    assert what in refused.value.why


def test_a_row_id_up_to_the_largest_is_taken():
    assert queries.incident_id(str(queries.MAX_ID)) == queries.MAX_ID
    assert queries.action_id("7") == 7


def test_the_page_limit_is_what_keeps_the_offset_a_64_bit_number():
    assert (queries.MAX_PAGE - 1) * queries.PAGE_ROWS <= queries.MAX_ID
    assert queries.MAX_PAGE * queries.PAGE_ROWS > queries.MAX_ID - queries.PAGE_ROWS
    assert queries.page_number(str(queries.MAX_PAGE)) == queries.MAX_PAGE
    with pytest.raises(queries.BadQuery):
        queries.page_number(str(queries.MAX_PAGE + 1))


@pytest.mark.parametrize(
    ("status", "requested", "why", "expected"),
    [
        (
            "succeeded",
            True,
            "action is succeeded, not awaiting approval",
            "Action 7 has ended (succeeded): it no longer awaits approval.",
        ),
        ("running", True, "", "Action 7 is running: it no longer awaits approval."),
        (
            "planned",
            True,
            "already denied by alice",
            "Action 7 no longer awaits approval: already denied by alice.",
        ),
        (
            "planned",
            False,
            "not awaiting approval",
            "Action 7 does not await approval: none was requested for it.",
        ),
    ],
)
def test_a_refused_decision_says_why_in_words(status, requested, why, expected):
    said = queries.not_awaiting(7, status, requested, why)
    assert said == f"{expected} Nothing was changed."
    assert "is succeeded" not in said


@pytest.mark.parametrize(
    ("name", "unknown"), [(None, False), ("fix", False), ("gone", True), ("Fix", True)]
)
def test_a_strategy_filter_is_unknown_when_the_config_names_no_such_strategy(name, unknown):
    assert queries.unknown_strategy(name, ["fix", "heal"]) is unknown
