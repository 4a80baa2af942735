"""The closed-loop demo's parts, with real supervisord and Prometheus.

A real supervisord runs examples/supervisord.conf.template (the `demo` group: three
numbered examples/demo_service.py processes with self-load). Each fault is injected over
the admin endpoint and its effect read from /healthz, / and /metrics (parsed with
prometheus_client's parser); a supervisord restart of that process clears it, while
supervisord's own autorestart does not see a wedged process. A real Prometheus with
examples/prometheus.yml.template and a fast copy of rules/health.rules.yml discovers the
processes through their file_sd registrations and raises and resolves every health alert.
The filled-in examples/demo-remediation.yml passes `remediator check`.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from examples.demo_service import fast_rules, placeholders, render
from tests.support.processes import REPO, binary, free_port, prometheus, run_cli, wait_http
from tests.support.supervisor import SUPERVISORD, Supervisord

pytestmark = pytest.mark.integration

EXAMPLES = REPO / "examples"
DEMO_SERVICE = EXAMPLES / "demo_service.py"
SUPERVISORD_TEMPLATE = EXAMPLES / "supervisord.conf.template"
PROMETHEUS_TEMPLATE = EXAMPLES / "prometheus.yml.template"
REMEDIATION_TEMPLATE = EXAMPLES / "demo-remediation.yml"
ROLLBACK_SCRIPT = EXAMPLES / "rollback_release.py"
HEALTH_RULES = REPO / "rules" / "health.rules.yml"
PROCESSES = ("demo:demo_00", "demo:demo_01", "demo:demo_02")
SELF_LOAD = 5  # requests per second each process sends to its own /

Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]


def consecutive_free_ports(count: int) -> int:
    """A base port with `count` free loopback ports from it (best effort, like free_port)."""
    for _ in range(100):
        base = free_port()
        with ExitStack() as stack:
            try:
                for offset in range(count):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", base + offset))
            except OSError:
                continue
            return base
    raise RuntimeError(f"no {count} consecutive free ports")


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with suppress(requests.RequestException, OSError, xmlrpc.client.Error):
            last = check()
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass
class Demo:
    supervisor: Supervisord
    base_port: int
    state_dir: Path

    def url(self, spec: str) -> str:
        return f"http://127.0.0.1:{self.base_port + int(spec.rsplit('_', 1)[1])}"

    def metrics(self, spec: str) -> Metrics:
        text = requests.get(self.url(spec) + "/metrics", timeout=5).text
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def value(self, spec: str, name: str, **labels: str) -> float:
        return self.metrics(spec)[(name, frozenset(labels.items()))]

    def fault(self, spec: str, **body: Any) -> requests.Response:
        return requests.post(self.url(spec) + "/admin/fault", json=body, timeout=5)

    def pid(self, spec: str) -> int:
        return self.supervisor.processes()[spec]["pid"]

    def state(self, spec: str) -> str:
        return self.supervisor.processes()[spec]["statename"]

    def restart(self, spec: str) -> None:
        """What Remediator's supervisor executor does: stop, then start, the process."""
        rpc = self.supervisor.rpc()
        rpc.stopProcess(spec, True)
        rpc.startProcess(spec, True)
        wait_http(self.url(spec) + "/healthz")

    def registrations(self) -> dict[str, Any]:
        found = {}
        for path in sorted(self.state_dir.glob("*.json")):
            (entry,) = json.loads(path.read_text())
            found[entry["labels"]["process"]] = entry
        return found


@contextmanager
def demo_group(workdir: Path, self_load: float) -> Iterator[Demo]:
    """supervisord from examples/supervisord.conf.template, the three processes RUNNING."""
    workdir.mkdir(parents=True, exist_ok=True)
    state_dir = workdir / "state"
    port, base_port = free_port(), consecutive_free_ports(3)
    config = workdir / "supervisord.conf"
    config.write_text(
        render(
            SUPERVISORD_TEMPLATE,
            workdir=workdir,
            supervisor_port=port,
            python=sys.executable,
            demo_service=DEMO_SERVICE,
            base_port=base_port,
            state_dir=state_dir,
            self_load=self_load,
            # the demo's fleet group is not started here: its scenes have their own tests
            fleet_size=0,
            fleet_base_port=base_port + 3,
        )
    )
    with (workdir / "supervisord.out").open("wb") as out:
        process = subprocess.Popen(
            [str(SUPERVISORD), "-c", str(config), "-n"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    handle = Supervisord(process, f"http://127.0.0.1:{port}/RPC2", workdir)
    try:
        handle.wait_until(
            lambda: handle.rpc().getState()["statename"] == "RUNNING", 20, "supervisord RUNNING"
        )
        handle.wait_all_running(("demo",), timeout=20)
        demo = Demo(handle, base_port, state_dir)
        for spec in PROCESSES:
            wait_http(demo.url(spec) + "/healthz")
        yield demo
    finally:
        handle.shutdown()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with demo_group(tmp_path_factory.mktemp("demo"), SELF_LOAD) as group:
        yield group


@pytest.fixture
def clean(demo: Demo) -> Iterator[Demo]:
    """Every test starts and leaves the group running, healthy and fault-free."""
    yield demo
    demo.supervisor.start_all("demo", timeout=20)
    for spec in PROCESSES:
        wait_http(demo.url(spec) + "/healthz")
        assert demo.fault(spec, fault="none").status_code == 200
    wait_for(lambda: len(demo.registrations()) == 3, what="three registrations")


# ---------------------------------------------------------------------------- the service


def test_three_numbered_processes_serve_metrics_and_register(clean: Demo):
    demo = clean
    assert demo.supervisor.states("demo") == dict.fromkeys(PROCESSES, "RUNNING")
    for number, spec in enumerate(PROCESSES):
        assert demo.url(spec).endswith(f":{demo.base_port + number}")
        families = {
            family.name: family.type
            for family in text_string_to_metric_families(
                requests.get(demo.url(spec) + "/metrics", timeout=5).text
            )
        }
        assert families["demo_requests"] == "counter"
        assert families["demo_request_duration_seconds"] == "histogram"
        assert families["demo_healthy"] == "gauge"
        assert families["demo_busy_ratio"] == "gauge"
        assert families["demo_fault"] == "gauge"
        assert demo.value(spec, "demo_healthy") == 1
        assert demo.value(spec, "demo_requests_total", code="500") == 0
        assert demo.value(spec, "demo_busy_ratio") < 0.5
        assert requests.get(demo.url(spec) + "/healthz", timeout=5).status_code == 200
        assert requests.get(demo.url(spec) + "/", timeout=5).status_code == 200
        # self-load: traffic without anyone calling /
        before = demo.value(spec, "demo_requests_total", code="200")
        wait_for(
            lambda spec=spec, before=before: (
                demo.value(spec, "demo_requests_total", code="200") >= before + SELF_LOAD
            ),
            timeout=10,
            what=f"self-load on {spec}",
        )
    # file_sd registrations: what Prometheus scrapes, with the labels the rules need
    registrations = demo.registrations()
    assert sorted(registrations) == list(PROCESSES)
    for number, spec in enumerate(PROCESSES):
        assert registrations[spec] == {
            "targets": [f"127.0.0.1:{demo.base_port + number}"],
            "labels": {"service": "demo", "process": spec},
        }


def test_crash_wedges_the_process_until_it_is_restarted(clean: Demo):
    demo, spec = clean, "demo:demo_01"
    pid = demo.pid(spec)
    answer = demo.fault(spec, fault="crash")
    assert answer.status_code == 200, answer.text
    assert answer.json()["faults"]["wedged"] is True

    assert requests.get(demo.url(spec) + "/healthz", timeout=5).status_code == 503
    assert requests.get(demo.url(spec) + "/", timeout=5).status_code == 503
    assert demo.value(spec, "demo_healthy") == 0
    assert demo.value(spec, "demo_fault", fault="crash") == 1
    assert demo.value(spec, "demo_requests_total", code="503") >= 1
    # the others are not affected
    assert demo.value("demo:demo_00", "demo_healthy") == 1
    # supervisord sees nothing wrong: the process keeps running, autorestart never fires
    time.sleep(2.5)
    assert demo.state(spec) == "RUNNING" and demo.pid(spec) == pid
    assert demo.value(spec, "demo_healthy") == 0
    assert spec in demo.registrations(), "a wedged process stays registered (and is seen)"

    demo.restart(spec)
    assert demo.pid(spec) != pid
    assert requests.get(demo.url(spec) + "/healthz", timeout=5).status_code == 200
    assert requests.get(demo.url(spec) + "/", timeout=5).status_code == 200
    assert demo.value(spec, "demo_healthy") == 1
    assert demo.value(spec, "demo_fault", fault="crash") == 0


def test_errors_fault_answers_500_counted_until_restart(clean: Demo):
    demo, spec = clean, "demo:demo_02"
    before = demo.value(spec, "demo_requests_total", code="500")
    assert demo.fault(spec, fault="errors", ratio=1.0).status_code == 200
    codes = [requests.get(demo.url(spec) + "/", timeout=5).status_code for _ in range(10)]
    assert codes == [500] * 10
    assert demo.value(spec, "demo_requests_total", code="500") >= before + 10
    assert demo.value(spec, "demo_fault", fault="errors") == 1
    assert demo.value(spec, "demo_healthy") == 1, "errors alone do not fail the health check"
    assert requests.get(demo.url("demo:demo_00") + "/", timeout=5).status_code == 200

    demo.restart(spec)
    codes = [requests.get(demo.url(spec) + "/", timeout=5).status_code for _ in range(10)]
    assert codes == [200] * 10
    assert demo.value(spec, "demo_requests_total", code="500") == 0
    assert demo.value(spec, "demo_fault", fault="errors") == 0


def test_partial_error_ratio(clean: Demo):
    demo, spec = clean, "demo:demo_00"
    assert demo.fault(spec, fault="errors", ratio=0.5).status_code == 200
    codes = [requests.get(demo.url(spec) + "/", timeout=5).status_code for _ in range(60)]
    assert set(codes) == {200, 500}
    assert 10 <= codes.count(500) <= 50


def _histogram(demo: Demo, spec: str) -> dict[str, float]:
    metrics = demo.metrics(spec)
    found = {
        dict(labels)["le"]: value
        for (name, labels), value in metrics.items()
        if name == "demo_request_duration_seconds_bucket"
    }
    found["count"] = metrics[("demo_request_duration_seconds_count", frozenset())]
    found["sum"] = metrics[("demo_request_duration_seconds_sum", frozenset())]
    return found


def test_latency_fault_shifts_the_histogram_until_restart(clean: Demo):
    demo, spec = clean, "demo:demo_01"
    assert demo.fault(spec, fault="latency", seconds=0.3).status_code == 200
    time.sleep(0.1)  # let fast requests already in flight finish
    before = _histogram(demo, spec)
    for _ in range(3):
        started = time.monotonic()
        assert requests.get(demo.url(spec) + "/", timeout=5).status_code == 200
        assert time.monotonic() - started >= 0.3
    after = _histogram(demo, spec)
    assert after["count"] >= before["count"] + 3
    # every request since the fault took over 0.25s: none landed in the lower buckets
    assert after["0.25"] == before["0.25"]
    assert after["0.5"] - before["0.5"] >= 3
    assert (after["sum"] - before["sum"]) / (after["count"] - before["count"]) >= 0.3
    assert demo.value(spec, "demo_fault", fault="latency") == 1
    # /metrics and /healthz stay fast (threaded server)
    started = time.monotonic()
    requests.get(demo.url(spec) + "/healthz", timeout=5)
    assert time.monotonic() - started < 0.25

    demo.restart(spec)
    started = time.monotonic()
    assert requests.get(demo.url(spec) + "/", timeout=5).status_code == 200
    assert time.monotonic() - started < 0.25
    assert demo.value(spec, "demo_fault", fault="latency") == 0


def test_saturation_fault_pins_the_busy_gauge_until_restart(clean: Demo):
    demo, spec = clean, "demo:demo_02"
    assert demo.fault(spec, fault="saturation", busy=0.97).status_code == 200
    assert demo.value(spec, "demo_busy_ratio") == pytest.approx(0.97)
    assert demo.value(spec, "demo_fault", fault="saturation") == 1
    assert demo.value("demo:demo_00", "demo_busy_ratio") < 0.5
    demo.restart(spec)
    assert demo.value(spec, "demo_busy_ratio") < 0.5
    assert demo.value(spec, "demo_fault", fault="saturation") == 0


def test_group_load_is_shared_by_live_replicas_so_scaling_lowers_it(clean: Demo):
    demo = clean
    answer = demo.fault("demo:demo_00", fault="saturation", load=1.8)
    assert answer.status_code == 200, answer.text
    assert answer.json()["live_replicas"] == 3
    for spec in PROCESSES:
        assert demo.value(spec, "demo_busy_ratio") == pytest.approx(0.6)

    # scaled down to 2: the stopped process deregisters, the other two carry the load
    demo.supervisor.rpc().stopProcess("demo:demo_02", True)
    assert sorted(demo.registrations()) == ["demo:demo_00", "demo:demo_01"]
    for spec in PROCESSES[:2]:
        assert demo.value(spec, "demo_busy_ratio") == pytest.approx(0.9)

    # scaled up again (what the scale strategy does): the share drops back
    demo.supervisor.rpc().startProcess("demo:demo_02", True)
    wait_http(demo.url("demo:demo_02") + "/healthz")
    for spec in PROCESSES:
        assert demo.value(spec, "demo_busy_ratio") == pytest.approx(0.6)

    # a restart does not remove external load
    demo.restart("demo:demo_00")
    assert demo.value("demo:demo_00", "demo_busy_ratio") == pytest.approx(0.6)

    assert demo.fault("demo:demo_01", fault="saturation", load=0).status_code == 200
    for spec in PROCESSES:
        assert demo.value(spec, "demo_busy_ratio") < 0.5


def test_exit_fault_is_healed_by_supervisord_alone(clean: Demo):
    demo, spec = clean, "demo:demo_00"
    pid = demo.pid(spec)
    assert demo.fault(spec, fault="exit").status_code == 200
    wait_for(
        lambda: demo.pid(spec) not in (pid, 0) and demo.state(spec) == "RUNNING",
        timeout=15,
        what="supervisord to restart the exited process",
    )
    wait_http(demo.url(spec) + "/healthz")
    assert demo.value(spec, "demo_healthy") == 1


def test_none_clears_every_fault_of_the_process(clean: Demo):
    demo, spec = clean, "demo:demo_01"
    for body in (
        {"fault": "wedge"},
        {"fault": "errors"},
        {"fault": "latency", "seconds": 0.2},
        {"fault": "saturation", "busy": 0.9},
    ):
        assert demo.fault(spec, **body).status_code == 200
    shown = requests.get(demo.url(spec) + "/admin/fault", timeout=5).json()
    assert shown["process"] == spec
    assert shown["faults"] == {
        "wedged": True,
        "error_ratio": 1.0,
        "latency_seconds": 0.2,
        "busy": 0.9,
    }
    assert demo.fault(spec, fault="none").json()["faults"] == {
        "wedged": False,
        "error_ratio": 0.0,
        "latency_seconds": 0.0,
        "busy": 0.0,
    }
    assert requests.get(demo.url(spec) + "/", timeout=5).status_code == 200


def test_cold_fault_slows_only_a_process_started_after_it_and_survives_the_restart(
    clean: Demo,
):
    demo, spec = clean, "demo:demo_02"
    assert demo.fault(spec, fault="cold", seconds=120, delay=0.3).status_code == 200
    shown = requests.get(demo.url(spec) + "/admin/fault", timeout=5).json()["cold_start"]
    assert (shown["seconds"], shown["delay"]) == (120, 0.3)
    # the process running when the fault came is warm: not slowed
    assert shown["delay_now"] == 0
    assert demo.value(spec, "demo_fault", fault="cold") == 1
    assert demo.value("demo:demo_00", "demo_fault", fault="cold") == 0

    # the restart is what makes it worse: the new process starts cold
    demo.restart(spec)
    shown = requests.get(demo.url(spec) + "/admin/fault", timeout=5).json()["cold_start"]
    assert shown["delay_now"] == 0.3
    assert shown["started_at"] >= shown["since"]
    assert demo.value(spec, "demo_fault", fault="cold") == 1
    started = time.monotonic()
    assert requests.get(demo.url(spec) + "/", timeout=5).status_code == 200
    assert time.monotonic() - started >= 0.3
    # /healthz is not the work endpoint: not slowed (health checks pass, only latency rises)
    assert requests.get(demo.url(spec) + "/healthz", timeout=5).status_code == 200

    # `none` removes it, with the other faults
    assert demo.fault(spec, fault="none").json()["cold_start"] is None
    assert demo.value(spec, "demo_fault", fault="cold") == 0
    assert not (demo.state_dir / "demo-demo_02.cold").exists()


def rollback(demo: Demo, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run examples/rollback_release.py as the demo's command executor does: an argv list."""
    return subprocess.run(
        [sys.executable, str(ROLLBACK_SCRIPT), "--state-dir", str(demo.state_dir), *argv],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_bad_release_survives_a_restart_and_a_rollback_cures_it(clean: Demo):
    demo, spec = clean, "demo:demo_01"
    assert demo.value(spec, "demo_release_info", version="1.0.0") == 1
    assert demo.value(spec, "demo_release_deployed_timestamp_seconds") == 0
    before = time.time()
    answer = demo.fault(spec, fault="release", version="1.1.0")
    assert answer.status_code == 200, answer.text
    assert answer.json()["release"]["version"] == "1.1.0"

    codes = [requests.get(demo.url(spec) + "/", timeout=5).status_code for _ in range(5)]
    assert codes == [500] * 5
    assert demo.value(spec, "demo_release_info", version="1.1.0") == 1
    assert ("demo_release_info", frozenset({("version", "1.0.0")})) not in demo.metrics(spec)
    assert demo.value(spec, "demo_release_deployed_timestamp_seconds") >= before
    assert demo.value(spec, "demo_fault", fault="release") == 1
    assert demo.value(spec, "demo_healthy") == 1, "a bad release still passes /healthz"
    assert requests.get(demo.url("demo:demo_00") + "/", timeout=5).status_code == 200

    # the process comes back on the release it was given: a restart cures nothing
    demo.restart(spec)
    codes = [requests.get(demo.url(spec) + "/", timeout=5).status_code for _ in range(5)]
    assert codes == [500] * 5

    done = rollback(demo, "demo", spec)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"rolled back {spec} from release 1.1.0 to 1.0.0"
    codes = [requests.get(demo.url(spec) + "/", timeout=5).status_code for _ in range(5)]
    assert codes == [200] * 5
    assert demo.value(spec, "demo_release_info", version="1.0.0") == 1
    assert demo.value(spec, "demo_fault", fault="release") == 0
    # one step back only: nothing further to roll back to
    again = rollback(demo, "demo", spec)
    assert again.returncode == 1
    assert "no previous release" in again.stderr


@pytest.mark.parametrize(
    ("service", "process"),
    [
        ("demo", "demo:../../etc"),
        ("demo", "demo_01"),
        ("demo", "demo:demo_01\n"),
        ("../demo", "demo:demo_01"),
        ("demo", "$(reboot):x"),
        ("Demo", "demo:demo_01"),
    ],
)
def test_rollback_refuses_labels_that_are_not_plain_names(clean: Demo, service, process):
    demo = clean
    assert demo.fault("demo:demo_01", fault="release").status_code == 200
    files = sorted(path.name for path in demo.state_dir.iterdir())
    refused = rollback(demo, service, process)
    assert refused.returncode == 2
    assert refused.stderr.startswith("refused: ")
    assert sorted(path.name for path in demo.state_dir.iterdir()) == files
    assert requests.get(demo.url("demo:demo_01") + "/", timeout=5).status_code == 500


def test_rollback_without_a_deployed_release_fails(clean: Demo):
    missing = rollback(clean, "demo", "demo:demo_02")
    assert missing.returncode == 1
    assert "no release deployed" in missing.stderr


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"fault": "meltdown"}, "fault must be one of"),
        ({"fault": "release", "version": "1.0; rm -rf /"}, "version must match"),
        ({"fault": "release", "bad": "yes"}, "bad must be true or false"),
        ({}, "fault must be one of"),
        ({"fault": "errors", "ratio": 2}, "ratio must be within"),
        ({"fault": "errors", "ratio": "all"}, "ratio must be a number"),
        ({"fault": "latency", "seconds": -1}, "seconds must be within"),
        ({"fault": "saturation", "busy": True}, "busy must be a number"),
        ({"fault": "cold", "seconds": -5}, "seconds must be within"),
        ({"fault": "cold", "delay": 31}, "delay must be within"),
        ({"fault": "cold", "delay": "slow"}, "delay must be a number"),
    ],
)
def test_bad_fault_requests_are_refused(clean: Demo, body, message):
    answer = clean.fault("demo:demo_00", **body)
    assert answer.status_code == 400
    assert message in answer.json()["error"]
    assert clean.value("demo:demo_00", "demo_healthy") == 1


def test_admin_endpoint_refuses_non_json_and_other_methods(clean: Demo):
    url = clean.url("demo:demo_00")
    answer = requests.post(url + "/admin/fault", data=b"crash", timeout=5)
    assert answer.status_code == 400 and "not JSON" in answer.json()["error"]
    assert requests.put(url + "/admin/fault", json={}, timeout=5).status_code == 405
    assert requests.post(url + "/", timeout=5).status_code == 405
    assert requests.get(url + "/nope", timeout=5).status_code == 404
    assert clean.value("demo:demo_00", "demo_healthy") == 1


# ---------------------------------------------------------------------------- the templates


def test_render_refuses_missing_and_unknown_placeholders(tmp_path: Path):
    names = placeholders(SUPERVISORD_TEMPLATE.read_text())
    assert names == {
        "workdir",
        "supervisor_port",
        "python",
        "demo_service",
        "base_port",
        "state_dir",
        "self_load",
        "fleet_size",
        "fleet_base_port",
    }
    with pytest.raises(KeyError, match="state_dir"):
        render(SUPERVISORD_TEMPLATE, **{name: "x" for name in names - {"state_dir"}})
    with pytest.raises(KeyError, match="colour"):
        render(SUPERVISORD_TEMPLATE, colour="red", **dict.fromkeys(names, "x"))


def _prometheus_config(workdir: Path, state_dir: Path) -> str:
    rules = workdir / "health.rules.yml"
    rules.write_text(fast_rules(HEALTH_RULES.read_text()))
    return render(
        PROMETHEUS_TEMPLATE,
        health_rules=rules,
        # nothing listens there: Prometheus logs failed notifications and scrapes, harmless
        alertmanager_address=f"127.0.0.1:{free_port()}",
        state_dir=state_dir,
        remediator_address=f"127.0.0.1:{free_port()}",
    )


def test_prometheus_template_passes_promtool_check_config(tmp_path: Path):
    config = tmp_path / "prometheus.yml"
    config.write_text(_prometheus_config(tmp_path, tmp_path / "state"))
    result = subprocess.run(
        [binary("promtool"), "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def _remediation_config(tmp_path: Path) -> Path:
    token = tmp_path / "webhook-token"
    token.write_text("demo-token\n")
    config = tmp_path / "demo-remediation.yml"
    config.write_text(
        render(
            REMEDIATION_TEMPLATE,
            remediator_address="127.0.0.1:19095",
            token_file=token,
            store=f"sqlite:///{tmp_path / 'journal.db'}",
            prometheus_url="http://127.0.0.1:19090",
            alertmanager_url="http://127.0.0.1:19093",
            supervisor_url="http://127.0.0.1:19001/RPC2",
            python=sys.executable,
            rollback_script=ROLLBACK_SCRIPT,
            state_dir=tmp_path / "state",
        )
    )
    return config


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args)


def test_demo_remediation_config_is_valid_once_filled_in(tmp_path: Path):
    result = cli("check", "--config", str(_remediation_config(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "OK (4 strategies, 3 executors)" in result.stdout
    # unfilled, it is a template, not a config
    result = cli("check", "--config", str(REMEDIATION_TEMPLATE))
    assert result.returncode == 1


@pytest.mark.parametrize(
    ("labels", "strategy", "action", "target"),
    [
        (
            [
                "alertname=ServiceDown",
                "remediation=restart",
                "service=demo",
                "process=demo:demo_01",
            ],
            "restart-process",
            "restart",
            "demo:demo_01",
        ),
        (
            [
                "alertname=HighErrorRatio",
                "remediation=restart",
                "service=demo",
                "process=demo:demo_02",
            ],
            "restart-process",
            "restart",
            "demo:demo_02",
        ),
        (
            ["alertname=HighSaturation", "remediation=scale", "service=demo"],
            "scale-on-saturation",
            "scale",
            "demo",
        ),
        (
            [
                "alertname=HighLatency",
                "remediation=escalate",
                "service=demo",
                "process=demo:demo_00",
            ],
            "escalate-to-person",
            "escalate",
            "demo:demo_00",
        ),
    ],
)
def test_each_health_alert_maps_to_its_strategy(tmp_path: Path, labels, strategy, action, target):
    result = cli("explain", "--json", "--config", str(_remediation_config(tmp_path)), *labels)
    assert result.returncode == 0, result.stderr
    (plan,) = json.loads(result.stdout)
    assert (plan["strategy"], plan["action"], plan["target"]) == (strategy, action, target)
    assert not plan["refused"]


# ---------------------------------------------------------------------------- with Prometheus


def _alerts(prom) -> dict[tuple[str, str], str]:
    """(alertname, process or service) -> state, for the health alerts."""
    data = requests.get(prom.url + "/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return {
        (a["labels"]["alertname"], a["labels"].get("process", a["labels"].get("service", ""))): (
            a["state"]
        )
        for a in data
        if a["labels"].get("remediation")
    }


def _firing(prom) -> set[tuple[str, str]]:
    return {key for key, state in _alerts(prom).items() if state == "firing"}


def _demo_targets(prom) -> dict[str, dict[str, Any]]:
    targets = requests.get(prom.url + "/api/v1/targets", timeout=5).json()["data"]
    return {
        t["labels"]["process"]: t
        for t in targets["activeTargets"]
        if t["labels"].get("job") == "demo"
    }


def test_prometheus_discovers_the_processes_and_every_health_alert_fires_and_resolves(
    clean: Demo, tmp_path: Path
):
    """The demo's story without Remediator: the fixes are done here by hand."""
    demo = clean
    # scaled down to 2 before Prometheus starts, leaving room to scale out
    demo.supervisor.rpc().stopProcess("demo:demo_02", True)
    with prometheus(tmp_path / "prometheus", _prometheus_config(tmp_path, demo.state_dir)) as prom:

        def scraped() -> dict[str, dict[str, Any]]:
            targets = _demo_targets(prom)
            return targets if all(t["health"] == "up" for t in targets.values()) else {}

        targets = wait_for(scraped, timeout=30, what="the two running processes to be scraped")
        assert sorted(targets) == ["demo:demo_00", "demo:demo_01"]
        assert targets["demo:demo_00"]["labels"]["service"] == "demo"
        assert targets["demo:demo_00"]["scrapeUrl"] == demo.url("demo:demo_00") + "/metrics"
        # the stopped process is simply not there: no ServiceDown for it
        time.sleep(3)
        assert not _alerts(prom), _alerts(prom)

        # faults: demo_00 wedged, demo_01 failing, the group loaded to 0.9 per replica
        assert demo.fault("demo:demo_00", fault="crash").status_code == 200
        assert demo.fault("demo:demo_01", fault="errors").status_code == 200
        assert demo.fault("demo:demo_01", fault="saturation", load=1.8).status_code == 200
        expected = {
            ("ServiceDown", "demo:demo_00"),
            ("HighErrorRatio", "demo:demo_01"),
            ("HighSaturation", "demo"),
        }
        wait_for(lambda: expected <= _firing(prom), timeout=40, what=f"{expected} firing")

        # scale out (what the scale strategy does): the third replica takes its share
        demo.supervisor.rpc().startProcess("demo:demo_02", True)
        wait_for(
            lambda: _demo_targets(prom).get("demo:demo_02", {}).get("health") == "up",
            timeout=30,
            what="the started process to be discovered and scraped",
        )
        wait_for(
            lambda: ("HighSaturation", "demo") not in _alerts(prom),
            timeout=40,
            what="HighSaturation to resolve after scaling out",
        )
        # slowness on the new replica
        assert demo.fault("demo:demo_02", fault="latency", seconds=1.0).status_code == 200
        wait_for(
            lambda: ("HighLatency", "demo:demo_02") in _firing(prom),
            timeout=40,
            what="HighLatency firing",
        )

        # restarts heal the process faults; every alert resolves
        for spec in PROCESSES:
            demo.restart(spec)
        wait_for(lambda: not _alerts(prom), timeout=60, what="every health alert resolved")
        assert demo.fault("demo:demo_00", fault="saturation", load=0).status_code == 200


# ------------------------------------------------------------------ the demo's own output


def answers(url: str) -> bool:
    """True when something serves `url` now (any HTTP answer below 500)."""
    try:
        return requests.get(url, timeout=5).status_code < 500
    except requests.ConnectionError:
        return False


def test_demo_prints_the_urls_while_they_answer_and_says_when_they_stop():
    """The real stack, no fault: the URLs come right after the stack is up, each one
    answering at the moment it is printed; the end says they are stopped, and then
    they are."""
    from receiver.demo import run_demo

    lines: list[str] = []
    printed: dict[str, bool] = {}

    def say(text: str) -> None:
        lines.append(text)
        if not any("Look at" in line for line in lines) or "fault" in text:
            return  # only the block of URLs to look at, up to the summary
        for word in text.split():
            if word.startswith("http://"):
                printed[word] = answers(word)  # probed as the reader would, right now

    assert run_demo(keep_running=False, say=say, faults=(), scenes=()) == []

    text = "\n".join(lines)
    look = text.index("Look at, while the faults run:")
    assert text.rindex("started ") < look < text.index("fault ")  # before the summary
    for path in ("/", "/api/v1/actions", "/api/v1/incidents", "/api/v1/stats", "/metrics"):
        assert any(url.endswith(path) for url in printed), path
    assert len(printed) == 7, printed  # prometheus, alertmanager, the console, four API URLs
    assert all(printed.values()), printed
    assert "--keep-running" in text[look : text.index("fault ")]
    assert lines[-1].startswith("stopped everything, the URLs above no longer answer")
    assert not any(answers(url) for url in printed)
