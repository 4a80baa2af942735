"""Canary analysis through the real server (issue 15): a wave's canary is judged against
the not-yet-remediated targets from a real Prometheus, and the verdict moves the wave.

Four local exporters (one per instance, scraped every second by the Debian `prometheus`
binary) export `app_latency_seconds`: 0.1 until the action's real command marks the
instance remediated, then what the test's mode says: `better` (0.01) or `worse` (1.0,
as a restart that starts cold). The strategy's wave is a canary of 1, then the rest; its
analysis compares the canary's latency with the other three's over 6 s at 1 s steps.

- better: the analysis passes, the stage goes on, all four are acted on;
- worse: the analysis fails, the other three are skipped `halted: ...`, the strategy's
  `undo` runs on the canary, the verdict is counted and readable with its judgement.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
import requests

from receiver.prometheus import PrometheusClient
from tests.support.journal import open_journal, post_webhook, settle, wait_for
from tests.support.payloads import alert, notification
from tests.support.processes import Running, prometheus, remediator
from tests.support.receiver import write_config

pytestmark = pytest.mark.integration

INSTANCES = ("web-1", "web-2", "web-3", "web-4")
LATENCY = {"untouched": "0.1", "better": "0.01", "worse": "1.0"}
#: act.py STATE INSTANCE: mark the instance remediated (its exporter then reads the mode)
ACT = """import pathlib, sys
pathlib.Path(sys.argv[1], sys.argv[2] + ".remediated").touch()
"""
#: undo.py STATE INSTANCE: take it back, and say so
UNDO = """import pathlib, sys
state = pathlib.Path(sys.argv[1])
(state / (sys.argv[2] + ".remediated")).unlink(missing_ok=True)
(state / (sys.argv[2] + ".undone")).touch()
"""


def exporter(state: Path, instance: str) -> ThreadingHTTPServer:
    """Exports the instance's latency: untouched, or after remediation what `mode` says."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            remediated = (state / f"{instance}.remediated").exists()
            mode = (state / "mode").read_text().strip() if remediated else "untouched"
            body = f"app_latency_seconds {LATENCY[mode]}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Running]]:
    state = tmp_path_factory.mktemp("state")
    with ExitStack() as stack:
        ports = {}
        for instance in INSTANCES:
            server = exporter(state, instance)
            Thread(target=server.serve_forever, daemon=True).start()
            stack.callback(server.shutdown)
            ports[instance] = server.server_address[1]
        targets = "\n".join(
            f"      - targets: ['127.0.0.1:{port}']\n        labels: {{instance: {name}}}"
            for name, port in ports.items()
        )
        config = (
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"scrape_configs:\n  - job_name: app\n    static_configs:\n{targets}\n"
        )
        prom = stack.enter_context(prometheus(tmp_path_factory.mktemp("prom"), config))
        client = PrometheusClient(prom.url)
        wait_for(lambda: len(client.query("app_latency_seconds")) == 4, 60, "every exporter")
        yield state, prom


def config_text(workdir: Path, state: Path, prom: Running, interval: str = "6s") -> str:
    (workdir / "act.py").write_text(ACT)
    (workdir / "undo.py").write_text(UNDO)
    act = [sys.executable, str(workdir / "act.py"), str(state), "{{ labels.instance }}"]
    undo = [sys.executable, str(workdir / "undo.py"), str(state), "{{ labels.instance }}"]
    query = 'app_latency_seconds{instance="{{ labels.instance }}"}'
    return f"""
server: {{auth: {{bearer_token_file: token}}}}
prometheus: {{url: {prom.url}}}
defaults: {{cooldown: 0s, max_concurrent_actions: 4}}
executors:
  local: {{type: command}}
strategies:
  - name: heal-web
    matchers: ['alertname="HighLatency"']
    action: run
    executor: local
    target: '{{{{ labels.instance }}}}'
    command: {act!r}
    fleet:
      progressive: {{min_targets: 3, gather: 1s, canary: 1, stages: [100%], pause: 0s}}
      analysis:
        metrics: [{{name: latency, query: '{query}', direction: lower, tolerance: 0.1}}]
        interval: {interval}
        step: 1s
    undo: {{action: run, command: {undo!r}}}
"""


@contextmanager
def serve(
    tmp_path: Path, stack: tuple[Path, Running], mode: str, interval: str = "6s"
) -> Iterator[Running]:
    state, prom = stack
    for old in state.iterdir():
        old.unlink()
    (state / "mode").write_text(mode)
    config = write_config(tmp_path, config_text(tmp_path, state, prom, interval))
    store = f"sqlite:///{tmp_path / 'journal.db'}"
    with remediator(tmp_path, config, store) as server:
        alerts = [alert("HighLatency", service="web", instance=i) for i in INSTANCES]
        body = notification(*alerts, group_key='{}:{alertname="HighLatency"}')
        assert post_webhook(server.url, body).status_code == 200
        server.journal = open_journal(store)  # type: ignore[attr-defined]
        yield server


def fleet_of(server: Running) -> dict[str, Any]:
    """The one fleet the server knows; before its first alert is journaled (a slow
    machine), none yet: then no wave either."""
    fleets = requests.get(f"{server.url}/api/v1/fleets", timeout=5).json()["data"]
    return fleets[0] if fleets else {"wave": None}


def test_a_canary_better_than_the_baseline_passes_and_the_wave_goes_on(tmp_path, stack):
    with serve(tmp_path, stack, "better") as server:
        actions = settle(server.journal, 4, timeout=90)
        assert sorted((a["target"], a["status"]) for a in actions) == [
            (i, "succeeded") for i in INSTANCES
        ]
        fleet = fleet_of(server)
        assert fleet["wave"]["phase"] == "done"
        [judged] = fleet["analyses"]
        assert (judged["verdict"], judged["request"]["canary"]) == ("pass", ["web-1"])
        assert judged["request"]["baseline"] == ["web-2", "web-3", "web-4"]
        [metric] = judged["judgement"]["metrics"]
        assert metric["canary_median"] == pytest.approx(0.01)
        assert metric["baseline_median"] == pytest.approx(0.1)
        metrics = requests.get(f"{server.url}/metrics", timeout=5).text
        assert 'remediator_canary_verdicts_total{strategy="heal-web",verdict="pass"} 1.0' in (
            metrics
        )


def test_a_canary_worse_than_the_baseline_halts_the_wave_and_is_undone(tmp_path, stack):
    state, _ = stack
    with serve(tmp_path, stack, "worse") as server:
        actions = settle(server.journal, 5, timeout=90)
        by_target = {(a["target"], a["status"]) for a in actions}
        assert ("web-1", "succeeded") in by_target
        halted = [a for a in actions if a["status"] == "skipped"]
        assert sorted(a["target"] for a in halted) == ["web-2", "web-3", "web-4"]
        assert all(a["reason"].startswith("halted: analysis after canary fail") for a in halted)
        undone = [a for a in actions if a["step"] == 0]  # UNDO_STEP
        assert [(a["target"], a["status"]) for a in undone] == [("web-1", "succeeded")]
        assert (state / "web-1.undone").exists()
        fleet = fleet_of(server)
        assert fleet["wave"]["phase"] == "halted"
        assert fleet["breaker"]["state"] == "open"
        [judged] = fleet["analyses"]
        assert judged["verdict"] == "fail"
        [metric] = judged["judgement"]["metrics"]
        assert metric["verdict"] == "fail"
        assert metric["p_value"] < 0.05
        metrics = requests.get(f"{server.url}/metrics", timeout=5).text
        assert 'remediator_canary_verdicts_total{strategy="heal-web",verdict="fail"} 1.0' in (
            metrics
        )


def test_a_reload_without_the_fleet_forgets_its_wave_and_the_rest_go_on(tmp_path, stack):
    """The wave waits for an analysis due in 10 minutes; the config is reloaded without
    `fleet`: the analysis is dropped, the wave forgotten, and the three targets that
    waited for it are acted on at once."""
    state, prom = stack
    with serve(tmp_path, stack, "better", interval="10m") as server:
        wait_for(
            lambda: fleet_of(server)["wave"] and fleet_of(server)["wave"]["phase"] == "analysing",
            30,
            "the wave to wait for its canary's analysis",
        )
        text = config_text(tmp_path, state, prom)
        without = text[: text.index("    fleet:")]  # and its undo, which needs it
        (tmp_path / "remediation.yml").write_text(without)
        headers = {"Authorization": "Bearer s3cret-token"}
        assert requests.post(f"{server.url}/-/reload", headers=headers, timeout=10).ok
        actions = settle(server.journal, 4, timeout=60)
        assert sorted((a["target"], a["status"]) for a in actions) == [
            (i, "succeeded") for i in INSTANCES
        ]
        fleet = fleet_of(server)
        assert (fleet["configured"], fleet["wave"], fleet["in_flight"]) == (False, None, 0)
        assert fleet["analyses"][0]["verdict"] == "dropped"
