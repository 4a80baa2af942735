"""Console pages of incidents: the list (`/incidents`, filters and pages as the API's)
and one incident's page (`/incidents/<id>`): its labels, annotations, runbook runs and
its whole timeline (console/timeline.py) from the journal: the notifications that
carried it, the plan, gate verdicts and waits, steps, the command or request as
rendered, output, verification, canary analyses, outcome, escalation, resolution.

Views parse the request, read the journal through the store's functions and hand
plain values to a template. Bad query values answer a 400 page and read nothing.
"""

from __future__ import annotations

import math
from typing import Any

from flask import request, url_for

from receiver.console import queries, timeline
from receiver.console.blueprint import app_state, console, page
from receiver.durations import format_duration
from receiver.store import trail
from receiver.store.base import INCIDENT_STATUSES
from receiver.store.listing import PageBounds

#: Bytes of a field shown in a list row (labels share them).
LIST_FIELD_BYTES = 1024
#: Actions per incident page (the rest are paged by `offset`, as the API's).
ACTIONS_PER_PAGE = 50
#: Notifications shown on an incident page (the oldest; how many more is said).
MAX_NOTIFICATIONS = 200
#: Analyses shown per fleet of the incident.
MAX_ANALYSES = 50


@console.app_template_filter("epoch")
def epoch_filter(text: str | None) -> float | None:
    """A journal ISO 8601 time as seconds since the epoch (for `when`), None for none
    or for a text that is no time."""
    try:
        return timeline.epoch(text)
    except ValueError:
        return None


@console.app_template_filter("took")
def took(seconds: float | None) -> str:
    """Seconds as `1h2m3s` ("-" for none)."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    return format_duration(round(seconds) if seconds >= 60 else max(0.0, seconds))


@console.app_template_filter("http_link")
def http_link(url: str | None) -> str:
    """`url` when it is an http(s) URL a link may point to, else "" (a label or
    annotation never becomes a `javascript:` link)."""
    if isinstance(url, str) and url.lower().startswith(("http://", "https://")):
        return url
    return ""


def whole_number(name: str, text: str | None, default: int, low: int, high: int) -> int:
    """A query argument that must be a whole number in [low, high] (ASCII digits);
    `default` when absent or empty. Raises queries.BadQuery (a 400 page) otherwise."""
    if text is None or text == "":
        return default
    if not (queries.whole(text) and low <= int(text) <= high):
        raise queries.BadQuery(name, f"{name} must be a whole number from {low} to {high}")
    return int(text)


@console.get("/incidents")
def incidents() -> tuple[str, int]:
    """Incidents newest first, 25 a page, filtered by status, service and alertname."""
    filters = {
        "status": queries.one_of("status", request.args.get("status"), INCIDENT_STATUSES),
        "service": queries.text_value("service", request.args.get("service")),
        "alertname": queries.text_value("alertname", request.args.get("alertname")),
    }
    number = queries.page_number(request.args.get("page"))
    offset = (number - 1) * queries.PAGE_ROWS
    # the page is bounded by rows and by each field, never by its total bytes: a page
    # short of its rows would make page N+1 skip some
    bounds = PageBounds(queries.PAGE_ROWS, 2**62, LIST_FIELD_BYTES)
    found = app_state().store.list_incidents(
        **filters, limit=queries.PAGE_ROWS, offset=offset, bounds=bounds
    )
    args = {name: value for name, value in filters.items() if value}
    return page(
        "incidents.html",
        incidents=found.items,
        total=found.total,
        page_number=number,
        has_next=offset + len(found.items) < found.total,
        filters=filters,
        args=args,
        statuses=INCIDENT_STATUSES,
    )


@console.get("/incidents/<incident_id>")
def incident(incident_id: str) -> tuple[str, int]:
    """One incident with its timeline; `offset` pages its actions (as the API's
    `actions_next_offset`). 400 for an id that is not a whole number (as the actions
    page and the API answer), 404 for an unknown one."""
    number = queries.incident_id(incident_id)
    offset = whole_number("offset", request.args.get("offset"), 0, 0, queries.MAX_ID)
    state = app_state()
    limits = state.config.limits
    bounds = PageBounds(ACTIONS_PER_PAGE, limits.max_page_bytes, limits.max_field_bytes)
    detail = state.store.incident_detail(number, bounds, offset)
    if detail is None:
        return page("error.html", 404, title="No such incident", reason=f"No incident {number}.")
    first = timeline.epoch(detail["first_seen"]) or 0.0
    # a firing incident's fleet may still be analysed; a closed one's until it closed
    until = None if detail["status"] == "firing" else timeline.epoch(detail["last_seen"])
    fleets = sorted({(a["strategy"], a["fleet"]) for a in detail["actions"] if a["fleet"]})

    def read(tx: Any) -> tuple[list[dict[str, Any]], int, list[dict[str, Any]]]:
        notes, total = trail.notifications(tx, number, MAX_NOTIFICATIONS)
        found = trail.analyses(tx, fleets, first, until, MAX_ANALYSES)
        return notes, total, found

    notes, notes_total, analyses = state.store.look(read)
    entries = timeline.build(detail, notes, analyses)
    shown_to = offset + len(detail["actions"])
    # actions whose earliest events did not fit the read bounds (the page says so)
    cut = [a["id"] for a in detail["actions"] if a.get("omitted", {}).get("events")]
    return page(
        "incident.html",
        incident=detail,
        strategies=timeline.strategies_of(detail),
        entries=entries,
        notifications_shown=len(notes),
        notifications_total=notes_total,
        offset=offset,
        shown_to=shown_to,
        cut_actions=cut,
        next_url=(
            url_for("console.incident", incident_id=number, offset=detail["actions_next_offset"])
            if detail["actions_next_offset"] is not None
            else None
        ),
        first_url=(url_for("console.incident", incident_id=number) if offset else None),
    )
