"""Fleets of issue 15: membership, blast radius, progressive waves, one escalation per fleet.

Thirty instances of one service firing the same alert together rarely have thirty causes.
A careful operator tries a few first, compares them with the rest, then goes on in stages
or stops; this module is that operator's bookkeeping. Everything here is pure: the caller
injects ``now`` (seconds since the epoch), runs the actions and the canary analysis, and
journals the returned ``FleetState`` (``to_dict``) in the same transaction as what the plan
asked for, so a restart loses nothing.

Rules and their sources:

- **Fleet**: the targets of one strategy sharing the values of ``fleet.group_by`` (default
  the service label), named by ``fleet_key``. A target whose labels name no fleet is a
  fleet of its own, so it is never throttled with unrelated targets.
- **Blast radius**: ``max_in_flight`` bounds the fleet's targets being acted on at once, as
  a PodDisruptionBudget bounds voluntary disruptions. A percentage of the fleet size rounds
  down, at least 1, as a Deployment's ``rollingUpdate.maxUnavailable`` (Kubernetes rounds
  that down and ``maxSurge`` up, in ``ResolveFenceposts``). A PDB's own percentage
  ``maxUnavailable`` rounds UP; we take the cautious side. Targets over the limit wait,
  reason ``fleet: N of M in flight``.
- **Gathering**: like Alertmanager's ``group_wait``, the first waiting incident of a fleet
  opens a gathering of ``gather`` seconds; at its end, the incidents that arrived within it
  form a wave when there are at least ``min_targets`` of them, else each proceeds alone
  (still bounded by ``max_in_flight``).
- **Waves**, as a canary rollout (Argo Rollouts' ``setWeight`` steps, Kayenta's judged
  stages): the wave's targets are sorted by target name and released in that order: the
  first ``canary`` (count or % of the wave, rounded down, at least 1, at most the wave),
  then cumulative ``stages`` (counts or % of the wave, rounded up as ``maxSurge``, so
  [25%, 50%, 100%] of 30 is 8, 15, 30). A stage is released ``pause`` seconds after the
  previous stage's analysis passed; the analysis compares the remediated targets with the
  not-yet-released ones, so none is asked for after the last stage.
- **Halts**: any failed (or timed-out) canary action, ``max_failures`` failed actions in
  the wave (count or % of the wave, rounded down, at least 1), a failed analysis, or an
  inconclusive one under ``on_inconclusive: halt``. A halted wave skips every waiting
  target of the fleet ``halted: <why>`` and owes exactly ONE fleet escalation.
- **One escalation per fleet**: ``failure_escalates`` says whether a failure outside a wave
  escalates or is covered by the fleet's escalation sent within ``escalation_window``.

Lifecycle of a wave::

    gathering --(gather elapsed, >= min_targets waiting)--> canary (stage 0 released)
    gathering --(gather elapsed, fewer)--> no wave: each target proceeds alone
    canary | stage k --(every released action ended, targets left)--> analysing
    canary | stage k --(every released action ended, none left waiting)--> done
    analysing --(pass, or inconclusive with proceed)--> stage k+1, released after `pause`
    canary --(a canary action failed)-----------------------------> halted(why)
    any running phase --(max_failures failed actions)-------------> halted(why)
    analysing --(fail, or inconclusive with halt)------------------> halted(why)
    halted --(clear_halt, when the fleet's breaker admits again)--> no wave
    done --(targets waiting)--> gathering (a new wave)

What the caller must do, per fleet, in one transaction each time:

1. fold what happened: ``record_outcome`` when an action of the fleet ended (whatever its
   outcome), ``record_verdict`` when the analysis it was asked for has a verdict;
2. call ``plan_wave`` with the fleet's waiting (planned, not started) incidents, the fleet
   size and ``now``; then start the plan's ``start`` targets (each is counted in flight from
   this moment, as the breaker counts a half-open trial at admission), keep ``wait``
   planned with their reasons, end ``skip`` skipped with their reasons, run the analysis of
   ``analyse`` (asked once, on entering ``analysing``), send ``escalation`` (set once per
   halted wave), call again by ``next_at`` at the latest, and journal the new state;
3. after a halt, open the fleet's breaker and call ``clear_halt`` when it admits again.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from itertools import pairwise

# Phases of a wave.
GATHERING, CANARY, ANALYSING, STAGE, DONE, HALTED = (
    "gathering",
    "canary",
    "analysing",
    "stage",
    "done",
    "halted",
)
PHASES = (GATHERING, CANARY, ANALYSING, STAGE, DONE, HALTED)
_RUNNING = (CANARY, ANALYSING, STAGE)

# How an action ended, as the journal records it.
SUCCEEDED, FAILED, TIMED_OUT, SKIPPED, CANCELLED = (
    "succeeded",
    "failed",
    "timed_out",
    "skipped",
    "cancelled",
)
OUTCOMES = (SUCCEEDED, FAILED, TIMED_OUT, SKIPPED, CANCELLED)
FAILURES = (FAILED, TIMED_OUT)

# Analysis verdicts, and what an inconclusive one does.
PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
VERDICTS = (PASS, FAIL, INCONCLUSIVE)
HALT, PROCEED = "halt", "proceed"

KEY_LIMIT = 128  # characters of a fleet key; longer keys keep a hash of the whole
TEXT_LIMIT = 4096  # characters of an escalation summary (Alertmanager shows annotations whole)
LISTED_TARGETS = 20  # targets named in an escalation before "and N more"
NO_FLEET_PREFIX = "target:"  # fleet key of a target whose labels name no fleet

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_COUNT = re.compile(r"^\s*(\d+)\s*$")


def _require(condition: bool, message: str) -> None:
    """Reject a bad fleet setting at config load rather than at 3 a.m."""
    if not condition:
        raise ValueError(message)


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


# ---------------------------------------------------------------- fleet key


def fleet_key(
    labels: Mapping[str, str], group_by: Sequence[str] = ("service",), target: str = ""
) -> str:
    """The fleet a target belongs to: the values of its ``group_by`` labels.

    One label gives its value (``web``); several give ``name=value`` pairs joined by ``,``
    with ``\\``, ``,`` and ``=`` escaped by a backslash (``service=web,zone=eu\\,1``), so
    distinct label values never share a key. A missing label counts as empty; when every
    ``group_by`` label is empty, the target is a fleet of its own, ``target:<target>``.
    Control characters print as ``\\xNN``. Keys longer than KEY_LIMIT characters are cut
    and end with ``~`` and 12 hex digits of the whole key's SHA-256, so they stay distinct.
    Raises ValueError when ``group_by`` is empty.
    """
    _require(len(group_by) >= 1, "fleet.group_by needs at least one label name")
    values = [labels.get(name) or "" for name in group_by]
    if not any(values):
        key = NO_FLEET_PREFIX + target
    elif len(group_by) == 1:
        key = values[0]
    else:
        key = ",".join(f"{name}={_escape(v)}" for name, v in zip(group_by, values, strict=True))
    key = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", key)
    if len(key) <= KEY_LIMIT:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "backslashreplace")).hexdigest()[:12]
    return f"{key[: KEY_LIMIT - 13]}~{digest}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


# ---------------------------------------------------------------- amounts


@dataclass(frozen=True)
class Amount:
    """A count (``3``) or a percentage (``"10%"``) of some total, as Kubernetes' IntOrString.

    ``value`` is the count, or the percentage (0 < p <= 100, decimals allowed) when
    ``percent``. Exact arithmetic (fractions), so 10% of 30 is exactly 3.
    """

    value: Fraction
    percent: bool

    @classmethod
    def parse(cls, raw: int | str | Amount, name: str, *, zero: bool = False) -> Amount:
        """``raw`` from a config file: an int, a string of digits, or ``"N%"``.

        Raises ValueError naming ``name`` on anything else, on a percentage over 100, and on
        zero (``0`` or ``"0%"``) unless ``zero``.
        """
        if isinstance(raw, Amount):
            amount = raw
        elif isinstance(raw, int) and not isinstance(raw, bool):
            amount = cls(Fraction(raw), False)
        elif isinstance(raw, str) and (match := _PERCENT.match(raw)):
            amount = cls(Fraction(match.group(1)), True)
        elif isinstance(raw, str) and (match := _COUNT.match(raw)):
            amount = cls(Fraction(int(match.group(1))), False)
        else:
            raise ValueError(f"{name} must be a count or a percentage like '10%', got {raw!r}")
        _require(amount.value >= 0, f"{name} must be >= 0, got {raw!r}")
        _require(not amount.percent or amount.value <= 100, f"{name} is over 100%: {raw!r}")
        _require(zero or amount.value > 0, f"{name} must be more than 0, got {raw!r}")
        return amount

    def of(self, total: int, *, round_up: bool = False) -> int:
        """The amount for ``total`` items: a count as is; a percentage of ``total`` rounded
        down (as maxUnavailable) or, with ``round_up``, up (as maxSurge)."""
        if not self.percent:
            return int(self.value)
        exact = self.value * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)

    def __str__(self) -> str:
        number = str(self.value) if self.value.denominator == 1 else f"{float(self.value):g}"
        return f"{number}%" if self.percent else number


def in_flight_limit(max_in_flight: Amount | None, fleet_size: int) -> int | None:
    """How many of a fleet's targets may be acted on at once: ``max_in_flight`` of
    ``fleet_size`` (>= 0) rounded down, at least 1, as a Deployment's maxUnavailable (not a
    PDB's, which rounds up); None means no limit."""
    _require(fleet_size >= 0, f"fleet size must be >= 0, got {fleet_size!r}")
    if max_in_flight is None:
        return None
    return max(1, max_in_flight.of(fleet_size))


def may_start(in_flight: int, fleet_size: int, max_in_flight: Amount | None) -> tuple[bool, str]:
    """Whether one more target of the fleet may start while ``in_flight`` are running or
    verifying; the reason (``fleet: N of M in flight (...)``) says why not, or why yes."""
    limit = in_flight_limit(max_in_flight, fleet_size)
    if limit is None:
        return True, f"fleet: {in_flight} in flight, no max_in_flight"
    rule = f"max_in_flight {max_in_flight} of {fleet_size} targets"
    if in_flight >= limit:
        return False, f"fleet: {in_flight} of {limit} in flight ({rule})"
    return True, f"fleet: {in_flight} of {limit} in flight, room for one more ({rule})"


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class ProgressiveSettings:
    """``fleet.progressive``: waves of at least ``min_targets`` incidents gathered over
    ``gather`` seconds; ``canary``, ``stages`` (increasing, the last ``100%``) and
    ``max_failures`` as counts or percentages of the wave; ``pause`` seconds before each
    stage after its analysis passed; ``on_inconclusive`` ``halt`` or ``proceed``.
    Raises ValueError on nonsense (see ``__post_init__``)."""

    min_targets: int = 3
    gather: float = 30.0
    canary: Amount | int | str = 1
    stages: tuple[Amount | int | str, ...] = ("25%", "50%", "100%")
    pause: float = 60.0
    max_failures: Amount | int | str = 1
    on_inconclusive: str = HALT

    def __post_init__(self) -> None:
        _require(
            isinstance(self.min_targets, int) and self.min_targets >= 1,
            f"min_targets must be an int >= 1, got {self.min_targets!r}",
        )
        for name in ("gather", "pause"):
            value = getattr(self, name)
            _require(
                _finite(value) and value >= 0,
                f"{name} must be a finite number of seconds >= 0, got {value!r}",
            )
        # Normalised in place so every reader sees Amounts; frozen needs object.__setattr__.
        object.__setattr__(self, "canary", Amount.parse(self.canary, "canary"))
        object.__setattr__(self, "max_failures", Amount.parse(self.max_failures, "max_failures"))
        _require(len(self.stages) >= 1, "stages must list at least one stage, the last 100%")
        stages = tuple(Amount.parse(s, f"stages[{i}]") for i, s in enumerate(self.stages))
        _require(
            stages[-1].percent and stages[-1].value == 100,
            f"the last stage must be 100% so the wave is covered, got {stages[-1]}",
        )
        for kind in (True, False):
            same = [s.value for s in stages if s.percent is kind]
            _require(
                all(a < b for a, b in pairwise(same)),
                f"stages must increase, got {[str(s) for s in stages]}",
            )
        object.__setattr__(self, "stages", stages)
        _require(
            self.on_inconclusive in (HALT, PROCEED),
            f"on_inconclusive must be {HALT!r} or {PROCEED!r}, got {self.on_inconclusive!r}",
        )


@dataclass(frozen=True)
class FleetSettings:
    """A strategy's ``fleet``: ``group_by`` label names, ``max_in_flight`` (count or % of the
    fleet size, None for no limit), ``escalation_window`` seconds (> 0), and
    ``progressive`` waves or None. Raises ValueError on nonsense."""

    group_by: tuple[str, ...] = ("service",)
    max_in_flight: Amount | int | str | None = None
    escalation_window: float = 600.0
    progressive: ProgressiveSettings | None = None

    def __post_init__(self) -> None:
        _require(
            len(self.group_by) >= 1 and all(isinstance(n, str) and n for n in self.group_by),
            f"group_by must list label names, got {self.group_by!r}",
        )
        _require(
            len(set(self.group_by)) == len(self.group_by),
            f"group_by names a label twice: {self.group_by!r}",
        )
        if self.max_in_flight is not None:
            limit = Amount.parse(self.max_in_flight, "max_in_flight")
            object.__setattr__(self, "max_in_flight", limit)
        _require(
            _finite(self.escalation_window) and self.escalation_window > 0,
            f"escalation_window must be a finite number of seconds > 0, "
            f"got {self.escalation_window!r}",
        )


def canary_size(wave: int, settings: ProgressiveSettings) -> int:
    """Canary targets of a wave of ``wave`` (>= 1): rounded down, at least 1, at most all."""
    _require(wave >= 1, f"a wave has at least one target, got {wave!r}")
    return min(wave, max(1, settings.canary.of(wave)))


def failure_limit(wave: int, settings: ProgressiveSettings) -> int:
    """Failed actions that halt a wave of ``wave``: ``max_failures`` rounded down, at least 1."""
    return max(1, settings.max_failures.of(wave))


def wave_sizes(wave: int, settings: ProgressiveSettings) -> tuple[int, ...]:
    """Cumulative numbers of targets released: the canary, then each stage that adds to it.

    Stages are rounded up (as maxSurge) and capped at the wave; a stage that would add
    nothing is dropped. The last size is always ``wave``: 30 targets, canary 10% and
    [25%, 50%, 100%] give (3, 8, 15, 30); 1 target gives (1,).
    """
    sizes = [canary_size(wave, settings)]
    for stage in settings.stages:
        size = min(wave, stage.of(wave, round_up=True))
        if size > sizes[-1]:
            sizes.append(size)
    return tuple(sizes)


# ---------------------------------------------------------------- state


@dataclass(frozen=True)
class Ended:
    """How a wave member's action ended: ``outcome`` one of OUTCOMES, ``at`` seconds."""

    target: str
    outcome: str
    reason: str
    at: float

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "outcome": self.outcome,
            "reason": self.reason,
            "at": self.at,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Ended:
        return cls(
            str(data["target"]),
            str(data["outcome"]),
            str(data.get("reason", "")),
            float(data["at"]),
        )


@dataclass(frozen=True)
class Judged:
    """An analysis verdict for stage ``stage`` (0 is the canary), ``at`` seconds."""

    stage: int
    verdict: str
    reason: str
    at: float

    def to_dict(self) -> dict:
        return {"stage": self.stage, "verdict": self.verdict, "reason": self.reason, "at": self.at}

    @classmethod
    def from_dict(cls, data: dict) -> Judged:
        return cls(
            int(data["stage"]), str(data["verdict"]), str(data.get("reason", "")), float(data["at"])
        )


@dataclass(frozen=True)
class WaveState:
    """One wave of a fleet. ``members`` in release order (sorted by target), ``sizes`` the
    cumulative releases (``wave_sizes``), ``stage`` the index into them (0 = canary),
    ``released`` how many members are cleared to start, ``not_before`` when the current
    stage may be released (after its pause), ``started`` members told to start, ``gone``
    released members whose incident resolved before they started, ``covered`` targets
    outside the wave skipped by its halt. Times in seconds."""

    phase: str = GATHERING
    gathered_at: float = 0.0
    members: tuple[str, ...] = ()
    sizes: tuple[int, ...] = ()
    stage: int = 0
    released: int = 0
    not_before: float | None = None
    started: tuple[str, ...] = ()
    ended: tuple[Ended, ...] = ()
    gone: tuple[str, ...] = ()
    verdicts: tuple[Judged, ...] = ()
    halt_reason: str | None = None
    escalated: bool = False
    covered: int = 0
    ended_at: float | None = None

    def __post_init__(self) -> None:
        _require(self.phase in PHASES, f"phase must be one of {PHASES}, got {self.phase!r}")
        _require(
            (self.phase == HALTED) == (self.halt_reason is not None),
            f"a halt reason goes with the halted phase and only with it, got {self.phase}",
        )

    @property
    def failures(self) -> int:
        return sum(1 for e in self.ended if e.outcome in FAILURES)

    @property
    def stage_label(self) -> str:
        """``canary`` or ``stage k of n`` (stages after the canary)."""
        if self.stage == 0:
            return "canary"
        return f"stage {self.stage} of {len(self.sizes) - 1}"

    def to_dict(self) -> dict:
        """Plain JSON types only, for the journal."""
        return {
            "phase": self.phase,
            "gathered_at": self.gathered_at,
            "members": list(self.members),
            "sizes": list(self.sizes),
            "stage": self.stage,
            "released": self.released,
            "not_before": self.not_before,
            "started": list(self.started),
            "ended": [e.to_dict() for e in self.ended],
            "gone": list(self.gone),
            "verdicts": [v.to_dict() for v in self.verdicts],
            "halt_reason": self.halt_reason,
            "escalated": self.escalated,
            "covered": self.covered,
            "ended_at": self.ended_at,
        }

    @classmethod
    def from_dict(cls, data: dict) -> WaveState:
        """Inverse of ``to_dict``; ValueError on an unknown phase."""
        return cls(
            phase=str(data.get("phase", GATHERING)),
            gathered_at=float(data.get("gathered_at", 0.0)),
            members=tuple(str(t) for t in data.get("members", ())),
            sizes=tuple(int(n) for n in data.get("sizes", ())),
            stage=int(data.get("stage", 0)),
            released=int(data.get("released", 0)),
            not_before=_optional_float(data.get("not_before")),
            started=tuple(str(t) for t in data.get("started", ())),
            ended=tuple(Ended.from_dict(e) for e in data.get("ended", ())),
            gone=tuple(str(t) for t in data.get("gone", ())),
            verdicts=tuple(Judged.from_dict(v) for v in data.get("verdicts", ())),
            halt_reason=data.get("halt_reason"),
            escalated=bool(data.get("escalated", False)),
            covered=int(data.get("covered", 0)),
            ended_at=_optional_float(data.get("ended_at")),
        )


@dataclass(frozen=True)
class FleetState:
    """Everything remembered about one fleet: its key, the targets ``in_flight`` (told to
    start, end not yet recorded), ``loose`` targets cleared to start outside a wave (their
    gathering fell short of ``min_targets``), the current ``wave`` and when the fleet last
    escalated (seconds)."""

    fleet: str
    in_flight: tuple[str, ...] = ()
    loose: tuple[str, ...] = ()
    wave: WaveState | None = None
    escalated_at: float | None = None

    def to_dict(self) -> dict:
        """Plain JSON types only, for the journal."""
        return {
            "fleet": self.fleet,
            "in_flight": list(self.in_flight),
            "loose": list(self.loose),
            "wave": None if self.wave is None else self.wave.to_dict(),
            "escalated_at": self.escalated_at,
        }

    @classmethod
    def from_dict(cls, data: dict) -> FleetState:
        """Inverse of ``to_dict``; missing keys load as an idle fleet."""
        wave = data.get("wave")
        return cls(
            fleet=str(data["fleet"]),
            in_flight=tuple(str(t) for t in data.get("in_flight", ())),
            loose=tuple(str(t) for t in data.get("loose", ())),
            wave=None if wave is None else WaveState.from_dict(wave),
            escalated_at=_optional_float(data.get("escalated_at")),
        )


def _optional_float(value: object) -> float | None:
    return None if value is None else float(value)


# ---------------------------------------------------------------- inputs and decisions


@dataclass(frozen=True)
class Waiting:
    """An incident of the fleet waiting to be acted on: its ``target`` and since when
    (seconds; the incident's planning time)."""

    target: str
    since: float


@dataclass(frozen=True)
class AnalysisRequest:
    """Judge ``stage`` (0 = canary): ``canary`` targets remediated so far (succeeded) against
    the ``baseline`` not yet released, over samples taken from ``since`` seconds on."""

    stage: int
    canary: tuple[str, ...]
    baseline: tuple[str, ...]
    since: float

    def to_dict(self) -> dict:
        return {
            "stage": self.stage,
            "canary": list(self.canary),
            "baseline": list(self.baseline),
            "since": self.since,
        }


@dataclass(frozen=True)
class FleetEscalation:
    """The ONE escalation a halted wave owes: how many targets ``fired``, were ``acted_on``
    (started), ``succeeded`` and ``failed`` (with the ``failed_targets``), ``why`` it
    halted and the last ``analysis`` verdict's reason, if any."""

    fleet: str
    why: str
    fired: int
    acted_on: int
    succeeded: int
    failed: int
    failed_targets: tuple[str, ...]
    targets: tuple[str, ...]
    analysis: str | None = None

    @property
    def summary(self) -> str:
        """One paragraph for the escalation's annotation, at most TEXT_LIMIT characters."""
        lines = [
            f"fleet {self.fleet}: {self.why}",
            f"{self.fired} targets fired, {self.acted_on} acted on, "
            f"{self.succeeded} succeeded, {self.failed} failed",
        ]
        if self.failed_targets:
            lines.append(f"failed: {_listed(self.failed_targets)}")
        if self.analysis:
            lines.append(f"analysis: {self.analysis}")
        lines.append(f"targets: {_listed(self.targets)}")
        text = "\n".join(lines)
        return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"

    def to_dict(self) -> dict:
        return {
            "fleet": self.fleet,
            "why": self.why,
            "fired": self.fired,
            "acted_on": self.acted_on,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "failed_targets": list(self.failed_targets),
            "targets": list(self.targets),
            "analysis": self.analysis,
            "summary": self.summary,
        }


@dataclass(frozen=True)
class WavePlan:
    """What the caller does now for one fleet. ``start`` these targets (in order); keep
    ``wait`` planned and ``skip`` (end skipped), each as (target, reason); run ``analyse``;
    send ``escalation``; call ``plan_wave`` again by ``next_at`` (seconds) at the latest.
    ``reason`` describes the fleet for the journal and the console, verbatim."""

    reason: str
    start: tuple[str, ...] = ()
    wait: tuple[tuple[str, str], ...] = ()
    skip: tuple[tuple[str, str], ...] = ()
    analyse: AnalysisRequest | None = None
    escalation: FleetEscalation | None = None
    next_at: float | None = None


@dataclass
class _Draft:
    """The plan being built inside one ``plan_wave`` call."""

    reasons: list[str] = field(default_factory=list)
    start: list[str] = field(default_factory=list)
    wait: list[tuple[str, str]] = field(default_factory=list)
    skip: list[tuple[str, str]] = field(default_factory=list)
    analyse: AnalysisRequest | None = None
    escalation: FleetEscalation | None = None
    next_at: float | None = None

    def call_by(self, at: float) -> None:
        self.next_at = at if self.next_at is None else min(self.next_at, at)

    def plan(self) -> WavePlan:
        return WavePlan(
            reason="; ".join(self.reasons),
            start=tuple(self.start),
            wait=tuple(self.wait),
            skip=tuple(self.skip),
            analyse=self.analyse,
            escalation=self.escalation,
            next_at=self.next_at,
        )


# ---------------------------------------------------------------- events


def record_outcome(
    state: FleetState,
    settings: FleetSettings,
    target: str,
    outcome: str,
    reason: str,
    now: float,
) -> FleetState:
    """An action of the fleet ended: it leaves ``in_flight``; a wave member's end is kept,
    and halts the wave when it is a failed canary or the ``max_failures``-th failure.
    The halt's skips and escalation come from the next ``plan_wave``. An end reported
    twice, or for a target never started, only leaves ``in_flight``.
    Raises ValueError on an unknown outcome or a non-finite ``now``."""
    _require(outcome in OUTCOMES, f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    _require(_finite(now), f"now must be a finite number, got {now!r}")
    state = replace(state, in_flight=tuple(t for t in state.in_flight if t != target))
    wave = state.wave
    if wave is None or target not in wave.started or any(e.target == target for e in wave.ended):
        return state
    reason = _clean(reason)
    wave = replace(wave, ended=(*wave.ended, Ended(target, outcome, reason, now)))
    progressive = settings.progressive
    if progressive is not None and wave.phase in _RUNNING and outcome in FAILURES:
        said = f"{target} {outcome}" + (f": {reason}" if reason else "")
        limit = failure_limit(len(wave.members), progressive)
        if wave.stage == 0:
            wave = _halt(wave, f"canary {said}", now)
        elif wave.failures >= limit:
            why = (
                f"{wave.failures} of {len(wave.members)} actions failed "
                f"(max_failures {_rule(progressive.max_failures, limit)}), last {said}"
            )
            wave = _halt(wave, why, now)
    return replace(state, wave=wave)


def record_verdict(
    state: FleetState, settings: FleetSettings, verdict: str, reason: str, now: float
) -> FleetState:
    """The analysis asked for has its ``verdict`` (pass, fail or inconclusive): a pass (or an
    inconclusive under ``on_inconclusive: proceed``) schedules the next stage ``pause``
    seconds from ``now``; anything else halts. A verdict for a wave that halted meanwhile
    is kept and changes nothing. Raises ValueError on an unknown verdict or when no
    analysis is awaited."""
    _require(verdict in VERDICTS, f"verdict must be one of {VERDICTS}, got {verdict!r}")
    _require(_finite(now), f"now must be a finite number, got {now!r}")
    wave = state.wave
    _require(
        wave is not None and wave.phase in (ANALYSING, HALTED),
        f"fleet {state.fleet}: no analysis awaited ({'no wave' if wave is None else wave.phase})",
    )
    reason = _clean(reason)
    wave = replace(wave, verdicts=(*wave.verdicts, Judged(wave.stage, verdict, reason, now)))
    if wave.phase == HALTED:
        return replace(state, wave=wave)
    _require(settings.progressive is not None, f"fleet {state.fleet}: progressive is not set")
    return replace(state, wave=_judge(wave, settings.progressive, verdict, reason, now))


def _judge(
    wave: WaveState, settings: ProgressiveSettings, verdict: str, reason: str, now: float
) -> WaveState:
    said = f"analysis after {wave.stage_label} {_verdict_text(verdict, reason)}"
    if verdict == FAIL or (verdict == INCONCLUSIVE and settings.on_inconclusive == HALT):
        return _halt(wave, said, now)
    return replace(wave, phase=STAGE, stage=wave.stage + 1, not_before=now + settings.pause)


def fleet_view(state: FleetState, settings: FleetSettings, fleet_size: int) -> dict:
    """What ``GET /api/v1/fleets`` and the metrics show of one fleet, as plain JSON values:
    size, in flight and its limit (None: no limit), and the wave: phase, ``stage`` (0 the
    canary, the number for ``remediator_fleet_wave_stage``), its label, released and wave
    sizes, failures, verdicts and the halt reason. ``wave`` is None when there is none."""
    size = max(fleet_size, len(state.in_flight))
    view: dict = {
        "fleet": state.fleet,
        "size": size,
        "in_flight": len(state.in_flight),
        "in_flight_targets": list(state.in_flight),
        "max_in_flight": in_flight_limit(settings.max_in_flight, size),
        "escalated_at": state.escalated_at,
        "wave": None,
    }
    wave = state.wave
    if wave is not None:
        view["wave"] = {
            "phase": wave.phase,
            "stage": wave.stage,
            "stage_label": wave.stage_label,
            "stages": max(0, len(wave.sizes) - 1),
            "targets": len(wave.members),
            "released": wave.released,
            "sizes": list(wave.sizes),
            "acted_on": len(wave.started),
            "failures": wave.failures,
            "verdicts": [v.to_dict() for v in wave.verdicts],
            "halt_reason": wave.halt_reason,
            "next_stage_at": wave.not_before if wave.phase == STAGE else None,
        }
    return view


def clear_halt(state: FleetState) -> FleetState:
    """Forget a halted wave, once the fleet's breaker admits again: the next waiting
    incidents gather a new wave. Any other state is returned as it is."""
    if state.wave is not None and state.wave.phase == HALTED:
        return replace(state, wave=None)
    return state


def failure_escalates(
    last_escalated_at: float | None, window: float, now: float
) -> tuple[bool, str]:
    """Whether a failure of the fleet at ``now`` escalates, or is covered by the fleet's
    escalation sent at ``last_escalated_at`` (None: never) less than ``window`` seconds ago.
    After escalating, the caller stores ``now`` as the fleet's ``escalated_at``."""
    _require(_finite(now), f"now must be a finite number, got {now!r}")
    _require(_finite(window) and window > 0, f"window must be > 0 seconds, got {window!r}")
    if last_escalated_at is None:
        return True, "escalating: first failure of the fleet to escalate"
    age = now - last_escalated_at
    if age < window:
        return False, f"covered by the fleet's escalation {age:g}s ago (window {window:g}s)"
    return True, f"escalating: the fleet's last escalation was {age:g}s ago (window {window:g}s)"


# ---------------------------------------------------------------- planning


def plan_wave(
    state: FleetState,
    settings: FleetSettings,
    waiting: Iterable[Waiting],
    fleet_size: int,
    now: float,
) -> tuple[WavePlan, FleetState]:
    """Decide which of the fleet's ``waiting`` incidents start, wait or are skipped at ``now``.

    ``fleet_size`` (>= 0) comes from ``fleet.size_query`` or the journal; it is raised to
    the number of distinct targets waiting or in flight, since a fleet has at least those.
    A target waiting twice counts once, from its earliest ``since``; a target already in
    flight is not started again and gets no entry; every other waiting target is in exactly
    one of ``start``, ``wait`` and ``skip``. Without ``progressive`` only ``max_in_flight``
    applies, oldest first. Raises ValueError on a negative size or a non-finite ``now``.
    """
    _require(_finite(now), f"now must be a finite number, got {now!r}")
    _require(fleet_size >= 0, f"fleet size must be >= 0, got {fleet_size!r}")
    since: dict[str, float] = {}
    in_flight = set(state.in_flight)
    for item in waiting:
        if item.target not in in_flight:
            since[item.target] = min(item.since, since.get(item.target, item.since))
    size = max(fleet_size, len(set(since) | set(state.in_flight)))
    draft = _Draft()
    progressive = settings.progressive
    if progressive is None:
        queue = sorted(since, key=lambda t: (since[t], t))
        state = _admit(state, settings, queue, size, draft)
        return _finish(state, size, settings, draft)
    wave = state.wave
    if wave is not None and wave.phase == HALTED:
        return _halted(state, since, draft)
    loose = tuple(t for t in state.loose if t in since)
    rest = {t: s for t, s in since.items() if t not in loose}
    if wave is not None and wave.phase == DONE:
        wave = None
    if wave is None and rest:
        wave = WaveState(gathered_at=min(rest.values()))
    if wave is not None and wave.phase == GATHERING:
        wave, freed = _gather(wave, progressive, rest, now, draft)
        loose = (*loose, *freed)
        rest = {t: s for t, s in rest.items() if t not in freed}
    if wave is not None and wave.phase in _RUNNING:
        wave, queue = _run(wave, progressive, rest, now, draft)
        state = replace(state, wave=wave)
        state = _admit(state, settings, [*loose, *queue], size, draft)
        loose = tuple(t for t in loose if t not in state.in_flight)
        wave = _complete(state.wave, progressive, rest, now, draft)
    else:
        state = _admit(replace(state, wave=wave), settings, list(loose), size, draft)
        loose = tuple(t for t in loose if t not in state.in_flight)
    state = replace(state, wave=wave, loose=loose)
    if wave is not None and wave.phase == DONE and not set(rest) <= set(wave.members):
        draft.call_by(now)  # the targets that waited for this wave gather the next one
    return _finish(state, size, settings, draft)


def _gather(
    wave: WaveState,
    settings: ProgressiveSettings,
    rest: dict[str, float],
    now: float,
    draft: _Draft,
) -> tuple[WaveState | None, tuple[str, ...]]:
    """Wait out ``gather`` like group_wait, then form a wave or free the few who came."""
    end = wave.gathered_at + settings.gather
    if now < end:
        reason = (
            f"fleet: gathering a wave for {end - now:g}s more "
            f"({len(rest)} waiting, min_targets {settings.min_targets})"
        )
        draft.wait.extend((t, reason) for t in sorted(rest))
        draft.reasons.append(reason)
        draft.call_by(end)
        return wave, ()
    members = tuple(sorted(t for t, s in rest.items() if s <= end))
    later = {t: s for t, s in rest.items() if s > end}
    if len(members) < settings.min_targets:
        draft.reasons.append(
            f"fleet: {len(members)} gathered in {settings.gather:g}s, "
            f"fewer than min_targets {settings.min_targets}: no wave, each proceeds alone"
        )
        if later:  # they opened the next gathering when they arrived
            following = WaveState(gathered_at=min(later.values()))
            wave, freed = _gather(following, settings, later, now, draft)
            return wave, (*members, *freed)
        return None, members
    sizes = wave_sizes(len(members), settings)
    draft.reasons.append(
        f"fleet: wave of {len(members)} formed; canary {sizes[0]} "
        f"({', '.join(members[: sizes[0]][:LISTED_TARGETS])}), then {list(sizes[1:])} in all"
    )
    wave = replace(wave, phase=CANARY, members=members, sizes=sizes, released=sizes[0])
    return wave, ()


def _run(
    wave: WaveState,
    settings: ProgressiveSettings,
    rest: dict[str, float],
    now: float,
    draft: _Draft,
) -> tuple[WaveState, list[str]]:
    """Release the current stage when its pause is over; queue released members to start."""
    if wave.phase == STAGE and wave.released < wave.sizes[wave.stage]:
        if wave.not_before is None or now >= wave.not_before:
            wave = replace(wave, released=wave.sizes[wave.stage])
            draft.reasons.append(
                f"fleet: {wave.stage_label} released ({wave.released} of {len(wave.members)})"
            )
        else:
            draft.call_by(wave.not_before)
            # the verdict that let it go on: an inconclusive one under `proceed` did
            # not pass, and saying so would misreport the wave
            verdict = wave.verdicts[-1].verdict if wave.verdicts else PASS
            draft.reasons.append(
                f"fleet: {wave.stage_label} starts in {wave.not_before - now:g}s "
                f"(pause {settings.pause:g}s after the analysis: {verdict})"
            )
    released = wave.members[: wave.released]
    gone = list(wave.gone)
    done = {*wave.started, *gone}  # sets: a wave may hold thousands of targets
    queue = []
    for target in released:
        if target in done:
            continue
        if target in rest:
            queue.append(target)
        else:
            gone.append(target)  # resolved before its turn: nothing to do
    wave = replace(wave, gone=tuple(gone))
    ahead = f"waits for the wave's {wave.stage_label} ({wave.phase})"
    for target in wave.members[wave.released :]:
        if target in rest:
            draft.wait.append((target, f"fleet: {ahead}"))
    again = "fleet: acted on earlier in this wave; waits for the wave to end"
    for target in wave.started:
        if target in rest:  # a new incident (or runbook step) for a member already acted on
            draft.wait.append((target, again))
    members = set(wave.members)
    others = sorted(t for t in rest if t not in members)
    for target in others:
        draft.wait.append(
            (target, f"fleet: a wave of {len(wave.members)} is running; joins the next")
        )
    if wave.phase == ANALYSING:
        draft.reasons.append(f"fleet: analysing the wave after its {wave.stage_label}")
    return wave, queue


def _complete(
    wave: WaveState,
    settings: ProgressiveSettings,
    rest: dict[str, float],
    now: float,
    draft: _Draft,
) -> WaveState:
    """When every released member ended (or went), analyse before the next stage, or finish."""
    if wave.phase not in (CANARY, STAGE) or wave.released < wave.sizes[wave.stage]:
        return wave
    finished = {*(e.target for e in wave.ended), *wave.gone}
    if any(t not in finished for t in wave.members[: wave.released]):
        return wave
    if wave.released == len(wave.members):
        draft.reasons.append(f"fleet: wave of {len(wave.members)} done, {wave.failures} failed")
        return replace(wave, phase=DONE, ended_at=now)
    canary = tuple(e.target for e in wave.ended if e.outcome == SUCCEEDED)
    baseline = tuple(t for t in wave.members[wave.released :] if t in rest)
    last = max((e.at for e in wave.ended), default=now)
    if not baseline:  # the rest resolved before their turn: nothing left to protect
        gone = (*wave.gone, *wave.members[wave.released :])
        draft.reasons.append(
            f"fleet: wave of {len(wave.members)} done after its {wave.stage_label}: "
            f"the others resolved before their turn"
        )
        return replace(wave, phase=DONE, released=len(wave.members), gone=gone, ended_at=now)
    wave = replace(wave, phase=ANALYSING)
    if not canary:
        missing = "no target remediated"
        draft.reasons.append(f"fleet: cannot analyse the {wave.stage_label}: {missing}")
        return _judge(wave, settings, INCONCLUSIVE, missing, now)
    draft.analyse = AnalysisRequest(wave.stage, canary, baseline, last)
    draft.reasons.append(
        f"fleet: {wave.stage_label} ended; analysing {len(canary)} remediated "
        f"against {len(baseline)} waiting"
    )
    return wave


def _admit(
    state: FleetState, settings: FleetSettings, queue: list[str], size: int, draft: _Draft
) -> FleetState:
    """Start queued targets in order while ``max_in_flight`` has room; the rest wait."""
    in_flight = list(state.in_flight)
    started = []
    for target in queue:
        ok, reason = may_start(len(in_flight), size, settings.max_in_flight)
        if ok:
            in_flight.append(target)
            started.append(target)
            draft.start.append(target)
        else:
            draft.wait.append((target, reason))
    wave = state.wave
    if wave is not None and started:
        members = set(wave.members[: wave.released])
        mine = tuple(t for t in started if t in members)
        wave = replace(wave, started=(*wave.started, *mine))
    return replace(state, in_flight=tuple(in_flight), wave=wave)


def _halted(
    state: FleetState, since: dict[str, float], draft: _Draft
) -> tuple[WavePlan, FleetState]:
    """Skip every waiting target of a halted fleet; owe the escalation once."""
    wave = state.wave
    reason = f"halted: {wave.halt_reason}"
    draft.wait = []
    draft.skip.extend((t, reason) for t in sorted(since))
    covered = wave.covered + len(set(since) - set(wave.members))
    wave = replace(wave, covered=covered)
    draft.reasons.append(f"fleet: {reason}")
    if not wave.escalated:
        draft.escalation = _escalation(state.fleet, wave)
        wave = replace(wave, escalated=True)
        state = replace(state, escalated_at=wave.ended_at)
    state = replace(state, wave=wave, loose=())
    return draft.plan(), state


def _finish(
    state: FleetState, size: int, settings: FleetSettings, draft: _Draft
) -> tuple[WavePlan, FleetState]:
    wave = state.wave
    if wave is not None and wave.phase == HALTED:
        # Halted by a verdict made up in this call (nothing to analyse): skip at once.
        return _halted(state, {t: 0.0 for t, _ in draft.wait}, draft)
    limit = in_flight_limit(settings.max_in_flight, size)
    shown = "no limit" if limit is None else f"max {limit}"
    draft.reasons.append(f"fleet {state.fleet}: {len(state.in_flight)} in flight ({shown})")
    return draft.plan(), state


def _halt(wave: WaveState, why: str, now: float) -> WaveState:
    return replace(wave, phase=HALTED, halt_reason=why, ended_at=now, not_before=None)


def _escalation(fleet: str, wave: WaveState) -> FleetEscalation:
    failed = tuple(e.target for e in wave.ended if e.outcome in FAILURES)
    analysis = wave.verdicts[-1] if wave.verdicts else None
    return FleetEscalation(
        fleet=fleet,
        why=f"halted: {wave.halt_reason}",
        fired=len(wave.members) + wave.covered,
        acted_on=len(wave.started),
        succeeded=sum(1 for e in wave.ended if e.outcome == SUCCEEDED),
        failed=len(failed),
        failed_targets=failed,
        targets=wave.members,
        analysis=None if analysis is None else _verdict_text(analysis.verdict, analysis.reason),
    )


def _verdict_text(verdict: str, reason: str) -> str:
    """``fail: <reason>``; a judge's reason already opens with its verdict (analysis.py:
    ``fail: 1 of 1 metrics worse ...``), which is not said twice."""
    if not reason:
        return verdict
    if reason.startswith(verdict):
        return reason
    return f"{verdict}: {reason}"


def _rule(amount: Amount, value: int) -> str:
    """``10% = 3`` for a percentage, ``2`` for a count: the setting and what it came to."""
    return f"{amount} = {value}" if amount.percent else str(amount)


def _listed(targets: Sequence[str]) -> str:
    shown = ", ".join(targets[:LISTED_TARGETS])
    more = len(targets) - LISTED_TARGETS
    return f"{shown} and {more} more" if more > 0 else shown


def _clean(reason: str) -> str:
    return _CONTROL.sub(" ", reason).strip()
