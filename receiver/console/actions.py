"""The console's actions: the list (filters, 25 a page, newest first as the API lists
them), one action's page (its facts, approval and events) and the approve / deny
buttons, which journal the decision as the API's approve / deny do
(store/approvals.py record_decision).

    GET  /actions?status=&strategy=&incident_id=&page=   console.actions
    GET  /actions/<id>                                    console.action
    POST /actions/<id>/approve | /deny  (csrf_token, comment)
         ──► 303 /actions/<id>?notice=approved|denied     console.approve / console.deny

Who decided: the signed-in user of the web config, else `server.auth`'s basic user
(whose password the post carried), else "console". An action that does not await
approval (decided, ended, timed out) gets a 409 page saying why; nothing changes.
"""

from __future__ import annotations

import time
from typing import Any

from flask import redirect, request, url_for

from receiver import approvals
from receiver.auth import signed_in_person
from receiver.console import queries
from receiver.console.blueprint import app_state, console, form_post, page
from receiver.store import approvals as approval_journal
from receiver.store import runs
from receiver.store.base import ACTION_STATUSES, storable
from receiver.store.listing import PageBounds

#: Bytes of one field (reason, output, params) a list row shows: a page of 25 rows then
#: stays well inside limits.max_page_bytes, so no row is left out of its page.
LIST_FIELD_BYTES = 2048
#: What a page says after a console post (never the query's own text).
NOTICES = {
    "approved": "Approved: the action runs once its other gates let it.",
    "denied": "Denied: the action is skipped.",
}


def bad_query(exc: queries.BadQuery) -> tuple[str, int]:
    """The 400 page of a refused query or form value."""
    return page("error.html", 400, title=f"Bad {exc.field}", reason=exc.why)


def list_bounds() -> PageBounds:
    """One console list page: PAGE_ROWS rows, fields cut shorter than the API's."""
    limits = app_state().config.limits
    return PageBounds(
        queries.PAGE_ROWS,
        limits.max_page_bytes,
        min(limits.max_field_bytes, LIST_FIELD_BYTES),
    )


@console.get("/actions")
def actions() -> tuple[str, int]:
    """The actions list, filtered by status, strategy and incident, newest first."""
    try:
        filters = queries.parse_action_filters(request.args)
    except queries.BadQuery as exc:
        return bad_query(exc)
    found = app_state().store.list_actions(
        status=filters.status,
        strategy=filters.strategy,
        incident_id=filters.incident_id,
        limit=queries.PAGE_ROWS,
        offset=filters.offset,
        bounds=list_bounds(),
    )
    rows = [queries.with_epochs(row) for row in found.items]
    more = queries.has_next(filters.offset, len(rows), found.total)
    configured = [s.name for s in app_state().config.strategies]
    return page(
        "actions.html",
        filters=filters,
        statuses=ACTION_STATUSES,
        strategies=configured,
        unknown_strategy=queries.unknown_strategy(filters.strategy, configured),
        rows=rows,
        total=found.total,
        # a page full in bytes (limits.max_page_bytes) holds fewer rows: say so
        cut_short=more and len(rows) < queries.PAGE_ROWS,
        has_next=more,
    )


@console.get("/actions/<raw_id>")
def action(raw_id: str) -> tuple[str, int]:
    """One action: its facts, approval (with the approve / deny forms while it awaits
    one) and events. 400 for an id that is not a whole number, 404 for an unknown one."""
    try:
        action_id = queries.action_id(raw_id)
    except queries.BadQuery as exc:
        return bad_query(exc)
    limits = app_state().config.limits
    bounds = PageBounds(1, limits.max_page_bytes, limits.max_field_bytes)
    detail = app_state().store.action_detail(action_id, bounds)
    if detail is None:
        return page("error.html", 404, title="No such action", reason=f"No action {action_id}.")
    approval = detail.get("approval")
    awaiting = bool(approval and approval["awaiting"] and detail["status"] == "planned")
    return page(
        "action.html",
        action=queries.with_epochs(detail),
        run_number=run_number(detail.get("run_id")),
        params_text=queries.pretty_json(detail.get("params")),
        approval=queries.with_epochs(approval, queries.APPROVAL_TIMES) if approval else None,
        awaiting=awaiting,
        notice=NOTICES.get(request.args.get("notice", "")),
    )


@console.post("/actions/<raw_id>/approve")
@form_post
def approve(raw_id: str) -> Any:
    """Approve an action awaiting approval (form: csrf_token, comment)."""
    return _decide(raw_id, approvals.APPROVED)


@console.post("/actions/<raw_id>/deny")
@form_post
def deny(raw_id: str) -> Any:
    """Deny an action awaiting approval: it ends skipped "denied by X"."""
    return _decide(raw_id, approvals.DENIED)


def _decide(raw_id: str, decision: str) -> Any:
    try:
        action_id = queries.action_id(raw_id)
    except queries.BadQuery as exc:
        return bad_query(exc)
    comment = request.form.get("comment", "").strip()
    if not storable(comment):
        return page(
            "error.html",
            400,
            title="Bad comment",
            reason="The comment must be text without NUL characters.",
        )
    try:
        decided = approval_journal.record_decision(
            app_state().store, action_id, decision, decider(), comment, time.time()
        )
    except approvals.NotAwaiting as exc:
        status, requested = app_state().store.look(
            lambda tx: (
                approval_journal.action_status(tx, action_id),
                approval_journal.load(tx, action_id) is not None,
            )
        )
        return page(
            "error.html",
            409,
            title="Not awaiting approval",
            reason=queries.not_awaiting(action_id, status, requested, str(exc)),
        )
    if decided is None:
        return page("error.html", 404, title="No such action", reason=f"No action {action_id}.")
    target = url_for("console.action", raw_id=action_id, notice=decision)
    return redirect(target, code=303)


def run_number(run_id: int | None) -> int | None:
    """The number of the action's runbook run among its strategy's runs for the incident
    (runbook_runs.run: "Run 1" on the incident page), not the run's journal id; None
    for an action of no run."""
    if run_id is None:
        return None
    found = app_state().store.look(lambda tx: runs.load(tx, run_id))
    return None if found is None else found.run


def decider() -> str:
    """Who decides from the console: the web config's signed-in user, else the
    `server.auth` basic user (form_post checked the password), else "console"."""
    state = app_state()
    user = request.authorization.username if request.authorization else None
    return signed_in_person(state.web, state.config.server.auth, user) or "console"
