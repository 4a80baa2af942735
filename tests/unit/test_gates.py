"""Gate evaluation (pure): each gate alone, then their fixed order.

Strategies come from real YAML through `parse_config`; time is a plain float clock.
"""

from __future__ import annotations

import itertools

import pytest

from receiver import gates
from receiver.breaker import CLOSED, HALF_OPEN, OPEN, BreakerState
from receiver.config import Strategy, parse_config
from receiver.gates import DEFER, DELAY, LOCK_RECHECK, RUN, SKIP, GateInputs, evaluate

NOW = 1_000_000.0
TARGET = "checkout-api"
MAX_CONCURRENT = 4
COOLDOWN = 300.0  # 5m
RECOVERY = 600.0  # 10m


def make_strategy(
    *, dry_run: bool = False, budget: str = "{max_actions: 3, window: 1h}"
) -> Strategy:
    config = parse_config(
        f"""\
defaults:
  max_concurrent_actions: {MAX_CONCURRENT}
executors:
  logger: {{type: log}}
strategies:
  - name: restart-api
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: logger
    target: '{{{{ labels.service }}}}'
    cooldown: 5m
    budget: {budget}
    breaker: {{failure_threshold: 2, recovery_timeout: 10m, half_open_max_calls: 1}}
    dry_run: {str(dry_run).lower()}
"""
    )
    (strategy,) = config.strategies
    return strategy


STRATEGY = make_strategy()
DRY_RUN = make_strategy(dry_run=True)

OPEN_STATE = BreakerState(state=OPEN, consecutive_failures=2, opened_at=NOW - 60)


def inputs(**overrides) -> GateInputs:
    """Inputs under which every gate passes; override one field to fail one gate."""
    values = {
        "running_on_target": None,
        "last_started": None,
        "started_in_budget_window": 0,
        "running_total": 0,
        "breaker_state": BreakerState(),
    }
    values.update(overrides)
    return GateInputs(**values)


def test_the_parsed_strategy_is_what_the_tests_assume() -> None:
    assert STRATEGY.cooldown == COOLDOWN
    assert STRATEGY.budget is not None
    assert (STRATEGY.budget.max_actions, STRATEGY.budget.window) == (3, 3600.0)
    assert STRATEGY.breaker.recovery_timeout == RECOVERY
    assert STRATEGY.breaker.half_open_max_calls == 1
    assert STRATEGY.dry_run is False
    assert DRY_RUN.dry_run is True


def test_all_gates_pass() -> None:
    verdict = evaluate(STRATEGY, TARGET, inputs(), MAX_CONCURRENT, NOW)
    assert verdict.outcome == RUN
    assert verdict.gate == "open"
    assert verdict.reason == "all gates passed"
    assert verdict.breaker_state == BreakerState()


# --- each gate alone ------------------------------------------------------------------------


def test_dry_run_skips() -> None:
    verdict = evaluate(DRY_RUN, TARGET, inputs(), MAX_CONCURRENT, NOW)
    assert (verdict.outcome, verdict.gate) == (SKIP, "dry_run")
    assert verdict.reason == f"dry_run: would restart {TARGET}"


def test_action_running_on_the_target_locks_it() -> None:
    """A locked action waits (issue 14: gates delay, they do not drop) and is looked at
    again after LOCK_RECHECK seconds: when the lock frees is not known."""
    verdict = evaluate(STRATEGY, TARGET, inputs(running_on_target=42), MAX_CONCURRENT, NOW)
    assert (verdict.outcome, verdict.gate) == (DELAY, "locked")
    assert verdict.reason == f"locked: action 42 is running on {TARGET}"
    assert verdict.not_before == NOW + LOCK_RECHECK


def test_action_id_zero_still_locks() -> None:
    """`running_on_target` is an id; a falsy id must not read as 'nothing running'."""
    verdict = evaluate(STRATEGY, TARGET, inputs(running_on_target=0), MAX_CONCURRENT, NOW)
    assert verdict.gate == "locked"


@pytest.mark.parametrize(
    ("ago", "outcome", "gate"),
    [
        (0.0, DELAY, "cooldown"),
        (1.0, DELAY, "cooldown"),
        (COOLDOWN - 0.001, DELAY, "cooldown"),
        (COOLDOWN, RUN, "open"),  # boundary: exactly the cooldown later, it runs
        (COOLDOWN + 1, RUN, "open"),
    ],
)
def test_cooldown_window(ago: float, outcome: str, gate: str) -> None:
    verdict = evaluate(STRATEGY, TARGET, inputs(last_started=NOW - ago), MAX_CONCURRENT, NOW)
    assert (verdict.outcome, verdict.gate) == (outcome, gate)
    if outcome == DELAY:  # eligible exactly when the cooldown ends
        assert verdict.not_before == pytest.approx(NOW - ago + COOLDOWN)


def test_cooldown_reason_says_how_long_ago_and_how_long_left() -> None:
    verdict = evaluate(STRATEGY, TARGET, inputs(last_started=NOW - 90), MAX_CONCURRENT, NOW)
    assert verdict.reason == f"cooldown: restart-api acted on {TARGET} 1m30s ago (3m30s left)"


def test_zero_cooldown_never_blocks() -> None:
    strategy = parse_config(
        """\
executors: {logger: {type: log}}
strategies:
  - {name: s, matchers: ['a="b"'], action: run, executor: logger, target: t, cooldown: 0s}
"""
    ).strategies[0]
    verdict = evaluate(strategy, "t", inputs(last_started=NOW), MAX_CONCURRENT, NOW)
    assert verdict.outcome == RUN


@pytest.mark.parametrize(
    ("started", "outcome", "gate"),
    [(0, RUN, "open"), (2, RUN, "open"), (3, SKIP, "budget"), (7, SKIP, "budget")],
)
def test_budget_at_and_below_max(started: int, outcome: str, gate: str) -> None:
    verdict = evaluate(
        STRATEGY, TARGET, inputs(started_in_budget_window=started), MAX_CONCURRENT, NOW
    )
    assert (verdict.outcome, verdict.gate) == (outcome, gate)


def test_budget_reason() -> None:
    verdict = evaluate(STRATEGY, TARGET, inputs(started_in_budget_window=3), MAX_CONCURRENT, NOW)
    assert verdict.reason == f"budget: 3 actions on {TARGET} in the last 1h (max 3)"


def test_no_budget_configured_never_blocks() -> None:
    strategy = parse_config(
        """\
executors: {logger: {type: log}}
strategies:
  - {name: s, matchers: ['a="b"'], action: run, executor: logger, target: t}
"""
    ).strategies[0]
    assert strategy.budget is None
    verdict = evaluate(strategy, "t", inputs(started_in_budget_window=10_000), MAX_CONCURRENT, NOW)
    assert verdict.outcome == RUN


@pytest.mark.parametrize(
    ("running", "outcome", "gate"),
    [(0, RUN, "open"), (MAX_CONCURRENT - 1, RUN, "open"), (MAX_CONCURRENT, DEFER, "concurrency"),
     (MAX_CONCURRENT + 2, DEFER, "concurrency")],
)  # fmt: skip
def test_concurrency_cap_defers(running: int, outcome: str, gate: str) -> None:
    verdict = evaluate(STRATEGY, TARGET, inputs(running_total=running), MAX_CONCURRENT, NOW)
    assert (verdict.outcome, verdict.gate) == (outcome, gate)


def test_concurrency_reason() -> None:
    verdict = evaluate(STRATEGY, TARGET, inputs(running_total=4), MAX_CONCURRENT, NOW)
    assert verdict.reason == f"concurrency: 4 actions running (max 4), {TARGET} waits"


def test_open_breaker_skips() -> None:
    verdict = evaluate(STRATEGY, TARGET, inputs(breaker_state=OPEN_STATE), MAX_CONCURRENT, NOW)
    assert (verdict.outcome, verdict.gate) == (SKIP, "breaker_open")
    assert verdict.reason == f"breaker_open: restart-api on {TARGET} is open"
    assert verdict.breaker_state == OPEN_STATE  # nothing changes while it stays open


def test_open_breaker_just_before_recovery_timeout_still_skips() -> None:
    state = BreakerState(state=OPEN, consecutive_failures=2, opened_at=NOW - RECOVERY + 0.5)
    verdict = evaluate(STRATEGY, TARGET, inputs(breaker_state=state), MAX_CONCURRENT, NOW)
    assert verdict.gate == "breaker_open"
    assert verdict.breaker_state.state == OPEN


def test_open_breaker_past_recovery_timeout_admits_one_half_open_trial() -> None:
    state = BreakerState(state=OPEN, consecutive_failures=2, opened_at=NOW - RECOVERY - 1)
    verdict = evaluate(STRATEGY, TARGET, inputs(breaker_state=state), MAX_CONCURRENT, NOW)
    assert (verdict.outcome, verdict.gate) == (RUN, "open")
    assert verdict.breaker_state is not None
    assert verdict.breaker_state.state == HALF_OPEN
    assert verdict.breaker_state.half_open_in_flight == 1
    assert verdict.breaker_state.half_open_successes == 0

    # The persisted state says one trial is in flight: a second one is refused.
    second = evaluate(
        STRATEGY, TARGET, inputs(breaker_state=verdict.breaker_state), MAX_CONCURRENT, NOW + 1
    )
    assert (second.outcome, second.gate) == (SKIP, "breaker_open")
    assert second.reason == f"breaker_open: restart-api on {TARGET} is half_open"
    assert second.breaker_state == verdict.breaker_state


def test_skip_by_an_earlier_gate_persists_the_time_driven_half_open_without_a_trial() -> None:
    """A gate before the breaker refuses: the breaker moves to half_open (time passed) but
    no trial slot is taken, so a later action can still probe."""
    state = BreakerState(state=OPEN, consecutive_failures=2, opened_at=NOW - RECOVERY - 1)
    verdict = evaluate(
        STRATEGY, TARGET, inputs(breaker_state=state, running_on_target=7), MAX_CONCURRENT, NOW
    )
    assert verdict.gate == "locked"
    assert verdict.breaker_state is not None
    assert verdict.breaker_state.state == HALF_OPEN
    assert verdict.breaker_state.half_open_in_flight == 0


def test_closed_breaker_state_is_returned_unchanged_on_run() -> None:
    state = BreakerState(state=CLOSED, consecutive_failures=1, calls=((NOW - 5, False),))
    verdict = evaluate(STRATEGY, TARGET, inputs(breaker_state=state), MAX_CONCURRENT, NOW)
    assert verdict.outcome == RUN
    assert verdict.breaker_state == state


# --- order ----------------------------------------------------------------------------------

ORDER = ("dry_run", "locked", "cooldown", "budget", "concurrency", "breaker_open")
FAILING = {
    "locked": {"running_on_target": 9},
    "cooldown": {"last_started": NOW - 10},
    "budget": {"started_in_budget_window": 3},
    "concurrency": {"running_total": MAX_CONCURRENT},
    "breaker_open": {"breaker_state": OPEN_STATE},
}
COMBINATIONS = [
    combo for size in range(2, len(ORDER) + 1) for combo in itertools.combinations(ORDER, size)
]


@pytest.mark.parametrize("failing", COMBINATIONS, ids=["+".join(c) for c in COMBINATIONS])
def test_first_failing_gate_in_the_fixed_order_wins(failing: tuple[str, ...]) -> None:
    overrides: dict = {}
    for gate in failing:
        overrides.update(FAILING.get(gate, {}))
    strategy = DRY_RUN if "dry_run" in failing else STRATEGY
    verdict = evaluate(strategy, TARGET, inputs(**overrides), MAX_CONCURRENT, NOW)
    expected = min(failing, key=ORDER.index)
    assert verdict.gate == expected
    waits = {"concurrency": DEFER, "locked": DELAY, "cooldown": DELAY}
    assert verdict.outcome == waits.get(expected, SKIP)
    assert verdict.reason.startswith(f"{expected}: ")


def test_every_combination_is_covered() -> None:
    assert len(COMBINATIONS) == 2**6 - 6 - 1  # all subsets of size >= 2


# --- reasons --------------------------------------------------------------------------------


@pytest.mark.parametrize("gate", ORDER)
def test_reasons_are_readable_sentences_naming_the_target(gate: str) -> None:
    strategy = DRY_RUN if gate == "dry_run" else STRATEGY
    verdict = evaluate(strategy, TARGET, inputs(**FAILING.get(gate, {})), MAX_CONCURRENT, NOW)
    assert verdict.gate == gate
    assert verdict.reason.startswith(f"{gate}: ")
    assert TARGET in verdict.reason
    assert "{" not in verdict.reason and "None" not in verdict.reason
    assert "\n" not in verdict.reason


def test_verdict_constants() -> None:
    assert (gates.RUN, gates.SKIP, gates.DEFER, gates.DELAY) == ("run", "skip", "defer", "delay")
