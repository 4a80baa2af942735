"""Alertmanager webhook payload (version 4) validation."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from receiver.alerts import (
    MAX_LABELS,
    MAX_VALUE_LENGTH,
    PayloadError,
    fingerprint_of,
    format_timestamp,
    parse_notification,
    parse_timestamp,
)

FIRING = {
    "status": "firing",
    "labels": {"alertname": "ServiceDown", "service": "web", "severity": "critical"},
    "annotations": {"summary": "web is down", "value": "0"},
    "startsAt": "2024-03-01T12:00:00.123456789Z",
    "endsAt": "0001-01-01T00:00:00Z",
    "generatorURL": "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0",
    "fingerprint": "a1b2c3d4e5f60718",
}
RESOLVED = {
    "status": "resolved",
    "labels": {"alertname": "DiskFilling", "instance": "db-1:9100"},
    "annotations": {},
    "startsAt": "2024-03-01T13:30:00.5+01:30",
    "endsAt": "2024-03-01T12:05:00-05:00",
    "generatorURL": "",
    "fingerprint": "ffff0000ffff0000",
}
PAYLOAD = {
    "version": "4",
    "groupKey": '{}:{alertname="ServiceDown"}',
    "truncatedAlerts": 2,
    "receiver": "remediator",
    "status": "firing",
    "alerts": [FIRING, RESOLVED],
    "groupLabels": {"alertname": "ServiceDown"},
    "commonLabels": {"severity": "critical"},
    "commonAnnotations": {"summary": "web is down"},
    "externalURL": "http://alertmanager:9093",
}


def payload(**overrides: Any) -> dict[str, Any]:
    body = copy.deepcopy(PAYLOAD)
    body.update(overrides)
    return body


def with_alert(index: int, **overrides: Any) -> dict[str, Any]:
    body = payload()
    body["alerts"][index].update(overrides)
    return body


def error_field(body: Any) -> str:
    """The first bad field: of the 400 when the body is refused whole, else of the first
    alert refused alone (the others are accepted: issue 12)."""
    try:
        note = parse_notification(body)
    except PayloadError as exc:
        assert str(exc).startswith(f"{exc.field}: ")
        return exc.field
    assert note.refused, "neither refused whole nor an alert refused"
    return note.refused[0].field


def error_message(body: Any) -> str:
    """As error_field, the message."""
    try:
        note = parse_notification(body)
    except PayloadError as exc:
        return exc.message
    return note.refused[0].message


# ---------------------------------------------------------------- valid payloads


def test_full_payload_parses() -> None:
    note = parse_notification(payload())
    assert note.version == "4"
    assert note.group_key == '{}:{alertname="ServiceDown"}'
    assert note.truncated_alerts == 2
    assert note.receiver == "remediator"
    assert note.status == "firing"
    assert note.group_labels == {"alertname": "ServiceDown"}
    assert note.common_labels == {"severity": "critical"}
    assert note.common_annotations == {"summary": "web is down"}
    assert note.external_url == "http://alertmanager:9093"
    assert len(note.alerts) == 2


def test_firing_alert_fields() -> None:
    alert = parse_notification(payload()).alerts[0]
    assert alert.status == "firing"
    assert alert.labels == FIRING["labels"]
    assert alert.annotations == {"summary": "web is down", "value": "0"}
    assert alert.starts_at == datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert alert.ends_at is None
    assert alert.generator_url == "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0"
    assert alert.fingerprint == "a1b2c3d4e5f60718"
    assert alert.alertname == "ServiceDown"


def test_resolved_alert_offsets_normalise_to_utc() -> None:
    alert = parse_notification(payload()).alerts[1]
    assert alert.status == "resolved"
    assert alert.starts_at == datetime(2024, 3, 1, 12, 0, 0, 500000, tzinfo=UTC)
    assert alert.starts_at.utcoffset() == timedelta(0)
    assert alert.ends_at == datetime(2024, 3, 1, 17, 5, 0, tzinfo=UTC)
    assert alert.ends_at.utcoffset() == timedelta(0)
    assert alert.annotations == {}


def test_unknown_fields_are_ignored() -> None:
    body = payload(futureField={"x": [1, 2]}, anotherOne=3)
    body["alerts"][0]["silencedBy"] = ["abc"]
    body["alerts"][0]["status_code"] = 500
    note = parse_notification(body)
    assert note.alerts[0].labels == FIRING["labels"]
    assert note.alerts[0].status == "firing"
    assert not hasattr(note, "futureField")


def test_minimal_payload_uses_defaults() -> None:
    body = {"alerts": [{"status": "firing", "labels": {"a": "b"}, "startsAt": FIRING["startsAt"]}]}
    note = parse_notification(body)
    assert (note.version, note.status, note.receiver, note.group_key) == ("4", "firing", "", "")
    assert note.truncated_alerts == 0
    assert note.group_labels == {} and note.common_labels == {}
    alert = note.alerts[0]
    assert alert.ends_at is None
    assert alert.annotations == {}
    assert alert.generator_url == ""
    assert alert.fingerprint == fingerprint_of({"a": "b"})


def test_empty_alert_list_is_valid() -> None:
    assert parse_notification(payload(alerts=[])).alerts == ()


def test_null_label_sets_are_empty() -> None:
    note = parse_notification(payload(groupLabels=None, commonAnnotations=None))
    assert note.group_labels == {}
    assert note.common_annotations == {}


def test_fingerprint_fallback_is_stable_and_label_dependent() -> None:
    first = fingerprint_of({"alertname": "Down", "service": "web"})
    assert first == fingerprint_of({"service": "web", "alertname": "Down"})
    assert first != fingerprint_of({"alertname": "Down", "service": "api"})
    assert first != fingerprint_of({"alertname": "Downservice", "": "web"})
    assert len(first) == 16
    assert all(c in "0123456789abcdef" for c in first)


@pytest.mark.parametrize("value", [None, ""])
def test_missing_or_empty_fingerprint_falls_back(value: str | None) -> None:
    note = parse_notification(with_alert(0, fingerprint=value))
    assert note.alerts[0].fingerprint == fingerprint_of(FIRING["labels"])


def test_annotation_names_are_not_label_names() -> None:
    note = parse_notification(with_alert(0, annotations={"runbook-url": "http://x"}))
    assert note.alerts[0].annotations == {"runbook-url": "http://x"}


def test_labels_at_the_limits_are_accepted() -> None:
    labels = {f"l{i}": "v" for i in range(MAX_LABELS - 1)}
    labels["alertname"] = "x" * MAX_VALUE_LENGTH
    assert parse_notification(with_alert(0, labels=labels)).alerts[0].labels == labels


def test_template_context() -> None:
    context = parse_notification(payload()).alerts[0].template_context()
    assert context == {
        "labels": FIRING["labels"],
        "annotations": FIRING["annotations"],
        "alert": {
            "status": "firing",
            "fingerprint": "a1b2c3d4e5f60718",
            "starts_at": "2024-03-01T12:00:00.123456Z",
            "generator_url": FIRING["generatorURL"],
        },
    }


# ---------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01T12:00:00Z", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("2024-03-01T12:00:00.123456789Z", datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2024-03-01T12:00:00.1Z", datetime(2024, 3, 1, 12, 0, 0, 100000, tzinfo=UTC)),
        ("2024-03-01T14:00:00+02:00", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("2024-03-01T07:15:00.000000001-04:45", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("2024-03-01t12:00:00z", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("2024-03-01 12:00:00Z", datetime(2024, 3, 1, 12, tzinfo=UTC)),
        ("2024-01-01T00:30:00+01:00", datetime(2023, 12, 31, 23, 30, tzinfo=UTC)),
    ],
)
def test_parse_timestamp(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text, "t")
    assert parsed == expected
    assert parsed is not None and parsed.tzinfo == UTC


@pytest.mark.parametrize(
    "text", ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000000000Z", "0001-01-01T01:00:00+01:00"]
)
def test_go_zero_time_is_none(text: str) -> None:
    assert parse_timestamp(text, "t") is None


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2024-03-01T12:00:00",
        "2024-03-01",
        "2024-13-01T12:00:00Z",
        "2024-02-30T12:00:00Z",
        "2024-03-01T25:00:00Z",
        "2024-03-01T12:00:00+2",
        "9999-12-31T23:59:59-01:00",
        1709294400,
        None,
    ],
)
def test_bad_timestamps_raise_with_field(value: Any) -> None:
    with pytest.raises(PayloadError) as info:
        parse_timestamp(value, "alerts[3].startsAt")
    assert info.value.field == "alerts[3].startsAt"


def test_format_timestamp() -> None:
    assert format_timestamp(None) == "0001-01-01T00:00:00Z"
    moment = datetime(2024, 3, 1, 14, 0, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    assert format_timestamp(moment) == "2024-03-01T12:00:00.000005Z"


# ---------------------------------------------------------------- invalid payloads


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "$"),
        ("firing", "$"),
        (None, "$"),
        (payload(version="3"), "version"),
        (payload(version=4), "version"),
        ({k: v for k, v in PAYLOAD.items() if k != "alerts"}, "alerts"),
        (payload(alerts={"0": FIRING}), "alerts"),
        (payload(alerts=None), "alerts"),
        (payload(status="pending"), "status"),
        (payload(status=1), "status"),
        (payload(truncatedAlerts=-1), "truncatedAlerts"),
        (payload(truncatedAlerts="2"), "truncatedAlerts"),
        (payload(truncatedAlerts=True), "truncatedAlerts"),
        (payload(truncatedAlerts=1.5), "truncatedAlerts"),
        (payload(receiver=5), "receiver"),
        (payload(groupKey=None), "groupKey"),
        (payload(externalURL=["x"]), "externalURL"),
        (payload(groupLabels=["a"]), "groupLabels"),
        (payload(commonLabels={"a": 1}), "commonLabels.a"),
        (payload(commonAnnotations={"a": None}), "commonAnnotations.a"),
        (payload(alerts=[FIRING, "x"]), "alerts[1]"),
        (with_alert(0, status="pending"), "alerts[0].status"),
        (with_alert(1, status=None), "alerts[1].status"),
        (with_alert(1, labels={"alertname": "x", "foo": 1}), "alerts[1].labels.foo"),
        (with_alert(0, labels={"alertname": "x", "foo": None}), "alerts[0].labels.foo"),
        (with_alert(0, labels={"": "x"}), "alerts[0].labels."),
        (with_alert(0, labels={"k8s.pod.name": 1}), "alerts[0].labels.k8s.pod.name"),
        (with_alert(0, labels={}), "alerts[0].labels"),
        (with_alert(0, labels=None), "alerts[0].labels"),
        (with_alert(0, labels=["alertname"]), "alerts[0].labels"),
        (with_alert(0, annotations={"summary": 3}), "alerts[0].annotations.summary"),
        (with_alert(0, annotations="text"), "alerts[0].annotations"),
        (with_alert(0, startsAt="not a time"), "alerts[0].startsAt"),
        (with_alert(0, startsAt="2024-03-01T12:00:00"), "alerts[0].startsAt"),
        (with_alert(0, startsAt=1709294400), "alerts[0].startsAt"),
        (with_alert(0, startsAt="0001-01-01T00:00:00Z"), "alerts[0].startsAt"),
        (with_alert(1, endsAt="2024-99-01T00:00:00Z"), "alerts[1].endsAt"),
        (with_alert(1, endsAt=None), "alerts[1].endsAt"),
        (with_alert(0, endsAt="9999-12-31T23:59:59-01:00"), "alerts[0].endsAt"),
        (with_alert(0, generatorURL=7), "alerts[0].generatorURL"),
        (with_alert(0, fingerprint="abc-def"), "alerts[0].fingerprint"),
        (with_alert(0, fingerprint="a" * 65), "alerts[0].fingerprint"),
        (with_alert(0, fingerprint="ab cd"), "alerts[0].fingerprint"),
        (with_alert(0, fingerprint=12345), "alerts[0].fingerprint"),
    ],
)
def test_invalid_payload_names_the_field(body: Any, field: str) -> None:
    assert error_field(body) == field


def test_truncated_alerts_written_as_a_whole_float_is_that_integer() -> None:
    """JSON has one number type, and JSON Schema (the OpenAPI document) calls 2.0 an
    integer: it is taken as 2, while 1.5 stays refused (above)."""
    assert parse_notification(payload(truncatedAlerts=2.0)).truncated_alerts == 2


def test_zero_starts_at_message() -> None:
    assert "Go's zero time" in error_message(with_alert(0, startsAt="0001-01-01T00:00:00Z"))


def test_too_many_labels() -> None:
    labels = {f"l{i}": "v" for i in range(MAX_LABELS + 1)}
    body = with_alert(1, labels=labels)
    assert f"more than {MAX_LABELS} entries" in error_message(body)
    assert error_field(body) == "alerts[1].labels"


def test_too_long_label_value() -> None:
    labels = {"alertname": "x", "foo": "v" * (MAX_VALUE_LENGTH + 1)}
    body = with_alert(0, labels=labels)
    assert f"longer than {MAX_VALUE_LENGTH}" in error_message(body)
    assert error_field(body) == "alerts[0].labels.foo"


def test_too_long_string_fields() -> None:
    long = "x" * (MAX_VALUE_LENGTH + 1)
    assert error_field(with_alert(0, generatorURL=long)) == "alerts[0].generatorURL"
    assert error_field(payload(externalURL=long)) == "externalURL"


def test_long_label_names_are_cut_in_the_field() -> None:
    name = "9" + "a" * 200
    assert error_field(with_alert(0, labels={name: 1})) == f"alerts[0].labels.{name[:64]}"


def test_first_bad_alert_is_reported() -> None:
    body = payload()
    body["alerts"][0]["status"] = "nope"
    body["alerts"][1]["startsAt"] = "nope"
    assert error_field(body) == "alerts[0].status"


def test_payload_error_attributes() -> None:
    error = PayloadError("alerts[0].status", "bad")
    assert (error.field, error.message, str(error)) == (
        "alerts[0].status",
        "bad",
        "alerts[0].status: bad",
    )
    assert isinstance(error, ValueError)
