"""One bad alert never costs its group (issue 12, item 3): the rules of alerts.py, table
by table. An oversize annotation is kept cut with a marker; any other fault of one alert
refuses that alert alone, named by index, field and a reason from a bounded set; only
an invalid envelope, or a list of which every alert is refused, refuses the body whole.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from receiver.alerts import (
    MAX_LABELS,
    MAX_VALUE_LENGTH,
    REJECT_REASONS,
    TRUNCATION_MARKER,
    PayloadError,
    cut_value,
    parse_alerts,
    parse_notification,
    reason_of_field,
)
from receiver.engine import IngestSummary, _rejections
from receiver.intake import MAX_LISTED_REFUSALS, Rejected, accepted, decode
from tests.support.payloads import alert, notification

MARKER = re.compile(re.escape(TRUNCATION_MARKER).replace(r"\{\}", r"\d+") + "$")
ISSUE_DESCRIPTION = 20_000
LONG = MAX_VALUE_LENGTH + 1  # the issue's pasted stack trace, in characters


def two_alerts(**second: Any) -> dict[str, Any]:
    """Two alerts of one service; `second` overrides fields of the second one."""
    body = notification(alert(service="cart", instance="a"), alert(service="cart", instance="b"))
    body["alerts"][1].update(second)
    return body


def test_the_issue_case_keeps_both_alerts_and_cuts_the_description() -> None:
    trace = "at frame\n" * (ISSUE_DESCRIPTION // 9) + "x" * (ISSUE_DESCRIPTION % 9)
    assert len(trace) == ISSUE_DESCRIPTION
    note = parse_notification(two_alerts(annotations={"description": trace}))

    assert len(note.alerts) == 2
    assert note.refused == ()
    first, second = note.alerts
    assert not first.truncated
    assert second.truncated
    kept = second.annotations["description"]
    assert_cut(kept, trace)


def assert_cut(shown: str, value: str) -> None:
    """`shown` is `value` cut by the rule: at most MAX_VALUE_LENGTH characters, a prefix
    of it followed by the marker that gives the number of characters cut off."""
    found = MARKER.search(shown)
    assert found is not None, shown[-80:]
    kept = shown[: found.start()]
    assert len(shown) <= MAX_VALUE_LENGTH
    assert len(shown) >= MAX_VALUE_LENGTH - 1  # the figure may lose a digit as it is cut
    assert value.startswith(kept)
    assert shown == kept + TRUNCATION_MARKER.format(len(value) - len(kept))


@pytest.mark.parametrize(
    ("length", "cut"),
    [
        (MAX_VALUE_LENGTH, False),
        (MAX_VALUE_LENGTH + 1, True),
        (ISSUE_DESCRIPTION, True),
        (10 * MAX_VALUE_LENGTH, True),
    ],
)
def test_a_value_is_cut_only_past_the_bound_and_says_how_much(length: int, cut: bool) -> None:
    value = "v" * length
    shown = cut_value(value)
    if not cut:
        assert shown == value
        return
    assert_cut(shown, value)


def test_annotations_past_the_bound_keep_the_first_in_key_order() -> None:
    annotations = {f"a{i:04d}": "v" for i in range(MAX_LABELS + 5)}
    note = parse_notification(two_alerts(annotations=annotations))

    kept = note.alerts[1].annotations
    assert list(kept) == sorted(annotations)[:MAX_LABELS]
    assert note.alerts[1].truncated
    assert note.refused == ()


@pytest.mark.parametrize(
    ("second", "field", "reason"),
    [
        ({"labels": {"alertname": "X", "service": "cart\ud800"}}, "labels.service", "invalid_utf8"),
        ({"labels": {"alertname": "X", "service": "a\x00b"}}, "labels.service", "invalid_nul"),
        ({"labels": {"alertname": "X", "k": "v" * LONG}}, "labels.k", "invalid_label"),
        ({"labels": {}}, "labels", "invalid_label"),
        ({"labels": {"alertname": "X", "n": 1}}, "labels.n", "invalid_label"),
        ({"startsAt": "yesterday"}, "startsAt", "invalid_timestamp"),
        ({"endsAt": "2024-99-01T00:00:00Z"}, "endsAt", "invalid_timestamp"),
        ({"fingerprint": "not-hex!"}, "fingerprint", "invalid_fingerprint"),
        ({"status": "pending"}, "status", "invalid_status"),
        ({"annotations": {"summary": 3}}, "annotations.summary", "invalid_annotation"),
        ({"annotations": {"summary": "\udfff"}}, "annotations.summary", "invalid_utf8"),
        ({"generatorURL": "u" * (MAX_VALUE_LENGTH + 1)}, "generatorURL", "invalid_alert"),
    ],
)  # fmt: skip
def test_a_bad_alert_is_refused_alone(second: dict[str, Any], field: str, reason: str) -> None:
    note = parse_notification(two_alerts(**second))

    assert [a.labels["instance"] for a in note.alerts] == ["a"]
    [refusal] = note.refused
    assert (refusal.index, refusal.field, refusal.reason) == (1, f"alerts[1].{field}", reason)
    assert reason in REJECT_REASONS
    assert refusal.as_dict() == {
        "index": 1,
        "field": f"alerts[1].{field}",
        "reason": refusal.message,
    }


def test_an_alert_that_is_not_an_object_is_refused_alone() -> None:
    body = notification(alert(service="cart"))
    body["alerts"].append("not an alert")
    note = parse_notification(body)
    assert [(r.index, r.field, r.reason) for r in note.refused] == [
        (1, "alerts[1]", "invalid_alert")
    ]


def test_when_every_alert_is_refused_the_body_is_refused_naming_the_first() -> None:
    body = two_alerts(startsAt="yesterday")
    body["alerts"][0]["status"] = "pending"
    with pytest.raises(PayloadError) as info:
        parse_notification(body)
    assert info.value.field == "alerts[0].status"


@pytest.mark.parametrize(
    ("envelope", "field"),
    [
        ({"groupKey": None}, "groupKey"),
        ({"externalURL": "u" * (MAX_VALUE_LENGTH + 1)}, "externalURL"),
        ({"commonAnnotations": {"d": "d" * LONG}}, "commonAnnotations.d"),
        ({"groupLabels": {"a": 1}}, "groupLabels.a"),
        ({"truncatedAlerts": -1}, "truncatedAlerts"),
        ({"status": "pending"}, "status"),
        ({"version": "3"}, "version"),
    ],
)  # fmt: skip
def test_an_invalid_envelope_still_refuses_the_body_whole(
    envelope: dict[str, Any], field: str
) -> None:
    body = {**two_alerts(), **envelope}
    with pytest.raises(PayloadError) as info:
        parse_notification(body)
    assert info.value.field == field


def test_an_empty_alert_list_is_still_accepted() -> None:
    body = notification(alert())
    body["alerts"] = []
    assert parse_notification(body).alerts == ()


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("alerts[3].labels.k8s", "invalid_label"),
        ("alerts[0].annotations", "invalid_annotation"),
        ("alerts[2].startsAt", "invalid_timestamp"),
        ("alerts[2].endsAt", "invalid_timestamp"),
        ("alerts[1].fingerprint", "invalid_fingerprint"),
        ("alerts[1].status", "invalid_status"),
        ("alerts[1].generatorURL", "invalid_alert"),
        ("alerts[1]", "invalid_alert"),
        ("groupKey", "invalid_alert"),
    ],
)
def test_reasons_come_from_the_field(path: str, reason: str) -> None:
    assert reason_of_field(path) == reason


def test_slices_are_judged_with_their_indexes_in_the_whole_list() -> None:
    items = [alert(service=f"s{i}") for i in range(6)]
    items[4]["startsAt"] = "bad"
    parsed = parse_alerts(items, 3, 6)
    assert [a.labels["service"] for a in parsed.alerts] == ["s3", "s5"]
    assert [r.index for r in parsed.refused] == [4]


def test_the_answer_lists_refusals_bounded_and_counts_them_all() -> None:
    refused = MAX_LISTED_REFUSALS + 7
    body = notification(*[alert(service=f"s{i}") for i in range(refused + 1)])
    for item in body["alerts"][1:]:
        item["startsAt"] = "bad"
    note = decode(_json(body))
    answer = accepted(IngestSummary(alerts=1, refused=len(note.refused)), note)

    shown = json.loads(answer.body)
    assert answer.status == 200
    assert shown["refused"] == refused
    assert len(shown["rejected"]) == MAX_LISTED_REFUSALS
    assert shown["rejected"][0] == {
        "index": 1,
        "field": "alerts[1].startsAt",
        "reason": note.refused[0].message,
    }


def test_decode_refuses_a_body_whose_only_alert_is_bad() -> None:
    body = notification(alert(service="cart"))
    body["alerts"][0]["labels"]["service"] = "a\x00b"
    with pytest.raises(Rejected) as info:
        decode(_json(body))
    assert info.value.field == "alerts[0].labels.service"


def test_rejections_are_counted_by_reason() -> None:
    body = notification(*[alert(service=f"s{i}") for i in range(5)])
    body["alerts"][1]["startsAt"] = "bad"
    body["alerts"][2]["endsAt"] = "bad"
    body["alerts"][3]["status"] = "pending"
    note = parse_notification(copy.deepcopy(body))
    assert _rejections(note, truncated=2) == {
        "truncated": 2,
        "invalid_timestamp": 2,
        "invalid_status": 1,
    }


def _json(body: Any) -> bytes:
    return json.dumps(body).encode()
