"""A scripted sequence of incidents and actions whose metrics are known in advance.

Used by the /metrics test (which checks the figures) and the dashboard test (which
needs every panel's series to exist). What it does, and so what /metrics must show:
- ServiceDown{service=web}, 10 min old: restarted via the log executor (succeeds),
  then resolved after 120 s;
- Broken{service=db} three times: the command fails twice (breaker opens at 2), the
  third is skipped breaker_open;
- ServiceDown{service="bad;name"}: refused by the safe pattern;
- Gone{service=cache}: resolved, never seen firing, 30 s long;
- Busy{service=web, value=0.34}: supervisord's 3 processes scaled to ceil(3*0.34) = 2.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from receiver.store.sqlite import SqliteStore
from tests.support.processes import remediator
from tests.support.receiver import TOKEN, settle
from tests.support.supervisor import program, supervisord


def config_text(supervisor_url: str) -> str:
    return f"""
server: {{auth: {{bearer_token_file: token}}}}
defaults: {{cooldown: 0s, breaker: {{failure_threshold: 2, recovery_timeout: 1h}}}}
executors:
  logger: {{type: log}}
  local: {{type: command}}
  procs: {{type: supervisor, url: {supervisor_url}}}
strategies:
  - name: restart-web
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: logger
    target: '{{{{ labels.service }}}}'
  - name: failing
    matchers: ['alertname="Broken"']
    action: run
    executor: local
    target: '{{{{ labels.service }}}}'
    command: [{sys.executable!r}, '-c', 'raise SystemExit(3)']
  - name: scale-web
    matchers: ['alertname="Busy"']
    action: scale
    executor: procs
    target: '{{{{ labels.service }}}}'
    scale: {{annotation: value, target_value: 1, min_replicas: 1, max_replicas: 3}}
"""


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def post(server, *alerts: dict) -> dict:
    response = requests.post(
        f"{server.url}/webhook",
        json={"version": "4", "status": "firing", "alerts": list(alerts)},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def firing(name: str, service: str, starts: datetime, **annotations: str) -> dict:
    return {
        "status": "firing",
        "labels": {"alertname": name, "service": service},
        "annotations": annotations,
        "startsAt": iso(starts),
    }


@contextmanager
def scenario(workdir: Path, *extra_args: str, extra_config: str = "") -> Iterator[tuple]:
    """Yield (server, journal, config path, store url, now) once the script has run.

    `extra_config` is appended to the config after its strategies: more strategies (as
    list items indented by two spaces), then top-level keys. The script never fires them;
    the caller does, so the figures above stay those of the script.
    """
    (workdir / "token").write_text(TOKEN)
    now = datetime.now(UTC).replace(microsecond=0)
    t_web = now - timedelta(minutes=10)
    with supervisord(workdir / "sup", program("web", numprocs=3)) as sup:
        config = workdir / "remediation.yml"
        config.write_text(config_text(sup.url) + extra_config)
        store_url = f"sqlite:///{workdir / 'journal.db'}"
        journal = SqliteStore(store_url)
        with remediator(workdir, config, store_url, *extra_args) as server:
            post(server, firing("ServiceDown", "web", t_web))
            settle(journal)
            resolved = {**firing("ServiceDown", "web", t_web), "status": "resolved"}
            resolved["endsAt"] = iso(t_web + timedelta(seconds=120))
            post(server, resolved)
            for minute in (1, 2, 3):
                broken = firing("Broken", "db", now - timedelta(minutes=minute))
                # three alerts of one target: with one fingerprint, each later one would
                # be an older occurrence that Alertmanager had replaced (engine.py)
                broken["labels"]["instance"] = f"db-{minute}"
                post(server, broken)
                settle(journal)
            post(server, firing("ServiceDown", "bad;name", now))
            never = firing("Gone", "cache", now - timedelta(minutes=5))
            never.update(status="resolved", endsAt=iso(now - timedelta(minutes=5, seconds=-30)))
            post(server, never)
            post(server, firing("Busy", "web", now - timedelta(minutes=1), value="0.34"))
            settle(journal, timeout=60)
            yield server, journal, config, store_url, now
