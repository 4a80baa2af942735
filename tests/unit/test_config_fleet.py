"""Issue 15: a strategy's `fleet` and `undo` keys, read into FleetConfig / FleetAnalysis /
an undo Strategy; every key with its default, every bad value refused with its key path,
and the warnings `check` gives for fleet settings that defeat themselves."""

from __future__ import annotations

from fractions import Fraction

import pytest

from receiver import analysis, fleets
from receiver.config import ConfigError, Problem, Strategy, config_warnings, parse_config

# Lines 1-9, and the target on line 10: a strategy's extra keys start on line 11.
HEADER = """\
prometheus: {url: 'http://127.0.0.1:9090'}
executors:
  sink: {type: log, current_replicas: 2}
  procs: {type: supervisor, url: 'http://127.0.0.1:9001/RPC2'}
strategies:
  - name: restart-web
    matchers: ['alertname="HighErrorRatio"']
    action: restart
    executor: sink
"""
TARGET = "    target: '{{ labels.instance }}'\n"
ANALYSIS = """\
      progressive: {}
      analysis:
        metrics:
          - {name: error_ratio, query: 'err{instance="{{ labels.instance }}"}'}
"""


def config_with(extra: str) -> str:
    return HEADER + TARGET + extra


def strategy_of(extra: str) -> Strategy:
    return parse_config(config_with(extra)).strategies[0]


def problems_of(extra: str) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_with(extra))
    return caught.value.problems


def only_problem(extra: str) -> Problem:
    found = problems_of(extra)
    assert len(found) == 1, found
    return found[0]


# ---------------------------------------------------------------- defaults


def test_a_strategy_without_fleet_has_no_fleet_and_no_undo() -> None:
    strategy = strategy_of("")

    assert strategy.fleet is None
    assert strategy.undo is None


def test_an_empty_fleet_takes_every_default() -> None:
    fleet = strategy_of("    fleet: {}\n").fleet

    assert fleet is not None
    assert fleet.settings == fleets.FleetSettings()
    assert fleet.settings.group_by == ("service",)
    assert fleet.settings.max_in_flight is None
    assert fleet.settings.escalation_window == 600.0
    assert fleet.settings.progressive is None
    assert fleet.size_query is None
    assert fleet.size_window == 3600.0
    assert fleet.analysis is None


def test_an_empty_progressive_takes_the_defaults_of_the_wave_planner() -> None:
    progressive = strategy_of("    fleet: {progressive: {}}\n").fleet.settings.progressive

    assert progressive == fleets.ProgressiveSettings()
    assert progressive.min_targets == 3
    assert progressive.gather == 30.0
    assert progressive.canary == fleets.Amount(Fraction(1), False)
    assert [str(stage) for stage in progressive.stages] == ["25%", "50%", "100%"]
    assert progressive.pause == 60.0
    assert progressive.max_failures == fleets.Amount(Fraction(1), False)
    assert progressive.on_inconclusive == "halt"


def test_an_analysis_with_only_metrics_takes_the_defaults() -> None:
    found = strategy_of("    fleet:\n" + ANALYSIS).fleet.analysis

    assert found is not None
    assert found.interval == 120.0
    assert found.step == 15.0
    assert found.settings.pass_score == 1.0
    assert found.settings.on_inconclusive == "halt"
    metric = found.settings.metrics[0]
    assert metric == analysis.AnalysisMetric(
        "error_ratio", 'err{instance="{{ labels.instance }}"}', "lower", 0.0
    )
    assert [query.source for query in found.queries] == [metric.query]


# ---------------------------------------------------------------- every key


EVERY_KEY = """\
    fleet:
      group_by: [service, zone]
      size_query: 'count(up{service="{{ labels.service }}"})'
      size_window: 2h
      max_in_flight: 10%
      escalation_window: 15m
      progressive:
        min_targets: 4
        gather: 45s
        canary: 2
        stages: [30%, 60%, 100%]
        pause: 2m
        max_failures: 20%
      analysis:
        metrics:
          - name: error_ratio
            query: 'err{instance="{{ labels.instance }}"}'
            direction: lower
            tolerance: 0.1
          - {name: throughput, query: 'rps{instance="{{ labels.instance }}"}', direction: higher}
        interval: 3m
        step: 20s
        pass_score: 0.5
        on_inconclusive: proceed
    undo:
      action: scale
      scale: {target_value: 1, query: 'sum(load{service="{{ labels.service }}"})'}
"""


def test_every_fleet_key_is_read() -> None:
    fleet = strategy_of(EVERY_KEY).fleet
    settings = fleet.settings

    assert settings.group_by == ("service", "zone")
    assert fleet.size_query.source == 'count(up{service="{{ labels.service }}"})'
    assert fleet.size_window == 2 * 3600.0
    assert settings.max_in_flight == fleets.Amount(Fraction(10), True)
    assert settings.escalation_window == 15 * 60.0


def test_every_progressive_key_is_read() -> None:
    progressive = strategy_of(EVERY_KEY).fleet.settings.progressive

    assert progressive.min_targets == 4
    assert progressive.gather == 45.0
    assert progressive.canary == fleets.Amount(Fraction(2), False)
    assert progressive.stages == tuple(fleets.Amount(Fraction(p), True) for p in (30, 60, 100))
    assert progressive.pause == 120.0
    assert progressive.max_failures == fleets.Amount(Fraction(20), True)


def test_every_analysis_key_is_read_and_on_inconclusive_feeds_the_waves() -> None:
    fleet = strategy_of(EVERY_KEY).fleet
    found = fleet.analysis

    assert found.interval == 180.0
    assert found.step == 20.0
    assert found.settings.pass_score == 0.5
    assert found.settings.on_inconclusive == "proceed"
    assert fleet.settings.progressive.on_inconclusive == "proceed"
    assert found.settings.metrics == (
        analysis.AnalysisMetric(
            "error_ratio", 'err{instance="{{ labels.instance }}"}', "lower", 0.1
        ),
        analysis.AnalysisMetric(
            "throughput", 'rps{instance="{{ labels.instance }}"}', "higher", 0.0
        ),
    )


def test_analysis_queries_are_checked_templates_rendered_with_the_alert_labels() -> None:
    strategy = strategy_of(EVERY_KEY)
    queries = strategy.fleet.analysis.queries
    context = {"labels": {"instance": "web-3:8080"}}

    rendered = [q.render(context, strategy.safe_pattern) for q in queries]

    assert rendered == ['err{instance="web-3:8080"}', 'rps{instance="web-3:8080"}']
    with pytest.raises(ValueError, match="does not match the safe pattern"):
        queries[0].render({"labels": {"instance": 'x"} or vector(1) #'}}, strategy.safe_pattern)


def test_undo_is_a_step_with_the_strategy_name_inheriting_what_it_leaves_unset() -> None:
    strategy = strategy_of(EVERY_KEY)
    undo = strategy.undo

    assert undo.name == "restart-web"
    assert undo.action == "scale"
    assert undo.executor == "sink"  # the strategy's
    assert undo.target.source == "{{ labels.instance }}"  # the strategy's
    assert undo.scale.query.source == 'sum(load{service="{{ labels.service }}"})'
    assert undo.cooldown == strategy.cooldown
    assert (undo.fleet, undo.undo, undo.steps, undo.step_name) == (None, None, (), None)


def test_group_by_may_be_one_label_name() -> None:
    fleet = strategy_of("    fleet: {group_by: cluster}\n").fleet

    assert fleet.settings.group_by == ("cluster",)


@pytest.mark.parametrize(
    ("raw", "expected", "of_30"),
    [
        ("10%", fleets.Amount(Fraction(10), True), 3),
        ("12.5%", fleets.Amount(Fraction(25, 2), True), 3),  # 3.75 rounded down
        ("1%", fleets.Amount(Fraction(1), True), 1),  # 0.3 rounded down, at least 1
        ("100%", fleets.Amount(Fraction(100), True), 30),
        ("4", fleets.Amount(Fraction(4), False), 4),
        (4, fleets.Amount(Fraction(4), False), 4),
    ],
)
def test_max_in_flight_is_a_count_or_a_percentage_of_the_fleet(
    raw: str | int, expected: fleets.Amount, of_30: int
) -> None:
    shown = f"'{raw}'" if isinstance(raw, str) else str(raw)
    settings = strategy_of(f"    fleet: {{max_in_flight: {shown}}}\n").fleet.settings

    assert settings.max_in_flight == expected
    assert fleets.in_flight_limit(settings.max_in_flight, 30) == of_30


def test_canary_and_max_failures_take_percentages_of_the_wave() -> None:
    extra = "    fleet: {progressive: {canary: 10%, max_failures: 50%}}\n"
    progressive = strategy_of(extra).fleet.settings.progressive

    assert fleets.canary_size(30, progressive) == 3  # 10% of 30
    assert fleets.failure_limit(30, progressive) == 15  # 50% of 30


def test_steps_of_a_runbook_carry_its_fleet_and_undo() -> None:
    text = HEADER.replace("    action: restart\n    executor: sink\n", "") + TARGET + EVERY_KEY
    text = text.replace(
        "    undo:\n      action: scale", "    undo:\n      executor: sink\n      action: scale"
    )
    text += (
        "    steps:\n"
        "      - {action: restart, executor: sink}\n"
        "      - {action: run, executor: sink}\n"
    )
    strategy = parse_config(text).strategies[0]

    assert [step.fleet for step in strategy.steps] == [strategy.fleet] * 2
    assert [step.undo for step in strategy.steps] == [strategy.undo] * 2
    assert strategy.fleet.settings.max_in_flight == fleets.Amount(Fraction(10), True)


# ---------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("extra", "path", "message"),
    [
        (
            "    fleet: {max_in_flight: 0}\n",
            "fleet.max_in_flight",
            "max_in_flight must be more than 0, got 0",
        ),
        (
            "    fleet: {max_in_flight: 150%}\n",
            "fleet.max_in_flight",
            "max_in_flight is over 100%: '150%'",
        ),
        (
            "    fleet: {max_in_flight: ten}\n",
            "fleet.max_in_flight",
            "max_in_flight must be a count or a percentage like '10%', got 'ten'",
        ),
        (
            "    fleet: {max_in_flight: 1.5}\n",
            "fleet.max_in_flight",
            "expected a count or a percentage like '10%', got float",
        ),
        (
            "    fleet: {group_by: []}\n",
            "fleet.group_by",
            "expected a label name or a non-empty list of label names",
        ),
        (
            "    fleet: {group_by: ['']}\n",
            "fleet.group_by",
            "invalid label name '': expected a non-empty string",
        ),
        (
            "    fleet: {group_by: [service, service]}\n",
            "fleet.group_by",
            "group_by names a label twice: ('service', 'service')",
        ),
        ("    fleet: {size_window: 0s}\n", "fleet.size_window", "must be longer than 0s, got '0s'"),
        (
            "    fleet: {escalation_window: 600}\n",
            "fleet.escalation_window",
            "expected a duration string such as 30s or 5m, got int",
        ),
        (
            "    fleet: {progressive: {min_targets: 0}}\n",
            "fleet.progressive.min_targets",
            "must be at least 1, got 0",
        ),
        (
            "    fleet: {progressive: {canary: 0}}\n",
            "fleet.progressive.canary",
            "canary must be more than 0, got 0",
        ),
        (
            "    fleet: {progressive: {max_failures: 101%}}\n",
            "fleet.progressive.max_failures",
            "max_failures is over 100%: '101%'",
        ),
        (
            "    fleet: {progressive: {stages: [25%, 50%]}}\n",
            "fleet.progressive.stages",
            "the last stage must be 100% so the wave is covered, got 50%",
        ),
        (
            "    fleet: {progressive: {stages: [50%, 25%, 100%]}}\n",
            "fleet.progressive.stages",
            "stages must increase, got ['50%', '25%', '100%']",
        ),
        (
            "    fleet: {progressive: {stages: 100%}}\n",
            "fleet.progressive.stages",
            "expected a non-empty list of counts or percentages, the last 100%",
        ),
        (
            "    fleet: {progressive: {stages: [25%, 0%, 100%]}}\n",
            "fleet.progressive.stages",
            "stages[1] must be more than 0, got '0%'",
        ),
        (
            "    fleet: {progressive: {pause: 1}}\n",
            "fleet.progressive.pause",
            "expected a duration string such as 30s or 5m, got int",
        ),
        (
            "    fleet: {size_query: 'count(up{service=\"{{ labels.service }\"})'}\n",
            "fleet.size_query",
            "template does not compile: unexpected '}' (line 1)",
        ),
    ],
)
def test_a_bad_fleet_value_is_refused_naming_its_key(extra: str, path: str, message: str) -> None:
    problem = only_problem(extra)

    assert (problem.path, problem.message) == (f"strategies[0].{path}", message)
    assert problem.line == 11


def _analysis(lines: str) -> str:
    return "    fleet:\n      progressive: {}\n      analysis:\n" + lines


@pytest.mark.parametrize(
    ("extra", "path", "message"),
    [
        (_analysis("        metrics: []\n"), "metrics", "expected a non-empty list of metrics"),
        (_analysis("        interval: 2m\n"), "metrics", "required key is missing"),
        (
            _analysis("        metrics: [{name: e}]\n"),
            "metrics[0].query",
            "required key is missing",
        ),
        (
            _analysis("        metrics: [{name: e, query: x, direction: sideways}]\n"),
            "metrics[0].direction",
            "expected one of lower, higher, got 'sideways'",
        ),
        (
            _analysis("        metrics: [{name: e, query: x, tolerance: -0.1}]\n"),
            "metrics[0].tolerance",
            "must be 0 or more (a ratio: 0.1 = 10%), got -0.1",
        ),
        (
            _analysis("        metrics: [{name: e, query: x, window: 1m}]\n"),
            "metrics[0].window",
            "unknown key 'window'; allowed: direction, name, query, tolerance",
        ),
        (
            _analysis("        metrics: [{name: e, query: x}, {name: e, query: y}]\n"),
            "metrics",
            "analysis metric names must be unique, repeated: ['e']",
        ),
        (
            _analysis("        metrics: [{name: e, query: x}]\n        pass_score: 0\n"),
            "pass_score",
            "must be a ratio in (0, 1] (1.0 = every metric), got 0",
        ),
        (
            _analysis("        metrics: [{name: e, query: x}]\n        on_inconclusive: wait\n"),
            "on_inconclusive",
            "expected one of halt, proceed, got 'wait'",
        ),
        (
            _analysis(
                "        metrics: [{name: e, query: x}]\n        interval: 1m\n        step: 2m\n"
            ),
            "step",
            "must not be longer than analysis.interval (1m), got 2m: a query_range step longer "
            "than its range gives one sample",
        ),
        (
            _analysis(
                "        metrics: [{name: e, query: x}]\n        interval: 4h\n        step: 1s\n"
            ),
            "step",
            f"query_range over {4 * 3600} s at a 1 s step is {4 * 3600 + 1:,} points per series; "
            "Prometheus refuses more than 11,000 steps (exceeded maximum resolution): use a "
            "larger step or a shorter interval",
        ),
    ],
)
def test_a_bad_analysis_value_is_refused_naming_its_key(
    extra: str, path: str, message: str
) -> None:
    problem = only_problem(extra)

    assert (problem.path, problem.message) == (f"strategies[0].fleet.analysis.{path}", message)


def test_analysis_without_progressive_is_refused() -> None:
    extra = "    fleet:\n      analysis: {metrics: [{name: e, query: x}]}\n"
    problem = only_problem(extra)

    assert problem.path == "strategies[0].fleet.analysis"
    assert problem.message == (
        "needs fleet.progressive: the analysis judges the stages of a wave, and without "
        "progressive there are no waves, so it would never run"
    )


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ("    fleet: {max_in_fligth: 3}\n", "fleet.max_in_fligth"),
        ("    fleet: {progressive: {canaries: 1}}\n", "fleet.progressive.canaries"),
        ("    fleet:\n" + ANALYSIS + "        window: 1m\n", "fleet.analysis.window"),
    ],
)
def test_an_unknown_fleet_key_is_refused(extra: str, path: str) -> None:
    problem = only_problem(extra)

    key = path.rsplit(".", 1)[1]
    assert problem.path == f"strategies[0].{path}"
    assert problem.message.startswith(f"unknown key {key!r}; allowed: ")


UNDO_NEEDS = (
    "needs fleet.analysis: undo runs on a wave's canaries when the analysis finds them "
    "worse than the baseline"
)


@pytest.mark.parametrize(
    "extra",
    [
        "    undo: {action: restart}\n",
        "    fleet: {progressive: {}}\n    undo: {action: restart}\n",
    ],
)
def test_undo_without_an_analysis_is_refused(extra: str) -> None:
    problem = only_problem(extra)

    assert (problem.path, problem.message) == ("strategies[0].undo", UNDO_NEEDS)


@pytest.mark.parametrize(
    ("undo", "path", "message"),
    [
        (
            "{action: restart, name: back}",
            "undo.name",
            "unknown key 'name'; allowed: action, approval, breaker, command, cooldown, dry_run, "
            "executor, idempotent, params, preconditions, request, scale, silence, target, "
            "timeout, verify",
        ),
        (
            "{action: run, executor: procs}",
            "undo.action",
            "a supervisor executor cannot run; it supports restart, scale",
        ),
        ("{action: scale}", "undo.scale", "required for action 'scale'"),
    ],
)
def test_a_bad_undo_step_is_refused_as_a_step_would_be(undo: str, path: str, message: str) -> None:
    problem = only_problem("    fleet:\n" + ANALYSIS + f"    undo: {undo}\n")

    assert (problem.path, problem.message) == (f"strategies[0].{path}", message)


def test_a_fleet_query_needs_prometheus() -> None:
    text = config_with("    fleet: {size_query: 'count(up)'}\n").replace(
        "prometheus: {url: 'http://127.0.0.1:9090'}\n", ""
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text)

    [problem] = caught.value.problems
    assert (problem.path, problem.message) == (
        "prometheus.url",
        "required by strategies that query Prometheus: restart-web",
    )


# ---------------------------------------------------------------- check's warnings


def fleet_warnings(extra: str) -> list[tuple[str, str]]:
    found = config_warnings(parse_config(config_with(extra)))
    return [(w.path, w.message) for w in found if ".fleet" in w.path]


def test_no_fleet_warning_for_sound_settings() -> None:
    assert fleet_warnings(EVERY_KEY) == []


def test_an_analysis_interval_too_short_for_the_u_test_is_warned_of() -> None:
    extra = "    fleet:\n" + ANALYSIS + "        interval: 45s\n        step: 15s\n"
    samples = 45 // 15 + 1  # query_range includes both ends

    assert fleet_warnings(extra) == [
        (
            "strategies[0].fleet.analysis.interval",
            f"strategy 'restart-web': fleet.analysis samples 45s at 15s steps, {samples} "
            "sample(s) per target, fewer than the 5 the Mann-Whitney U test needs on each "
            "side: a one-target canary is judged by comparing means only; make the interval "
            "at least 4 steps long",
        )
    ]


def test_an_interval_of_exactly_min_samples_is_not_warned_of() -> None:
    extra = "    fleet:\n" + ANALYSIS + "        interval: 1m\n        step: 15s\n"

    assert fleet_warnings(extra) == []  # 60 // 15 + 1 = 5 samples


def test_a_canary_as_large_as_the_smallest_wave_is_warned_of() -> None:
    extra = "    fleet: {progressive: {min_targets: 2, canary: 2}}\n"

    assert fleet_warnings(extra) == [
        (
            "strategies[0].fleet.progressive.canary",
            "strategy 'restart-web': fleet.progressive.canary 2 takes all of a wave of 2 "
            "(min_targets): every target is a canary, none is left as the baseline to "
            "compare with, and the wave has no stages to hold back; lower canary or raise "
            "min_targets",
        )
    ]


def test_an_undo_timeout_over_its_executor_cap_is_warned_of_as_a_step_would_be() -> None:
    text = config_with(
        "    fleet:\n"
        + ANALYSIS
        + "    undo: {action: run, executor: sh, timeout: 2m, command: [/bin/true]}\n"
    ).replace("executors:\n", "executors:\n  sh: {type: command, timeout: 30s}\n")
    found = [w for w in config_warnings(parse_config(text)) if w.path.endswith(".timeout")]

    assert [w.path for w in found] == ["strategies[0].undo.timeout"]
    assert "caps every action at 30s (executors.sh.timeout)" in found[0].message
