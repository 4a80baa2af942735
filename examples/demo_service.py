#!/usr/bin/env python3
"""A small demo service for Remediator's closed loop, with faults you can inject.

Run several numbered copies under supervisord (examples/supervisord.conf.template):

    demo_service.py --instance 1 --base-port 18100 --state-dir /tmp/demo --self-load 5

Each process listens on ``base_port + instance`` (or ``--port``) and serves:

``GET /``
    The "work" endpoint. 200 normally; slow, failing or 503 according to injected faults.
    Only these requests are counted in ``demo_requests_total`` and timed in
    ``demo_request_duration_seconds``.
``GET /metrics``
    Prometheus text format: ``demo_requests_total{code}`` (codes 200, 500 and 503 exist
    from the start at 0, so error ratios never divide a missing series),
    ``demo_request_duration_seconds`` (histogram, default buckets 5 ms .. 10 s),
    ``demo_healthy`` (1/0), ``demo_busy_ratio`` (saturation, 0..1), ``demo_fault{fault}``
    (1 while that fault is injected), ``demo_release_info{version}`` (1: the release this
    process serves), ``demo_release_deployed_timestamp_seconds`` (when that release was
    deployed or rolled back to; 0 for the build the process started with) and
    ``process_start_time_seconds``.
``GET /healthz``
    200, or 503 while wedged.
``GET /admin/fault``, ``POST /admin/fault``
    Show or inject a fault. The body is JSON ``{"fault": NAME, ...}``. No authentication:
    bind to loopback (the default) and never expose it.

Faults (``POST /admin/fault``) and who heals them:

``crash`` (alias ``wedge``)
    The process WEDGES: it keeps running but ``/healthz`` answers 503, ``demo_healthy`` is 0
    and ``/`` answers 503. It does NOT exit, so supervisord's ``autorestart`` cannot see
    anything wrong; only a restart heals it. This is the fault Remediator's restart fixes.
``errors`` ``{"ratio": 1.0}``
    That fraction of ``/`` requests answer 500. Healed by a restart.
``latency`` ``{"seconds": 1.0}``
    Every ``/`` request is delayed by that much. Healed by a restart.
``saturation`` ``{"busy": 0.95}``
    This process reports ``demo_busy_ratio`` at least ``busy``. Healed by a restart.
``saturation`` ``{"load": 1.8}`` (needs ``--state-dir``)
    A GROUP-wide offered load, in replicas' worth of work, shared by every process of the
    service through the state directory: each live replica reports
    ``busy = load / live replicas`` (capped at 1). A restart does NOT heal it (the load is
    external); starting more replicas does, which is what the scale strategy does.
    ``{"load": 0}`` removes it.
``dependency`` (needs ``--state-dir``)
    A broken downstream dependency of THIS process: every ``/`` request answers 500, and the
    fault lives in the state directory, so a restart does NOT heal it. This is the fault
    whose remediation cannot help: the restart's verification fails, its circuit breaker
    opens and Remediator escalates to a person. ``none`` repairs it.
``release`` ``{"version": "1.1.0", "bad": true}`` (needs ``--state-dir``)
    DEPLOYS a release to THIS process: ``DIR/<service>-<name>.release`` then names it,
    with the release it replaces as the one to roll back to. While a bad release is the
    one deployed (``bad`` defaults to true), every ``/`` request answers 500. The process
    reads that file on every request, as a server serving whatever the deploy switched
    in, so a restart does NOT heal it (the process comes back on the same release);
    rolling back does: ``examples/rollback_release.py`` switches the file back to the
    previous release, which is the demo runbook's second step. ``none`` removes it.
``cold`` ``{"seconds": 60, "delay": 0.5}`` (needs ``--state-dir``)
    THIS process STARTS COLD from now on: a process that starts while the fault is in
    place (a restart) answers every ``/`` request ``delay`` seconds slower for the first
    ``seconds`` seconds after its start, as a service with empty caches, a cold JIT or a
    connection pool to fill does. The process running when it is injected is already warm
    and is not slowed. The fault lives in the state directory (``DIR/<service>-<name>.cold``),
    so it survives the restart it punishes: this is the fault where a restart makes things
    worse for a while, which a canary analysis comparing latency sees. ``none`` removes it.
``exit`` ``{"code": 3}``
    The process exits at once. supervisord (autorestart=true) starts it again within about a
    second: the kind of fault that needs no Remediator, for contrast.
``none``
    Clears every fault of this process (wedge, broken dependency, deployed release and
    cold start included) and the group load: the operator's reset button. Remediator never calls it;
    a restart (and, for a release, a rollback) is what it uses.

Process faults live in memory, so they persist until the process restarts: that is what
makes a restart a real fix. Several faults can be active at once; each POST adds one.

With ``--state-dir DIR`` the process registers itself for Prometheus' file-based service
discovery: it writes ``DIR/<service>-<name>.json`` (target address plus the labels
``service`` and ``process``, e.g. ``process="demo:demo_01"``, the supervisord name a restart
needs) when it starts and removes it when it is stopped with SIGTERM/SIGINT. So a process
that supervisord stopped on purpose (scaled down) disappears from Prometheus instead of
looking down (``up == 0``) and being "repaired" by the ServiceDown restart, while a process
that dies without cleaning up (kill -9, ``exit`` fault) stays registered and is seen down.
The same directory holds the group load (``DIR/<service>.load``); the number of
registrations of the service is the number of live replicas.

``--work SECONDS`` makes every ``/`` request (not wedged) take that long, as real work
does, so latency has a realistic baseline to compare with (default 0: microseconds).

``--self-load RATE`` makes the process call its own ``/`` RATE times a second (at most 16
requests in flight), so the error and latency rules have traffic without a load generator.

Demo helpers for whoever wires the loop (``remediator demo``), importable from here:
``render(path, **values)`` fills a ``string.Template`` file (examples/*.template and
examples/demo-remediation.yml) and refuses missing placeholders; ``fast_rules(text)`` turns
rules/health.rules.yml, which ships production-sensible durations, into a copy for a demo
that runs in seconds (``for``/``keep_firing_for`` 2s, range windows 10s; thresholds and
everything else unchanged). ``demo_service.py fast-rules rules/health.rules.yml`` prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import string
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

FAULTS = (
    "crash",
    "wedge",
    "errors",
    "latency",
    "saturation",
    "dependency",
    "release",
    "cold",
    "exit",
    "none",
)
REPORTED_FAULTS = ("crash", "errors", "latency", "saturation", "dependency", "release", "cold")
CODES = ("200", "500", "503")
MAX_BODY = 64 * 1024
MAX_LATENCY = 30.0
#: The longest cold start a `cold` fault may ask for, in seconds.
MAX_COLD_SECONDS = 3600.0
MAX_IN_FLIGHT_SELF_LOAD = 16
#: The release every process starts with, until a `release` fault deploys another.
INITIAL_RELEASE = "1.0.0"
#: What a release version may look like (it becomes a label value and a file's content).
VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+-]{0,31}")

StartResponse = Callable[..., Any]


# ------------------------------------------------------------------------------ faults


class FaultError(ValueError):
    """A fault request that is not valid; the message says why (answered with 400)."""


@dataclass
class Faults:
    """This process's injected faults (all cleared by a restart)."""

    wedged: bool = False
    error_ratio: float = 0.0
    latency_seconds: float = 0.0
    busy: float = 0.0


@dataclass(frozen=True)
class ColdStart:
    """A `cold` fault as ``DIR/<service>-<name>.cold`` holds it (JSON):
    ``{"seconds": 60.0, "delay": 0.5, "since": 1764400000.0}``: a process that started at
    or after ``since`` (seconds since the epoch, when the fault was injected) answers
    ``delay`` seconds slower until ``seconds`` after its start."""

    seconds: float
    delay: float
    since: float

    @classmethod
    def read(cls, path: Path | None) -> ColdStart | None:
        """The fault in `path`; None when there is none or it is unreadable (writers
        replace it atomically, so a half-written file cannot happen)."""
        if path is None:
            return None
        try:
            data = json.loads(path.read_text())
            return cls(float(data["seconds"]), float(data["delay"]), float(data["since"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def delay_for(self, started_at: float, now: float) -> float:
        """Seconds to add to a request of a process started at `started_at`, at `now`:
        `delay` while it is cold, else 0. A process that was already running when the
        fault was injected is warm."""
        cold = self.since <= started_at and now - started_at < self.seconds
        return self.delay if cold else 0.0


@dataclass(frozen=True)
class Release:
    """The release a process serves, as ``DIR/<service>-<name>.release`` holds it (JSON):
    ``{"version": "1.1.0", "bad": true, "deployed_at": 1764400000.0,
    "previous": {"version": "1.0.0", "bad": false}}``. ``deployed_at`` is seconds since
    the epoch (0: the build the process started with); ``previous`` is what a rollback
    switches back to (null after a rollback: there is nothing further back)."""

    version: str = INITIAL_RELEASE
    bad: bool = False
    deployed_at: float = 0.0
    previous: dict[str, Any] | None = None

    @classmethod
    def read(cls, path: Path | None) -> Release:
        """The release in `path`; the initial one when there is none or it is unreadable
        (a half-written file cannot happen: writers replace it atomically)."""
        if path is None:
            return cls()
        try:
            data = json.loads(path.read_text())
            return cls(
                str(data["version"]),
                bool(data.get("bad", False)),
                float(data.get("deployed_at", 0.0)),
                data.get("previous"),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return cls()


def _number(body: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultError(f"{key} must be a number, got {value!r}")
    if not low <= value <= high:
        raise FaultError(f"{key} must be within [{low}, {high}], got {value}")
    return float(value)


# ------------------------------------------------------------------------------ service


@dataclass(frozen=True)
class Identity:
    service: str  # the `service` label, e.g. "demo"
    process: str  # supervisord's "group:name", e.g. "demo:demo_01" (the `process` label)
    host: str
    port: int
    advertise: str  # host Prometheus should scrape

    @property
    def address(self) -> str:
        return f"{self.advertise}:{self.port}"

    @property
    def slug(self) -> str:
        return f"{self.service}-{self.process.rpartition(':')[2]}"


class DemoService:
    """The WSGI application: work endpoint, metrics, health and fault injection."""

    def __init__(
        self,
        identity: Identity,
        *,
        state_dir: Path | None = None,
        capacity: int = 16,
        seed: int | None = None,
        exit_process: Callable[[int], None] = os._exit,
        work_seconds: float = 0.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.identity = identity
        self.state_dir = state_dir
        self.capacity = max(capacity, 1)
        self.work_seconds = max(work_seconds, 0.0)
        # clock and sleep are injectable so a test can age the process without waiting
        self._clock = clock
        self._sleep = sleep
        self.started_at = clock()
        self.faults = Faults()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._random = random.Random(seed)
        self._exit_process = exit_process

        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "demo_requests_total",
            "Requests to / by HTTP status code.",
            ["code"],
            registry=self.registry,
        )
        for code in CODES:
            self.requests.labels(code)
        self.duration = Histogram(
            "demo_request_duration_seconds",
            "Time to answer a request to /, in seconds.",
            registry=self.registry,
        )
        healthy = Gauge(
            "demo_healthy", "1 when the process is healthy, 0 while wedged.", registry=self.registry
        )
        healthy.set_function(lambda: 0.0 if self.faults.wedged else 1.0)
        busy = Gauge(
            "demo_busy_ratio",
            "Saturation, 0..1: the highest of the injected busy ratio, this replica's share of "
            "the group load, and requests in flight / capacity.",
            registry=self.registry,
        )
        busy.set_function(self.busy_ratio)
        fault = Gauge(
            "demo_fault",
            "1 while the fault is injected into this process (saturation: busy or group load).",
            ["fault"],
            registry=self.registry,
        )
        for name in REPORTED_FAULTS:
            fault.labels(name).set_function(lambda name=name: 1.0 if self.active(name) else 0.0)
        self.registry.register(_ReleaseCollector(self))

    # ---------------------------------------------------------------- state

    def active(self, name: str) -> bool:
        f = self.faults
        return {
            "crash": f.wedged,
            "errors": f.error_ratio > 0,
            "latency": f.latency_seconds > 0,
            "saturation": f.busy > 0 or self.group_load() > 0,
            "dependency": self.dependency_broken(),
            "release": self.release().bad,
            "cold": self.cold_start() is not None,
        }[name]

    def state(self) -> dict[str, Any]:
        with self._lock:
            faults = asdict(self.faults)
        return {
            "service": self.identity.service,
            "process": self.identity.process,
            "pid": os.getpid(),
            "faults": faults,
            "group_load": self.group_load(),
            "live_replicas": self.live_replicas(),
            "busy_ratio": self.busy_ratio(),
            "release": asdict(self.release()),
            "cold_start": self._cold_state(),
        }

    def apply(self, body: Any) -> None:
        """Inject the fault a POST /admin/fault asked for; FaultError if it is not valid."""
        if not isinstance(body, dict):
            raise FaultError('expected a JSON object like {"fault": "errors"}')
        name = body.get("fault")
        if name not in FAULTS:
            raise FaultError(f"fault must be one of {', '.join(FAULTS)}; got {name!r}")
        if name in ("crash", "wedge"):
            with self._lock:
                self.faults.wedged = True
        elif name == "errors":
            ratio = _number(body, "ratio", 1.0, 0.0, 1.0)
            with self._lock:
                self.faults.error_ratio = ratio
        elif name == "latency":
            delay = _number(body, "seconds", 1.0, 0.0, MAX_LATENCY)
            with self._lock:
                self.faults.latency_seconds = delay
        elif name == "saturation":
            if "load" in body:
                load = _number(body, "load", 0.0, 0.0, 1000.0)
                self.set_group_load(load)
            else:
                busy = _number(body, "busy", 0.95, 0.0, 1.0)
                with self._lock:
                    self.faults.busy = busy
        elif name == "dependency":
            path = self._dependency_file()
            if path is None:
                raise FaultError("a dependency fault needs the service to run with --state-dir")
            _atomic_write(path, "broken\n")
        elif name == "release":
            self.deploy(body)
        elif name == "cold":
            self.make_cold(body)
        elif name == "exit":
            code = int(_number(body, "code", 3, 0, 255))
            # after the answer has been sent; a real crash: no deregistration
            threading.Timer(0.2, self._exit_process, (code,)).start()
        else:  # none
            with self._lock:
                self.faults = Faults()
            if self.state_dir is not None:
                self.set_group_load(0.0)
                for path in (self._dependency_file(), self._release_file(), self._cold_file()):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()

    def _dependency_file(self) -> Path | None:
        return (
            None if self.state_dir is None else self.state_dir / f"{self.identity.slug}.dependency"
        )

    def dependency_broken(self) -> bool:
        path = self._dependency_file()
        return path is not None and path.exists()

    # ---------------------------------------------------------------- releases

    def _release_file(self) -> Path | None:
        return None if self.state_dir is None else self.state_dir / f"{self.identity.slug}.release"

    def release(self) -> Release:
        """The release deployed to this process now (read on every call: a deploy or a
        rollback switches the file, and the next request serves the new release)."""
        return Release.read(self._release_file())

    def deploy(self, body: Mapping[str, Any]) -> None:
        """Deploy the release a `release` fault names; the current one becomes `previous`.
        FaultError for a bad version or flag, or without a state directory."""
        path = self._release_file()
        if path is None:
            raise FaultError("a release needs the service to run with --state-dir")
        version = body.get("version", "1.1.0")
        if not isinstance(version, str) or not VERSION.fullmatch(version):
            raise FaultError(f"version must match {VERSION.pattern}, got {version!r}")
        bad = body.get("bad", True)
        if not isinstance(bad, bool):
            raise FaultError(f"bad must be true or false, got {bad!r}")
        current = self.release()
        deployed = {
            "version": version,
            "bad": bad,
            "deployed_at": time.time(),
            "previous": {"version": current.version, "bad": current.bad},
        }
        _atomic_write(path, json.dumps(deployed) + "\n")

    # ---------------------------------------------------------------- cold start

    def _cold_file(self) -> Path | None:
        return None if self.state_dir is None else self.state_dir / f"{self.identity.slug}.cold"

    def cold_start(self) -> ColdStart | None:
        """The `cold` fault injected into this process, if any (read on every call: it is
        kept in the state directory so that the process restarted after it sees it)."""
        return ColdStart.read(self._cold_file())

    def make_cold(self, body: Mapping[str, Any]) -> None:
        """Inject a `cold` fault: processes started from now on start cold. FaultError for
        a bad number, or without a state directory."""
        path = self._cold_file()
        if path is None:
            raise FaultError("a cold fault needs the service to run with --state-dir")
        seconds = _number(body, "seconds", 60.0, 0.0, MAX_COLD_SECONDS)
        delay = _number(body, "delay", 0.5, 0.0, MAX_LATENCY)
        fault = {"seconds": seconds, "delay": delay, "since": self._clock()}
        _atomic_write(path, json.dumps(fault) + "\n")

    def cold_delay(self) -> float:
        """Seconds a request to / is slowed now by a cold start (0 when warm)."""
        fault = self.cold_start()
        return 0.0 if fault is None else fault.delay_for(self.started_at, self._clock())

    def _cold_state(self) -> dict[str, Any] | None:
        fault = self.cold_start()
        if fault is None:
            return None
        return {**asdict(fault), "started_at": self.started_at, "delay_now": self.cold_delay()}

    # ---------------------------------------------------------------- saturation

    def _load_file(self) -> Path | None:
        return None if self.state_dir is None else self.state_dir / f"{self.identity.service}.load"

    def group_load(self) -> float:
        path = self._load_file()
        if path is None:
            return 0.0
        try:
            return max(float(path.read_text().strip() or 0), 0.0)
        except (OSError, ValueError):
            return 0.0

    def set_group_load(self, load: float) -> None:
        path = self._load_file()
        if path is None:
            raise FaultError("a group load needs the service to run with --state-dir")
        if load <= 0:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return
        _atomic_write(path, f"{load}\n")

    def live_replicas(self) -> int:
        """Registered processes of this service (at least 1: this one)."""
        if self.state_dir is None:
            return 1
        return max(len(list(self.state_dir.glob(f"{self.identity.service}-*.json"))), 1)

    def busy_ratio(self) -> float:
        with self._lock:
            pinned, in_flight = self.faults.busy, self._in_flight
        share = 0.0
        load = self.group_load()
        if load > 0:
            share = load / self.live_replicas()
        return min(max(pinned, share, in_flight / self.capacity), 1.0)

    # ---------------------------------------------------------------- registration

    def registration_file(self) -> Path | None:
        return None if self.state_dir is None else self.state_dir / f"{self.identity.slug}.json"

    def register(self) -> None:
        """Write this process's file_sd target (atomically: Prometheus watches the folder)."""
        path = self.registration_file()
        if path is None:
            return
        target = [
            {
                "targets": [self.identity.address],
                "labels": {"service": self.identity.service, "process": self.identity.process},
            }
        ]
        _atomic_write(path, json.dumps(target) + "\n")

    def deregister(self) -> None:
        path = self.registration_file()
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # ---------------------------------------------------------------- WSGI

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO") or "/"
        if path == "/":
            if method not in ("GET", "HEAD"):
                return _reply(start_response, 405, {"error": "use GET"})
            return self._work(start_response)
        if path == "/metrics" and method == "GET":
            body = generate_latest(self.registry)
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [body]
        if path == "/healthz" and method == "GET":
            healthy = not self.faults.wedged
            detail = {"healthy": healthy, "process": self.identity.process}
            return _reply(start_response, 200 if healthy else 503, detail)
        if path == "/admin/fault":
            if method == "GET":
                return _reply(start_response, 200, self.state())
            if method != "POST":
                return _reply(start_response, 405, {"error": "use GET or POST"})
            try:
                self.apply(_read_json(environ))
            except FaultError as exc:
                return _reply(start_response, 400, {"error": str(exc)})
            return _reply(start_response, 200, self.state())
        return _reply(start_response, 404, {"error": f"no such endpoint {method} {path}"})

    def _work(self, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        with self._lock:
            faults = Faults(**asdict(self.faults))
            self._in_flight += 1
            failing = self._random.random() < faults.error_ratio
        try:
            if faults.wedged:
                code = 503
            else:
                delay = self.work_seconds + faults.latency_seconds + self.cold_delay()
                if delay:
                    self._sleep(delay)
                broken = failing or self.dependency_broken() or self.release().bad
                code = 500 if broken else 200
        finally:
            with self._lock:
                self._in_flight -= 1
        self.duration.observe(time.perf_counter() - started)
        self.requests.labels(str(code)).inc()
        return _reply(start_response, code, {"process": self.identity.process, "code": code})


class _ReleaseCollector:
    """demo_release_info{version} and demo_release_deployed_timestamp_seconds, read from
    the release file at each scrape (a Gauge child per version would keep old versions)."""

    def __init__(self, service: DemoService) -> None:
        self.service = service

    def describe(self) -> list[GaugeMetricFamily]:
        return self.collect()

    def collect(self) -> list[GaugeMetricFamily]:
        release = self.service.release()
        info = GaugeMetricFamily(
            "demo_release_info", "1: the release this process serves.", labels=["version"]
        )
        info.add_metric([release.version], 1.0)
        deployed = GaugeMetricFamily(
            "demo_release_deployed_timestamp_seconds",
            "When the release this process serves was deployed or rolled back to, in "
            "seconds since the epoch; 0 for the build the process started with.",
            value=release.deployed_at,
        )
        return [info, deployed]


_STATUS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _reply(start_response: StartResponse, code: int, body: Any) -> list[bytes]:
    data = (json.dumps(body) + "\n").encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    start_response(f"{code} {_STATUS[code]}", headers)
    return [data]


def _read_json(environ: dict[str, Any]) -> Any:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError as exc:
        raise FaultError("bad Content-Length") from exc
    if length > MAX_BODY:
        raise FaultError(f"body larger than {MAX_BODY} bytes")
    raw = environ["wsgi.input"].read(length) if length else b""
    try:
        return json.loads(raw or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FaultError(f"body is not JSON: {exc}") from exc


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


# ------------------------------------------------------------------------------ server


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """wsgiref's server answers one request at a time: a slow / would block /metrics."""

    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Self-load makes several requests a second: access lines would drown the log."""


def self_load(url: str, rate: float, stop: threading.Event) -> None:
    """Call url `rate` times a second until stop is set; skip a tick when 16 are in flight."""
    slots = threading.BoundedSemaphore(MAX_IN_FLIGHT_SELF_LOAD)

    def call() -> None:
        try:
            with urllib.request.urlopen(url, timeout=MAX_LATENCY + 5) as answer:
                answer.read()
        except (urllib.error.URLError, OSError):
            pass  # 5xx raise HTTPError; they are counted by the server, which is the point
        finally:
            slots.release()

    period = 1.0 / rate
    next_tick = time.monotonic()
    while not stop.is_set():
        if slots.acquire(blocking=False):
            threading.Thread(target=call, daemon=True).start()
        next_tick += period
        stop.wait(max(next_tick - time.monotonic(), 0.0))


def identity_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Identity:
    """Service, supervisord process name and port from options, then supervisord's env."""
    group = environ.get("SUPERVISOR_GROUP_NAME")
    name = environ.get("SUPERVISOR_PROCESS_NAME")
    service = args.service or group or "demo"
    if args.port is not None:
        port = args.port
    elif args.base_port is not None and args.instance is not None:
        port = args.base_port + args.instance
    else:
        raise SystemExit("demo_service: give --port, or --base-port and --instance")
    if args.process:
        process = args.process
    elif group and name:
        process = f"{group}:{name}"
    else:
        number = args.instance if args.instance is not None else port
        process = f"{service}:{service}_{number:02d}"
    advertise = args.advertise or ("127.0.0.1" if args.host in ("", "0.0.0.0") else args.host)
    return Identity(service, process, args.host, port, advertise)


def serve(args: argparse.Namespace) -> int:
    identity = identity_from(args, os.environ)
    state_dir = Path(args.state_dir).resolve() if args.state_dir else None
    if state_dir is not None:
        state_dir.mkdir(parents=True, exist_ok=True)
    app = DemoService(
        identity,
        state_dir=state_dir,
        capacity=args.capacity,
        seed=args.seed,
        work_seconds=args.work,
    )
    try:
        server = make_server(
            identity.host, identity.port, app, _ThreadingServer, handler_class=_QuietHandler
        )
    except OSError as exc:
        print(f"demo_service: cannot listen on {identity.host}:{identity.port}: {exc}", flush=True)
        return 1
    stop = threading.Event()

    def terminate(signum: int, _frame: Any) -> None:
        stop.set()
        # shutdown() waits for serve_forever(), which runs in this (the main) thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    app.register()
    if args.self_load > 0:
        url = f"http://{identity.address}/"
        threading.Thread(target=self_load, args=(url, args.self_load, stop), daemon=True).start()
    print(
        f"demo_service {identity.process} (service {identity.service}) on "
        f"http://{identity.address}/ pid {os.getpid()}",
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        app.deregister()
        server.server_close()
    return 0


# ------------------------------------------------------------------------------ demo helpers

_RANGE = re.compile(r"\[\d+(?:ms|[smhdwy])\]")


def fast_rules(
    text: str, *, for_: str = "2s", keep_firing_for: str = "2s", window: str = "10s"
) -> str:
    """A copy of alerting rules for a demo that runs in seconds.

    Every alerting rule's `for` and `keep_firing_for` become `for_` / `keep_firing_for`,
    and every range window (`[5m]`) in an expression becomes `window`; thresholds, labels
    and annotations are unchanged. Meant for rules/health.rules.yml, whose shipped
    durations suit production. Comments are not kept.
    """
    import yaml  # only the demo tooling needs PyYAML; the service itself does not

    document = yaml.safe_load(text)
    for group in document.get("groups", []):
        for rule in group.get("rules", []):
            if "alert" not in rule:
                continue
            if "for" in rule:
                rule["for"] = for_
            if "keep_firing_for" in rule:
                rule["keep_firing_for"] = keep_firing_for
            rule["expr"] = _RANGE.sub(f"[{window}]", str(rule["expr"]))

    class Dumper(yaml.SafeDumper):
        """Multi-line expressions stay readable blocks (`|`)."""

    def text(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
        style = "|" if "\n" in data else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    Dumper.add_representer(str, text)
    header = (
        f"# Generated by examples/demo_service.py fast_rules(): for {for_}, "
        f"keep_firing_for {keep_firing_for}, range windows {window}. Do not edit.\n"
    )
    return header + yaml.dump(document, Dumper=Dumper, sort_keys=False, width=100)


def placeholders(text: str) -> set[str]:
    """The $names a string.Template text expects."""
    return {
        match.group("named") or match.group("braced")
        for match in string.Template.pattern.finditer(text)
        if match.group("named") or match.group("braced")
    }


def render(path: str | Path, **values: Any) -> str:
    """Fill a string.Template file; KeyError names a missing placeholder, extras are refused."""
    text = Path(path).read_text()
    extra = set(values) - placeholders(text)
    if extra:
        raise KeyError(f"{path} has no placeholder(s) {', '.join(sorted(extra))}")
    return string.Template(text).substitute({k: str(v) for k, v in values.items()})


# ------------------------------------------------------------------------------ command line


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Demo service for Remediator's closed loop (see the module docstring).",
        epilog="`demo_service.py fast-rules FILE` prints a fast copy of alerting rules.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    p.add_argument("--port", type=int, help="port to listen on")
    p.add_argument("--base-port", type=int, help="with --instance: listen on base + instance")
    p.add_argument("--instance", type=int, help="process number (supervisord's process_num)")
    p.add_argument("--service", help="service label (default: supervisord group, or demo)")
    p.add_argument("--process", help="process label (default: supervisord's group:name)")
    p.add_argument("--advertise", help="host Prometheus scrapes (default: the bind address)")
    p.add_argument("--state-dir", help="file_sd registrations and group load live here")
    p.add_argument("--self-load", type=float, default=0.0, help="requests/s to own / (0: off)")
    p.add_argument(
        "--work", type=float, default=0.0, help="seconds each / request takes (default 0)"
    )
    p.add_argument("--capacity", type=int, default=16, help="requests in flight = busy 1.0")
    p.add_argument("--seed", type=int, help="seed of the error-ratio dice")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["fast-rules"]:
        p = argparse.ArgumentParser(prog="demo_service.py fast-rules")
        p.add_argument("file")
        p.add_argument("--for", dest="for_", default="2s")
        p.add_argument("--keep-firing-for", default="2s")
        p.add_argument("--window", default="10s")
        a = p.parse_args(argv[1:])
        text = Path(a.file).read_text()
        print(fast_rules(text, for_=a.for_, keep_firing_for=a.keep_firing_for, window=a.window))
        return 0
    return serve(parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
