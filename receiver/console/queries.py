"""What the console's pages take from a request, and the few words they build (pure).

A console page's query and form values arrive as text. Each is checked here, as the
API checks its own (receiver/app.py), before anything reads the journal:

    request.args / request.form ──► parse_* ──► frozen values ──► store functions
                                       │
                                       └─ BadQuery(field, why) ──► 400 page, nothing read

Empty form fields count as absent (a filter form submits every field, filled or not).
Times come from the journal's dicts as ISO 8601 text; `epoch_of` turns them back into
the epoch seconds the templates' `when` macro shows in the viewer's timezone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from receiver.config import Strategy
from receiver.store.base import ACTION_STATUSES, storable

#: Rows of a console list page (console-common contract).
PAGE_ROWS = 25
#: The largest row id the journal holds (signed 64-bit, both stores), as the API's.
MAX_ID = 2**63 - 1
#: The highest page number of every console list (incidents, actions, breakers); a larger
#: one is a 400 page: offset = (page - 1) * PAGE_ROWS stays a 64-bit number.
MAX_PAGE = MAX_ID // PAGE_ROWS
#: Longest strategy name a filter takes (characters).
MAX_NAME = 1000
#: The ISO times of an action row and of an approval (store/sql.py, store/approvals.py).
ACTION_TIMES = ("created_at", "updated_at", "started_at", "finished_at", "not_before")
APPROVAL_TIMES = ("requested_at", "deadline", "decided_at")


class BadQuery(ValueError):
    """A query or form value the page refuses: `field` names it, `why` says why (shown
    on the 400 page)."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field = field
        self.why = why


@dataclass(frozen=True)
class ActionFilters:
    """The actions list's filters (None: not filtered) and its 1-based page."""

    status: str | None = None
    strategy: str | None = None
    incident_id: int | None = None
    page: int = 1

    @property
    def offset(self) -> int:
        """Rows before this page."""
        return (self.page - 1) * PAGE_ROWS

    def args(self) -> dict[str, str | int]:
        """The filters as query arguments (for the pager's links): set ones only."""
        found = {"status": self.status, "strategy": self.strategy, "incident_id": self.incident_id}
        return {name: value for name, value in found.items() if value is not None}


def whole(text: str) -> bool:
    """ASCII digits (not any Unicode digit int() takes), at most MAX_ID: a number the
    journal can compare with (app.py's rule)."""
    return text.isascii() and text.isdigit() and len(text) <= 19 and int(text) <= MAX_ID


def page_number(text: str | None) -> int:
    """The 1-based `page` argument (absent or empty: 1). Raises BadQuery."""
    if not text:
        return 1
    if not whole(text) or not 1 <= int(text) <= MAX_PAGE:
        raise BadQuery("page", f"page must be a whole number from 1 to {MAX_PAGE}")
    return int(text)


def one_of(name: str, value: str | None, allowed: tuple[str, ...]) -> str | None:
    """A filter that must be one of `allowed` (absent or empty: None). Raises BadQuery."""
    if not value:
        return None
    if value not in allowed:
        raise BadQuery(name, f"{name} must be one of {', '.join(allowed)}")
    return value


def text_value(name: str, value: str | None) -> str | None:
    """A free-text filter (absent or empty: None): at most MAX_NAME characters the
    journal can compare (store/base.py storable: valid UTF-8, no NUL). Raises
    BadQuery."""
    if not value:
        return None
    if len(value) > MAX_NAME or not storable(value):
        raise BadQuery(
            name, f"{name} must be at most {MAX_NAME} characters, valid UTF-8 without NUL"
        )
    return value


def parse_action_filters(args: Mapping[str, str]) -> ActionFilters:
    """`status` (one of ACTION_STATUSES), `strategy` (a name), `incident_id` (a whole
    number) and `page` from the actions list's query. Raises BadQuery for the first bad
    one."""
    status = one_of("status", args.get("status"), ACTION_STATUSES)
    strategy = text_value("strategy", args.get("strategy"))
    incident = args.get("incident_id") or None
    if incident is not None and not whole(incident):
        raise BadQuery("incident_id", f"incident_id must be a whole number up to {MAX_ID}")
    return ActionFilters(
        status, strategy, int(incident) if incident else None, page_number(args.get("page"))
    )


def row_id(text: str, what: str) -> int:
    """A journal row id from a URL (`/incidents/<id>`, `/actions/<id>`): `what` names
    the row in the reason. Raises BadQuery("id") when it is not a whole number up to
    MAX_ID, so every page answers a malformed id alike (400), as the API does."""
    if not whole(text):
        raise BadQuery("id", f"an {what} id is a whole number up to {MAX_ID}")
    return int(text)


def action_id(text: str) -> int:
    """An action id from a URL. Raises BadQuery when it is not a whole number."""
    return row_id(text, "action")


def incident_id(text: str) -> int:
    """An incident id from a URL. Raises BadQuery when it is not a whole number."""
    return row_id(text, "incident")


def not_awaiting(action: int, status: str | None, requested: bool, why: str) -> str:
    """What the 409 page of a decision on an action not awaiting approval says: `status`
    is the action's status as the refused decision left it, `requested` whether an
    approval was ever requested for it, `why` the refusal (approvals.NotAwaiting:
    `already denied by alice`, `approval timed out`). A planned action was decided (or
    timed out) meanwhile, or never asked for one; any other has left the approval gate."""
    if status == "planned" and not requested:
        said = f"Action {action} does not await approval: none was requested for it."
    elif status == "planned":
        said = f"Action {action} no longer awaits approval: {why}."
    elif status == "running":
        said = f"Action {action} is running: it no longer awaits approval."
    else:
        said = f"Action {action} has ended ({status}): it no longer awaits approval."
    return f"{said} Nothing was changed."


def unknown_strategy(name: str | None, configured: list[str]) -> bool:
    """Whether the actions list's strategy filter names no strategy of the running
    config (the journal may still hold its actions: a strategy removed since)."""
    return name is not None and name not in configured


def breaker_key(text: str | None) -> tuple[str, str]:
    """(strategy, target) of a breaker's key `strategy/target` (the first `/` splits
    it, as the API's reset does; a target may hold more). Raises BadQuery."""
    strategy, sep, target = (text or "").partition("/")
    if not sep or not strategy or not target or not storable(text or ""):
        raise BadQuery("key", "a breaker key is <strategy>/<target>, as the list shows it")
    return strategy, target


def has_next(offset: int, shown: int, total: int) -> bool:
    """Whether rows follow the `shown` rows of a page starting at `offset`."""
    return offset + shown < total


def epoch_of(iso: str | None) -> float | None:
    """Epoch seconds of the journal's ISO 8601 UTC text (`2026-11-30T08:15:02.250000Z`),
    None for None or text that is not such a time."""
    if not iso:
        return None
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def with_epochs(row: dict[str, Any], names: tuple[str, ...] = ACTION_TIMES) -> dict[str, Any]:
    """A copy of a journal row (as the API shows it) with `<name>_epoch` beside each of
    its ISO times `names` (None when absent), and `at_epoch` in each of its `events`
    (when it has events), for the templates' `when` macro."""
    shown = dict(row)
    for name in names:
        shown[f"{name}_epoch"] = epoch_of(row.get(name))
    if "events" in row:
        shown["events"] = [
            {**event, "at_epoch": epoch_of(event.get("at"))} for event in row["events"]
        ]
    return shown


def pretty_json(value: Any) -> str:
    """A journal value (params: an object, or text a listing cut) as indented JSON for a
    <pre>, non-ASCII kept as it is (the template escapes it); text is shown as it is."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


@dataclass(frozen=True)
class BreakerRow:
    """One breaker as the breakers page shows it: `key` (`strategy/target`), `state`
    (closed | open | half_open), the journal's counters, `opened_at` and `updated_at`
    (epoch seconds or None), the failures among its recent `calls`, and `half_open_at`:
    when an open breaker admits a trial (opened_at + the strategy's recovery_timeout;
    None when not open or its strategy is no longer configured)."""

    key: str
    strategy: str
    target: str
    state: str
    consecutive_failures: int
    opened_at: float | None
    half_open_at: float | None
    half_open_in_flight: int
    half_open_successes: int
    calls: int
    failed_calls: int
    updated_at: float | None
    truncated: bool


def breaker_row(row: dict[str, Any], strategy: Strategy | None) -> BreakerRow:
    """A row of the store's breakers_page (the API's shape) for the page. `strategy` is
    the configured strategy of its name (config.strategy_named), or None."""
    opened_at = row.get("opened_at")
    half_open_at = None
    if row.get("state") == "open" and opened_at is not None and strategy is not None:
        half_open_at = float(opened_at) + strategy.breaker.recovery_timeout
    calls = row.get("calls") or []
    return BreakerRow(
        key=row["key"],
        strategy=row["strategy"],
        target=row["target"],
        state=row.get("state", "closed"),
        consecutive_failures=int(row.get("consecutive_failures", 0)),
        opened_at=None if opened_at is None else float(opened_at),
        half_open_at=half_open_at,
        half_open_in_flight=int(row.get("half_open_in_flight", 0)),
        half_open_successes=int(row.get("half_open_successes", 0)),
        calls=len(calls),
        failed_calls=sum(1 for call in calls if not call[1]),
        updated_at=epoch_of(row.get("updated_at")),
        truncated=bool(row.get("truncated")),
    )
