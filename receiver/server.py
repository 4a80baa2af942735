"""`remediator serve`: the app under gunicorn (a threaded worker whose event loop reads
each request before a thread sees it: receiver.httpworker), never Flask's dev server.

Configuration is validated in the master before any worker starts, so a bad file fails
fast with every problem listed. SIGHUP is forwarded to the worker, which reloads the
config in place (keeping the old one if the new is invalid) instead of gunicorn's
default of restarting workers, which would interrupt remediation in flight.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from receiver import logs
from receiver.app import AppState, create_app
from receiver.config import Config, ConfigError
from receiver.httpworker import FrontLimits, worker_class
from receiver.store import open_store
from receiver.writer.client import WriterIntake, WriterProcess

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    config_path: str
    config: Config  # with command-line overrides applied
    overrides: dict[str, str]
    log_format: str = "text"


class _ForwardingArbiter(Arbiter):
    def handle_hup(self) -> None:
        self.log.info("SIGHUP: asking workers to reload the remediation config")
        for pid in list(self.WORKERS):
            os.kill(pid, signal.SIGHUP)


def _install_reload_handler(app_state: AppState) -> None:
    def on_hup(signum: int, frame: Any) -> None:
        try:
            app_state.reload()
        except ConfigError as exc:
            log.error("reload refused, keeping the running config:\n%s", exc)

    signal.signal(signal.SIGHUP, on_hup)


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
        settings = {
            "bind": [config.server.listen],
            "workers": 1,
            "worker_class": worker_class(front),  # slow clients hold no thread
            "worker_connections": front.max_connections,
            "threads": config.server.threads,
            "timeout": 60,
            "graceful_timeout": 30,
            "keepalive": 75,  # longer than Alertmanager's idle connections, so no resets
            "accesslog": None,
            "post_worker_init": self._post_worker_init,
            "worker_exit": self._worker_exit,
            "proc_name": "remediator",
            "logconfig_dict": logs.gunicorn_logconfig(self.options.log_format),
            "control_socket_disable": True,  # gunicorn >= 25: one shared path per user
        }
        for key, value in settings.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def _post_worker_init(self, worker: Any) -> None:
        logs.configure(self.options.log_format)
        assert self.app_state is not None
        self.writer = WriterProcess(
            self.options.config_path,
            self.options.overrides,
            self.options.log_format,
            config_text=self.app_state.config.text,
        )
        self.writer.start()  # before any request: the webhook hands every body to it
        self.app_state.intake = WriterIntake(self.writer)  # it runs the dispatcher too
        _install_reload_handler(self.app_state)

    def _worker_exit(self, server: Any, worker: Any) -> None:
        if self.writer is not None:
            self.writer.stop()

    def load(self) -> Any:
        logs.configure(self.options.log_format)
        config = self.options.config
        self.app_state = AppState(
            config=config,
            store=open_store(config.store),
            config_path=self.options.config_path,
            overrides=self.options.overrides,
        )
        return create_app(self.app_state)

    def run(self) -> None:
        _ForwardingArbiter(self).run()


def serve(options: ServeOptions) -> None:
    """Check the store answers before forking, then hand over to gunicorn."""
    logs.configure(options.log_format)
    config = options.config
    store = open_store(config.store)
    store.ping()
    store.close()
    log.info("remediator listening on %s, journal %s", config.server.listen, config.store)
    RemediatorServer(options).run()
