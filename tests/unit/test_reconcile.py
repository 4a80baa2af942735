"""The reconciliation decision (receiver/reconcile.py): which firing incidents to close,
given what Alertmanager holds and when each incident was last notified."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from receiver.config import ConfigError, parse_config
from receiver.reconcile import (
    REASON,
    STARTS_AT_TOLERANCE,
    Closure,
    FiringIncident,
    HeldAlert,
    ReconcileSettings,
    decide,
)
from receiver.reconciler import settings_of

AM = "http://127.0.0.1:9093"
ADVERTISED = "http://alertmanager.example:9093"
OTHER = "http://other-alertmanager:9093"
GRACE = 600.0
NOW = 1_800_000_000.0
START = NOW - 3600.0  # every incident started an hour ago
SETTINGS = ReconcileSettings(AM, frozenset({AM, ADVERTISED}), GRACE, 300.0)
NOT_HELD = REASON.format(AM)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def incident(
    id: int = 1,
    fingerprint: str = "1470b5e6f638f8ce",
    starts_at_ts: float = START,
    external_url: str = AM,
    last_seen: float = NOW - GRACE - 1,
) -> FiringIncident:
    return FiringIncident(id, fingerprint, starts_at_ts, external_url, last_seen)


CASES = {
    "held: same fingerprint and start": (incident(), [HeldAlert("1470b5e6f638f8ce", START)], []),
    "held: start given to the millisecond by the API": (
        incident(starts_at_ts=START + 0.000456),
        [HeldAlert("1470b5e6f638f8ce", START)],
        [],
    ),
    "not held: Alertmanager holds nothing": (incident(), [], [Closure(1, NOT_HELD)]),
    "not held: another fingerprint": (
        incident(),
        [HeldAlert("ffffffffffffffff", START)],
        [Closure(1, NOT_HELD)],
    ),
    "not held: the fingerprint fires again as a later occurrence": (
        incident(),
        [HeldAlert("1470b5e6f638f8ce", START + 60)],
        [Closure(1, f"{NOT_HELD} (it holds the occurrence starting {iso(START + 60)})")],
    ),
    "refreshed within the grace: kept even though not held": (
        incident(last_seen=NOW - GRACE + 1),
        [],
        [],
    ),
    "from the URL Alertmanager advertises: a candidate": (
        incident(external_url=ADVERTISED + "/"),
        [],
        [Closure(1, NOT_HELD)],
    ),
    "from another Alertmanager: never a candidate": (incident(external_url=OTHER), [], []),
    "from an unknown Alertmanager (journaled before external URLs were)": (
        incident(external_url=""),
        [],
        [],
    ),
}


@pytest.mark.parametrize(("firing", "held", "closed"), CASES.values(), ids=CASES.keys())
def test_decision(firing: FiringIncident, held: list[HeldAlert], closed: list[Closure]) -> None:
    decision = decide([firing], held, SETTINGS, NOW)
    assert decision.failed is None
    assert list(decision.close) == closed


def test_alertmanager_down_closes_nothing_and_says_why() -> None:
    firing = [incident(1), incident(2, fingerprint="aaaaaaaaaaaaaaaa")]
    decision = decide(firing, None, SETTINGS, NOW, "cannot reach it: Connection refused")
    assert decision.close == ()
    assert decision.kept == (1, 2)
    assert decision.failed == (
        f"Alertmanager {AM} could not be asked: cannot reach it: Connection refused"
    )


@pytest.mark.parametrize(
    ("started_ago", "closed"), [(GRACE - 1, ()), (GRACE, (Closure(1, NOT_HELD),))]
)
def test_an_alertmanager_restarted_within_the_grace_is_not_trusted_yet(
    started_ago: float, closed: tuple[Closure, ...]
) -> None:
    decision = decide([incident()], [], SETTINGS, NOW, started_at=NOW - started_ago)
    assert decision.close == closed
    assert (decision.failed is None) == bool(closed)


def test_held_and_not_held_are_told_apart_in_one_run() -> None:
    firing = [incident(1), incident(2, fingerprint="aaaaaaaaaaaaaaaa"), incident(3, last_seen=NOW)]
    decision = decide(firing, [HeldAlert("aaaaaaaaaaaaaaaa", START)], SETTINGS, NOW)
    assert decision.close == (Closure(1, NOT_HELD),)
    assert decision.kept == (2,)
    assert decision.candidates == 2
    assert decision.not_candidates == (3,)


def test_a_start_two_milliseconds_away_is_another_occurrence() -> None:
    later = START + 2 * STARTS_AT_TOLERANCE
    held = [HeldAlert("1470b5e6f638f8ce", later)]
    reason = f"{NOT_HELD} (it holds the occurrence starting {iso(later)})"
    assert decide([incident()], held, SETTINGS, NOW).close == (Closure(1, reason),)


@pytest.mark.parametrize(
    ("grace", "interval", "urls"),
    [(-1.0, 300.0, {AM}), (math.nan, 300.0, {AM}), (600.0, -5.0, {AM}), (600.0, 300.0, set())],
)
def test_settings_refuse_nonsense(grace: float, interval: float, urls: set[str]) -> None:
    with pytest.raises(ValueError):
        ReconcileSettings(AM, frozenset(urls), grace, interval)


# ---------------------------------------------------------------- the config section

LOG = "executors: {logger: {type: log}}\n"


def test_without_a_top_level_alertmanager_nothing_is_reconciled() -> None:
    assert settings_of(parse_config(LOG)) is None


def test_defaults_ask_every_five_minutes_with_a_ten_minute_grace() -> None:
    config = parse_config(f"alertmanager: {{url: '{AM}/'}}\n" + LOG)
    assert settings_of(config) == ReconcileSettings(AM, frozenset({AM}), 600.0, 300.0)


def test_external_urls_name_the_same_alertmanager() -> None:
    section = f"url: '{AM}', reconcile_interval: 0s, external_urls: ['{ADVERTISED}/']"
    settings = settings_of(parse_config(f"alertmanager: {{{section}}}\n" + LOG))
    assert settings is not None
    assert (settings.interval, settings.own_urls) == (0.0, frozenset({AM, ADVERTISED}))


@pytest.mark.parametrize(
    ("setting", "where", "problem"),
    [
        ("reconcile_interval: 5", "reconcile_interval (line 1)", "expected a duration"),
        ("reconcile_grace: soon", "reconcile_grace (line 1)", "invalid duration"),
        ("external_urls: 'http://a:9093'", "external_urls (line 1)", "expected a list"),
        ("external_urls: ['ftp://a']", "external_urls (line 1)", "expected an http://"),
        ("reconcile_every: 5m", "reconcile_every (line 1)", "unknown key"),
    ],
)
def test_a_bad_setting_is_refused_at_load(setting: str, where: str, problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(f"alertmanager: {{url: '{AM}', {setting}}}\n" + LOG)
    assert str(refused.value).startswith(f"alertmanager.{where}: ")
    assert problem in str(refused.value)
