"""Issue 13: a scale strategy on a `log` executor, the cautious user's first trial.

The log executor gives the current replicas from its `current_replicas` setting; the
dispatcher decides as for a real executor (HPA rule, value from the alert), journals the
decision, and the action succeeds without changing anything: the breaker stays closed and
the journal's current count stays the configured one.
"""

from __future__ import annotations

import math
from pathlib import Path

import requests

from tests.support.journal import open_journal, post_webhook, settle
from tests.support.payloads import alert, notification
from tests.support.processes import remediator
from tests.support.receiver import AUTH_SERVER, write_config

CURRENT, VALUE, TARGET_VALUE, MAX = 3, 0.9, 0.5, 10

CONFIG = (
    AUTH_SERVER
    + f"""executors:
  trial: {{type: log, current_replicas: {CURRENT}}}
strategies:
  - name: scale-on-load
    matchers: ['alertname="Busy"']
    action: scale
    executor: trial
    target: '{{{{ labels.service }}}}'
    scale: {{annotation: value, target_value: {TARGET_VALUE}, min_replicas: 1, max_replicas: {MAX}}}
"""
)


def test_scale_on_a_log_executor_decides_journals_and_succeeds(
    tmp_path: Path, store_url: str
) -> None:
    # The HPA rule: ceil(current * value / target), outside the 0.1 tolerance, clamped.
    assert abs(1 - VALUE / TARGET_VALUE) > 0.1
    desired = min(MAX, max(1, math.ceil(CURRENT * VALUE / TARGET_VALUE)))
    busy = alert("Busy", service="cart")
    busy["annotations"]["value"] = str(VALUE)
    config = write_config(tmp_path, CONFIG)
    journal = open_journal(store_url)
    try:
        with remediator(tmp_path, config, store_url) as server:
            answer = post_webhook(server.url, notification(busy))
            assert answer.status_code == 200, answer.text
            [action] = settle(journal, 1)
            breakers = requests.get(f"{server.url}/api/v1/breakers", timeout=10).json()
            targets = requests.get(f"{server.url}/api/v1/targets", timeout=10).json()
        log = server.output()
    finally:
        journal.close()

    assert action["status"] == "succeeded", action
    assert action["reason"] == f"logged only: would scale to {desired} (no change made)"
    notes = [event["reason"] for event in action["events"]]
    assert any(
        note.startswith(
            f"scale: value {VALUE:g} vs target {TARGET_VALUE:g}, {CURRENT} -> {desired}"
        )
        for note in notes
    ), notes
    [breaker] = breakers["data"]  # the success was counted, no failure
    assert (breaker["strategy"], breaker["target"], breaker["state"]) == (
        "scale-on-load",
        "cart",
        "closed",
    )
    assert (breaker["consecutive_failures"], [ok for _, ok in breaker["calls"]]) == (0, [True])
    [target] = targets["data"]
    assert (target["current"], target["desired"]) == (CURRENT, desired), target
    assert f"would scale cart (strategy scale-on-load, replicas {desired})" in log
