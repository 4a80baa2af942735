"""Retention's rules (receiver/retention.py) and the config's `retention` section."""

from __future__ import annotations

import pytest

from receiver import retention
from receiver.config import ConfigError, config_warnings, parse_config
from receiver.retention import DAY, RetentionSettings, Schedule, Window

STRATEGY = """
executors: {logger: {type: log}}
strategies:
  - name: fix
    matchers: ['alertname="Down"']
    action: restart
    executor: logger
    target: '{{ labels.service }}'
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return [str(problem) for problem in caught.value.problems]


def test_defaults_are_seven_days_of_notifications_and_ninety_of_incidents():
    settings = parse_config(STRATEGY).retention
    assert settings == RetentionSettings(7 * DAY, 90 * DAY, 60.0, 500)
    assert settings.enabled


def test_durations_are_read_in_the_config_syntax():
    text = "retention: {notifications: 36h, incidents: 2w, interval: 30s, batch_size: 100}\n"
    assert parse_config(text).retention == RetentionSettings(36 * 3600, 14 * DAY, 30.0, 100)


def test_zero_turns_pruning_off_and_check_warns():
    config = parse_config("retention: {notifications: 0s, incidents: 0s}\n" + STRATEGY)
    assert not config.retention.enabled
    warned = {w.path for w in config_warnings(config)}
    assert {"retention.notifications", "retention.incidents"} <= warned


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("{incident: 90d}", "retention.incident (line 1): unknown key 'incident'"),
        ("{notifications: 7}", "retention.notifications (line 1): expected a duration string"),
        ("{incidents: soon}", "retention.incidents (line 1): invalid duration 'soon'"),
        ("{incidents: -90d}", "retention.incidents (line 1): must be 0s (keep forever) or longer"),
        ("{interval: 0s}", "retention.interval (line 1): must be longer than 0s"),
        ("{batch_size: 0}", "retention.batch_size (line 1): must be at least 1, got 0"),
        ("30d", "retention (line 1): expected a mapping, got str"),
    ],
)
def test_bad_retention_is_refused_with_its_key(section: str, expected: str):
    found = problems(f"retention: {section}\n")
    assert len(found) == 1 and found[0].startswith(expected), found


def test_incidents_shorter_than_the_mttr_window_names_both_values():
    [found] = problems("defaults: {mttr_window: 30d}\nretention: {incidents: 7d}\n")
    assert found.startswith("retention.incidents (line 2): 7d is shorter than ")
    assert "defaults.mttr_window (30d)" in found


@pytest.mark.parametrize(
    ("extra", "path", "window"),
    [
        ("    cooldown: 40d\n", "strategies[0].cooldown", "40d"),
        ("    budget: {max_actions: 3, window: 45d}\n", "strategies[0].budget.window", "45d"),
        ("    breaker: {window: 50d}\n", "strategies[0].breaker.window", "50d"),
        ("    fleet: {size_window: 60d}\n", "strategies[0].fleet.size_window", "60d"),
        (
            "    fleet: {escalation_window: 70d}\n",
            "strategies[0].fleet.escalation_window",
            "70d",
        ),
    ],
)
def test_incidents_shorter_than_a_gate_window_is_refused(extra: str, path: str, window: str):
    [found] = problems("retention: {incidents: 30d}\n" + STRATEGY + extra)
    assert f"30d is shorter than {path} ({window})" in found


def test_unset_incidents_retention_grows_to_the_longest_window():
    config = parse_config("defaults: {mttr_window: 120d}\n" + STRATEGY)
    assert config.retention.incidents == 120 * DAY


def test_the_longest_window_is_the_one_named():
    config = parse_config(STRATEGY + "    cooldown: 2d\n    budget: {max_actions: 1, window: 3d}\n")
    assert retention.longest(retention.read_windows(config)) == Window(
        "strategies[0].budget.window", 3 * DAY
    )


def test_cutoffs_are_the_retentions_and_the_window_back_from_now():
    settings = RetentionSettings(notifications=7 * DAY, incidents=90 * DAY)
    cut = retention.cutoffs(settings, 2 * DAY, now=1000 * DAY)
    assert cut == retention.Cutoffs(1000 * DAY, 993 * DAY, 910 * DAY, 998 * DAY)


def test_a_kind_kept_forever_has_no_cutoff():
    cut = retention.cutoffs(RetentionSettings(notifications=0, incidents=90 * DAY), DAY, 0.0)
    assert cut.notifications is None and cut.incidents == -90 * DAY


@pytest.mark.parametrize(
    "kwargs",
    [
        {"notifications": -1.0},
        {"incidents": float("nan")},
        {"interval": 0.0},
        {"batch_size": 0},
    ],
)
def test_settings_refuse_nonsense_at_construction(kwargs):
    with pytest.raises(ValueError):
        RetentionSettings(**kwargs)


def test_first_pass_comes_soon_after_start_then_one_per_interval():
    settings = RetentionSettings(interval=60.0)
    schedule = Schedule.starting(settings, now=100.0)
    assert not schedule.due(109.9) and schedule.due(110.0)
    schedule.passed(settings, now=111.0)
    assert not schedule.due(170.0) and schedule.due(171.0)


def test_a_short_interval_brings_the_first_pass_sooner():
    schedule = Schedule.starting(RetentionSettings(interval=1.0), now=0.0)
    assert schedule.due(1.0)
