"""The journal writer process: journals webhook notifications, in batches, and runs the
dispatcher, so that every write remediation makes to the journal comes from one process.

Why a process of its own: gunicorn's worker is one Python process, and everything it
does shares one interpreter lock. Decoding a notification and journaling it costs
more than the HTTP handling around it, so in the worker it halved throughput against
a parse-only baseline (bench/ingest.py). Here it runs on another core, and the worker
only authenticates, bounds the body and passes the bytes on.

One thread, so no lock is ever contended: each turn of the loop reads every request
that has arrived on every connection, decodes them, journals all the valid ones in ONE
transaction (store/group.py's commit_together: if one fails, each is retried alone),
and only then answers each. A 200 still means committed; each notification is still
journaled whole or not at all.

The dispatcher runs here too: its claims and outcomes then queue on this process's
writer lock with the notifications' batches, instead of meeting them across processes
in SQLite's busy handler, which sleeps and polls (and took p99 latency at 200
notifications/s from milliseconds to most of a second when the dispatcher stayed in the
worker). The worker only reads the journal (API, /metrics), and resets breakers.

It lives as long as the worker that started it: it leaves when the worker says so
(a STOP frame, once the worker has finished its requests), or within a second of the
worker's death. SIGTERM and SIGINT (which a service manager or a terminal may send to
the whole process group at once) only make it leave once no worker thread is
connected, so the worker's graceful shutdown can still journal the requests it is
finishing.

    python -m receiver.writer.process --socket PATH --config FILE [--config-text FILE]
                                      [--parent PID] [--store URL] [--log-format text|json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import selectors
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from receiver import logs
from receiver.config import Config, ConfigError, load_config, parse_config, with_overrides
from receiver.dispatcher import Dispatcher
from receiver.engine import journal_work
from receiver.executors import require_usable_executors
from receiver.intake import Answer, Rejected, accepted, decode, error_body, failed
from receiver.store import Store, open_store
from receiver.store.group import Pending, commit_together
from receiver.writer.protocol import (
    NOTIFY,
    RELOAD,
    STOP,
    ProtocolError,
    Request,
    RequestReader,
    pack_reply,
)

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often the loop looks up from select: stop requests, parent alive
SEND_TIMEOUT_S = 10.0  # a worker thread that stops reading its replies is dropped


class JournalWriter:
    def __init__(
        self, config_path: str, overrides: dict[str, str], config: Config, store: Store
    ) -> None:
        self.config_path = config_path
        self.overrides = overrides
        self.config = config
        self.store = store
        store.apply_limits(config.limits)  # the bounds the journal enforces as it writes
        self.dispatcher: Dispatcher | None = None  # woken when a batch plans actions
        self.stopping = False  # a signal: leave once no worker thread is connected
        self.stop_now = False  # the worker's STOP: leave after this batch
        self._selector = selectors.DefaultSelector()
        self._readers: dict[socket.socket, RequestReader] = {}

    # ------------------------------------------------------------ loop

    def serve(self, path: str, parent: int | None = None) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(256)
        listener.setblocking(False)
        self._selector.register(listener, selectors.EVENT_READ)
        log.info("journal writer ready on %s (journal %s)", path, self.config.store)
        try:
            while not self.stop_now and not (self.stopping and not self._readers):
                if parent is not None and os.getppid() != parent:
                    log.info("the worker that started this journal writer is gone; leaving")
                    break
                batch = self._read(self._selector.select(POLL_S), listener)
                if batch:
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

    def _answer(self, batch: list[tuple[socket.socket, Request]]) -> None:
        notifications = [(sock, r) for sock, r in batch if r.kind == NOTIFY]
        answers = self.journal([r for _, r in notifications])
        planned = sum(answer.actions_planned for answer in answers)
        if self.dispatcher is not None and planned:
            self.dispatcher.wake(planned)
        replies = list(zip([sock for sock, _ in notifications], answers, strict=True))
        replies += [(sock, self._control(r)) for sock, r in batch if r.kind != NOTIFY]
        for sock, answer in replies:
            try:
                sock.sendall(pack_reply(answer))
            except OSError as exc:  # the worker thread gave up (timeout) or died
                log.warning("could not answer a worker thread: %s", exc)
                self._drop(sock)

    # ------------------------------------------------------------ work

    def journal(self, requests: list[Request]) -> list[Answer]:
        """Decode each body, journal the valid ones in one transaction, answer each."""
        slots: list[Answer | Pending[Any]] = []
        for request in requests:
            try:
                notification = decode(request.body)
            except Rejected as rejected:
                slots.append(rejected.answer())
                continue
            slots.append(Pending(journal_work(self.config, notification, request.received_at)))
        pending = [slot for slot in slots if isinstance(slot, Pending)]
        if pending:
            commit_together(self.store.transaction, pending)
        return [slot if isinstance(slot, Answer) else _answer_for(slot) for slot in slots]

    def _control(self, request: Request) -> Answer:
        """RELOAD, STOP or PING (RequestReader lets no other kind through)."""
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
        self.config = new
        self.store.apply_limits(new.limits)  # e.g. limits.max_label_values, as the worker
        log.info("journal writer reloaded the configuration (sha256 %s)", new.sha256[:12])
        return Answer(200, json.dumps({"sha256": new.sha256}).encode())


def config_from_text(text: str, path: str, overrides: dict[str, str]) -> Config:
    """Parse config text as if read from path (its secret files resolve next to it)."""
    parsed = parse_config(text, source=path, base_dir=Path(path).resolve().parent)
    return with_overrides(parsed, overrides)


def _answer_for(entry: Pending[Any]) -> Answer:
    if entry.error is not None:
        return failed(entry.error)
    return accepted(entry.result)


# ---------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--socket", required=True)
    p.add_argument("--config", required=True, help="the config file (names, secret files)")
    p.add_argument("--config-text", help="a file with the config text to run (the worker's)")
    p.add_argument("--parent", type=int, help="leave when this process is gone")
    p.add_argument("--store", help="overrides the config's store")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    args = p.parse_args(argv)
    logs.configure(args.log_format)
    overrides = {"store": args.store} if args.store else {}
    try:
        if args.config_text:
            text = Path(args.config_text).read_text(encoding="utf-8")
            config = config_from_text(text, args.config, overrides)
        else:
            config = with_overrides(load_config(args.config), overrides)
        store = open_store(config.store)
    except Exception as exc:  # the worker reports it: it is waiting for the socket
        log.error("journal writer cannot start: %s", exc)
        sys.exit(2)
    writer = JournalWriter(args.config, overrides, config, store)
    writer.dispatcher = Dispatcher(writer, store)  # reads writer.config: reloads reach it

    def stop(signum: int, frame: Any) -> None:
        writer.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # reloads come as RELOAD frames
    writer.dispatcher.start()
    try:
        writer.serve(args.socket, args.parent)
    finally:
        # Running actions get the grace to end, then their commands are killed and
        # journaled so (see Dispatcher.shutdown); only what even that leaves running is
        # left to the crash rule (README, Crash rule). The worker waits for this
        # (WriterProcess.stop) and gunicorn for the worker: server.py sizes both.
        writer.dispatcher.shutdown(grace=writer.config.limits.shutdown_grace)
        store.close()


if __name__ == "__main__":
    main()
