"""Issue 11 item 4 on the journal itself: listings bounded in bytes as well as rows,
long fields cut with a visible marker, the same on SQLite and PostgreSQL (the
`store_url` fixture runs every test on both)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from receiver import breaker
from receiver.store import open_store, runs
from receiver.store.base import NewAction, NewIncident, NotificationRecord
from receiver.store.dispatch import save_breaker
from receiver.store.listing import ENVELOPE_BYTES, PageBounds, marker

FIELD = 4096
ANNOTATIONS = 256
VALUE = 16_384  # receiver/alerts.py: the most an alert may carry
T0 = 1_800_000_000.0


@pytest.fixture
def journal(store_url: str) -> Iterator[Any]:
    store = open_store(store_url)
    yield store
    store.close()


def huge_incident(n: int) -> NewIncident:
    return NewIncident(
        fingerprint=f"fp{n:04d}",
        starts_at=f"2026-01-01T00:00:{n % 60:02d}.000000Z",
        starts_at_ts=T0 + n,
        alertname="Big",
        service=f"svc{n}",
        status="firing",
        labels={"alertname": "Big", "service": f"svc{n}"},
        annotations={f"a{i:03d}": f"{n}:" + "v" * VALUE for i in range(ANNOTATIONS)},
        generator_url="http://prometheus.example/" + "g" * 10_000,
        seen_at=T0 + n,
        matched=False,
    )


def insert(journal: Any, *incidents: NewIncident) -> list[int]:
    return journal.write(lambda tx: [tx.insert_incident(i) for i in incidents])


def body_size(page: Any) -> int:
    """The page's JSON as the API writes it (compact, ASCII), envelope included."""
    body = {"data": page.items, "total": page.total, "limit": 1000, "offset": 0}
    return len(json.dumps({**body, "next_offset": 1_000_000}, separators=(",", ":")))


def pages(journal: Any, bounds: PageBounds, **filters: Any) -> list[Any]:
    found, offset = [], 0
    while True:
        page = journal.list_incidents(limit=bounds.rows, offset=offset, bounds=bounds, **filters)
        found.append(page)
        offset += len(page.items)
        if offset >= page.total:
            return found
        assert page.items, "a page must always progress"


def test_huge_annotations_are_cut_with_a_marker_and_the_rest_omitted(journal: Any) -> None:
    (incident_id,) = insert(journal, huge_incident(7))
    bounds = PageBounds(rows=100, page_bytes=1024 * 1024, field_bytes=FIELD)
    (row,) = journal.list_incidents(limit=100, offset=0, bounds=bounds).items
    assert row["id"] == incident_id and row["truncated"] is True
    first = "7:" + "v" * VALUE
    room = FIELD - len("a000")
    assert row["annotations"] == {"a000": first[:room] + marker(len(first) - room)}
    stored = json.JSONEncoder(sort_keys=True).encode(huge_incident(7).annotations)
    assert row["omitted"]["annotations"] == {"bytes": len(stored) - stored.index('"a001"')}
    url = huge_incident(7).generator_url
    assert row["generator_url"] == url[:FIELD] + marker(len(url) - FIELD)
    assert row["labels"] == {"alertname": "Big", "service": "svc7"}  # small: whole


def test_pages_stop_at_the_byte_bound_and_paging_yields_each_row_once(journal: Any) -> None:
    ids = insert(journal, *(huge_incident(n) for n in range(12)))
    bounds = PageBounds(rows=1000, page_bytes=40_000, field_bytes=FIELD)
    found = pages(journal, bounds)
    assert len(found) > 1  # twelve rows of ~13 kB each cannot fit in one 40 kB page
    for page in found:
        assert body_size(page) <= bounds.page_bytes
    seen = [row["id"] for page in found for row in page.items]
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))


def test_one_row_larger_than_a_page_is_served_alone(journal: Any) -> None:
    ids = insert(journal, *(huge_incident(n) for n in range(3)))
    bounds = PageBounds(rows=1000, page_bytes=ENVELOPE_BYTES + 10, field_bytes=FIELD)
    found = pages(journal, bounds)
    assert [len(page.items) for page in found] == [1, 1, 1]
    assert sorted(row["id"] for page in found for row in page.items) == sorted(ids)


def test_small_rows_are_whole_and_not_flagged(journal: Any) -> None:
    small = NewIncident(
        "fp", "2026-01-01T00:00:00.000000Z", T0, "Down", "web", "firing",
        {"alertname": "Down"}, {"summary": "web is down"}, "http://p/", T0, True,
    )  # fmt: skip
    insert(journal, small)
    bounds = PageBounds(rows=10, page_bytes=1024 * 1024, field_bytes=FIELD)
    (row,) = journal.list_incidents(limit=10, offset=0, bounds=bounds).items
    assert row["truncated"] is False and "omitted" not in row
    assert row["annotations"] == {"summary": "web is down"}
    assert journal.list_incidents(limit=10, offset=0).items == [row]  # as unbounded


def test_action_output_params_and_events_are_bounded(journal: Any) -> None:
    (incident_id,) = insert(journal, huge_incident(1))
    output = "o" * 100_000
    params = {"command": ["echo", "p" * 50_000]}
    events = 500

    def work(tx: Any) -> int:
        action = NewAction(incident_id, "run-it", "run", "local", "t" * 9000, params,
                           "planned", "planned by run-it", False, T0)  # fmt: skip
        action_id = tx.insert_action(action)
        for n in range(events - 1):
            tx.add_event(action_id, T0 + n, "planned", f"delayed: locked ({n})")
        tx.execute("UPDATE actions SET output = ? WHERE id = ?", (output, action_id))
        return action_id

    action_id = journal.write(work)
    bounds = PageBounds(rows=10, page_bytes=1024 * 1024, field_bytes=FIELD)
    (row,) = journal.list_actions(limit=10, offset=0, bounds=bounds).items
    assert row["id"] == action_id and row["truncated"] is True
    assert row["output"] == "o" * FIELD + marker(len(output) - FIELD)
    assert row["target"] == "t" * FIELD + marker(9000 - FIELD)
    size = len(json.dumps(params["command"], separators=(",", ":")))
    assert row["params"] == {"command": marker(size)}
    shown = row["events"]
    assert shown and len(json.dumps(shown, separators=(",", ":"))) <= FIELD + 200
    assert shown[-1]["reason"] == f"delayed: locked ({events - 2})"  # the latest are kept
    assert row["omitted"]["events"] == {"entries": events - len(shown)}


def test_breakers_and_targets_pages_are_bounded(journal: Any) -> None:
    def work(tx: Any) -> None:
        for n in range(30):
            save_breaker(tx, "restart", f"{n:02d}" + "x" * 9000, breaker.BreakerState(), T0)

    journal.write(work)
    for n in range(30):
        journal.save_target("k8s", f"{n:02d}" + "y" * 9000, (1, 2, 1, 5), {}, T0)
    bounds = PageBounds(rows=1000, page_bytes=50_000, field_bytes=FIELD)
    for page_of in (journal.breakers_page, journal.targets_page):
        seen, offset = [], 0
        while offset < 30:
            page = page_of(1000, offset, bounds)
            assert page.total == 30 and page.items
            assert body_size(page) <= bounds.page_bytes
            seen += [row["target"][:2] for row in page.items]
            offset += len(page.items)
        assert seen == [f"{n:02d}" for n in range(30)]
        assert all(row["target"].endswith(marker(9002 - FIELD)) for row in page.items)


def test_notifications_pages_are_bounded_and_keep_truncated_alerts(journal: Any) -> None:
    """GET /api/v1/notifications (issue 12, item 4): paged like the others, newest
    first, each with Alertmanager's `truncated_alerts` and the ingest summary."""

    def work(tx: Any) -> None:
        for n in range(30):
            tx.insert_notification(
                NotificationRecord(
                    received_at=T0 + n, group_key=f"{n:02d}" + "k" * 9000, receiver="r",
                    status="firing", alerts=2, firing=2, resolved=0, truncated_alerts=n,
                    external_url="http://am.example", summary={"alerts": 2, "refused": n},
                )
            )  # fmt: skip

    journal.write(work)
    bounds = PageBounds(rows=1000, page_bytes=50_000, field_bytes=FIELD)
    seen, offset = [], 0
    while offset < 30:
        page = journal.list_notifications(limit=1000, offset=offset, bounds=bounds)
        assert page.total == 30 and page.items
        assert body_size(page) <= bounds.page_bytes
        seen += [(row["group_key"][:2], row["truncated_alerts"]) for row in page.items]
        offset += len(page.items)
    assert seen == [(f"{n:02d}", n) for n in reversed(range(30))]
    assert all(row["group_key"].endswith(marker(9002 - FIELD)) for row in page.items)
    assert all(row["summary"]["refused"] == row["truncated_alerts"] for row in page.items)
    assert page.items[-1]["received_at"] == "2027-01-15T08:00:00.000000Z"
    only = journal.list_notifications(
        group_key="00" + "k" * 9000, limit=10, offset=0, bounds=bounds
    )
    assert only.total == 1 and only.items[0]["truncated_alerts"] == 0


def test_a_stored_field_that_is_not_json_is_listed_as_text(journal: Any) -> None:
    (incident_id,) = insert(journal, huge_incident(3))
    with journal.transaction() as tx:  # e.g. written by hand or by another tool
        tx.execute("UPDATE incidents SET annotations = ? WHERE id = ?", ("{broken", incident_id))
    bounds = PageBounds(rows=10, page_bytes=1024 * 1024, field_bytes=FIELD)
    (row,) = journal.list_incidents(limit=10, offset=0, bounds=bounds).items
    assert row["annotations"] == "{broken"


def test_incident_detail_is_bounded_and_pages_through_every_action(journal: Any) -> None:
    """GET /api/v1/incidents/<id> (issue 14): a huge incident, runs with long reasons and
    many actions with long output answer within the page bound, fields cut, and reading
    on from actions_next_offset shows every action once, oldest first."""
    (incident_id,) = insert(journal, huge_incident(3))
    reason = "r" * 10_000

    def work(tx: Any) -> list[int]:
        run_ids = [
            runs.insert(tx, incident_id, "run-it", run, T0 + run, "started") for run in (1, 2)
        ]
        runs.end(tx, run_ids[0], "uncured", reason, T0 + 10, escalate=True)
        action_ids = []
        for n in range(40):
            action = NewAction(incident_id, "run-it", "run", "local", f"t{n:02d}", {}, "planned",
                               "planned by run-it", False, T0 + n, step=n % 3 + 1,
                               run_id=run_ids[n // 20])  # fmt: skip
            action_ids.append(tx.insert_action(action))
            tx.execute("UPDATE actions SET output = ? WHERE id = ?", ("o" * 8000, action_ids[-1]))
        return action_ids

    action_ids = journal.write(work)
    bounds = PageBounds(rows=1000, page_bytes=60_000, field_bytes=FIELD)
    seen: list[int] = []
    offset: int | None = 0
    details = 0
    while offset is not None:
        detail = journal.incident_detail(incident_id, bounds, offset)
        details += 1
        assert len(json.dumps(detail, separators=(",", ":"))) <= bounds.page_bytes
        assert detail["actions"] and detail["actions_total"] == 40
        assert detail["annotations"]["a000"].endswith("bytes]")
        first_run = detail["runs"][0]
        assert first_run["reason"] == "r" * FIELD + marker(len(reason) - FIELD)
        assert first_run["escalation"] == "pending" and first_run["truncated"] is True
        assert first_run["ended_at"] is not None and detail["runs"][1]["ended_at"] is None
        for action in detail["actions"]:
            assert action["output"] == "o" * FIELD + marker(8000 - FIELD)
            assert action["step"] in (1, 2, 3) and action["run_id"] is not None
        seen += [action["id"] for action in detail["actions"]]
        offset = detail["actions_next_offset"]
    assert details > 1  # 40 actions of ~4 kB cannot fit in one 60 kB answer
    assert seen == action_ids  # each once, oldest first


def test_incident_detail_of_an_unknown_incident_is_none(journal: Any) -> None:
    bounds = PageBounds(rows=10, page_bytes=1024 * 1024, field_bytes=FIELD)
    assert journal.incident_detail(424242, bounds) is None
