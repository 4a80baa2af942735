"""One bad alert must never cost its group (issue 12, item 3), against a real
`remediator serve`.

The issue's case: one notification, two alerts of one service, the second's
`description` 20,000 characters (a pasted stack trace). It used to be a 400 for the
whole notification, at every group_interval, so the first alert was never remediated.
Now: 200, both incidents journaled (the description kept cut, with its marker), the
first alert's action planned, the cut counted in `remediator_alerts_rejected_total`
(reason `truncated`). Any other fault of one alert refuses that alert alone: the answer
lists it (index, field, reason), a WARNING names the group key, index and field, the
counter says why, and the other alerts are journaled, in a small notification as in a
large one journaled in chunks through the spool. Only when no alert can be journaled is
the answer the 400 of issue 11.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from receiver.alerts import MAX_VALUE_LENGTH, TRUNCATION_MARKER
from receiver.intake import MAX_LISTED_REFUSALS
from tests.support.journal import all_actions, all_incidents, open_journal, post_webhook
from tests.support.payloads import alert, notification
from tests.support.processes import remediator
from tests.support.receiver import AUTH_SERVER, LOG_RESTART, TOKEN, write_config

ISSUE_DESCRIPTION = 20_000
CHUNK = 20  # limits.notification_chunk_alerts here: a notification of more is "large"
CONFIG = AUTH_SERVER + f"limits: {{notification_chunk_alerts: {CHUNK}}}\n" + LOG_RESTART
MARKER = re.compile(re.escape(TRUNCATION_MARKER).replace(r"\{\}", r"(\d+)") + "$")
GROUP_KEY = '{}:{alertname="ServiceDown", service="cart"}'


def rejected_total(url: str) -> dict[str, float]:
    """remediator_alerts_rejected_total by reason, from a real scrape."""
    text = requests.get(f"{url}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        if family.name == "remediator_alerts_rejected":
            return {
                s.labels["reason"]: s.value for s in family.samples if s.name.endswith("_total")
            }
    raise AssertionError("remediator_alerts_rejected_total is not exported")


def cart_alerts(count: int) -> list[dict[str, Any]]:
    return [
        alert(service="cart", instance=f"cart-{i}", starts_at=f"2026-11-21T10:00:{i % 60:02d}Z")
        for i in range(count)
    ]


def test_the_issue_case_journals_both_alerts_and_plans_the_first(
    tmp_path: Path, store_url: str
) -> None:
    first, second = cart_alerts(2)
    trace = "".join(f"  at frame {i} (Service.java:{i})\n" for i in range(2000))[:ISSUE_DESCRIPTION]
    assert len(trace) == ISSUE_DESCRIPTION
    second["annotations"]["description"] = trace
    body = notification(first, second, group_key=GROUP_KEY)

    with remediator(tmp_path, write_config(tmp_path, CONFIG), store_url) as server:
        response = post_webhook(server.url, body)
        again = post_webhook(server.url, body)  # the next group_interval: a duplicate
        counted = rejected_total(server.url)
    journal = open_journal(store_url)
    incidents = {i["labels"]["instance"]: i for i in all_incidents(journal)}
    actions = all_actions(journal)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["alerts"], answer["new_incidents"], answer["truncated"]) == (2, 2, 1)
    assert "rejected" not in answer
    assert again.status_code == 200 and again.json()["duplicates"] == 2
    assert sorted(incidents) == ["cart-0", "cart-1"]
    kept = incidents["cart-1"]["annotations"]["description"]
    found = MARKER.search(kept)
    assert found is not None, kept[-100:]
    assert len(kept) <= MAX_VALUE_LENGTH
    assert trace.startswith(kept[: found.start()])
    assert int(found.group(1)) == ISSUE_DESCRIPTION - found.start()
    assert "description" not in incidents["cart-0"]["annotations"]
    planned = [a for a in actions if a["incident_id"] == incidents["cart-0"]["id"]]
    assert [(a["strategy"], a["target"]) for a in planned] == [("restart-web", "cart")]
    assert counted["truncated"] == 2  # the cut alert, in each of the two notifications
    assert sum(counted.values()) == 2


def test_a_bad_alert_is_refused_alone_and_named(tmp_path: Path) -> None:
    alerts = cart_alerts(3)
    alerts[1]["labels"]["service"] = "cart\ud800"  # a lone surrogate: not storable
    alerts[2]["startsAt"] = "yesterday"
    body = notification(*alerts, group_key=GROUP_KEY)
    store_url = f"sqlite:///{tmp_path / 'journal.db'}"

    with remediator(tmp_path, write_config(tmp_path, CONFIG), store_url) as server:
        response = post_webhook(server.url, body)
        counted = rejected_total(server.url)
        listed = requests.get(f"{server.url}/api/v1/notifications", timeout=10).json()
    log = server.output()
    journal = open_journal(store_url)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["alerts"] == 1 and answer["refused"] == 2
    assert [(r["index"], r["field"]) for r in answer["rejected"]] == [
        (1, "alerts[1].labels.service"),
        (2, "alerts[2].startsAt"),
    ]
    assert "not valid UTF-8" in answer["rejected"][0]["reason"]
    assert [i["labels"]["instance"] for i in all_incidents(journal)] == ["cart-0"]
    assert [a["target"] for a in all_actions(journal)] == ["cart"]
    assert (counted["invalid_utf8"], counted["invalid_timestamp"]) == (1, 1)
    assert sum(counted.values()) == 2
    for index, field in ((1, "alerts[1].labels.service"), (2, "alerts[2].startsAt")):
        line = next(x for x in log.splitlines() if f"alerts[{index}]" in x and "WARNING" in x)
        assert GROUP_KEY in line.replace("\\", "") and field in line, line
    [row] = listed["data"]
    assert row["summary"]["refused"] == 2 and row["alerts"] == 1


def test_when_no_alert_can_be_journaled_the_answer_is_a_400(tmp_path: Path) -> None:
    alerts = cart_alerts(2)
    alerts[0]["fingerprint"] = "not a fingerprint"
    alerts[1]["labels"] = {}
    store_url = f"sqlite:///{tmp_path / 'journal.db'}"

    with remediator(tmp_path, write_config(tmp_path, CONFIG), store_url) as server:
        response = post_webhook(server.url, notification(*alerts))
    assert response.status_code == 400
    assert response.json()["field"] == "alerts[0].fingerprint"
    assert all_incidents(open_journal(store_url)) == []


def test_a_large_notification_journals_all_but_its_bad_alerts(tmp_path: Path) -> None:
    """Judged before the spool write, journaled in chunks of CHUNK: the refused alerts
    are left out of every chunk, and the answer's count is complete, its list bounded."""
    total = 5 * CHUNK + 3
    alerts = cart_alerts(total)
    bad = list(range(1, total, 4))  # spread over every chunk: more than the list shows
    for index in bad:
        alerts[index]["labels"]["service"] = "a\x00b"  # the journal's column refuses NUL
    store_url = f"sqlite:///{tmp_path / 'journal.db'}"

    with remediator(tmp_path, write_config(tmp_path, CONFIG), store_url) as server:
        response = post_webhook(server.url, notification(*alerts, group_key=GROUP_KEY))
        counted = rejected_total(server.url)
    journal = open_journal(store_url)

    assert response.status_code == 200, response.text
    answer = response.json()
    good = [f"cart-{i}" for i in range(total) if i not in bad]
    assert len(bad) > MAX_LISTED_REFUSALS
    assert (answer["alerts"], answer["new_incidents"]) == (len(good), len(good))
    assert answer["refused"] == len(bad)
    assert [r["index"] for r in answer["rejected"]] == bad[:MAX_LISTED_REFUSALS]
    assert {r["field"] for r in answer["rejected"]} == {
        f"alerts[{i}].labels.service" for i in bad[:MAX_LISTED_REFUSALS]
    }
    assert sorted(i["labels"]["instance"] for i in all_incidents(journal)) == sorted(good)
    assert counted["invalid_nul"] == len(bad)


def test_the_in_process_intake_refuses_a_bad_alert_alone(inprocess: Any) -> None:
    """The app on its own (LocalIntake, no journal writer) answers the same."""
    client, store = inprocess(AUTH_SERVER + LOG_RESTART)
    first, second = cart_alerts(2)
    second["annotations"]["description"] = "d" * ISSUE_DESCRIPTION
    third = alert(service="cart", instance="cart-2", fingerprint="bad fingerprint")
    body = notification(first, second, third, group_key=GROUP_KEY)

    response = client.post("/webhook", json=body, headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 200, response.text
    answer = response.get_json()
    assert (answer["new_incidents"], answer["truncated"], answer["refused"]) == (2, 1, 1)
    assert answer["rejected"][0]["field"] == "alerts[2].fingerprint"
    incidents = {i["labels"]["instance"]: i for i in all_incidents(store)}
    assert sorted(incidents) == ["cart-0", "cart-1"]
    assert MARKER.search(incidents["cart-1"]["annotations"]["description"])
