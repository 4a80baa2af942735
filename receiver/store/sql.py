"""SQL shared by the SQLite and PostgreSQL stores.

Written once in a portable subset (`?` placeholders, translated per driver; RETURNING;
no vendor functions) so that both backends journal exactly the same way.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from receiver.store import (
    approvals,
    labels,
    listing,
    locks,
    runs,
    schema,
    servicewindows,
    totals,
)
from receiver.store.base import (
    FINAL_ACTION_STATUSES,
    IncidentRow,
    NewAction,
    NewIncident,
    NotificationRecord,
    Occurrence,
    Page,
    StoreUnavailable,
)
from receiver.store.group import GroupCommit
from receiver.store.jsontext import canonical_json
from receiver.store.labels import LabelFolder, LabelValues

if TYPE_CHECKING:
    from receiver.config import Limits

T = TypeVar("T")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


#: an action's event, its id from the table's sequence (PostgreSQL)
ADD_EVENT = "INSERT INTO action_events (action_id, at, status, reason) VALUES (?, ?, ?, ?)"
#: the same where the table is keyed (action_id, id) WITHOUT ROWID (SQLite, revision
#: 0010): the id after the action's last, read in the insert; one writer at a time
ADD_EVENT_NUMBERED = (
    "INSERT INTO action_events (action_id, id, at, status, reason) "
    "SELECT ?, COALESCE(MAX(id), 0) + 1, ?, ?, ? FROM action_events WHERE action_id = ?"
)


class SqlTransaction:
    """Journal operations inside one open transaction (see Store.transaction)."""

    def __init__(
        self,
        cursor: Any,
        placeholder: str,
        services: set[str] | None = None,
        label_values: LabelValues | None = None,
        keyed_locks: Callable[[Callable[..., Any]], locks.KeyedLocks] | None = None,
        lastrowid: bool = False,
        events_keyed: bool = False,
    ) -> None:
        self._cursor = cursor
        self._placeholder = placeholder
        self._lastrowid = lastrowid
        self._events_keyed = events_keyed
        #: the keyed locks of concurrent writers (no-ops for a single writer: locks.py)
        self.locks = keyed_locks(self.execute) if keyed_locks else locks.KeyedLocks()
        self._deltas: dict[tuple[str, str], float] = {}
        self.services = services if services is not None else set()
        self.new_services: set[str] = set()
        #: bounded metric labels: which values keep their series (see labels.py)
        self.labels = LabelFolder(
            label_values or LabelValues(),
            self.execute,
            (lambda label: self.locks.lock(locks.LABEL, label)) if keyed_locks else None,
        )
        #: incidents closed in this transaction, (service, start, end): servicewindows.py
        self.closed: list[tuple[str, float, float]] = []

    def add_total(self, metric: str, labels: str, delta: float) -> None:
        """Add to a running total when the transaction commits: a batch that counts
        the same series many times writes it once."""
        key = (metric, labels)
        self._deltas[key] = self._deltas.get(key, 0.0) + delta

    def flush_totals(self) -> None:
        """Write the pending totals (add_total), a statement per totals.UPSERT_ROWS series;
        called once, just before the transaction commits."""
        servicewindows.flush(self, self.closed)  # first: the same lock order everywhere
        for label, folded in self.labels.folded.items():
            totals.add(self, labels.FOLDED_METRIC, {"label": label}, folded)
        self.labels.folded.clear()
        if not self._deltas:
            return
        # in sorted key order, so two writers of one shard's rows could never deadlock
        deltas = sorted(self._deltas.items())
        self._deltas.clear()
        for sql, params in totals.upserts(deltas, self.locks.total_shard()):
            self.execute(sql, params)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self._cursor.execute(self._native(sql), params)
        return self._cursor

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._cursor.executemany(self._native(sql), rows)

    def _native(self, sql: str) -> str:
        """The portable `?` placeholders in the driver's own style."""
        return sql if self._placeholder == "?" else sql.replace("?", self._placeholder)

    def insert_row(self, sql: str, params: Sequence[Any]) -> int:
        """The id of the row an INSERT without ON CONFLICT adds (see insert_id)."""
        inserted = self.insert_id(sql, params)
        assert inserted is not None, "an INSERT without ON CONFLICT inserts its row"
        return inserted

    def insert_id(self, sql: str, params: Sequence[Any]) -> int | None:
        """Run an INSERT of one row (`sql` without RETURNING); the new row's id, or None
        when an ON CONFLICT ... DO NOTHING left it out. SQLite tells the id as the
        cursor's lastrowid, which costs less than half of a RETURNING clause (that
        makes SQLite gather the rows in a table of their own); other drivers are
        asked with RETURNING id."""
        if not self._lastrowid:
            row = self.execute(sql + " RETURNING id", params).fetchone()
            return None if row is None else row[0]
        cursor = self.execute(sql, params)
        return cursor.lastrowid if cursor.rowcount else None

    def find_incident(self, fingerprint: str, starts_at: str) -> IncidentRow | None:
        row = self.execute(
            "SELECT id, fingerprint, starts_at, status, ends_at FROM incidents "
            "WHERE fingerprint = ? AND starts_at = ?",
            (fingerprint, starts_at),
        ).fetchone()
        return IncidentRow(*row) if row else None

    def insert_incident(self, incident: NewIncident) -> int | None:
        """Journal a new incident; its id, or None when its (fingerprint, starts_at) key
        is journaled already: another writer inserted it since this transaction looked
        (an HA pair's twin at another replica; the insert waited for its commit). Only
        an incident inserted here is counted."""
        duration = None
        if incident.ends_at_ts is not None:
            duration = max(0.0, incident.ends_at_ts - incident.starts_at_ts)
        incident_id = self.insert_id(
            "INSERT INTO incidents (fingerprint, starts_at, starts_at_ts, alertname, service, "
            "status, labels, annotations, generator_url, matched, first_seen, last_seen, "
            "ends_at, ends_at_ts, duration_seconds, external_url, close_reason) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (fingerprint, starts_at) DO NOTHING",
            (
                incident.fingerprint,
                incident.starts_at,
                incident.starts_at_ts,
                incident.alertname,
                incident.service,
                incident.status,
                canonical_json(incident.labels),
                canonical_json(incident.annotations),
                incident.generator_url,
                int(incident.matched),
                incident.seen_at,
                incident.seen_at,
                incident.ends_at,
                incident.ends_at_ts,
                duration,
                incident.external_url,
                incident.close_reason,
            ),
        )
        if incident_id is None:
            return None
        if incident.service not in self.services:
            # the folded name: a set of every service ever seen would grow without bound
            self.new_services.add(totals.seed_service(self, incident.service))
        if duration is not None:
            totals.count_incident_closed(self, incident.service, duration)
            self.closed.append((incident.service, incident.starts_at_ts, incident.ends_at_ts))
        return incident_id

    def touch_incident(self, incident_id: int, seen_at: float) -> None:
        self.execute("UPDATE incidents SET last_seen = ? WHERE id = ?", (seen_at, incident_id))

    def related_occurrences(
        self, fingerprint: str, starts_at_ts: float, starts_at: str
    ) -> list[Occurrence]:
        """The incidents of `fingerprint` an alert starting at `starts_at` (text key;
        `starts_at_ts` in seconds) meets: its own occurrence if journaled, those still
        firing (it may supersede them) and those that started later (they supersede it).
        One query on the (fingerprint, starts_at) key's index; with concurrent writers
        the rows are locked (FOR UPDATE), so they are read as last committed and an HA
        twin at another replica waits to see this transaction's changes."""
        rows = self.execute(
            "SELECT id, starts_at, starts_at_ts, status FROM incidents WHERE fingerprint = ? "
            "AND (starts_at = ? OR status = 'firing' OR starts_at_ts > ?) ORDER BY id"
            + self.locks.for_update,
            (fingerprint, starts_at, starts_at_ts),
        ).fetchall()
        return [Occurrence(*row) for row in rows]

    def resolve_incident(
        self,
        incident_id: int,
        ends_at: str,
        ends_at_ts: float,
        seen_at: float,
        reason: str | None = None,
    ) -> float:
        """Close an incident at `ends_at` (its duration counted from its start; returned,
        in seconds); `reason` says why when it was not a resolution (close_reason)."""
        starts_at_ts, service = self.execute(
            "SELECT starts_at_ts, service FROM incidents WHERE id = ?", (incident_id,)
        ).fetchone()
        duration = max(0.0, ends_at_ts - starts_at_ts)
        totals.count_incident_closed(self, service, duration)
        self.closed.append((service, starts_at_ts, ends_at_ts))
        self.execute(
            "UPDATE incidents SET status = 'resolved', ends_at = ?, ends_at_ts = ?, "
            "duration_seconds = ?, last_seen = ?, close_reason = ? WHERE id = ?",
            (ends_at, ends_at_ts, duration, seen_at, reason, incident_id),
        )
        runs.clear_repeats(self, incident_id)
        return duration

    def insert_action(self, action: NewAction) -> int:
        action_id = self.insert_row(
            "INSERT INTO actions (incident_id, strategy, action, executor, target, params, "
            "status, reason, dry_run, created_at, updated_at, step, run_id, not_before, "
            "waiting, fleet) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                action.incident_id,
                action.strategy,
                action.action,
                action.executor,
                action.target,
                canonical_json(action.params),
                action.status,
                action.reason,
                int(action.dry_run),
                action.created_at,
                action.created_at,
                action.step,
                action.run_id,
                action.not_before,
                action.waiting,
                action.fleet,
            ),
        )
        self.add_event(action_id, action.created_at, action.status, action.reason)
        if action.status in FINAL_ACTION_STATUSES:
            totals.count_action_final(self, action_id, action.status, action.reason)
        return action_id

    def add_event(self, action_id: int, at: float, status: str, reason: str) -> None:
        """Journal one event of an action (`at`: seconds since the epoch)."""
        if self._events_keyed:
            self.execute(ADD_EVENT_NUMBERED, (action_id, at, status, reason, action_id))
        else:
            self.execute(ADD_EVENT, (action_id, at, status, reason))

    def cancel_planned_actions(self, incident_id: int, reason: str, at: float) -> list[int]:
        """Cancel the incident's planned (and waiting) actions, and the runbook runs they
        were the current step of; returns the cancelled actions' ids."""
        rows = self.execute(
            "SELECT id, run_id FROM actions WHERE incident_id = ? AND status = 'planned'",
            (incident_id,),
        ).fetchall()
        ids = []
        for action_id, _ in rows:
            # still planned: a claim at another replica may have started it meanwhile
            if not self.execute(
                "UPDATE actions SET status = 'cancelled', reason = ?, updated_at = ?, "
                "finished_at = ?, waiting = NULL WHERE id = ? AND status = 'planned'",
                (reason, at, at, action_id),
            ).rowcount:
                continue
            ids.append(action_id)
            self.add_event(action_id, at, "cancelled", reason)
            totals.count_action_final(self, action_id, "cancelled", reason)
        cancelled = set(ids)
        run_ids = [
            run_id for action_id, run_id in rows if run_id is not None and action_id in cancelled
        ]
        runs.cancel_open(self, run_ids, reason, at)
        return ids

    def count_alerts(self, firing: int, resolved: int) -> None:
        totals.count_alerts(self, firing, resolved)

    def count_intake(self, rejected: dict[str, int], dropped: int) -> None:
        totals.count_intake(self, rejected, dropped)

    def insert_notification(self, record: NotificationRecord) -> int:
        return self.insert_row(
            "INSERT INTO notifications (received_at, group_key, receiver, status, alerts, "
            "firing, resolved, truncated_alerts, external_url, summary) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.received_at,
                record.group_key,
                record.receiver,
                record.status,
                record.alerts,
                record.firing,
                record.resolved,
                record.truncated_alerts,
                record.external_url,
                canonical_json(record.summary),
            ),
        )


#: columns of a listing and how each is bounded (see listing.Column)
INCIDENT_COLUMNS: tuple[listing.Column, ...] = (
    ("id", "plain"), ("fingerprint", "text"), ("starts_at", "text"), ("alertname", "text"),
    ("service", "text"), ("status", "plain"), ("labels", "json"), ("annotations", "json"),
    ("generator_url", "text"), ("matched", "plain"), ("first_seen", "plain"),
    ("last_seen", "plain"), ("ends_at", "text"), ("duration_seconds", "plain"),
    ("close_reason", "text"),
)  # fmt: skip
NOTIFICATION_COLUMNS: tuple[listing.Column, ...] = (
    ("id", "plain"), ("received_at", "plain"), ("group_key", "text"), ("receiver", "text"),
    ("status", "plain"), ("alerts", "plain"), ("firing", "plain"), ("resolved", "plain"),
    ("truncated_alerts", "plain"), ("external_url", "text"), ("summary", "json"),
)  # fmt: skip
ACTION_COLUMNS: tuple[listing.Column, ...] = (
    ("id", "plain"), ("incident_id", "plain"), ("strategy", "text"), ("action", "text"),
    ("executor", "text"), ("target", "text"), ("params", "json"), ("status", "plain"),
    ("reason", "text"), ("dry_run", "plain"), ("created_at", "plain"),
    ("updated_at", "plain"), ("started_at", "plain"), ("finished_at", "plain"),
    ("claimed_by", "text"), ("output", "text"), ("step", "plain"), ("run_id", "plain"),
    ("not_before", "plain"), ("waiting", "plain"), ("fleet", "text"),
)  # fmt: skip
#: a runbook run's columns as the incident detail shows them; the text ones are cut at
#: limits.max_field_bytes (a reason or an escalation note may quote an executor's error)
RUN_TIMES = ("started_at", "ended_at", "repeat_at")
RUN_TEXTS = ("strategy", "reason", "escalation_reason", "escalation_note")


def _names(columns: tuple[listing.Column, ...]) -> str:
    return ", ".join(name for name, _ in columns)


def _whole(row: tuple[Any, ...], columns: tuple[listing.Column, ...]) -> dict[str, Any]:
    """A row read whole (no bounds): JSON columns decoded, nothing truncated."""
    values = {
        name: json.loads(value) if kind == "json" else value
        for (name, kind), value in zip(columns, row, strict=True)
    }
    values["truncated"] = False
    return values


class SqlStore(ABC):
    """Shared behaviour; subclasses supply connections and the driver's error classes."""

    url: str
    placeholder = "?"
    driver_errors: tuple[type[BaseException], ...] = ()
    _services: set[str]  # whose incident series are seeded (so the hot path skips a query)
    writes: GroupCommit  # behind write(); its counters show how well writes group
    label_values: LabelValues  # which metric label values keep their own series

    #: builds a write transaction's keyed locks from its `execute` (None: one writer at
    #: a time, nothing to lock; see locks.py)
    keyed_locks: Callable[[Callable[..., Any]], locks.KeyedLocks] | None = None
    #: the driver's cursor tells an inserted row's id (lastrowid) and whether a row was
    #: inserted (rowcount): see SqlTransaction.insert_id
    lastrowid = False
    #: action_events is keyed (action_id, id), its ids numbered per action (SQLite,
    #: revision 0010), rather than numbered by the table's sequence
    events_keyed = False

    def _init_writes(self) -> None:
        self._services = set()
        self.label_values = LabelValues()
        self.writes = GroupCommit(self.transaction)

    def apply_limits(self, limits: Limits) -> None:
        """Take the config's bounds that the journal enforces (on start and reload)."""
        self.label_values.bound = limits.max_label_values

    def write(self, work: Callable[[SqlTransaction], T]) -> T:
        """Run work in a write transaction shared with the other threads writing at the
        same moment (see group.py); return its result once it is committed."""
        return self.writes.run(work)

    # subclass hooks -------------------------------------------------------
    @abstractmethod
    def _connection(self) -> Any:
        """This thread's open connection."""

    def _begin(self, connection: Any, write: bool) -> None:
        connection.execute("BEGIN")

    # interface ------------------------------------------------------------
    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[SqlTransaction]:
        """One atomic unit: everything inside commits together or not at all."""
        try:
            connection = self._connection()
            self._begin(connection, write)
        except self.driver_errors as exc:
            raise self._unavailable(exc) from exc
        try:
            tx = SqlTransaction(
                connection.cursor(),
                self.placeholder,
                self._services,
                self.label_values,
                self.keyed_locks if write else None,
                self.lastrowid,
                self.events_keyed,
            )
            yield tx
            tx.flush_totals()
            connection.commit()
            if tx.new_services:
                self._services |= tx.new_services
            if tx.labels.admitted or tx.labels.full:  # most transactions learn nothing
                self.label_values.commit(tx.labels.admitted, tx.labels.full)
        except self.driver_errors as exc:
            self._rollback(connection)
            raise self._unavailable(exc) from exc
        except BaseException:
            self._rollback(connection)
            raise

    def _unavailable(self, error: BaseException) -> StoreUnavailable:
        """The StoreUnavailable a driver error becomes (`retryable` per _retryable)."""
        unavailable = StoreUnavailable(str(error))
        unavailable.retryable = self._retryable(error)
        return unavailable

    def _retryable(self, error: BaseException) -> bool:
        """Whether a driver error aborted the transaction only to let a concurrent one
        through (a deadlock victim); a store with one writer at a time has none."""
        return False

    def _rollback(self, connection: Any) -> None:
        try:
            connection.rollback()
        except self.driver_errors:
            self._discard_connection()

    @abstractmethod
    def _discard_connection(self) -> None:
        """Drop a connection that may be broken; the next call opens a fresh one."""

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.transaction(write=False) as tx:
            return tx.execute(sql, params).fetchall()

    #: run first in a read transaction whose statements must share one snapshot (SQLite:
    #: a transaction is one already)
    snapshot_statement: str | None = None
    #: one row, true when the journal has an alembic_version table (driver's catalog)
    version_table_sql: str

    def schema_revision(self) -> str | None:
        """The journal's schema revision (alembic_version), None when it has none: one
        plain query on this store's connection, no SQLAlchemy (see schema.py)."""
        with self.transaction(write=False) as tx:
            return schema.single_revision(schema.version_rows(tx.execute, self.version_table_sql))

    def create_schema(self) -> None:
        """Bring the journal to this release's schema, schema.HEAD (Alembic owns it: see
        store/migrations/); a journal at HEAD costs one query. Raises JournalTooNew
        for a journal a newer release upgraded, SchemaError when the upgrade fails,
        StoreUnavailable when the store does not answer."""
        schema.ensure_head(self.url, self.schema_revision())

    def ping(self) -> None:
        self._read("SELECT 1")

    #: the size in bytes of a text column, in this driver's SQL
    byte_length = "length(CAST({} AS BLOB))"

    def list_incidents(
        self,
        *,
        status: str | None = None,
        service: str | None = None,
        alertname: str | None = None,
        limit: int = 100,
        offset: int = 0,
        bounds: listing.PageBounds | None = None,
    ) -> Page:
        """Incidents, newest first. With `bounds` (the read API), the page is bounded in
        bytes too and long fields are cut (see listing.py); without, rows are whole."""
        where, params = _filters(status=status, service=service, alertname=alertname)
        order = "ORDER BY starts_at_ts DESC, id DESC"
        total = self._read(f"SELECT COUNT(*) FROM incidents{where}", params)[0][0]
        if bounds is None:
            rows = self._read(
                f"SELECT {_names(INCIDENT_COLUMNS)} FROM incidents{where} {order} LIMIT ? OFFSET ?",
                (*params, limit, offset),
            )
            items = [_incident_dict(_whole(row, INCIDENT_COLUMNS)) for row in rows]
            return Page(items, total, limit, offset)
        with self.transaction(write=False) as tx:
            ids = tx.execute(
                f"SELECT id FROM incidents{where} {order} LIMIT ? OFFSET ?",
                (*params, min(limit, bounds.rows), offset),
            ).fetchall()
            fill = listing.PageFill(bounds)
            for (incident_id,) in ids:
                found = self._bounded_row(tx, "incidents", incident_id, INCIDENT_COLUMNS, bounds)
                if found is not None and not fill.add(_incident_dict(found)):
                    break
        return Page(fill.items, total, limit, offset)

    def list_notifications(
        self,
        *,
        group_key: str | None = None,
        limit: int = 100,
        offset: int = 0,
        bounds: listing.PageBounds,
    ) -> Page:
        """Webhook notifications as journaled, newest first, bounded as list_incidents:
        each with `alerts` journaled, `truncated_alerts` (those Alertmanager left out)
        and its ingest `summary` (counts, `refused` among them)."""
        where, params = _filters(group_key=group_key)
        total = self._read(f"SELECT COUNT(*) FROM notifications{where}", params)[0][0]
        with self.transaction(write=False) as tx:
            ids = tx.execute(
                f"SELECT id FROM notifications{where} ORDER BY id DESC LIMIT ? OFFSET ?",
                (*params, min(limit, bounds.rows), offset),
            ).fetchall()
            fill = listing.PageFill(bounds)
            for (row_id,) in ids:
                found = self._bounded_row(tx, "notifications", row_id, NOTIFICATION_COLUMNS, bounds)
                if found is None:
                    continue
                found["received_at"] = iso(found["received_at"])
                if not fill.add(found):
                    break
        return Page(fill.items, total, limit, offset)

    def _bounded_row(
        self,
        tx: SqlTransaction,
        table: str,
        row_id: int,
        columns: tuple[listing.Column, ...],
        bounds: listing.PageBounds,
    ) -> dict[str, Any] | None:
        found = listing.read_row(tx.execute, table, row_id, columns, bounds, self.byte_length)
        if found is None:
            return None
        values, omitted = found
        values["omitted"] = omitted
        return values

    def list_actions(
        self,
        *,
        status: str | None = None,
        strategy: str | None = None,
        incident_id: int | None = None,
        limit: int = 100,
        offset: int = 0,
        bounds: listing.PageBounds | None = None,
    ) -> Page:
        """Actions with their events, newest first; `bounds` as in list_incidents (the
        events of one action then count as one field: the latest that fit are shown)."""
        where, params = _filters(status=status, strategy=strategy, incident_id=incident_id)
        total = self._read(f"SELECT COUNT(*) FROM actions{where}", params)[0][0]
        if bounds is None:
            rows = self._read(
                f"SELECT {_names(ACTION_COLUMNS)} FROM actions{where} ORDER BY id DESC "
                "LIMIT ? OFFSET ?",
                (*params, limit, offset),
            )
            actions = [_action_dict(_whole(row, ACTION_COLUMNS)) for row in rows]
            self._attach_events(actions)
            return Page(actions, total, limit, offset)
        with self.transaction(write=False) as tx:
            ids = tx.execute(
                f"SELECT id FROM actions{where} ORDER BY id DESC LIMIT ? OFFSET ?",
                (*params, min(limit, bounds.rows), offset),
            ).fetchall()
            fill = listing.PageFill(bounds)
            for (action_id,) in ids:
                found = self._bounded_row(tx, "actions", action_id, ACTION_COLUMNS, bounds)
                if found is None:
                    continue
                action = _action_dict(found)
                self._bounded_events(tx, action, bounds)
                if not fill.add(action):
                    break
        return Page(fill.items, total, limit, offset)

    def incident_detail(
        self, incident_id: int, bounds: listing.PageBounds, offset: int = 0
    ) -> dict[str, Any] | None:
        """One incident with its runbook trail, or None when there is no such incident.

        The incident as a row of list_incidents, plus `runs` (runs.for_incident, times as
        ISO text, text fields cut at bounds.field_bytes) and `actions`: the incident's
        actions oldest first (by id) from `offset`, each as a row of list_actions with
        its events oldest first (the latest that fit in one field). The whole answer is
        bounded as a page: actions stop at bounds.rows or before the one that would take
        the JSON past bounds.page_bytes (at least one is shown when any is left), and
        `actions_total` / `actions_next_offset` (null when none is left) say how to read
        on. One read transaction: the parts are consistent with each other."""
        with self.transaction(write=False) as tx:
            found = self._bounded_row(tx, "incidents", incident_id, INCIDENT_COLUMNS, bounds)
            if found is None:
                return None
            detail = _incident_dict(found)
            detail["runs"] = [_run_dict(run, bounds) for run in runs.for_incident(tx, incident_id)]
            total = tx.execute(
                "SELECT COUNT(*) FROM actions WHERE incident_id = ?", (incident_id,)
            ).fetchone()[0]
            ids = tx.execute(
                "SELECT id FROM actions WHERE incident_id = ? ORDER BY id LIMIT ? OFFSET ?",
                (incident_id, bounds.rows, offset),
            ).fetchall()
            # the incident and its runs take their share of the page before any action;
            # the first action is shown whatever its size, so paging always progresses
            used = listing.ENVELOPE_BYTES + len(json.dumps(detail, separators=(",", ":")))
            shown: list[dict[str, Any]] = []
            for (action_id,) in ids:
                row = self._bounded_row(tx, "actions", action_id, ACTION_COLUMNS, bounds)
                if row is None:
                    continue
                action = _action_dict(row)
                self._bounded_events(tx, action, bounds)
                size = len(json.dumps(action, separators=(",", ":"))) + 1
                if shown and used + size > bounds.page_bytes:
                    break
                shown.append(action)
                used += size
        detail["actions"] = shown
        detail["actions_total"] = total
        next_offset = offset + len(shown)
        detail["actions_next_offset"] = next_offset if next_offset < total else None
        return detail

    def action_detail(self, action_id: int, bounds: listing.PageBounds) -> dict[str, Any] | None:
        """One action as a row of list_actions (events bounded alike) plus its `approval`
        (store/approvals.py as_dict; null when it never awaited one); None when unknown."""
        with self.transaction(write=False) as tx:
            row = self._bounded_row(tx, "actions", action_id, ACTION_COLUMNS, bounds)
            if row is None:
                return None
            action = _action_dict(row)
            self._bounded_events(tx, action, bounds)
            action["approval"] = approvals.as_dict(approvals.load(tx, action_id))
        return action

    def _attach_events(self, actions: list[dict[str, Any]]) -> None:
        if not actions:
            return
        by_id = {action["id"]: action for action in actions}
        marks = ", ".join("?" for _ in by_id)
        rows = self._read(
            f"SELECT action_id, at, status, reason FROM action_events "
            f"WHERE action_id IN ({marks}) ORDER BY action_id, id",
            tuple(by_id),
        )
        for action_id, at, status, reason in rows:
            by_id[action_id]["events"].append({"at": iso(at), "status": status, "reason": reason})

    def _bounded_events(
        self, tx: SqlTransaction, action: dict[str, Any], bounds: listing.PageBounds
    ) -> None:
        """The latest events of an action that fit in one field's bytes (at least one)."""
        count = tx.execute(
            "SELECT COUNT(*) FROM action_events WHERE action_id = ?", (action["id"],)
        ).fetchone()[0]
        # an event takes more than 48 bytes of JSON: no more than this many can fit
        rows = tx.execute(
            f"SELECT at, status, substr(reason, 1, {int(bounds.field_bytes)}), "
            f"{self.byte_length.format('reason')} FROM action_events WHERE action_id = ? "
            "ORDER BY id DESC LIMIT ?",
            (action["id"], bounds.field_bytes // 48 + 1),
        ).fetchall()
        used = 0
        for at, status, reason, size in rows:
            shown, cut = listing.cut_prefix(reason, size, bounds.field_bytes)
            event = {"at": iso(at), "status": status, "reason": shown}
            used += len(json.dumps(event, separators=(",", ":")))
            if action["events"] and used > bounds.field_bytes:
                break
            action["events"].insert(0, event)
            action["truncated"] = action["truncated"] or bool(cut)
        left_out = count - len(action["events"])
        if left_out:
            action["truncated"] = True
            action.setdefault("omitted", {})["events"] = {"entries": left_out}

    def metric_totals(self) -> dict[str, list[tuple[dict[str, Any], float]]]:
        """Running totals by metric: (labels, value), each the sum of its row in
        metric_totals and its shard rows (locks.SHARDS at most) in metric_total_shards."""
        return totals.read_totals(self._read(totals.READ_SQL))

    def service_facts(
        self, since: float, now: float, admitted: dict[str, set[str]]
    ) -> dict[str, Any]:
        """What MTTR, availability and health need per service over [since, now]
        (seconds), services not in `admitted` (label -> values) folded into `other`:
        `windows` (service -> reliability.WindowFacts), `firing_latest` and `services`
        (see reliability.per_service). Bounded by services and by what is open, never by
        the incidents in the window (store/servicewindows.py)."""

        def fold(service: str) -> str:
            return labels.fold_label_set({"service": service}, admitted)["service"]

        with self.transaction(write=False) as tx:
            if self.snapshot_statement:  # one snapshot: a closing is seen by all or none
                tx.execute(self.snapshot_statement)
            windows = servicewindows.read(tx.execute, since, now, fold)
            latest = tx.execute(
                "SELECT i.service, a.status, a.reason, a.step, r.status FROM incidents i "
                "LEFT JOIN actions a ON a.id = "
                "(SELECT MAX(id) FROM actions WHERE incident_id = i.id) "
                "LEFT JOIN runbook_runs r ON r.id = a.run_id "
                "WHERE i.status = 'firing'"
            ).fetchall()
            services = servicewindows.services_with_incidents(tx.execute, self.label_values.bound)
        return {
            "windows": windows,
            "firing_latest": [(fold(service), *rest) for service, *rest in latest],
            "services": sorted({fold(service) for service in services}),
        }

    def seed_metrics(
        self,
        strategies: list[tuple[str, str]],
        runbooks: list[tuple[str, int]] = (),
        analysed: list[str] = (),
    ) -> None:
        """Zero series for each configured (strategy, action), (strategy, its number of
        steps) and strategy whose fleet is analysed; see totals.touch_histogram."""
        with self.transaction() as tx:
            for strategy, action in strategies:
                totals.seed_strategy(tx, strategy, action)
            for strategy, steps in runbooks:
                totals.seed_runbook(tx, strategy, steps)
            for strategy in analysed:
                totals.seed_canary(tx, strategy)
            totals.seed_escalations(tx)
            for label in sorted(labels.BOUNDED_LABELS):
                totals.add(tx, labels.FOLDED_METRIC, {"label": label}, 0.0)
            totals.seed_intake(tx)
            totals.seed_reconciliation(tx)

    def admitted_label_values(self) -> dict[str, set[str]]:
        """label -> the values that keep their own series under the current bound."""
        return labels.admitted_values(
            self._read(
                "SELECT label, value FROM metric_label_values WHERE seq < ?",
                (self.label_values.bound,),
            )
        )

    # reconciliation (receiver/reconcile.py decides; receiver/reconciler.py runs it) ----
    def firing_for_reconciliation(self) -> list[tuple[int, str, float, str, float]]:
        """Firing incidents as (id, fingerprint, starts_at_ts, external_url or "",
        last_seen): what reconcile.FiringIncident holds (seconds since the epoch). The
        oldest first, at most 100,000 (as firing_labels): a run's memory stays bounded,
        and what it leaves waits for the next."""
        rows = self._read(
            "SELECT id, fingerprint, starts_at_ts, external_url, last_seen FROM incidents "
            "WHERE status = 'firing' ORDER BY starts_at_ts LIMIT 100000"
        )
        return [(i, fp, start, url or "", seen) for i, fp, start, url, seen in rows]

    def close_reconciled(
        self, closures: Sequence[tuple[int, str, float]], now: float, cancel_reason: str
    ) -> list[int]:
        """Close each (incident id, reason, last_seen as decided) at `now`, with its
        planned actions cancelled, counting the run ok, in one transaction. An incident
        that a notification refreshed or closed since the decision is left alone.
        Returns the ids closed."""
        closed: list[int] = []
        ends_at = iso(now) or ""
        with self.transaction() as tx:
            for incident_id, reason, last_seen in closures:
                row = tx.execute(
                    "SELECT status, last_seen FROM incidents WHERE id = ?" + tx.locks.for_update,
                    (incident_id,),
                ).fetchone()
                if row is None or row[0] != "firing" or row[1] > last_seen:
                    continue
                tx.resolve_incident(incident_id, ends_at, now, now, reason)
                tx.cancel_planned_actions(incident_id, cancel_reason, now)
                closed.append(incident_id)
            totals.count_reconciliation(tx, "ok", len(closed))
        return closed

    def count_failed_reconciliation(self) -> None:
        with self.transaction() as tx:
            totals.count_reconciliation(tx, "failed", 0)

    def open_incident_count(self) -> int:
        return self._read("SELECT COUNT(*) FROM incidents WHERE status = 'firing'")[0][0]

    def counts(self) -> dict[str, int]:
        """Row counts per table; tests use them to prove a rejected request wrote nothing."""
        tables = ("notifications", "incidents", "actions", "action_events", "spooled_notifications")
        return {table: self._read(f"SELECT COUNT(*) FROM {table}")[0][0] for table in tables}


def _filters(**values: Any) -> tuple[str, tuple[Any, ...]]:
    used = {column: value for column, value in values.items() if value is not None}
    if not used:
        return "", ()
    return " WHERE " + " AND ".join(f"{column} = ?" for column in used), tuple(used.values())


def _incident_dict(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "fingerprint": row["fingerprint"],
        "alertname": row["alertname"],
        "service": row["service"],
        "status": row["status"],
        "starts_at": row["starts_at"],
        "ends_at": row["ends_at"],
        "duration_seconds": row["duration_seconds"],
        "close_reason": row["close_reason"],
        "labels": row["labels"],
        "annotations": row["annotations"],
        "generator_url": row["generator_url"],
        "matched": bool(row["matched"]),
        "first_seen": iso(row["first_seen"]),
        "last_seen": iso(row["last_seen"]),
        "truncated": row["truncated"],
        **_omitted(row),
    }


def _action_dict(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "incident_id": row["incident_id"],
        "strategy": row["strategy"],
        "action": row["action"],
        "executor": row["executor"],
        "target": row["target"],
        "params": row["params"],
        "status": row["status"],
        "reason": row["reason"],
        "dry_run": bool(row["dry_run"]),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "started_at": iso(row["started_at"]),
        "finished_at": iso(row["finished_at"]),
        "claimed_by": row["claimed_by"],
        "output": row["output"],
        # the runbook step (1-based; 0: the strategy's undo) and run it carries out; while
        # planned, why it waits (wait, locked, cooldown, concurrency, fleet; null: queued)
        # and when it is eligible; the fleet its target belongs to
        "step": 1 if row["step"] is None else row["step"],
        "fleet": row["fleet"],
        "run_id": row["run_id"],
        "waiting": row["waiting"] if row["status"] == "planned" else None,
        "not_before": iso(row["not_before"]),
        "events": [],
        "truncated": row["truncated"],
        **_omitted(row),
    }


def _run_dict(run: dict[str, Any], bounds: listing.PageBounds) -> dict[str, Any]:
    """A runbook run as the incident detail shows it: times as ISO text, text cut."""
    shown = dict(run)
    truncated = False
    for name in RUN_TIMES:
        shown[name] = iso(run[name])
    for name in RUN_TEXTS:
        if run[name] is not None:
            shown[name], cut = listing.cut_text(run[name], bounds.field_bytes)
            truncated = truncated or bool(cut)
    shown["truncated"] = truncated
    return shown


def _omitted(row: dict[str, Any]) -> dict[str, Any]:
    """`omitted` (what a bounded listing left out of a row) only when there is any."""
    return {"omitted": row["omitted"]} if row.get("omitted") else {}
