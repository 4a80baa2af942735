"""`remediator serve`: the app under gunicorn (a threaded worker whose event loop reads
each request before a thread sees it: receiver.httpworker), never Flask's dev server.

Configuration is validated in the master before any worker starts, so a bad file fails
fast with every problem listed. SIGHUP is forwarded to the worker, which reloads the
config in place (keeping the old one if the new is invalid) instead of gunicorn's
default of restarting workers, which would interrupt remediation in flight.

The worker's SIGHUP handler only queues the reload (ReloadQueue): a handler runs
between two bytecodes of the main thread, which may hold the very locks a reload takes.
A thread of its own carries it out, once per burst: `pkill -HUP remediator` reaches
master and worker together, and the master forwards its signal too.

Memory: the master imports everything and builds the app (preload_app; load closes
its journal connection) before it forks the worker, after gc.freeze()
(_freeze), and the worker forks its first journal writer the same way (writer/client.py,
WriterProcess), closing in it what the writer must not hold (_release_worker): the
processes share the imported code and the config copy-on-write.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import math
import os
import select
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger as GunicornLogger

from receiver import logs
from receiver.app import AppState, create_app
from receiver.config import Config, ConfigError, config_warnings
from receiver.executors import require_usable_executors
from receiver.httpworker import FrontLimits, worker_class
from receiver.store import open_store, schema
from receiver.version import build_info
from receiver.webconfig import WebAuth
from receiver.writer.client import REPLY_TIMEOUT_S, WriterIntake, WriterProcess, stop_timeout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    config_path: str
    config: Config  # with command-line overrides applied
    overrides: dict[str, str]
    log_format: str = "text"
    #: `--web.config.file`, read and checked: users and TLS (None: neither)
    web: WebAuth | None = None


class _ForwardingArbiter(Arbiter):
    def handle_hup(self) -> None:
        self.log.info("SIGHUP: asking workers to reload the remediation config")
        for pid in list(self.WORKERS):
            os.kill(pid, signal.SIGHUP)


class ReloadQueue:
    """SIGHUP queues a reload; a thread of its own runs it, once per burst of signals.

    The handler writes one byte to a pipe and nothing else: no lock, no logging (the
    interrupted thread may hold either). The thread waits for a byte, then drains the
    pipe until it has been quiet for SETTLE_S, then reloads once, so twenty signals
    make one reload, of the file as it is after the last of them.
    """

    SETTLE_S = 0.2

    def __init__(self, reload: Callable[[], object]) -> None:
        self._reload = reload
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def install(self) -> None:
        """Take over SIGHUP in this (main) thread; reloads wait for start()."""
        signal.signal(signal.SIGHUP, self.request)

    def start(self) -> None:
        thread = threading.Thread(target=self._run, name="config-reload", daemon=True)
        thread.start()

    def close(self) -> None:
        """Close the pipe (in a forked journal writer, which never reloads through it)."""
        os.close(self._read)
        os.close(self._write)

    def request(self, signum: int = signal.SIGHUP, frame: Any = None) -> None:
        """The signal handler: async-signal-safe, never blocks."""
        with contextlib.suppress(BlockingIOError):  # the pipe is full: a reload is queued
            os.write(self._write, b"\0")

    def _run(self) -> None:
        while True:
            select.select([self._read], [], [])
            while select.select([self._read], [], [], self.SETTLE_S)[0]:
                os.read(self._read, 4096)
            try:
                self._reload()
            except ConfigError as exc:
                log.error("reload refused, keeping the running config:\n%s", exc)
            except Exception:  # this thread must outlive any one reload
                log.exception("reload failed, keeping the running config")


def _freeze(server: Any, worker: Any) -> None:
    """gunicorn's pre_fork hook, in the master: what it has imported and loaded stays
    shared with the worker copy-on-write (the worker's collector never writes to it).
    Garbage is collected first (frozen, it would never be), and the C heap's free pages
    handed back (_trim_heap): about 3 MB less PSS in all, measured by bench.remediate."""
    gc.collect()
    _trim_heap()
    gc.freeze()


def _trim_heap() -> None:
    """glibc's malloc_trim(0): return the heap's free pages to the system, so that they
    are neither kept by the master nor copied by its children. A no-op elsewhere."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: musl has none
        ctypes.CDLL(None).malloc_trim(0)


def _release_worker(worker: Any, reloads: ReloadQueue) -> None:
    """In a journal writer forked from the worker: close what the worker holds that the
    writer must not (WriterProcess.start): the listening sockets (else the port stays
    bound while the writer outlives the server), the heartbeat file, gunicorn's signal
    and wake-up pipes, its selector, and the reload pipe. Through their objects, so that
    no finalizer closes a number reused since. Nothing was accepted yet: no connection."""
    for listener in worker.sockets:
        listener.close()
    worker.sockets = []
    worker.tmp.close()
    for fd in worker.PIPE:
        os.close(fd)
    worker.PIPE = ()
    for name in ("method_queue", "poller"):  # gthread's; absent from other classes
        owned = getattr(worker, name, None)
        if owned is not None:
            owned.close()
    reloads.close()


def warn_if_exposed(config: Config) -> None:
    """Log a WARNING for each thing the config does not do that `check` warns about too
    (config_warnings): no strategies, no auth (beyond loopback: anyone can post), a
    strategy timeout its executor caps."""
    for warning in config_warnings(config):
        log.warning("%s", warning.message)


class AccessOffLogger(GunicornLogger):
    """gunicorn's logger, except that a request's access line is built only when the
    `gunicorn.access` logger would emit it. Remediator's log config keeps that logger at
    WARNING (logs.gunicorn_logconfig: no access log), but gunicorn, given a
    `logconfig_dict`, counts access logging as on and formats every request's line
    (its atoms: headers, times, the status) only for the logger to drop it: about 40 us
    per request, 5-8% of the worker's CPU per webhook (bench/README.md)."""

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        if self.access_log.isEnabledFor(logging.INFO):
            super().access(resp, req, environ, request_time)


class RemediatorServer(BaseApplication):
    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.app_state: AppState | None = None
        self.writer: WriterProcess | None = None
        super().__init__()

    def load_config(self) -> None:
        config = self.options.config
        front = FrontLimits(
            read_timeout=config.limits.read_timeout,
            max_connections=config.limits.max_connections,
            max_connections_per_peer=config.limits.max_connections_per_peer,
            max_body_bytes=config.server.max_body_bytes,
        )
        # On SIGTERM the worker finishes its requests (each bounded by the writer's reply
        # timeout), then waits for the writer, which gives running actions their grace:
        # gunicorn must not SIGKILL the worker before all of that is over.
        grace = config.limits.shutdown_grace
        settings = {
            "bind": [config.server.listen],
            "workers": 1,
            # slow clients hold no thread; TLS, when configured, is spoken by it too
            "worker_class": worker_class(front, self.options.web),
            "worker_connections": front.max_connections,
            "threads": config.server.threads,
            "timeout": 60,
            "graceful_timeout": math.ceil(REPLY_TIMEOUT_S + stop_timeout(grace) + 5),
            "keepalive": 75,  # longer than Alertmanager's idle connections, so no resets
            "accesslog": None,
            # The app is built in the master (load), so the worker inherits it copy-on-write
            # rather than building its own; load closes the master's journal connection.
            "preload_app": True,
            "pre_fork": _freeze,
            "post_worker_init": self._post_worker_init,
            "worker_exit": self._worker_exit,
            "proc_name": "remediator",
            "logconfig_dict": logs.gunicorn_logconfig(self.options.log_format),
            "logger_class": AccessOffLogger,
            "control_socket_disable": True,  # gunicorn >= 25: one shared path per user
        }
        for key, value in settings.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def _post_worker_init(self, worker: Any) -> None:
        logs.configure(self.options.log_format)
        assert self.app_state is not None
        reloads = ReloadQueue(self.app_state.reload)
        reloads.install()  # first: a SIGHUP while the writer starts must not end the worker
        config = self.app_state.config
        self.writer = WriterProcess(
            self.options.config_path,
            self.options.overrides,
            self.options.log_format,
            config_text=config.text,
            stall_timeout=config.limits.writer_stall_timeout,
        )
        # The worker's journal connection is closed before the writer is forked (SQLite
        # forbids carrying one across a fork); the worker's threads open their own.
        self.app_state.store.close()
        # Before any request: the webhook hands every body to it.
        self.writer.start(release=lambda: _release_worker(worker, reloads))
        self.app_state.intake = WriterIntake(self.writer)  # it runs the dispatcher too
        self.app_state.liveness = self.writer.problem
        reloads.start()  # only now: a reload must reach the writer too

    def _worker_exit(self, server: Any, worker: Any) -> None:
        if self.writer is not None:
            config = self.app_state.config if self.app_state else self.options.config
            self.writer.stop(stop_timeout(config.limits.shutdown_grace))

    def load(self) -> Any:
        """Build the Flask app, in the master (preload_app) before the worker is forked.

        The journal connection it opened (to seed the metrics) is closed before the
        fork, as SQLite forbids carrying one across it: the worker's threads open their
        own. Raises what open_store raises (serve() checked the store answers)."""
        logs.configure(self.options.log_format)
        config = self.options.config
        self.app_state = AppState(
            config=config,
            store=open_store(config.store),
            config_path=self.options.config_path,
            overrides=self.options.overrides,
            web=self.options.web,
        )
        app = create_app(self.app_state)
        self.app_state.store.close()
        return app

    def run(self) -> None:
        _ForwardingArbiter(self).run()


def serve(options: ServeOptions) -> None:
    """Check the executors build and the store answers (its schema upgraded to this
    release's, in a child process: see store/schema.py) before forking, then hand over
    to gunicorn. Raises ConfigError naming each executor that cannot be built here,
    schema.JournalTooNew for a journal a newer release upgraded, schema.SchemaError or
    StoreUnavailable when the journal cannot be opened."""
    logs.configure(options.log_format)
    config = options.config
    require_usable_executors(config, full=True)
    schema.isolate_upgrades()
    store = open_store(config.store)
    store.ping()
    store.close()
    build = build_info()
    web = options.web
    log.info(
        "remediator listening on %s (%s), journal %s (version %s, Python %s)",
        config.server.listen,
        "HTTPS" if web is not None and web.ssl_context() is not None else "HTTP",
        config.store,
        build.version,
        build.python,
    )
    warn_if_exposed(config)
    if web is not None:
        log.info(
            "web config %s: %d user(s) guard every endpoint but the webhook; TLS %s",
            web.config.path,
            len(web.config.users),
            "on" if web.config.tls is not None else "off",
        )
    RemediatorServer(options).run()
