"""bench.remediate's baseline: `POST /webhook` that spawns a command per firing alert.

The ceiling for "run a command per alert" in Python under Remediator's own gunicorn
settings (RemediateBaselineServer is bench.baseline_app's BaselineServer, itself a
RemediatorServer: same bind, worker class, workers, threads, keep-alive): a bare WSGI
callable parses the JSON and, for each firing alert, starts the remediation config's
first strategy `command` with `{{ target }}` replaced by the alert's `instance` label.
No authentication, no journal, no gates, no output capture; one reaper thread waits
for the children so none is left a zombie. The command is an argv list, never a shell,
and the label is validated before it becomes an argument (it is untrusted input).

    python -m bench.remediate_baseline --config FILE --listen HOST:PORT
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from bench.baseline_app import BaselineServer, serve_main
from receiver import logs

TARGET_PLACEHOLDER = "{{ target }}"
# what an `instance` label looks like (host:port); anything else is not spawned
SAFE_TARGET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,252}")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def command_template(config_path: str) -> list[str]:
    """The first strategy's `command` argv from the remediation config (YAML).
    Raises ValueError when it has none or it does not contain `{{ target }}`."""
    config = yaml.safe_load(Path(config_path).read_text())
    strategies = config.get("strategies") or []
    command = strategies[0].get("command") if strategies else None
    if not command or TARGET_PLACEHOLDER not in command:
        raise ValueError(f"{config_path}: the first strategy needs a command with {{{{ target }}}}")
    return [str(arg) for arg in command]


def firing_targets(payload: dict[str, Any]) -> list[str]:
    """The `instance` label of each firing alert that has a safe one (SAFE_TARGET)."""
    targets = []
    for alert in payload.get("alerts") or []:
        if not isinstance(alert, dict) or alert.get("status") != "firing":
            continue
        instance = (alert.get("labels") or {}).get("instance")
        if isinstance(instance, str) and SAFE_TARGET.fullmatch(instance):
            targets.append(instance)
    return targets


class Spawner:
    """Starts an argv per target (no shell, no inherited descriptors) and hands the child
    to one reaper thread that waits for it. The thread is started by the first spawn in
    a process: the app is built in gunicorn's master (preload_app, as `serve` does),
    and a thread started there would not exist in the worker, which would never reap."""

    def __init__(self, template: list[str]) -> None:
        self.template = template
        self.children: queue.SimpleQueue[subprocess.Popen] = queue.SimpleQueue()
        self._reaper_pid = 0  # the process whose reaper thread runs
        self._start = threading.Lock()

    def spawn(self, target: str) -> None:
        if self._reaper_pid != os.getpid():
            self._start_reaper()
        argv = [target if arg == TARGET_PLACEHOLDER else arg for arg in self.template]
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        self.children.put(child)

    def _start_reaper(self) -> None:
        with self._start:
            if self._reaper_pid != os.getpid():
                threading.Thread(target=self._reap, name="reaper", daemon=True).start()
                self._reaper_pid = os.getpid()

    def _reap(self) -> None:
        while True:
            self.children.get().wait()


def create_app(spawner: Spawner) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The WSGI callable: POST /webhook spawns, GET /-/ready answers; else 404."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO"), environ.get("REQUEST_METHOD")
        if path == "/-/ready" and method == "GET":
            return _answer(start_response, "200 OK", b"Baseline is Ready.\n")
        if path != "/webhook" or method != "POST":
            return _answer(start_response, "404 Not Found", b"not found\n")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            payload = json.loads(environ["wsgi.input"].read(length))
        except ValueError:
            return _answer(start_response, "400 Bad Request", b"bad JSON\n")
        targets = firing_targets(payload) if isinstance(payload, dict) else []
        for target in targets:
            spawner.spawn(target)
        body = json.dumps({"status": "ok", "spawned": len(targets)}).encode()
        return _answer(start_response, "200 OK", body)

    return app


def _answer(start_response: StartResponse, status: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class RemediateBaselineServer(BaselineServer):
    """RemediatorServer's gunicorn settings, this module's app."""

    def load(self) -> Any:
        logs.configure(self.options.log_format)
        return create_app(Spawner(command_template(self.options.config_path)))


def main() -> None:
    serve_main(RemediateBaselineServer, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
