"""Hostile webhook bodies: every decoding and validation error of any field is a
Rejected naming that field, never another exception (issue 11, item 6).

Bodies go through `decode` as bytes, as the journal writer receives them: JSON's
`\\ud800` escapes are how a lone surrogate arrives (json.dumps writes one for a lone
surrogate in a str, so the table can hold them as plain Python strings).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from receiver.alerts import INDEXED_LABELS, MAX_STORED_INT, parse_notification
from receiver.config import parse_config
from receiver.intake import Rejected, decode
from receiver.plans import plan_for
from tests.support.hostile_payloads import (
    ACCEPTED,
    NUL,
    NULS,
    NUMBERS,
    SURROGATES,
    first,
    labels,
    raw,
    top,
)


def rejected_field(body: bytes, indexed: tuple[str, ...] = INDEXED_LABELS) -> str:
    with pytest.raises(Rejected) as info:
        decode(body, indexed)
    assert info.value.message
    return info.value.field


# ---------------------------------------------------------------- the issue's case


def test_the_issues_lone_surrogate_without_fingerprint_names_the_label() -> None:
    body = b'{"alerts": [{"status": "firing", "startsAt": "2026-11-21T10:00:00Z", '
    body += b'"labels": {"alertname": "X", "service": "\\ud800"}}]}'
    with pytest.raises(Rejected) as info:
        decode(body)
    assert info.value.field == "alerts[0].labels.service"
    assert "surrogate" in info.value.message


# ---------------------------------------------------------------- every field


@pytest.mark.parametrize(("body", "field"), SURROGATES)
def test_a_lone_surrogate_anywhere_is_rejected_naming_the_field(body: Any, field: str) -> None:
    assert rejected_field(raw(body)) == field


@pytest.mark.parametrize(("body", "field"), NULS)
def test_nul_where_the_journal_keeps_a_column_is_rejected(body: Any, field: str) -> None:
    assert rejected_field(raw(body)) == field


def test_the_configured_service_labels_are_the_ones_without_nul() -> None:
    body = raw(labels(team="a" + NUL))
    assert decode(body).alerts[0].labels["team"] == "a\x00"  # not a service label here
    assert rejected_field(body, ("alertname", "team")) == "alerts[0].labels.team"


@pytest.mark.parametrize("body", ACCEPTED)
def test_what_every_store_can_hold_is_accepted(body: Any) -> None:
    assert len(decode(raw(body)).alerts) == 1


@pytest.mark.parametrize(("body", "field"), NUMBERS)
def test_numbers_out_of_range_or_of_the_wrong_kind_are_rejected(body: Any, field: str) -> None:
    assert rejected_field(json.dumps(body).encode()) == field


def test_the_largest_storable_count_is_accepted() -> None:
    assert decode(raw(top(truncatedAlerts=MAX_STORED_INT))).truncated_alerts == MAX_STORED_INT


TIMES = [
    "0000-01-01T00:00:00Z",  # year 0 does not exist
    "10000-01-01T00:00:00Z",
    "9999-12-31T23:59:59-23:59",  # past year 9999 in UTC
    "2026-11-21T10:00:00+24:00",
    "\u0662\u0660\u0662\u0666-11-21T10:00:00Z",  # Arabic-Indic digits
    "2026-11-21T10:00:00\x00Z",
]


@pytest.mark.parametrize("value", TIMES)
@pytest.mark.parametrize("key", ["startsAt", "endsAt"])
def test_timestamps_out_of_range_are_rejected(key: str, value: str) -> None:
    assert rejected_field(raw(first(**{key: value}))) == f"alerts[0].{key}"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"\xff\xfe{}", "$"),
        # a surrogate encoded as if UTF-8: json.loads lets it through (surrogatepass)
        (b'{"alerts": [], "receiver": "\xed\xa0\x80"}', "receiver"),
        (b'{"alerts": [], "truncatedAlerts": 1' + b"0" * 5000 + b"}", "$"),  # int too long
        (b'{"alerts": [], "truncatedAlerts": 1e400}', "truncatedAlerts"),  # float inf
    ],
)
def test_undecodable_bytes_and_numbers_are_rejected(body: bytes, field: str) -> None:
    assert rejected_field(body) == field


def test_only_payload_errors_escape_parse_notification_for_every_table_case() -> None:
    """parse_notification itself (no JSON in between) for the same table."""
    for body, field in SURROGATES + NULS + NUMBERS:
        try:
            parse_notification(body)
        except ValueError as exc:
            assert getattr(exc, "field", None) == field, (field, exc)
        else:
            raise AssertionError(f"{field} was accepted")


PERMISSIVE = """
executors: {logger: {type: log}}
strategies:
  - name: permissive
    matchers: []
    action: escalate
    executor: logger
    safe_pattern: '(?s).*'
    target: '{{ labels.note }}'
"""


def test_a_target_with_nul_is_refused_even_under_a_permissive_pattern() -> None:
    notification = decode(raw(labels(note="a" + NUL + "b")))
    (plan,) = plan_for(parse_config(PERMISSIVE), notification.alerts[0])
    assert plan.refused is not None and plan.refused.startswith("refused: ")
    assert "NUL" in plan.refused and NUL not in plan.refused
