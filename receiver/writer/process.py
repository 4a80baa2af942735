"""The journal writer process: journals webhook notifications, in batches, and forks
the dispatch process (writer/dispatch.py), which carries out the actions they plan.

Why a process of its own: gunicorn's worker is one Python process, and everything it
does shares one interpreter lock. Decoding a notification and journaling it costs
more than the HTTP handling around it, so in the worker it halved throughput against
a parse-only baseline (bench/ingest.py). Here it runs on another core, and the worker
only authenticates, bounds the body and passes the bytes on.

One thread, so no lock is ever contended: each turn of the loop reads every request
that has arrived on every connection, decodes them, journals all the valid ones in ONE
transaction (store/group.py's commit_together: if one fails, each is retried alone),
and only then answers each. A 200 still means committed; each notification is still
journaled whole (every alert of it that was not refused alone) or not at all.

Except a large one (more than `limits.notification_chunk_alerts` alerts): journaling
46,000 alerts in one transaction held the loop for seconds, and every sender with it.
Its alerts are judged a few chunks' worth per turn of the loop (all of them before any
is journaled: a bad one is refused alone and left out of the chunks, and when every one
is refused it is a 400 that wrote nothing); then its raw body is spooled
(store/spool.py) in that turn's transaction; then it is journaled one chunk of that many
alerts per turn, each chunk in its turn's transaction with the spool row's advance, so
the notifications arriving meanwhile are decoded and journaled between its steps:

    parse (turns) -> spool the body -> chunk, chunk, ... -> last chunk: notification row,
                         |                  |                spool row deleted -> 200
                    fails: 503,        fails: 200 with `queued_alerts` (intake.queued);
                    nothing written    the rest stays spooled

It is answered when its last chunk commits, and its worker thread is sent a PROGRESS
reply every turn until then (protocol.py), so that its wait never times out while work
advances. 503 only when nothing was written: once spooled, every alert of it is in the
journal, so a chunk that fails is answered 200 saying how many alerts are queued, and
this writer journals the rest from the spool by itself: it looks at the spool when it
starts (a writer killed mid-way left the rest there), every SPOOL_POLL_S while no large
notification is in hand, and after a failed chunk with a backoff (SPOOL_RETRY_S doubled
per failure, up to SPOOL_RETRY_MAX_S). It resumes under the config it runs then, from
the row's `next_alert`; a chunk run again is idempotent (engine.journal_work). Writers
sharing a journal claim a row before resuming it (spool.py says how).

Any body: an error no validation foresaw becomes the answer of its own request (500,
logged with its traceback), never the end of this process.

The dispatcher runs in a child of this process (writer/dispatch.py), forked before any
thread starts: ingest and dispatch then run on two cores, not on one interpreter lock.
A batch that plans actions wakes it over a socketpair; its write transactions and this
process's queue on one lock file (store/sqlite.py) instead of meeting in SQLite's busy
handler, which sleeps and polls. If it dies, this process leaves (exit status 3) and the
worker starts a new writer with a new child. The reconciler runs here. The worker only
reads the journal (API, /metrics), and resets breakers.

It lives as long as the worker that started it: it leaves when the worker says so
(a STOP frame, once the worker has finished its requests), or within a second of the
worker's death. SIGTERM and SIGINT (which a service manager or a terminal may send to
the whole process group at once) only make it leave once no worker thread is
connected, so the worker's graceful shutdown can still journal the requests it is
finishing.

    python -m receiver.writer.process --socket PATH --config FILE [--config-text FILE]
                                      [--parent PID] [--store URL] [--log-format text|json]
                                      [--listen HOST:PORT] [--web.external-url URL]

or, in a child the worker forked (writer/client.py: the first writer, sharing the
worker's pages), `run(WriterOptions(...))`, which is what main() calls too.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from receiver import logs
from receiver.alerts import Alert, Notification, ParsedAlerts, Refusal
from receiver.config import Config, ConfigError, load_config, parse_config, with_overrides
from receiver.engine import IngestSummary, journal_work
from receiver.executors import require_usable_executors
from receiver.intake import (
    Answer,
    Rejected,
    accepted,
    complete,
    decode_alerts,
    decode_envelope,
    error_body,
    failed,
    indexed_labels,
    queued,
    unexpected,
)
from receiver.reconciler import Reconciler
from receiver.store import Store, StoreUnavailable, open_store, spool
from receiver.store.group import Pending, commit_together
from receiver.writer.dispatch import DispatchChild, fork_dispatcher
from receiver.writer.protocol import (
    NOTIFY,
    RELOAD,
    STOP,
    ProtocolError,
    Request,
    RequestReader,
    pack_progress,
    pack_reply,
)

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often the loop looks up from select: stop requests, parent alive
SEND_TIMEOUT_S = 10.0  # a worker thread that stops reading its replies is dropped
# A large notification's alerts parsed per turn, in chunks: parsing an alert costs about
# a tenth of journaling it, so a turn's step stays near a chunk's worth of work.
PARSE_CHUNKS = 8
SPOOL_POLL_S = 2.0  # how often an idle writer looks for spool rows to resume
SPOOL_RETRY_S = 2.0  # the first wait after a failed chunk; doubled per failure ...
SPOOL_RETRY_MAX_S = 30.0  # ... up to this


Reply = tuple[socket.socket, Answer]


@dataclasses.dataclass
class LargeNotification:
    """A notification of more than `chunk` alerts, advanced one step per turn of the
    loop: first its alerts are judged, PARSE_CHUNKS chunks' worth per step (nothing is
    journaled before all are, a bad one is refused alone, and when all are refused it
    is a 400 that wrote nothing);
    then its raw `body` is spooled (store/spool.py), in that turn's transaction; then
    it is journaled one chunk per step, each chunk in its turn's transaction with the
    spool row's advance.

    `items` are the alerts as decoded JSON, `judged` of them judged so far (`parsed`
    accepted, `refused` not: left out of the chunks, listed in the answer); `done`
    accepted alerts are committed so far and `summary` sums their chunks; `total` is the
    number of alerts until all are judged, then the number accepted. The config is the
    one it arrived under (or the one the writer ran when it resumed it from the spool),
    for all of it. `sock` is the worker thread waiting for the answer: None when
    resumed from the spool, or once the worker thread is gone (the rest is journaled
    all the same). After a step that ends it,
    `retry` says that the spool still holds the rest, for the writer to resume later."""

    sock: socket.socket | None
    envelope: Notification  # everything but the alerts, validated
    items: list[Any]
    received_at: float
    config: Config
    chunk: int
    owner: str  # this writer's name in the spool's claims
    body: bytes = b""  # as received, to spool; not needed once spooled
    spool_id: int | None = None  # once spooled (or resumed from the spool)
    done: int = 0
    summary: IngestSummary = dataclasses.field(default_factory=IngestSummary)
    parsed: list[Alert] = dataclasses.field(default_factory=list)
    refused: list[Refusal] = dataclasses.field(default_factory=list)
    judged: int = 0
    notification: Notification | None = None  # once every alert is parsed
    retry: bool = False
    total: int = dataclasses.field(init=False)  # alerts in all

    def __post_init__(self) -> None:
        self.total = len(self.items)

    def step(self) -> Answer | Pending[Any] | None:
        """This turn's step: the work to run in its transaction (spooling the body, or
        journaling the next chunk), then `committed`; or, while parsing, None, or the 400
        refusing the notification (the answer; nothing of it was journaled)."""
        if self.notification is None:
            return self._parse_some()
        if self.spool_id is None:
            return Pending(self._spool)
        part = slice(self.done, min(self.done + self.chunk, self.total))
        work = journal_work(self.config, self.notification, self.received_at, part, self.summary)
        return Pending(self._chunk(work, part))

    def _parse_some(self) -> Answer | None:
        start = self.judged
        stop = min(start + self.chunk * PARSE_CHUNKS, len(self.items))
        parsed = decode_alerts(self.items, start, stop, indexed_labels(self.config))
        self.parsed += parsed.alerts
        self.refused += parsed.refused
        self.judged = stop
        if stop < len(self.items):
            return None
        try:
            judged = ParsedAlerts(tuple(self.parsed), tuple(self.refused))
            self.notification = complete(self.envelope, judged)
        except Rejected as rejected:  # every alert refused: nothing to journal
            return rejected.answer()
        self.total = len(self.notification.alerts)  # the chunks cut the accepted ones
        self.parsed, self.refused, self.items = [], [], []  # held once, in the notification
        return None

    def _spool(self, tx: Any) -> int:
        return spool.insert(tx, self.received_at, self.body, self.total, self.owner, time.time())

    def _chunk(
        self, work: Callable[[Any], IngestSummary], part: slice
    ) -> Callable[[Any], IngestSummary]:
        assert self.spool_id is not None
        spool_id = self.spool_id

        def journal(tx: Any) -> IngestSummary:
            summary = work(tx)
            so_far = self.summary.plus(summary).as_dict()
            spool.advance(tx, spool_id, self.owner, part.start, part.stop, self.total, so_far,
                          time.time())  # fmt: skip
            return summary

        return journal

    def committed(self, entry: Pending[Any]) -> Answer | None:
        """Take a step's outcome; the answer once there is one (journaled whole; the
        spool write failed, so nothing was written; or a chunk failed, so the rest is
        queued in the spool), None while steps remain."""
        if self.spool_id is None:  # the spool step
            if entry.error is not None:
                return failed(entry.error)
            self.spool_id, self.body = entry.result, b""
            return None
        if entry.error is not None:
            return self.stopped(entry.error)
        assert entry.result is not None
        self.summary = self.summary.plus(entry.result)
        self.done += entry.result.alerts
        if self.done < self.total:
            return None
        return accepted(self.summary, self.notification)

    def fallback(self) -> bytes:
        """The body of the answer already true if journaling stopped now: once spooled,
        accepted with the rest queued (see protocol.py, PROGRESS); before, none."""
        if self.spool_id is None:
            return b""
        return queued(self.summary, self.total - self.done, self.notification).body

    def stopped(self, exc: BaseException) -> Answer:
        """The answer when `exc` ends its journaling here: what failed() says if nothing
        of it is spooled (so nothing is written); else accepted with the rest queued in
        the spool, which this writer resumes later (unless another writer took it)."""
        if self.spool_id is None:
            return failed(exc)
        self.retry = not isinstance(exc, spool.ClaimLost)
        if not isinstance(exc, (StoreUnavailable, spool.ClaimLost)):
            log.error("internal error journaling a spooled notification", exc_info=exc)
        log.log(
            logging.ERROR if isinstance(exc, StoreUnavailable) else logging.WARNING,
            "spooled notification %d stopped after %d of its %d alerts (%s); the rest stays "
            "queued in the spool, %s",
            self.spool_id,
            self.done,
            self.total,
            exc,
            "to be resumed shortly" if self.retry else "held by another journal writer",
        )
        return queued(self.summary, self.total - self.done, self.notification)


class JournalWriter:
    def __init__(
        self, config_path: str, overrides: dict[str, str], config: Config, store: Store
    ) -> None:
        self.config_path = config_path
        self.overrides = overrides
        self.config = config
        self.store = store
        store.apply_limits(config.limits)  # the bounds the journal enforces as it writes
        self.dispatcher: DispatchChild | None = None  # woken when a batch plans actions
        self.child_lost = False  # the dispatch process died: leave, to be restarted
        self.stopping = False  # a signal: leave once no worker thread is connected
        self.stop_now = False  # the worker's STOP: leave after this batch
        self._selector = selectors.DefaultSelector()
        self._readers: dict[socket.socket, RequestReader] = {}
        self._large: list[LargeNotification] = []  # oldest first; the first one advances
        self.owner = spool.writer_id()  # this writer's name in the spool's claims
        self._spool_check_at = 0.0  # time.monotonic() of the next look at the spool
        self._spool_backoff = SPOOL_RETRY_S
        self._spool_unreadable = False  # the last look failed: do not log it again

    # ------------------------------------------------------------ loop

    def serve(self, path: str, parent: int | None = None) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(256)
        listener.setblocking(False)
        self._selector.register(listener, selectors.EVENT_READ)
        if self.dispatcher is not None:  # its EOF, at once: it died
            self._selector.register(self.dispatcher.sock, selectors.EVENT_READ)
        log.info("journal writer ready on %s (journal %s)", path, self.config.store)
        try:
            while (
                not self.stop_now
                and not self.child_lost
                and not (self.stopping and not self._readers)
            ):
                if parent is not None and os.getppid() != parent:
                    log.info("the worker that started this journal writer is gone; leaving")
                    break
                if not self._large and time.monotonic() >= self._spool_check_at:
                    self.resume_spooled()  # at start, then every SPOOL_POLL_S or backoff
                wait = 0 if self._large else POLL_S  # a chunk to journal: only look up
                batch = self._read(self._selector.select(wait), listener)
                if batch or self._large:
                    self._answer(batch)
        finally:
            for connection in list(self._readers):
                self._drop(connection)
            self._selector.close()
            listener.close()
            if os.path.exists(path):
                os.unlink(path)

    def _read(
        self, events: list[Any], listener: socket.socket
    ) -> list[tuple[socket.socket, Request]]:
        batch = []
        for key, _ in events:
            sock = key.fileobj
            if sock is listener:
                self._accept(listener)
                continue
            if self.dispatcher is not None and sock is self.dispatcher.sock:
                self._hear_dispatcher(self.dispatcher)
                continue
            try:
                data = sock.recv(1 << 20)
                requests = self._readers[sock].feed(data) if data else None
            except (OSError, ProtocolError) as exc:
                log.warning("dropping a worker connection: %s", exc)
                requests = None
            if requests is None:  # closed by the worker thread, or garbage
                self._drop(sock)
                continue
            batch.extend((sock, request) for request in requests)
        return batch

    def _hear_dispatcher(self, child: DispatchChild) -> None:
        if child.readable():
            return
        self._selector.unregister(child.sock)
        status = child.reap()
        log.error(
            "the dispatch process (pid %d) died (wait status %s); the journal writer "
            "leaves after this batch, to be restarted with a new one",
            child.pid,
            status,
        )
        self.child_lost = True

    def _accept(self, listener: socket.socket) -> None:
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            return
        connection.settimeout(SEND_TIMEOUT_S)  # recv only runs when select says readable
        self._readers[connection] = RequestReader()
        self._selector.register(connection, selectors.EVENT_READ)

    def _drop(self, connection: socket.socket) -> None:
        self._readers.pop(connection, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(connection)
        connection.close()
        for large in [large for large in self._large if large.sock is connection]:
            if large.spool_id is not None:  # the rest is journaled from the spool anyway
                large.sock = None
                continue
            # Its sender was answered already (503, by the worker) or is gone.
            log.warning(
                "abandoning a large notification after %d of %d alerts: its worker "
                "connection closed",
                large.done,
                large.total,
            )
            self._large.remove(large)

    def _answer(self, batch: list[tuple[socket.socket, Request]]) -> None:
        notifications = [(sock, r) for sock, r in batch if r.kind == NOTIFY]
        try:
            replies = self.journal(notifications)
        except Exception as exc:  # a bug in this turn's bookkeeping: not the writer's end
            replies = [(sock, unexpected(exc)) for sock, _ in notifications]
            if self._large:  # it may be the cause: never let it fail every turn
                large = self._large.pop(0)
                stopped = large.stopped(exc)
                self._ended(large, stopped)
                if large.sock is not None:
                    replies.append((large.sock, stopped))
        planned = sum(answer.actions_planned for _, answer in replies)
        if self.dispatcher is not None and planned:
            self.dispatcher.wake(planned)
        replies += [(sock, self._control(r)) for sock, r in batch if r.kind != NOTIFY]
        for sock, answer in replies:
            self._send(sock, pack_reply(answer))
        for large in list(self._large):
            if large.sock is not None:
                self._send(large.sock, pack_progress(large.fallback()))

    def _send(self, sock: socket.socket, frame: bytes) -> None:
        try:
            sock.sendall(frame)
        except OSError as exc:  # the worker thread gave up (timeout) or died
            log.warning("could not answer a worker thread: %s", exc)
            self._drop(sock)

    # ------------------------------------------------------------ work

    def journal(self, requests: list[tuple[socket.socket, Request]]) -> list[Reply]:
        """Decode each body; journal the valid ones, and take the next step of the
        oldest large notification (its chunk in the same transaction); return the
        answers there are: one per request, except large notifications (answered after
        their last chunk, or when one of their alerts is refused)."""
        slots: list[tuple[socket.socket, Answer | Pending[Any], Notification | None]] = []
        for sock, request in requests:
            work = self._work_for(sock, request)
            if isinstance(work, tuple):
                slots.append((sock, *work))
            elif work is not None:
                slots.append((sock, work, None))
        large = self._large[0] if self._large else None
        step = large.step() if large is not None else None
        chunk = step if isinstance(step, Pending) else None
        pending = [slot for _, slot, _ in slots if isinstance(slot, Pending)]
        if chunk is not None:
            pending.append(chunk)
        if pending:
            commit_together(self.store.transaction, pending)
        replies = [(sock, _answer_for(slot, note)) for sock, slot, note in slots]
        finished = step if isinstance(step, Answer) else None  # refused while parsing
        if large is not None and chunk is not None:
            planned = chunk.result.actions_planned if isinstance(chunk.result, IngestSummary) else 0
            if self.dispatcher is not None and planned:
                self.dispatcher.wake(planned)
            finished = large.committed(chunk)
        if large is not None and finished is not None:
            self._large.pop(0)
            self._ended(large, finished)
            if large.sock is not None:  # its actions woke the dispatcher chunk by chunk
                replies.append((large.sock, dataclasses.replace(finished, actions_planned=0)))
        return replies

    def _ended(self, large: LargeNotification, answer: Answer) -> None:
        """Bookkeeping when a large notification leaves the queue with `answer`."""
        if large.retry:  # the spool holds the rest: look again after a backoff
            self._spool_check_at = time.monotonic() + self._spool_backoff
            self._spool_backoff = min(self._spool_backoff * 2, SPOOL_RETRY_MAX_S)
            return
        if large.spool_id is not None and answer.status == 400:
            # Resumed, and refused by the config the writer runs now: it cannot be
            # journaled under it, and would be refused at every retry.
            log.error(
                "dropping spooled notification %d (%d of its %d alerts journaled): the "
                "current configuration refuses it: %s",
                large.spool_id,
                large.done,
                large.total,
                answer.body.decode("utf-8", "replace"),
            )
            self._discard_spooled(large.spool_id)
            return
        if large.spool_id is not None and answer.status == 200 and large.done >= large.total:
            self._spool_backoff = SPOOL_RETRY_S
            if large.sock is None:
                log.info(
                    "journaled spooled notification %d whole (%d alerts)",
                    large.spool_id,
                    large.total,
                )

    # ------------------------------------------------------------ spool

    def resume_spooled(self) -> LargeNotification | None:
        """Claim the oldest spool row this writer may take (store/spool.py: its own,
        unclaimed, stale, or its owner dead) and queue the rest of it to be journaled,
        under the config this writer runs now; return it, or None if there is none."""
        self._spool_check_at = time.monotonic() + SPOOL_POLL_S
        try:
            row = self._claim_spooled(time.time())
            self._spool_unreadable = False
            if row is None:
                return None
            large = self._resumed(row)
        except StoreUnavailable as exc:  # said once per outage: this runs every few seconds
            log.log(
                logging.DEBUG if self._spool_unreadable else logging.ERROR,
                "cannot look at the spool of large notifications now: %s",
                exc,
            )
            self._spool_unreadable = True
            return None
        except Exception as exc:  # a bug here must not end the writer, nor repeat each turn
            log.error("internal error resuming spooled notifications", exc_info=exc)
            self._spool_check_at = time.monotonic() + SPOOL_RETRY_MAX_S
            return None
        if large is not None:
            self._large.append(large)
        return large

    def _claim_spooled(self, now: float) -> spool.SpooledRow | None:
        with self.store.transaction(write=False) as tx:
            rows = spool.candidates(tx)
        host = socket.gethostname()
        for row_id, was, beat in rows:
            gone = was is not None and spool.owner_gone(was, host, spool.pid_alive)
            if not spool.claimable(was, beat, self.owner, now, gone):
                continue
            with self.store.transaction() as tx:
                row = spool.claim(tx, row_id, was, beat, self.owner, now)
            if row is not None:
                return row
        return None

    def _resumed(self, row: spool.SpooledRow) -> LargeNotification | None:
        config = self.config
        try:
            envelope, items = decode_envelope(row.body, indexed_labels(config))
        except Rejected as rejected:
            log.error(
                "dropping spooled notification %d: refused by the current configuration: %s",
                row.id,
                rejected.message,
            )
            self._discard_spooled(row.id)
            return None
        log.info(
            "resuming spooled notification %d at alert %d of %d",
            row.id,
            row.next_alert,
            row.alerts,
        )
        chunk = config.limits.notification_chunk_alerts
        summary = IngestSummary(**row.summary)
        return LargeNotification(
            None, envelope, items, row.received_at, config, chunk, self.owner,
            spool_id=row.id, done=row.next_alert, summary=summary,
        )  # fmt: skip

    def _discard_spooled(self, row_id: int) -> None:
        try:
            with self.store.transaction() as tx:
                spool.discard(tx, row_id)
        except StoreUnavailable as exc:  # claimed by this writer: met again at its next look
            log.warning("could not drop spooled notification %d: %s", row_id, exc)

    def _work_for(
        self, sock: socket.socket, request: Request
    ) -> Answer | tuple[Pending[Any], Notification] | None:
        """The answer a body gets at once (400, or 500 for the unforeseen), or the work
        of journaling it with its notification (whose refused alerts the answer lists);
        None when it is large and queued to be journaled in chunks."""
        config = self.config
        indexed = indexed_labels(config)
        try:
            envelope, items = decode_envelope(request.body, indexed)
            chunk = config.limits.notification_chunk_alerts
            if len(items) > chunk:
                large = LargeNotification(
                    sock, envelope, items, request.received_at, config, chunk, self.owner,
                    body=request.body,
                )  # fmt: skip
                self._large.append(large)
                return None
            notification = complete(envelope, decode_alerts(items, 0, len(items), indexed))
        except Rejected as rejected:
            return rejected.answer()
        except Exception as exc:  # decoding only raises Rejected: this is a bug, told as one
            return unexpected(exc)
        return Pending(journal_work(config, notification, request.received_at)), notification

    def _control(self, request: Request) -> Answer:
        """RELOAD, STOP or PING (RequestReader lets no other kind through)."""
        try:
            return self._obey(request)
        except Exception as exc:  # unforeseen: that request's answer, not the writer's end
            return unexpected(exc)

    def _obey(self, request: Request) -> Answer:
        if request.kind == RELOAD:
            return self.reload(request.body.decode("utf-8", "replace"))
        if request.kind == STOP:
            self.stop_now = True
        return Answer(200, b"{}")

    def reload(self, text: str) -> Answer:
        """Take the config text the worker has just loaded (never the file as it is now:
        it may have changed since), so that both run the same configuration."""
        try:
            new = config_from_text(text, self.config_path, self.overrides)
            require_usable_executors(new)  # its dispatcher builds them: it must be able to
        except ConfigError as exc:
            return Answer(400, error_body("reload refused", problems=str(exc)))
        # The dispatch process first: once this writer plans under the new config, its
        # actions must meet a dispatcher that knows their strategies.
        refused = self.dispatcher.reload(text) if self.dispatcher is not None else None
        if refused is not None:
            return Answer(503, error_body("reload refused", problems=refused))
        self.config = new
        self.store.apply_limits(new.limits)  # e.g. limits.max_label_values, as the worker
        log.info("journal writer reloaded the configuration (sha256 %s)", new.sha256[:12])
        return Answer(200, json.dumps({"sha256": new.sha256}).encode())


def config_from_text(text: str, path: str, overrides: dict[str, str]) -> Config:
    """Parse config text as if read from path (its secret files resolve next to it)."""
    parsed = parse_config(text, source=path, base_dir=Path(path).resolve().parent)
    return with_overrides(parsed, overrides)


def _answer_for(entry: Answer | Pending[Any], notification: Notification | None) -> Answer:
    if isinstance(entry, Answer):
        return entry
    if entry.error is not None:
        return failed(entry.error)
    return accepted(entry.result, notification)


# ---------------------------------------------------------------- entry point


@dataclasses.dataclass(frozen=True)
class WriterOptions:
    """What a journal writer runs: parsed from its command line (main), or handed over
    by the worker that forked it (writer/client.py). `config_text` is the config to run
    (the worker's), `config_text_file` a file holding it; with neither, the file at
    `config_path` is read. `parent`: leave when that pid is no longer the parent.
    `store`, `listen` and `external_url`: the worker's command-line overrides."""

    socket_path: str
    config_path: str
    config_text: str | None = None
    config_text_file: str | None = None
    parent: int | None = None
    store: str | None = None
    log_format: str = "text"
    listen: str | None = None
    external_url: str | None = None

    @property
    def overrides(self) -> dict[str, str]:
        """The command-line overrides (config.with_overrides) these options carry."""
        given = (("store", self.store), ("listen", self.listen))
        given += (("external_url", self.external_url),)
        return {key: value for key, value in given if value}


def parse_options(argv: list[str] | None = None) -> WriterOptions:
    """The command line (module docstring) as WriterOptions; exits 2 on a bad one."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--socket", required=True)
    p.add_argument("--config", required=True, help="the config file (names, secret files)")
    p.add_argument("--config-text", help="a file with the config text to run (the worker's)")
    p.add_argument("--parent", type=int, help="leave when this process is gone")
    p.add_argument("--store", help="overrides the config's store")
    p.add_argument("--listen", help="overrides the config's server.listen")
    p.add_argument("--web.external-url", dest="external_url", help="overrides server.external_url")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    args = p.parse_args(argv)
    return WriterOptions(
        socket_path=args.socket,
        config_path=args.config,
        config_text_file=args.config_text,
        parent=args.parent,
        store=args.store,
        log_format=args.log_format,
        listen=args.listen,
        external_url=args.external_url,
    )


def _load(options: WriterOptions, overrides: dict[str, str]) -> Config:
    text = options.config_text
    if text is None and options.config_text_file:
        text = Path(options.config_text_file).read_text(encoding="utf-8")
    if text is not None:
        return config_from_text(text, options.config_path, overrides)
    return with_overrides(load_config(options.config_path), overrides)


def run(options: WriterOptions) -> int:
    """Run a journal writer until it is told to leave; return its exit status: 0, 2 when
    it cannot start (config or journal), 3 when its dispatch process died. Call from the
    main thread of a process with no other thread (it forks the dispatch process)."""
    logs.configure(options.log_format)
    overrides = options.overrides
    try:
        config = _load(options, overrides)
    except Exception as exc:  # the worker reports it: it is waiting for the socket
        log.error("journal writer cannot start: %s", exc)
        return 2
    path = options.config_path
    # Before any thread and before the journal is opened (writer/dispatch.py says why).
    child = fork_dispatcher(config, lambda text: config_from_text(text, path, overrides))
    try:
        store = open_store(config.store)
    except Exception as exc:
        log.error("journal writer cannot start: %s", exc)
        child.stop(grace=0.0)
        return 2
    writer = JournalWriter(path, overrides, config, store)
    writer.dispatcher = child  # woken when a batch plans actions; told of reloads
    # Reconciliation with Alertmanager writes to the journal too, so it runs here; and
    # at once after the dispatcher expires a silence of its own (reconciler.py).
    reconciler = Reconciler(writer, store)
    child.silence_expired = reconciler.trigger

    def stop(signum: int, frame: Any) -> None:
        writer.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # reloads come as RELOAD frames
    reconciler.start()
    try:
        writer.serve(options.socket_path, options.parent)
    finally:
        reconciler.stop()
        # Running actions get the grace to end, then their commands are killed and
        # journaled so (see Dispatcher.shutdown); only what even that leaves running is
        # left to the crash rule (README, Crash rule). The worker waits for this
        # (WriterProcess.stop) and gunicorn for the worker: server.py sizes both.
        child.stop(grace=writer.config.limits.shutdown_grace)
        store.close()
    # 3: the worker restarts the writer, which forks a new dispatch process
    return 3 if writer.child_lost else 0


def main(argv: list[str] | None = None) -> None:
    """`python -m receiver.writer.process ...` (module docstring)."""
    code = run(parse_options(argv))
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
