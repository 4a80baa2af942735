"""Runs reconciliation (receiver/reconcile.py decides): the timer, Alertmanager's API v2
and the journal's reads and writes.

One thread in the journal writer process (receiver/writer/process.py), beside the
dispatcher, so that every journal write stays in that process and the writer's loop is
never held by an HTTP call. It runs every `alertmanager.reconcile_interval`, and at
once when `trigger()` is called (the dispatcher calls it after expiring a silence of
its own: an alert that resolved while silenced was never notified resolved). It reads
the config at each turn, so a reload takes effect within POLL_S.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import requests

from receiver.alerts import PayloadError, parse_timestamp
from receiver.config import Config
from receiver.executors.http import connection_reason
from receiver.reconcile import (
    FiringIncident,
    HeldAlert,
    ReconcileSettings,
    Reconciliation,
    decide,
    is_candidate,
)
from receiver.store.base import StoreUnavailable

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often the thread looks up: stop, trigger, a reload's new interval
ALERTS_PATH = "/api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true"
STATUS_PATH = "/api/v2/status"
CANCELLED = "alert no longer firing (Alertmanager no longer holds it) before the action ran"


class ConfigSource(Protocol):
    config: Config


class AlertmanagerUnavailable(RuntimeError):
    """Alertmanager could not be asked, or its answer was not a list of alerts."""


def settings_of(config: Config) -> ReconcileSettings | None:
    """The reconciliation the config asks for; None without a top-level alertmanager."""
    am = config.alertmanager
    if am is None:
        return None
    return ReconcileSettings(am.url, am.own_urls, am.reconcile_grace, am.reconcile_interval)


def fetch_held(url: str, timeout: float) -> list[HeldAlert]:
    """Every alert Alertmanager at `url` holds (active, silenced, inhibited, unprocessed;
    API v2 leaves resolved alerts out). Raises AlertmanagerUnavailable when it cannot be
    reached, answers other than 200, or answers anything but a list of alerts, each
    with a string `fingerprint` and an RFC 3339 `startsAt`: half an answer must never
    close an incident."""
    response = _get(url + ALERTS_PATH, timeout, "")
    try:
        return _held(response.json())
    except (ValueError, PayloadError) as exc:
        raise AlertmanagerUnavailable(f"not a list of alerts: {exc}") from exc


def fetch_started(url: str, timeout: float) -> float:
    """When Alertmanager at `url` started (API v2 `GET /api/v2/status`, its `uptime`),
    in seconds since the epoch; raises AlertmanagerUnavailable as fetch_held does."""
    response = _get(url + STATUS_PATH, timeout, "status: ")
    try:
        body = response.json()
        started = parse_timestamp(body.get("uptime") if isinstance(body, dict) else None, "uptime")
    except (ValueError, PayloadError) as exc:
        raise AlertmanagerUnavailable(f"status without its start time: {exc}") from exc
    if started is None:
        raise AlertmanagerUnavailable("status without its start time")
    return started.timestamp()


def _get(url: str, timeout: float, what: str) -> requests.Response:
    """A 200 answer from Alertmanager, or AlertmanagerUnavailable saying why not
    (`what` prefixes an HTTP error, naming the endpoint)."""
    try:
        response = requests.get(url, timeout=timeout, allow_redirects=False)
    except requests.Timeout as exc:
        raise AlertmanagerUnavailable(f"no answer within {timeout:g}s") from exc
    except requests.RequestException as exc:
        raise AlertmanagerUnavailable(f"cannot reach it: {connection_reason(exc)}") from exc
    if response.status_code != 200:
        text = " ".join(response.text.split())[:200]
        raise AlertmanagerUnavailable(f"{what}HTTP {response.status_code}: {text}")
    return response


def _held(body: Any) -> list[HeldAlert]:
    if not isinstance(body, list):
        raise ValueError(f"expected a JSON list, got {type(body).__name__}")
    held = []
    for index, item in enumerate(body):
        where = f"alerts[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("fingerprint"), str):
            raise ValueError(f"{where}: no fingerprint")
        starts_at = parse_timestamp(item.get("startsAt"), f"{where}.startsAt")
        if starts_at is None:
            raise ValueError(f"{where}: no startsAt")
        held.append(HeldAlert(item["fingerprint"], starts_at.timestamp()))
    return held


class Reconciler:
    """The reconciliation thread: `start()`, `trigger()` for a run now, `stop()`."""

    def __init__(
        self, source: ConfigSource, store: Any, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.source = source
        self.store = store
        self.clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="reconcile", daemon=True)
        self._thread.start()

    def trigger(self) -> None:
        """Reconcile now (e.g. right after Remediator expired a silence of its own)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        last_run = -math.inf  # a first run at start: notifications may have been missed
        while not self._stop.is_set():
            triggered = self._wake.wait(POLL_S)
            self._wake.clear()
            settings = settings_of(self.source.config)
            if self._stop.is_set() or settings is None:
                continue
            due = settings.interval > 0 and time.monotonic() - last_run >= settings.interval
            if triggered or due:
                last_run = time.monotonic()
                self._guarded(settings)

    def _guarded(self, settings: ReconcileSettings) -> None:
        try:
            self.run_once(settings)
        except StoreUnavailable as exc:
            log.error("reconciliation skipped: journal unavailable: %s", exc)
        except Exception:  # a bug here must never end the thread, nor the writer
            log.exception("reconciliation failed unexpectedly; will try again")

    def run_once(self, settings: ReconcileSettings) -> Reconciliation | None:
        """One reconciliation: None when no incident is a candidate (Alertmanager is not
        asked), else the decision, applied to the journal and counted."""
        now = self.clock()
        firing = [FiringIncident(*row) for row in self.store.firing_for_reconciliation()]
        if not any(is_candidate(incident, settings, now) for incident in firing):
            return None
        timeout = self.source.config.alertmanager.timeout  # type: ignore[union-attr]
        held: list[HeldAlert] | None = None
        started: float | None = None
        failure = ""
        try:
            started = fetch_started(settings.url, timeout)
            held = fetch_held(settings.url, timeout)
        except AlertmanagerUnavailable as exc:
            failure = str(exc)
        decision = decide(firing, held, settings, now, failure, started)
        if decision.failed is not None:
            self.store.count_failed_reconciliation()
            log.warning("reconciliation closed nothing: %s", decision.failed)
            return decision
        seen = {incident.id: incident.last_seen for incident in firing}
        closures = [(c.incident_id, c.reason, seen[c.incident_id]) for c in decision.close]
        closed = self.store.close_reconciled(closures, now, CANCELLED)
        for closure in decision.close:
            if closure.incident_id in closed:
                log.info("incident closed: %s", closure.reason,
                         extra={"incident_id": closure.incident_id})  # fmt: skip
        log.info(
            "reconciled %d firing incidents with Alertmanager %s: %d closed, %d still held",
            decision.candidates,
            settings.url,
            len(closed),
            len(decision.kept),
        )
        return decision
