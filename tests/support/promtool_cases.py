"""What a `promtool test rules` file covers, per alert: firing, not firing, resolved."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from receiver.durations import parse_duration


def coverage(
    groups: Iterable[dict[str, Any]], alert_names: Iterable[str]
) -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
    """(missing cases as "Name: no firing case", every expected alert as (name, alert)).

    An alert is covered when some evaluation expects it, some expects nothing, and one
    expecting nothing comes after the last that expected it (it resolved)."""
    cases = {
        name: {"firing": False, "not_firing": False, "resolved": False} for name in alert_names
    }
    expected: list[tuple[str, dict[str, Any]]] = []
    for group in groups:
        by_alert: dict[str, list[tuple[float, list[dict[str, Any]]]]] = {}
        for case in group.get("alert_rule_test", []):
            by_alert.setdefault(case["alertname"], []).append(
                (parse_duration(case["eval_time"]), case.get("exp_alerts") or [])
            )
        for name, evaluations in by_alert.items():
            assert name in cases, f"test for unknown alert {name}"
            fired = [at for at, alerts in evaluations if alerts]
            quiet = [at for at, alerts in evaluations if not alerts]
            cases[name]["not_firing"] |= bool(quiet)
            if fired:
                cases[name]["firing"] = True
                cases[name]["resolved"] |= any(at > max(fired) for at in quiet)
            expected += [(name, alert) for _, alerts in evaluations for alert in alerts]
    missing = [
        f"{name}: no {kind} case"
        for name, kinds in cases.items()
        for kind, ok in kinds.items()
        if not ok
    ]
    return missing, expected


def threshold_comments(text: str) -> dict[str, bool]:
    """Alert name -> whether the comment block right above its `- alert:` line holds a
    `Threshold:` note (rules ship with their thresholds explained)."""
    lines = text.splitlines()
    found: dict[str, bool] = {}
    for index, line in enumerate(lines):
        match = re.match(r"\s*- alert: (\w+)", line)
        if not match:
            continue
        comments = []
        for previous in reversed(lines[:index]):
            if not previous.strip().startswith("#"):
                break
            comments.append(previous)
        found[match.group(1)] = any("Threshold" in comment for comment in comments)
    return found
