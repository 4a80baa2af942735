"""The console's breakers: every breaker as journaled (25 a page, by strategy then
target, as the API lists them) with a reset button on those not closed.

    GET  /breakers?page=                         console.breakers
    POST /breakers/reset  (csrf_token, key)  ──► 303 /breakers?notice=reset
                                                 console.reset_breaker

A reset closes the breaker as `POST /api/v1/breakers/<key>/reset` does (the store's
reset_breaker, under the target's lock); a key that is not `strategy/target` gets a
400 page, an unknown one a 404 page, and nothing changes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import redirect, request, url_for

from receiver.console import queries
from receiver.console.actions import bad_query, decider, list_bounds
from receiver.console.blueprint import app_state, console, form_post, page

log = logging.getLogger(__name__)

NOTICES = {"reset": "Breaker reset: it is closed, and its target may be acted on again."}


@console.get("/breakers")
def breakers() -> tuple[str, int]:
    """Breakers with their state, counters and, for open ones, when they half-open."""
    try:
        number = queries.page_number(request.args.get("page"))
    except queries.BadQuery as exc:
        return bad_query(exc)
    offset = (number - 1) * queries.PAGE_ROWS
    found = app_state().store.breakers_page(queries.PAGE_ROWS, offset, list_bounds())
    config = app_state().config
    rows = [queries.breaker_row(row, config.strategy_named(row["strategy"])) for row in found.items]
    return page(
        "breakers.html",
        rows=rows,
        total=found.total,
        page_number=number,
        has_next=queries.has_next(offset, len(rows), found.total),
        notice=NOTICES.get(request.args.get("notice", "")),
    )


@console.post("/breakers/reset")
@form_post
def reset_breaker() -> Any:
    """Close the breaker named by the form's `key` (`strategy/target`)."""
    try:
        strategy, target = queries.breaker_key(request.form.get("key"))
    except queries.BadQuery as exc:
        return bad_query(exc)
    if not app_state().store.reset_breaker(strategy, target, time.time()):
        return page(
            "error.html",
            404,
            title="No such breaker",
            reason=f"No breaker for strategy {strategy!r} and target {target!r}.",
        )
    log.warning(
        "breaker reset from the console by %s",
        decider(),
        extra={"strategy": strategy, "target": target},
    )
    return redirect(url_for("console.breakers", notice="reset"), code=303)
