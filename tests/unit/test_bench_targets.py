"""`make bench`'s exit status (bench/run_all.py) and the remediate baseline's parsing."""

from __future__ import annotations

import pytest

from bench.remediate_baseline import command_template, firing_targets
from bench.run_all import exit_status, missed_targets


def test_a_false_verdict_is_a_missed_target_named_by_its_path() -> None:
    targets = {
        "ingest": {"ratio_1_alert_min": 0.8, "ratio_1_alert": 1.02, "met": True},
        "latency": {"decision_p99_max_ms": 50.0, "decision_p99_met": False, "knee_met": False},
        "remediate": {"cpu_per_alert_ms": 5.8, "nested": {"peak_pss_met": False}},
    }
    assert missed_targets(targets) == [
        "latency.decision_p99_met",
        "latency.knee_met",
        "remediate.nested.peak_pss_met",
    ]


def test_numbers_notes_and_none_are_not_verdicts() -> None:
    targets = {"journal": {"note": "no target", "limit": 0, "figure": None, "zero": 0.0}}
    assert missed_targets(targets) == []


@pytest.mark.parametrize(("missed", "status"), [([], 0), (["latency.knee_met"], 1)])
def test_make_bench_exits_1_when_any_target_is_missed(missed: list[str], status: int) -> None:
    assert exit_status({"missed": missed}) == status


def _alert(status: str, instance: object) -> dict:
    return {"status": status, "labels": {"alertname": "X", "instance": instance}}


def test_the_baseline_spawns_for_firing_alerts_with_a_safe_instance_only() -> None:
    payload = {
        "alerts": [
            _alert("firing", "web-1:9100"),
            _alert("resolved", "web-2:9100"),
            _alert("firing", "web-3; rm -rf /"),
            _alert("firing", "../../etc/passwd"),
            _alert("firing", "-rf"),
            _alert("firing", 42),
            _alert("firing", "db.example.org"),
        ]
    }
    assert firing_targets(payload) == ["web-1:9100", "db.example.org"]


def test_the_baseline_refuses_a_config_whose_command_has_no_target(tmp_path) -> None:
    config = tmp_path / "remediation.yml"
    config.write_text("strategies:\n  - name: s\n    command: ['/bin/true']\n")
    with pytest.raises(ValueError, match="target"):
        command_template(str(config))
