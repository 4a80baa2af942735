"""A runbook in the whole loop: a bad release under a real supervisord, a real Prometheus
rule that fires on it, a real Alertmanager posting to `remediator serve`, which restarts
the service (verification fails: the release is still bad), rolls it back (verification
passes), and sees the alert resolve through Alertmanager.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import requests

from tests.support.journal import open_journal, wait_for
from tests.support.processes import alertmanager, alertmanager_config, free_port, prometheus
from tests.support.receiver import TOKEN, write_config
from tests.support.restartable import RestartableServer
from tests.support.runbooks import RELEASE_SERVICE, ROLLBACK, runs_of, steps_of
from tests.support.supervisor import program, supervisord

RULES = """groups:
  - name: release
    rules:
      - alert: BadRelease
        # the last value over a scrape gap: a restart takes the series away for a moment,
        # which must not resolve the alert (on a loaded machine it took several seconds)
        expr: last_over_time(app_release_good[30s]) == 0
        for: 1s
        labels: {severity: page}
"""
HEALTHY = 'min(app_release_good{service="{{ labels.service }}"}) == 1'


def prometheus_config(app_port: int, am_url: str) -> str:
    return f"""global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [rules.yml]
alerting:
  alertmanagers: [{{static_configs: [{{targets: ['{am_url.removeprefix("http://")}']}}]}}]
scrape_configs:
  - job_name: app
    static_configs: [{{targets: ['127.0.0.1:{app_port}'], labels: {{service: web}}}}]
"""


def receiver_config(sup_url: str, prom_url: str, am_url: str, workdir: Path) -> str:
    rollback = workdir / "rollback.sh"
    return f"""
server: {{auth: {{bearer_token_file: token}}}}
prometheus: {{url: {prom_url}}}
alertmanager: {{url: {am_url}}}
defaults: {{cooldown: 0s, escalation_executor: am}}
executors:
  procs: {{type: supervisor, url: {sup_url}, timeout: 20s}}
  local: {{type: command}}
  am: {{type: alertmanager}}
strategies:
  - name: restart-then-rollback
    matchers: ['alertname="BadRelease"']
    target: '{{{{ labels.service }}}}'
    steps:
      - name: restart
        action: restart
        executor: procs
        verify: {{query: '{HEALTHY}', timeout: 3s, interval: 500ms}}
      - name: rollback
        action: run
        executor: local
        command: ['/bin/sh', '{rollback}', '{workdir / "release"}', '{workdir / "rollbacks.log"}',
                  '{{{{ labels.service }}}}']
        verify: {{query: '{HEALTHY}', timeout: 20s, interval: 500ms}}
"""


def test_bad_release_is_restarted_then_rolled_back_and_the_alert_resolves(tmp_path: Path):
    (tmp_path / "app.py").write_text(RELEASE_SERVICE)
    (tmp_path / "release").write_text("bad\n")
    (tmp_path / "rollback.sh").write_text(ROLLBACK)
    (tmp_path / "rollback.sh").chmod(0o755)
    app_port = free_port()
    command = f"{sys.executable} {tmp_path / 'app.py'} {app_port} {tmp_path / 'release'}"
    store_url = f"sqlite:///{tmp_path / 'journal.db'}"
    write_config(tmp_path, "")  # the token file, for Alertmanager's credentials too
    config = tmp_path / "remediation.yml"
    server = RestartableServer(tmp_path, config, store_url)  # its port is known: AM needs it
    am_config = alertmanager_config(f"{server.url}/webhook", credentials_file=tmp_path / "token")
    with (
        supervisord(tmp_path / "sup", program("web", numprocs=1, command=command)) as sup,
        alertmanager(tmp_path / "am", am_config) as am,
        prometheus(
            tmp_path / "prom", prometheus_config(app_port, am.url), {"rules.yml": RULES}
        ) as prom,
    ):
        config.write_text(receiver_config(sup.url, prom.url, am.url, tmp_path))
        server.start()
        try:
            journal = open_journal(store_url)

            def resolved() -> dict[str, Any] | None:
                incidents = journal.list_incidents(limit=100).items
                done = [i for i in incidents if i["status"] == "resolved"]
                return done[0] if done else None

            incident = wait_for(resolved, 90, "the BadRelease incident to resolve")
            # the fix resolves the alert while the rollback may still be verifying
            wait_for(
                lambda: [r for r in runs_of(journal, incident["id"]) if r["status"] != "running"],
                30,
                "the run to end",
            )
            actions = requests.get(
                f"{server.url}/api/v1/actions",
                params={"incident_id": incident["id"]},
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=5,
            ).json()["data"]
            runs = runs_of(journal, incident["id"])
            steps = steps_of(journal, incident["id"])
            pages = requests.get(
                f"{am.url}/api/v2/alerts",
                params={"filter": 'alertname="RemediationFailed"'},
                timeout=5,
            ).json()
        finally:
            server.stop()

    assert incident["labels"]["alertname"] == "BadRelease"
    restart, rollback = sorted(actions, key=lambda a: a["id"])
    assert (restart["action"], restart["status"]) == ("restart", "failed"), restart
    assert "verification failed" in restart["reason"]
    assert (rollback["action"], rollback["status"]) == ("run", "succeeded"), rollback
    (run,) = runs
    assert (run["status"], run["escalation"]) == ("cured", None), run
    assert [(s["step"], s["run_id"]) for s in steps] == [(1, run["id"]), (2, run["id"])]
    assert (tmp_path / "rollbacks.log").read_text().splitlines() == ["rollback web"]
    assert pages == []  # a cured runbook pages nobody
