"""Fleet planning and canary judging: a wave of 1,000 targets, 10 metrics x 1,000 samples.

Issue 15 asks that planning a wave of 1,000 targets and judging 10 metrics of 1,000
samples a side take milliseconds. No server, no I/O: the pure functions the dispatcher
calls, each timed alone (``time.perf_counter``), the median of many repeats reported:

- ``plan_wave`` at the end of a gathering of 1,000 waiting incidents: the wave is formed
  and its canary (1%, 10 targets) released;
- ``plan_wave`` after the canary's analysis passed and the pause elapsed: the first stage
  (25%) is released, bounded by ``max_in_flight`` 10% (100 targets);
- ``analysis.judge`` of 10 metrics, 1,000 samples a side each (seeded, the canary like
  the baseline), the Mann-Whitney U test per metric.

Each is also given as a ratio against a baseline measured in the same run on the same
data: sorting the 1,000 target names (the wave sorts them too) for the plans, and a numpy
mean of each metric's samples on both sides (the least any judge must do) for the judge.

    python -m bench.fleets [--quick] [--out DIR]
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench import common
from bench.common import fmt
from receiver import analysis, fleets

TARGETS = 1000
METRICS = 10
SAMPLES = 1000
TARGET_MS = 100.0  # "takes milliseconds": each call well under a tenth of a second
SETTINGS = fleets.FleetSettings(
    max_in_flight="10%",
    progressive=fleets.ProgressiveSettings(
        min_targets=3, gather=30.0, canary="1%", stages=("25%", "50%", "100%"), pause=60.0
    ),
)


def timed(call: Callable[[], Any], repeats: int) -> dict[str, float]:
    """Median and spread of ``repeats`` calls, in milliseconds (one warm-up call first)."""
    call()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "repeats": repeats,
    }


def targets() -> list[str]:
    """1,000 target names, shuffled (seeded) so sorting them is real work."""
    names = [f"web-{i:04d}" for i in range(TARGETS)]
    random.Random(15).shuffle(names)
    return names


def wave_states(names: list[str]) -> dict[str, Any]:
    """The inputs of the two timed plans: at the end of the gathering, and after the
    canary passed its analysis and the pause elapsed (prepared untimed)."""
    gather, pause = SETTINGS.progressive.gather, SETTINGS.progressive.pause
    waiting = [fleets.Waiting(t, 0.0) for t in names]
    empty = fleets.FleetState("web")
    canary_plan, state = fleets.plan_wave(empty, SETTINGS, waiting, TARGETS, gather)
    now = gather + 10
    for target in canary_plan.start:
        state = fleets.record_outcome(state, SETTINGS, target, "succeeded", "", now)
    left = [w for w in waiting if w.target not in canary_plan.start]
    asked, state = fleets.plan_wave(state, SETTINGS, left, TARGETS, now)
    assert asked.analyse is not None, "the canary's end asks for an analysis"
    state = fleets.record_verdict(state, SETTINGS, analysis.PASS, "bench", now + 1)
    return {
        "empty": empty,
        "waiting": waiting,
        "canary_at": gather,
        "canary": canary_plan,
        "analysed": state,
        "left": left,
        "stage_at": now + 1 + pause,
    }


def judge_inputs() -> tuple[analysis.AnalysisSettings, dict, dict]:
    rng = np.random.default_rng(15)
    metrics = tuple(
        analysis.AnalysisMetric(f"metric_{i}", f"m{i}", tolerance=0.1) for i in range(METRICS)
    )
    settings = analysis.AnalysisSettings(metrics=metrics)
    canary = {m.name: rng.normal(0.05, 0.01, SAMPLES).tolist() for m in metrics}
    baseline = {m.name: rng.normal(0.05, 0.01, SAMPLES).tolist() for m in metrics}
    return settings, canary, baseline


def plan_rows(repeats: int) -> list[dict[str, Any]]:
    names = targets()
    s = wave_states(names)
    canary_plan = s["canary"]
    stage_plan, _ = fleets.plan_wave(s["analysed"], SETTINGS, s["left"], TARGETS, s["stage_at"])
    baseline = timed(lambda: sorted(names), repeats)
    canary = timed(
        lambda: fleets.plan_wave(s["empty"], SETTINGS, s["waiting"], TARGETS, s["canary_at"]),
        repeats,
    )
    stage = timed(
        lambda: fleets.plan_wave(s["analysed"], SETTINGS, s["left"], TARGETS, s["stage_at"]),
        repeats,
    )
    return [
        {
            "row": "plan_wave: gathering ends, wave formed, canary released",
            "load": f"{TARGETS:,} waiting targets",
            "result": f"{len(canary_plan.start)} started, {len(canary_plan.wait)} wait",
            "baseline": "sorted() of the 1,000 target names",
            "baseline_ms": baseline["median_ms"],
            **canary,
        },
        {
            "row": "plan_wave: analysis passed, pause over, stage 25% released",
            "load": f"{len(s['left']):,} waiting targets",
            "result": f"{len(stage_plan.start)} started, {len(stage_plan.wait)} wait",
            "baseline": "sorted() of the 1,000 target names",
            "baseline_ms": baseline["median_ms"],
            **stage,
        },
    ]


def judge_row(repeats: int) -> dict[str, Any]:
    settings, canary, baseline = judge_inputs()
    judgement = analysis.judge(settings, canary, baseline, 0.0)
    arrays = [np.asarray(v) for side in (canary, baseline) for v in side.values()]
    base = timed(lambda: [float(np.mean(np.asarray(v))) for v in arrays], repeats)
    judged = timed(lambda: analysis.judge(settings, canary, baseline, 0.0), repeats)
    return {
        "row": "analysis.judge: Mann-Whitney U per metric",
        "load": f"{METRICS} metrics x {SAMPLES:,} samples a side",
        "result": f"{judgement.verdict} ({judgement.passed} of {METRICS} metrics passed)",
        "baseline": "numpy mean of each metric's samples, both sides",
        "baseline_ms": base["median_ms"],
        **judged,
    }


def bench(quick: bool, keep: bool) -> dict[str, Any]:
    """``keep`` is accepted for the common command line; nothing here writes files."""
    repeats = 20 if quick else 200
    rows = [*plan_rows(repeats), judge_row(repeats)]
    for row in rows:
        row["ratio"] = common.ratio(row["median_ms"], row["baseline_ms"])
        print(f"  fleets: {row['row']}: {row['median_ms']:.2f} ms", file=sys.stderr)
    return {
        "benchmark": "fleets",
        "quick": quick,
        "load": {"repeats": repeats, "how": "pure functions, one call timed at a time"},
        "machine": common.machine(),
        "rows": rows,
        "target": {
            "max_median_ms": TARGET_MS,
            "met": all(row["median_ms"] <= TARGET_MS for row in rows),
        },
    }


def render(result: dict[str, Any]) -> str:
    headers = ["call", "load", "result", "median ms", "min / max ms", "baseline ms", "ratio"]
    body = [
        [
            row["row"],
            row["load"],
            row["result"],
            fmt(row["median_ms"], 2),
            f"{row['min_ms']:.2f} / {row['max_ms']:.2f}",
            f"{row['baseline_ms']:.3f} ({row['baseline']})",
            fmt(row["ratio"], 1),
        ]
        for row in result["rows"]
    ]
    target = result["target"]
    met = "met" if target["met"] else "NOT met"
    return "\n".join(
        [
            "## Fleets: wave planning and canary judging",
            "",
            common.table(headers, body),
            "",
            f"Median of {result['load']['repeats']} calls each ({result['load']['how']}); "
            f"target: every median <= {target['max_median_ms']:g} ms: {met}.",
        ]
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    result = bench(args.quick, args.keep)
    print(render(result))
    print(f"\nJSON: {common.write_result(args.out, 'fleets', result)}")
    return result


if __name__ == "__main__":
    main()
