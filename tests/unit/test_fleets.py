"""Fleets: keys, in-flight limits, wave sizes and the wave state machine (issue 15).

Times are plain floats (seconds); expected sizes are computed here from the rules:
percentages of max_in_flight, canary and max_failures round down (at least 1), as
Kubernetes' maxUnavailable; stage percentages round up, as maxSurge.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from receiver.fleets import (
    ANALYSING,
    CANARY,
    DONE,
    FAIL,
    GATHERING,
    HALT,
    HALTED,
    INCONCLUSIVE,
    KEY_LIMIT,
    PASS,
    PROCEED,
    STAGE,
    Amount,
    FleetSettings,
    FleetState,
    ProgressiveSettings,
    Waiting,
    WavePlan,
    canary_size,
    clear_halt,
    failure_escalates,
    failure_limit,
    fleet_key,
    fleet_view,
    in_flight_limit,
    may_start,
    plan_wave,
    record_outcome,
    record_verdict,
    wave_sizes,
)

# --- helpers ---------------------------------------------------------------------------


def names(n: int, prefix: str = "web") -> list[str]:
    """Targets that sort in creation order: web-00, web-01, ..."""
    return [f"{prefix}-{i:02d}" for i in range(n)]


def waiting(targets: list[str], since: float = 0.0) -> list[Waiting]:
    return [Waiting(t, since) for t in targets]


def roundtrip(state: FleetState) -> FleetState:
    """What a journal gives back: the state through JSON text."""
    loaded = FleetState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert loaded == state
    return loaded


class Fleet:
    """A caller in miniature: the waiting incidents, the plan applied, the state journaled."""

    def __init__(self, settings: FleetSettings, targets: list[str], size: int | None = None):
        self.settings = settings
        self.size = len(targets) if size is None else size
        self.waiting = {t: 0.0 for t in targets}
        self.state = FleetState("web")
        self.started: list[str] = []
        self.skipped: dict[str, str] = {}
        self.escalations: list = []
        self.plans: list[WavePlan] = []

    def plan(self, now: float) -> WavePlan:
        items = [Waiting(t, s) for t, s in self.waiting.items()]
        plan, self.state = plan_wave(self.state, self.settings, items, self.size, now)
        self.state = roundtrip(self.state)
        answered = [*plan.start, *(t for t, _ in plan.wait), *(t for t, _ in plan.skip)]
        assert sorted(answered) == sorted(self.waiting), "each waiting target answered once"
        for target in plan.start:
            del self.waiting[target]
            self.started.append(target)
        for target, reason in plan.skip:
            del self.waiting[target]
            self.skipped[target] = reason
        if plan.escalation is not None:
            self.escalations.append(plan.escalation)
        self.plans.append(plan)
        return plan

    def end(self, outcome: str, now: float, targets: tuple[str, ...] | None = None) -> None:
        for target in self.state.in_flight if targets is None else targets:
            self.state = record_outcome(self.state, self.settings, target, outcome, "", now)

    def verdict(self, verdict: str, now: float, reason: str = "") -> None:
        self.state = record_verdict(self.state, self.settings, verdict, reason, now)

    @property
    def phase(self) -> str | None:
        return None if self.state.wave is None else self.state.wave.phase


def progressive(**kwargs) -> FleetSettings:
    """A fleet with waves; max_in_flight given separately as ``limit``."""
    limit = kwargs.pop("limit", None)
    defaults = {"min_targets": 3, "gather": 10.0, "pause": 5.0}
    return FleetSettings(
        max_in_flight=limit, progressive=ProgressiveSettings(**{**defaults, **kwargs})
    )


# --- fleet key -------------------------------------------------------------------------


def test_fleet_key_of_one_label_is_its_value() -> None:
    assert fleet_key({"service": "web", "instance": "a:1"}) == "web"


def test_fleet_key_of_several_labels_names_and_escapes_them() -> None:
    labels = {"service": "web", "zone": "eu,1=a"}
    assert fleet_key(labels, ("service", "zone")) == "service=web,zone=eu\\,1\\=a"
    # A value holding the separator cannot impersonate a second label.
    forged = {"service": "web,zone=eu", "zone": ""}
    assert fleet_key(forged, ("service", "zone")) != fleet_key(
        {"service": "web", "zone": "eu"}, ("service", "zone")
    )


def test_target_without_fleet_labels_is_a_fleet_of_its_own() -> None:
    assert fleet_key({"instance": "db-1"}, ("service",), target="db-1") == "target:db-1"
    assert fleet_key({"service": ""}, ("service",), target="x") == "target:x"


def test_fleet_key_is_printable_and_bounded() -> None:
    assert fleet_key({"service": "we\nb\x00"}) == "we\\x0ab\\x00"
    long_a, long_b = "a" * 500 + "1", "a" * 500 + "2"
    key_a, key_b = fleet_key({"service": long_a}), fleet_key({"service": long_b})
    assert len(key_a) == KEY_LIMIT and len(key_b) == KEY_LIMIT
    assert key_a != key_b


def test_fleet_key_needs_a_label() -> None:
    with pytest.raises(ValueError, match="group_by"):
        fleet_key({"service": "web"}, ())


# --- amounts and limits ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "total", "down", "up"),
    [
        (3, 30, 3, 3),
        ("3", 30, 3, 3),
        ("10%", 30, 30 * 10 // 100, math.ceil(30 * 10 / 100)),
        ("25%", 30, 30 * 25 // 100, math.ceil(30 * 25 / 100)),  # 7.5 -> 7 down, 8 up
        ("12.5%", 8, 1, 1),
        ("100%", 7, 7, 7),
    ],
)
def test_amount_of_a_total_rounds_as_kubernetes(raw, total: int, down: int, up: int) -> None:
    amount = Amount.parse(raw, "x")
    assert amount.of(total) == down
    assert amount.of(total, round_up=True) == up


@pytest.mark.parametrize("raw", [0, "0", "0%", -1, "101%", "ten", True, 2.5, None, "%"])
def test_amount_rejects_nonsense(raw) -> None:
    with pytest.raises(ValueError, match="x"):
        Amount.parse(raw, "x")


def test_amount_prints_as_written() -> None:
    assert str(Amount.parse("10%", "x")) == "10%"
    assert str(Amount.parse("12.5%", "x")) == "12.5%"
    assert str(Amount.parse(4, "x")) == "4"


@pytest.mark.parametrize(
    ("raw", "size", "expected"),
    [
        ("10%", 30, 3),  # 3.0
        ("10%", 5, 1),  # 0.5 rounds down to 0, raised to at least 1
        ("50%", 5, 2),  # 2.5 rounds down
        (4, 30, 4),
        (4, 2, 4),  # a count is a count, whatever the size
    ],
)
def test_in_flight_limit(raw, size: int, expected: int) -> None:
    assert in_flight_limit(Amount.parse(raw, "max_in_flight"), size) == expected


def test_no_max_in_flight_means_no_limit() -> None:
    assert in_flight_limit(None, 30) is None
    assert may_start(1000, 30, None)[0] is True


def test_may_start_says_n_of_m_in_flight_when_full() -> None:
    limit = Amount.parse("10%", "max_in_flight")
    ok, reason = may_start(3, 30, limit)
    assert ok is False
    assert reason.startswith("fleet: 3 of 3 in flight")
    assert "10% of 30" in reason
    assert may_start(2, 30, limit)[0] is True


# --- settings --------------------------------------------------------------------------


def test_settings_normalise_amounts() -> None:
    s = ProgressiveSettings(canary="10%", stages=(5, "50%", "100%"), max_failures="20%")
    assert s.canary == Amount.parse("10%", "canary")
    assert s.stages == tuple(Amount.parse(x, "s") for x in (5, "50%", "100%"))
    assert FleetSettings(max_in_flight="10%").max_in_flight == Amount.parse("10%", "m")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stages": ("50%",)}, "100%"),
        ({"stages": ("50%", "25%", "100%")}, "increase"),
        ({"stages": (5, 3, "100%")}, "increase"),
        ({"stages": ()}, "at least one"),
        ({"canary": "0%"}, "canary"),
        ({"canary": 0}, "canary"),
        ({"max_failures": 0}, "max_failures"),
        ({"min_targets": 0}, "min_targets"),
        ({"gather": float("nan")}, "gather"),
        ({"pause": -1}, "pause"),
        ({"on_inconclusive": "maybe"}, "on_inconclusive"),
    ],
)
def test_progressive_settings_reject_nonsense(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProgressiveSettings(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"group_by": ()}, "group_by"),
        ({"group_by": ("service", "service")}, "twice"),
        ({"max_in_flight": "0%"}, "max_in_flight"),
        ({"escalation_window": 0}, "escalation_window"),
        ({"escalation_window": float("inf")}, "escalation_window"),
    ],
)
def test_fleet_settings_reject_nonsense(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FleetSettings(**kwargs)


# --- wave sizes ------------------------------------------------------------------------


def test_thirty_targets_canary_ten_percent_then_quarter_half_all() -> None:
    s = ProgressiveSettings(canary="10%", stages=("25%", "50%", "100%"))
    canary = max(1, 30 * 10 // 100)
    stages = [math.ceil(30 * p / 100) for p in (25, 50, 100)]
    assert (canary, stages) == (3, [8, 15, 30])
    assert wave_sizes(30, s) == (canary, *stages)


def test_one_target_is_its_own_canary() -> None:
    s = ProgressiveSettings(canary="10%")
    assert canary_size(1, s) == 1
    assert wave_sizes(1, s) == (1,)


def test_canary_larger_than_the_wave_is_the_whole_wave() -> None:
    s = ProgressiveSettings(canary=5)
    assert wave_sizes(3, s) == (3,)


def test_stages_adding_nothing_are_dropped() -> None:
    # 4 targets: canary 1; 25% -> 1 (nothing new), 50% -> 2, 100% -> 4.
    s = ProgressiveSettings(canary=1, stages=("25%", "50%", "100%"))
    assert wave_sizes(4, s) == (1, math.ceil(4 * 50 / 100), 4)


def test_count_stages_are_capped_at_the_wave() -> None:
    s = ProgressiveSettings(canary=1, stages=(5, 20, "100%"))
    assert wave_sizes(8, s) == (1, 5, 8)


@pytest.mark.parametrize(("raw", "wave", "expected"), [("10%", 30, 3), ("10%", 5, 1), (2, 30, 2)])
def test_failure_limit_rounds_down_at_least_one(raw, wave: int, expected: int) -> None:
    assert failure_limit(wave, ProgressiveSettings(max_failures=raw)) == expected


# --- without waves ---------------------------------------------------------------------


def test_without_progressive_only_max_in_flight_applies_oldest_first() -> None:
    s = FleetSettings(max_in_flight=2)
    items = [Waiting("c", 1.0), Waiting("a", 3.0), Waiting("b", 2.0)]
    plan, state = plan_wave(FleetState("web"), s, items, 3, 10.0)
    assert plan.start == ("c", "b")
    assert plan.wait == (("a", "fleet: 2 of 2 in flight (max_in_flight 2 of 3 targets)"),)
    # Once one ends, the next may start; an in-flight target is not started twice.
    state = record_outcome(state, s, "c", "succeeded", "", 11.0)
    still = [Waiting("b", 2.0), Waiting("a", 3.0)]  # b as the journal may still list it
    plan, state = plan_wave(state, s, still, 3, 12.0)
    assert plan.start == ("a",)
    assert state.in_flight == ("b", "a")


def test_fleet_size_is_at_least_the_targets_seen() -> None:
    # size_query said 2, but 10 targets wait: 50% is of 10, not of 2.
    s = FleetSettings(max_in_flight="50%")
    plan, _ = plan_wave(FleetState("web"), s, waiting(names(10)), 2, 0.0)
    assert len(plan.start) == 10 * 50 // 100


# --- gathering -------------------------------------------------------------------------


def test_incidents_wait_out_the_gather_window() -> None:
    fleet = Fleet(progressive(), names(5))
    plan = fleet.plan(now=4.0)
    assert plan.start == ()
    assert len(plan.wait) == 5
    assert all(reason.startswith("fleet: gathering a wave") for _, reason in plan.wait)
    assert plan.next_at == 0.0 + 10.0  # first incident's time + gather
    assert fleet.phase == GATHERING


def test_too_few_to_gather_proceed_alone_under_max_in_flight() -> None:
    fleet = Fleet(progressive(min_targets=3, limit=1), names(2))
    fleet.plan(now=1.0)
    plan = fleet.plan(now=10.0)
    assert plan.start == ("web-00",)
    assert plan.wait == (("web-01", "fleet: 1 of 1 in flight (max_in_flight 1 of 2 targets)"),)
    assert fleet.state.wave is None
    fleet.end("succeeded", 11.0)
    assert fleet.plan(now=12.0).start == ("web-01",)
    assert fleet.escalations == []


def test_late_arrivals_after_gather_are_not_in_the_wave() -> None:
    fleet = Fleet(progressive(canary=1, stages=("100%",)), names(3))
    fleet.waiting["web-99"] = 15.0  # arrived after the window closed at 10
    fleet.plan(now=16.0)
    assert fleet.state.wave.members == ("web-00", "web-01", "web-02")
    assert fleet.started == ["web-00"]
    assert dict(fleet.plans[-1].wait)["web-99"].endswith("joins the next")


# --- the wave --------------------------------------------------------------------------


def test_pass_path_runs_canary_then_stages_to_done() -> None:
    fleet = Fleet(progressive(canary=1, stages=("50%", "100%"), pause=5.0), names(10))
    sizes = (1, math.ceil(10 * 50 / 100), 10)
    fleet.plan(now=10.0)
    assert fleet.phase == CANARY
    assert fleet.started == ["web-00"]  # canary chosen by sorted target name
    now = 10.0
    for stage, size in enumerate(sizes):
        assert fleet.started == names(size)
        now += 1
        fleet.end("succeeded", now)
        plan = fleet.plan(now)
        if size == 10:
            assert fleet.phase == DONE
            assert plan.analyse is None
            break
        assert fleet.phase == ANALYSING
        assert plan.analyse.stage == stage
        assert plan.analyse.canary == tuple(names(size))
        assert plan.analyse.baseline == tuple(names(10)[size:])
        # Asked once: planning again while analysing asks nothing new.
        assert fleet.plan(now).analyse is None
        now += 1
        fleet.verdict(PASS, now)
        assert fleet.plan(now).start == ()  # the pause
        now += 5.0
        fleet.plan(now)
        assert fleet.phase == STAGE
    assert fleet.escalations == []
    assert fleet.skipped == {}
    assert sorted(fleet.started) == names(10)


@pytest.mark.parametrize("verdict", [PASS, INCONCLUSIVE])
def test_a_pending_stage_names_the_verdict_it_goes_on_after(verdict: str) -> None:
    # under on_inconclusive: proceed the wave goes on after an inconclusive analysis: the
    # reason once said "after the analysis passed" for it too
    fleet = Fleet(
        progressive(canary=1, stages=("100%",), pause=30.0, on_inconclusive=PROCEED), names(4)
    )
    fleet.plan(now=10.0)
    fleet.end("succeeded", 11.0)
    fleet.plan(now=11.0)
    fleet.verdict(verdict, 12.0)
    plan = fleet.plan(now=22.0)
    assert plan.reason.startswith(
        f"fleet: stage 1 of 1 starts in 20s (pause 30s after the analysis: {verdict})"
    )


def test_pause_is_respected_to_the_second() -> None:
    fleet = Fleet(progressive(canary=1, stages=("100%",), pause=30.0), names(4))
    fleet.plan(now=10.0)
    fleet.end("succeeded", 11.0)
    fleet.plan(now=11.0)
    fleet.verdict(PASS, 12.0)
    plan = fleet.plan(now=12.0 + 29.9)
    assert plan.start == ()
    assert plan.next_at == 12.0 + 30.0
    assert "starts in" in plan.reason
    plan = fleet.plan(now=12.0 + 30.0)
    assert plan.start == ("web-01", "web-02", "web-03")


def test_stage_respects_max_in_flight() -> None:
    fleet = Fleet(progressive(canary=1, stages=("100%",), pause=0.0, limit="10%"), names(30))
    fleet.plan(now=10.0)
    fleet.end("succeeded", 11.0)
    fleet.plan(now=11.0)
    fleet.verdict(PASS, 12.0)
    plan = fleet.plan(now=12.0)
    assert len(plan.start) == 30 * 10 // 100
    assert all(r.startswith("fleet: 3 of 3 in flight") for t, r in plan.wait)
    assert len(plan.wait) == 30 - 1 - 3


def test_failed_canary_halts_with_exactly_one_escalation() -> None:
    fleet = Fleet(progressive(canary="10%", limit="10%"), names(30))
    fleet.plan(now=10.0)
    canaries = names(30)[:3]
    assert fleet.started == canaries
    fleet.state = record_outcome(
        fleet.state, fleet.settings, "web-01", "failed", "still 500s", 11.0
    )
    assert fleet.phase == HALTED
    plan = fleet.plan(now=11.0)
    expected = "halted: canary web-01 failed: still 500s"
    assert plan.skip == tuple((t, expected) for t in names(30)[3:])
    assert plan.escalation is not None
    # The other canaries end later; nothing new is owed.
    fleet.end("succeeded", 12.0)
    fleet.waiting["web-99"] = 13.0  # a late incident of the halted fleet
    plan = fleet.plan(now=13.0)
    assert plan.skip == (("web-99", expected),)
    assert plan.escalation is None
    assert len(fleet.escalations) == 1
    escalation = fleet.escalations[0]
    assert (escalation.fired, escalation.acted_on, escalation.failed) == (30, 3, 1)
    assert escalation.failed_targets == ("web-01",)
    assert escalation.summary.startswith(f"fleet web: {expected}")
    assert fleet.state.escalated_at == 11.0


def test_max_failures_halts_the_wave() -> None:
    # 10 targets, max_failures 20% -> 2; canary 1 passes; stage 100% releases the rest.
    fleet = Fleet(
        progressive(canary=1, stages=("100%",), pause=0.0, max_failures="20%", limit=3),
        names(10),
    )
    limit = max(1, 10 * 20 // 100)
    fleet.plan(now=10.0)
    fleet.end("succeeded", 11.0)
    fleet.plan(now=11.0)
    fleet.verdict(PASS, 11.0)
    fleet.plan(now=11.0)
    assert fleet.started == names(4)
    for failed in range(1, limit + 1):
        fleet.end("failed", 12.0, targets=(f"web-0{failed}",))
        assert (fleet.phase == HALTED) is (failed == limit)
    plan = fleet.plan(now=13.0)
    assert plan.skip[0][1] == (
        "halted: 2 of 10 actions failed (max_failures 20% = 2), last web-02 failed"
    )
    assert len(plan.skip) == 10 - 4
    assert plan.escalation.acted_on == 4
    assert plan.escalation.succeeded == 1


def test_timed_out_counts_as_failed() -> None:
    fleet = Fleet(progressive(canary=1), names(3))
    fleet.plan(now=10.0)
    fleet.end("timed_out", 11.0)
    assert fleet.phase == HALTED


def test_skipped_and_cancelled_canaries_are_not_failures() -> None:
    # Nothing was remediated, so there is nothing to analyse: inconclusive, halt by default.
    fleet = Fleet(progressive(canary=1), names(3))
    fleet.plan(now=10.0)
    fleet.end("cancelled", 11.0)
    plan = fleet.plan(now=11.0)
    assert fleet.phase == HALTED
    assert plan.skip[0][1] == ("halted: analysis after canary inconclusive: no target remediated")
    assert plan.escalation.failed == 0


def test_failed_analysis_halts() -> None:
    fleet = Fleet(progressive(canary=1), names(5))
    fleet.plan(now=10.0)
    fleet.end("succeeded", 11.0)
    fleet.plan(now=11.0)
    fleet.verdict(FAIL, 20.0, "error ratio 0.31 vs baseline 0.04 (p=0.002)")
    plan = fleet.plan(now=20.0)
    why = "halted: analysis after canary fail: error ratio 0.31 vs baseline 0.04 (p=0.002)"
    assert {reason for _, reason in plan.skip} == {why}
    assert plan.escalation.analysis == "fail: error ratio 0.31 vs baseline 0.04 (p=0.002)"


def test_a_judges_reason_that_opens_with_its_verdict_does_not_say_it_twice() -> None:
    # analysis.py's reasons open with the verdict ("fail: 1 of 1 metrics ..."): the halt
    # and the escalation's analysis line once said "fail: fail: ..."
    fleet = Fleet(progressive(canary=1), names(5))
    fleet.plan(now=10.0)
    fleet.end("succeeded", 11.0)
    fleet.plan(now=11.0)
    judged = "fail: 1 of 1 metrics worse than the baseline (score 0 < pass_score 1)"
    fleet.verdict(FAIL, 20.0, judged)
    plan = fleet.plan(now=20.0)
    assert {reason for _, reason in plan.skip} == {f"halted: analysis after canary {judged}"}
    assert plan.escalation.analysis == judged


@pytest.mark.parametrize(("on_inconclusive", "phase"), [(HALT, HALTED), (PROCEED, STAGE)])
def test_inconclusive_analysis_halts_or_proceeds(on_inconclusive: str, phase: str) -> None:
    fleet = Fleet(progressive(canary=1, on_inconclusive=on_inconclusive), names(5))
    fleet.plan(now=10.0)
    fleet.end("succeeded", 11.0)
    fleet.plan(now=11.0)
    fleet.verdict(INCONCLUSIVE, 12.0, "3 samples, need 5")
    assert fleet.phase == phase
    plan = fleet.plan(now=12.0)
    assert (plan.escalation is not None) is (phase == HALTED)


def test_verdict_without_an_analysis_is_refused() -> None:
    fleet = Fleet(progressive(), names(5))
    with pytest.raises(ValueError, match="no analysis awaited"):
        fleet.verdict(PASS, 1.0)
    with pytest.raises(ValueError, match="verdict"):
        record_verdict(fleet.state, fleet.settings, "maybe", "", 1.0)


def test_member_resolved_before_its_turn_is_not_started() -> None:
    fleet = Fleet(progressive(canary=1, stages=("100%",), pause=0.0), names(4))
    fleet.plan(now=10.0)
    fleet.end("succeeded", 11.0)
    fleet.plan(now=11.0)
    fleet.verdict(PASS, 12.0)
    del fleet.waiting["web-02"]  # its alert resolved meanwhile
    fleet.plan(now=12.0)
    assert fleet.started == ["web-00", "web-01", "web-03"]
    fleet.end("succeeded", 13.0)
    fleet.plan(now=13.0)
    assert fleet.phase == DONE
    assert fleet.state.wave.gone == ("web-02",)


def test_wave_whose_others_resolved_during_the_canary_is_done_without_escalation() -> None:
    fleet = Fleet(progressive(canary=1), names(4))
    fleet.plan(now=10.0)
    fleet.waiting.clear()  # the canary's restart fixed the shared cause; the others resolved
    fleet.end("succeeded", 11.0)
    plan = fleet.plan(now=11.0)
    assert fleet.phase == DONE
    assert plan.analyse is None
    assert fleet.state.wave.gone == ("web-01", "web-02", "web-03")
    assert fleet.escalations == []


def test_arrivals_during_a_wave_wait_then_gather_the_next() -> None:
    fleet = Fleet(progressive(canary=1, stages=("100%",), pause=0.0, min_targets=2), names(2))
    fleet.plan(now=10.0)
    fleet.waiting.update({"web-50": 10.5, "web-51": 10.5})
    plan = fleet.plan(now=11.0)
    assert dict(plan.wait)["web-50"] == "fleet: a wave of 2 is running; joins the next"
    fleet.end("succeeded", 12.0)
    fleet.plan(now=12.0)
    fleet.verdict(PASS, 12.0)
    fleet.plan(now=12.0)
    fleet.end("succeeded", 13.0)
    plan = fleet.plan(now=13.0)
    assert fleet.phase == DONE
    assert plan.next_at == 13.0
    # Their gathering counts from the first of them (10.5), as group_wait from the first alert.
    plan = fleet.plan(now=13.0)
    assert fleet.phase == GATHERING
    assert plan.next_at == 10.5 + 10.0
    fleet.plan(now=20.5)
    assert fleet.state.wave.members == ("web-50", "web-51")
    assert fleet.started[-1] == "web-50"


def test_clear_halt_lets_a_new_wave_gather() -> None:
    fleet = Fleet(progressive(canary=1), names(3))
    fleet.plan(now=10.0)
    fleet.end("failed", 11.0)
    fleet.plan(now=11.0)
    fleet.state = clear_halt(fleet.state)
    assert fleet.state.wave is None
    fleet.waiting.update({"web-00": 20.0})
    fleet.plan(now=20.0)
    assert fleet.phase == GATHERING
    assert clear_halt(fleet.state) == fleet.state


def test_outcome_of_an_unknown_target_only_leaves_in_flight() -> None:
    fleet = Fleet(progressive(), names(3))
    before = fleet.state
    fleet.end("failed", 1.0, targets=("nobody",))
    assert fleet.state == before
    with pytest.raises(ValueError, match="outcome"):
        record_outcome(before, fleet.settings, "web-00", "exploded", "", 1.0)


def test_thirty_targets_and_a_shared_fault_cost_one_action_and_one_escalation() -> None:
    # Issue 15's case: max_in_flight 10%, a progressive wave with one canary.
    fleet = Fleet(progressive(canary=1, limit="10%"), names(30))
    fleet.plan(now=10.0)
    assert fleet.started == ["web-00"]
    fleet.end("failed", 20.0)  # the shared dependency: the restart cures nothing
    fleet.plan(now=20.0)
    assert len(fleet.started) == 1
    assert len(fleet.skipped) == 29
    assert len(fleet.escalations) == 1
    assert "30 targets fired, 1 acted on, 0 succeeded, 1 failed" in fleet.escalations[0].summary


def test_a_member_acted_on_waits_for_the_wave_to_end_before_a_second_action() -> None:
    fleet = Fleet(progressive(canary=1, stages=("100%",), on_inconclusive=PROCEED), names(3))
    fleet.plan(now=10.0)
    fleet.end("succeeded", 11.0)
    fleet.waiting["web-00"] = 11.0  # it fires again (a new incident, or the next runbook step)
    plan = fleet.plan(now=11.0)
    assert dict(plan.wait)["web-00"] == (
        "fleet: acted on earlier in this wave; waits for the wave to end"
    )


def test_fleet_view_shows_size_in_flight_and_the_wave() -> None:
    fleet = Fleet(progressive(canary="10%", limit="10%"), names(30))
    fleet.plan(now=10.0)
    view = fleet_view(fleet.state, fleet.settings, 30)
    assert (view["size"], view["in_flight"], view["max_in_flight"]) == (30, 3, 3)
    wave = view["wave"]
    assert (wave["phase"], wave["stage"], wave["stage_label"]) == (CANARY, 0, "canary")
    assert (wave["targets"], wave["sizes"], wave["stages"]) == (30, [3, 8, 15, 30], 3)
    json.dumps(view)
    assert fleet_view(FleetState("idle"), FleetSettings(), 4)["wave"] is None


# --- one escalation per fleet ----------------------------------------------------------


@pytest.mark.parametrize(
    ("last", "now", "escalates"),
    [(None, 100.0, True), (100.0, 100.0, False), (100.0, 699.0, False), (100.0, 700.0, True)],
)
def test_failure_escalates_once_per_window(last, now: float, escalates: bool) -> None:
    ok, reason = failure_escalates(last, 600.0, now)
    assert ok is escalates
    assert reason.startswith("escalating") if escalates else reason.startswith("covered")


def test_failure_escalates_rejects_a_bad_window() -> None:
    with pytest.raises(ValueError, match="window"):
        failure_escalates(None, 0.0, 1.0)


# --- state round trips -----------------------------------------------------------------


def test_state_round_trips_through_json_at_every_phase() -> None:
    # Fleet.plan round-trips after every call; this walks a halted wave too.
    fleet = Fleet(progressive(canary=1, limit=1), names(4))
    fleet.plan(now=1.0)
    fleet.plan(now=10.0)
    fleet.end("succeeded", 11.0)
    fleet.plan(now=11.0)
    fleet.verdict(FAIL, 12.0, "worse")
    roundtrip(fleet.state)
    fleet.plan(now=12.0)
    assert roundtrip(fleet.state).wave.phase == HALTED
    assert FleetState.from_dict({"fleet": "x"}) == FleetState("x")


# --- properties ------------------------------------------------------------------------

amounts = st.one_of(st.integers(1, 6), st.integers(1, 100).map(lambda p: f"{p}%"))


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 25),
    limit=st.one_of(st.none(), amounts),
    canary=amounts,
    max_failures=amounts,
    middle=st.lists(st.integers(1, 99), max_size=3, unique=True).map(sorted),
    on_inconclusive=st.sampled_from([HALT, PROCEED]),
    min_targets=st.integers(1, 5),
    gather=st.sampled_from([0.0, 5.0]),
    arrivals=st.lists(st.integers(0, 12), min_size=25, max_size=25),
    events=st.lists(st.tuples(st.integers(0, 9), st.integers(0, 1000)), min_size=10, max_size=120),
)
def test_never_over_max_in_flight_and_at_most_one_escalation_per_wave(
    n, limit, canary, max_failures, middle, on_inconclusive, min_targets, gather, arrivals, events
) -> None:
    settings_ = progressive(
        limit=limit,
        canary=canary,
        max_failures=max_failures,
        stages=(*(f"{p}%" for p in middle), "100%"),
        on_inconclusive=on_inconclusive,
        min_targets=min_targets,
        gather=gather,
        pause=2.0,
    )
    fleet = Fleet(settings_, [])
    fleet.size = n
    arriving = dict(zip(names(n), arrivals, strict=False))
    bound = in_flight_limit(settings_.max_in_flight, n) or n
    running: list[str] = []
    ever_started: set[str] = set()
    now = 0.0
    for choice, pick in events:
        now += 1 + choice % 3
        for target, at in list(arriving.items()):
            if at <= now:
                fleet.waiting[target] = float(at)
                del arriving[target]
        if choice < 6 and running:  # an action ends, mostly well
            target = running.pop(pick % len(running))
            outcome = (
                "succeeded" if pick % 8 < 6 else ("failed", "timed_out", "cancelled")[choice % 3]
            )
            fleet.end(outcome, now, targets=(target,))
        elif choice < 9 and fleet.phase == ANALYSING:  # a verdict, mostly a pass
            fleet.verdict(PASS if pick % 8 < 6 else (FAIL, INCONCLUSIVE)[pick % 2], now)
        plan = fleet.plan(now)
        assert not set(plan.start) & ever_started, "a target started twice"
        ever_started |= set(plan.start)
        running.extend(plan.start)
        assert len(running) <= bound
        assert sorted(fleet.state.in_flight) == sorted(running)
        assert not plan.skip or fleet.phase == HALTED
    assert len(fleet.escalations) <= 1
    wave = fleet.state.wave
    event(f"ended {fleet.phase}" + ("" if wave is None else f" at stage {wave.stage}"))
    if fleet.phase == HALTED:
        fleet.plan(now)
        assert len(fleet.escalations) == 1
    # Liveness: once everything goes well, every incident is started or skipped in the end.
    fleet.waiting.update({t: float(at) for t, at in arriving.items()})
    for _ in range(4 * n + 10):
        now += 10.0
        fleet.end("succeeded", now, targets=tuple(running))
        running.clear()
        if fleet.phase == ANALYSING:
            fleet.verdict(PASS, now)
        running.extend(fleet.plan(now).start)
        assert len(running) <= bound
    assert fleet.waiting == {}
    assert len(fleet.escalations) <= 1
