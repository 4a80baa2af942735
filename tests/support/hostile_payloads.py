"""Hostile webhook bodies, each with the field a 400 must name (issue 11, item 6).

Shared by the unit tests of decoding and the tests against a real server on each store.
JSON's `\\ud800` escapes are how a lone surrogate arrives: `raw` writes one for each
lone surrogate in a Python str, so the tables hold them as plain strings.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from receiver.alerts import MAX_STORED_INT

LONE = "\ud800"  # a high surrogate with no low one after it
LOW = "\udc80"  # a low surrogate with no high one before it
NUL = "\x00"

ALERT = {
    "status": "firing",
    "labels": {"alertname": "ServiceDown", "service": "web", "note": "n"},
    "annotations": {"summary": "web is down"},
    "startsAt": "2026-11-21T10:00:00Z",
    "endsAt": "0001-01-01T00:00:00Z",
    "generatorURL": "http://prometheus:9090/graph",
    "fingerprint": "a1b2c3d4e5f60718",
}
BODY = {
    "version": "4",
    "groupKey": "{}:{}",
    "truncatedAlerts": 0,
    "receiver": "remediator",
    "status": "firing",
    "alerts": [ALERT],
    "groupLabels": {"alertname": "ServiceDown"},
    "commonLabels": {"service": "web"},
    "commonAnnotations": {"summary": "web is down"},
    "externalURL": "http://alertmanager:9093",
}


def top(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(BODY)
    body.update(changes)
    return body


def first(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(BODY)
    body["alerts"][0].update(changes)
    return body


def labels(**extra: str) -> dict[str, Any]:
    return first(labels={**ALERT["labels"], **extra})


def annotations(**extra: str) -> dict[str, Any]:
    return first(annotations={**ALERT["annotations"], **extra})


def raw(body: Any) -> bytes:
    return json.dumps(body).encode("ascii")  # ensure_ascii: surrogates as \u escapes


SURROGATES = [
    (labels(service=LONE), "alerts[0].labels.service"),
    (labels(service="web" + LOW), "alerts[0].labels.service"),
    (labels(note=LOW + LONE), "alerts[0].labels.note"),  # a pair the wrong way round
    (first(labels={"alertname": "X", LONE: "v"}), "alerts[0].labels.\\ud800"),
    (annotations(summary=LONE), "alerts[0].annotations.summary"),
    (annotations(**{LONE: "v"}), "alerts[0].annotations.\\ud800"),
    (first(generatorURL="http://x/" + LONE), "alerts[0].generatorURL"),
    (first(status=LONE), "alerts[0].status"),
    (first(fingerprint=LONE), "alerts[0].fingerprint"),
    (first(startsAt=LONE), "alerts[0].startsAt"),
    (first(endsAt=LONE), "alerts[0].endsAt"),
    (top(receiver=LONE), "receiver"),
    (top(groupKey="{}:" + LONE), "groupKey"),
    (top(externalURL=LONE), "externalURL"),
    (top(status=LONE), "status"),
    (top(version=LONE), "version"),
    (top(groupLabels={"alertname": LONE}), "groupLabels.alertname"),
    (top(commonLabels={LONE: "x"}), "commonLabels.\\ud800"),
    (top(commonAnnotations={"summary": LOW}), "commonAnnotations.summary"),
]


# The journal keeps these in columns of their own, and PostgreSQL's TEXT refuses NUL.
NULS = [
    (labels(alertname="Service" + NUL + "Down"), "alerts[0].labels.alertname"),
    (labels(service=NUL), "alerts[0].labels.service"),
    (labels(job="api" + NUL), "alerts[0].labels.job"),
    (first(generatorURL="http://x/" + NUL), "alerts[0].generatorURL"),
    (first(status="firing" + NUL), "alerts[0].status"),
    (first(fingerprint="a1" + NUL), "alerts[0].fingerprint"),
    (top(receiver="r" + NUL), "receiver"),
    (top(groupKey=NUL), "groupKey"),
    (top(externalURL="http://am" + NUL), "externalURL"),
    (top(status=NUL), "status"),
]


NUMBERS = [
    (top(truncatedAlerts=MAX_STORED_INT + 1), "truncatedAlerts"),
    (top(truncatedAlerts=2**63), "truncatedAlerts"),
    (top(truncatedAlerts=-1), "truncatedAlerts"),
    # a fraction (a whole 2.0 is the integer 2, as JSON Schema and the OpenAPI document say)
    (top(truncatedAlerts=1.5), "truncatedAlerts"),
    (top(truncatedAlerts=True), "truncatedAlerts"),
    (top(truncatedAlerts=None), "truncatedAlerts"),
    (top(truncatedAlerts=float("inf")), "truncatedAlerts"),
]


# What every store can hold: accepted, and read back as sent.
ACCEPTED = [
    labels(note="a" + NUL + "b"),  # stored as escaped JSON: kept
    annotations(summary=NUL),
    annotations(**{"a" + NUL: "x"}),
    top(groupLabels={"alertname": NUL}),  # not journaled at all
    labels(note="\ud83d\ude00"),  # a proper surrogate pair is one character
]
