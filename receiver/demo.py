"""`remediator demo`: the closed loop on this machine, narrated as it happens.

Starts supervisord with three demo-service processes (group `demo`) and a fleet of six
(group `fleet`, service `catalog`), Prometheus (fast copy of the
health rules), Alertmanager (a copy of alertmanager/alertmanager.yml pointed at local
ports) and `remediator serve`, all on free loopback ports with their files in one temp
folder; injects faults one after another; prints fault → alert → action → verification
→ resolution with times; ends with a summary table whose `steps` column shows each
runbook step and its outcome (a bad release: the restart fails verification, the
rollback cures it). Then three fleet scenes, each a fault on all six fleet processes at
once (`FLEET_SCENES`): a fault a restart cures (canary, analysis passes, stages, never more
than 2 restarted at once), a shared broken dependency (the canary's restart does not cure
it: the wave halts, one restart, one escalation) and a cold start (the restart cures the
errors but the canary is slower than the baseline: the analysis halts the wave); a second
table summarises them. The URLs to look at are printed
as soon as the stack is up, while they answer. Everything stops on exit or Ctrl-C unless
`--keep-running` keeps it up until Ctrl-C.

It needs the repository (examples/, rules/, alertmanager/): it is a demo, not a service.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
TOKEN = "demo-token-not-a-secret"


@dataclass(frozen=True)
class Fault:
    """One step of the demo: what to break, which alert should fire, what should fix it."""

    name: str
    process: str  # where to inject ("demo:demo_01"); the alert may be per service
    payload: dict[str, Any]
    alertname: str
    strategy: str
    expect: str  # "recovered" or "escalated"
    clear_after: bool = False  # the operator repairs it after Remediator gave up


FAULTS = (
    Fault(
        "wedged process",
        "demo:demo_00",
        {"fault": "crash"},
        "ServiceDown",
        "restart-process",
        "recovered",
    ),
    Fault(
        "error burst",
        "demo:demo_01",
        {"fault": "errors", "ratio": 1.0},
        "HighErrorRatio",
        "restart-process",
        "recovered",
    ),
    Fault(
        "saturation",
        "demo:demo_00",
        {"fault": "saturation", "load": 1.8},
        "HighSaturation",
        "scale-on-saturation",
        "recovered",
    ),
    # A restart cannot cure a bad release (the process comes back on it); the runbook's
    # second step rolls the release back (examples/rollback_release.py) and verifies.
    Fault(
        "bad release",
        "demo:demo_00",
        {"fault": "release", "version": "1.1.0"},
        "HighErrorRatio",
        "restart-process",
        "recovered",
    ),
    Fault(
        "broken dependency",
        "demo:demo_02",
        {"fault": "dependency"},
        "HighErrorRatio",
        "restart-process",
        "escalated",
        clear_after=True,
    ),
)


#: The demo's fleet: supervisord group `fleet`, service `catalog`, remediated by this
#: strategy of examples/demo-remediation.yml with at most FLEET_MAX_IN_FLIGHT at once.
FLEET_SIZE = 6
FLEET_PROCESSES = tuple(f"fleet:fleet_{n:02d}" for n in range(FLEET_SIZE))
FLEET_SERVICE = "catalog"
FLEET_STRATEGY = "restart-fleet"
FLEET_MAX_IN_FLIGHT = 2


@dataclass(frozen=True)
class FleetScene:
    """One fleet scene: `payloads` injected, in order, into every process of the fleet at
    once; `expect` is how the wave should end: "done" (every target cured) or "halted"
    (the operator then repairs every process, as Remediator escalated to them)."""

    name: str
    payloads: tuple[dict[str, Any], ...]
    expect: str

    @property
    def fault(self) -> str:
        return " + ".join(str(p["fault"]) for p in self.payloads)


FLEET_SCENES = (
    # In memory: a restart cures each process. Canary, analysis (the canary's error ratio
    # is better than the baseline's, its latency the same), then the stages.
    FleetScene("fleet error burst", ({"fault": "errors", "ratio": 1.0},), "done"),
    # In the state directory: the restarted canary fails as before, its verification
    # fails, the wave halts before any other process is touched.
    FleetScene("fleet dependency", ({"fault": "dependency"},), "halted"),
    # Errors a restart cures, but a process started now starts cold: 200ms slower per
    # request for 60s (below HighLatency's 500ms, so only the analysis can see it). The
    # canary passes its verification (no 5xx) and fails the analysis on latency.
    FleetScene(
        "fleet cold start",
        ({"fault": "cold", "seconds": 60, "delay": 0.2}, {"fault": "errors", "ratio": 1.0}),
        "halted",
    ),
)


@dataclass
class SceneResult:
    """What one fleet scene did, read back from the receiver's API and Alertmanager."""

    scene: FleetScene
    injected_at: float
    fired: int = 0  # incidents of the fleet the scene's alerts opened
    actions: list[dict[str, Any]] = field(default_factory=list)  # the strategy's, oldest first
    verdicts: list[str] = field(default_factory=list)  # the wave's analysis verdicts
    phase: str = "-"  # how the wave ended: done, halted
    halt_reason: str = ""
    escalations: int = 0  # escalations of the strategy Alertmanager got during the scene
    resolved: bool = False  # every alert of the scene resolved in the end
    events: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for a in self.actions if a["status"] == status)

    @property
    def acted_on(self) -> int:
        """Actions that ran (a restart was tried), whatever their outcome."""
        return sum(1 for a in self.actions if a.get("started_at"))

    @property
    def peak_in_flight(self) -> int:
        """The most actions running (restart or verification) at once, from their
        journaled start and end times."""
        return peak_in_flight(self.actions)


def peak_in_flight(actions: list[dict[str, Any]]) -> int:
    """The most of `actions` (API rows: `started_at`, `finished_at` as ISO text or None)
    running at once; an action still running counts until now. An end at the same moment
    as another's start counts first, as the fleet gate frees a slot before it admits."""
    events: list[tuple[float, int]] = []
    for action in actions:
        if not action.get("started_at"):
            continue
        events.append((_epoch(action["started_at"]), 1))
        if action.get("finished_at"):
            events.append((_epoch(action["finished_at"]), -1))
    peak = running = 0
    for _at, delta in sorted(events):
        running += delta
        peak = max(peak, running)
    return peak


@dataclass
class Result:
    fault: Fault
    injected_at: float
    firing_at: float | None = None  # first seen firing in Prometheus
    action: dict[str, Any] | None = None  # the strategy's latest action: the last step tried
    #: the strategy's actions for the incident, oldest first: the runbook's steps in order
    actions: list[dict[str, Any]] = field(default_factory=list)
    resolved_seen_at: float | None = None  # first seen gone from Prometheus
    incident: dict[str, Any] | None = None
    escalations: int = 0
    breaker: str = "-"
    events: list[str] = field(default_factory=list)

    @property
    def detection(self) -> float | None:
        return None if self.firing_at is None else self.firing_at - self.injected_at

    @property
    def outcome(self) -> str:
        return self.action["status"] if self.action else "no action"

    @property
    def steps(self) -> str:
        """Each step tried and its outcome, in order: "restart failed, rollback succeeded"."""
        if not self.actions:
            return "no action"
        return ", ".join(f"{a['action']} {a['status']}" for a in self.actions)

    @property
    def finished(self) -> bool:
        """True when no step is planned, waiting or running: the runbook has ended (the
        next step is planned in the same transaction that ends the one before)."""
        return all(a["status"] not in ("planned", "running") for a in self.actions)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_run(count: int, taken: Iterable[int] = ()) -> int:
    """A base port with `count` consecutive free ports (the demo processes use base+N),
    none of them in `taken` (ports chosen already but not yet listened on)."""
    avoid = set(taken)
    for _ in range(200):
        base = free_port()
        ports = range(base, base + count)
        if base + count < 65535 and avoid.isdisjoint(ports) and all(map(_free, ports)):
            return base
    raise RuntimeError("no run of free loopback ports found")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _demo_service_module() -> Any:
    spec = importlib.util.spec_from_file_location("demo_service", EXAMPLES / "demo_service.py")
    if spec is None or spec.loader is None or not spec.origin or not Path(spec.origin).exists():
        raise SystemExit("remediator demo needs the repository's examples/ folder")
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo_service"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


class _Sink(BaseHTTPRequestHandler):
    """Stands in for a person's pager: counts what Alertmanager sends to `oncall`."""

    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            self.received.append(json.loads(body))
        except ValueError:
            self.received.append({"raw": body.decode(errors="replace")})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


class Stack:
    """Every process of the demo, started in order and stopped in reverse."""

    def __init__(self, workdir: Path, say: Callable[[str], None] = print) -> None:
        self.workdir = workdir
        self.say = say
        self.state_dir = workdir / "state"
        self.processes: list[tuple[str, subprocess.Popen]] = []
        self.demo = _demo_service_module()
        self.ports = {
            name: free_port() for name in ("supervisor", "prometheus", "alertmanager", "receiver")
        }
        self.base_port = free_port_run(3, self.ports.values())
        taken = [*self.ports.values(), *range(self.base_port, self.base_port + 3)]
        self.fleet_base_port = free_port_run(FLEET_SIZE, taken)
        self.urls = {name: f"http://127.0.0.1:{port}" for name, port in self.ports.items()}
        self.sink_received: list[dict[str, Any]] = []
        self._sink: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "token").write_text(TOKEN + "\n")
        self._start_sink()
        self._start_supervisord()
        self._write_configs()
        self._spawn(
            "remediator",
            [
                sys.executable,
                "-m",
                "receiver.cli",
                "serve",
                "--config",
                str(self.workdir / "remediation.yml"),
            ],
            "/-/ready",
            self.urls["receiver"],
        )
        self._spawn(
            "alertmanager",
            [
                _binary("prometheus-alertmanager"),
                f"--config.file={self.workdir / 'alertmanager.yml'}",
                f"--storage.path={self.workdir / 'alertmanager-data'}",
                f"--web.listen-address=127.0.0.1:{self.ports['alertmanager']}",
                "--cluster.listen-address=",
            ],
            "/-/ready",
            self.urls["alertmanager"],
        )
        self._spawn(
            "prometheus",
            [
                _binary("prometheus"),
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{self.ports['prometheus']}",
            ],
            "/-/ready",
            self.urls["prometheus"],
        )
        expected = 2 + FLEET_SIZE
        self.wait(lambda: self._demo_targets_up() == expected, 40, "the demo processes scraped")

    def _start_sink(self) -> None:
        handler = type("Sink", (_Sink,), {"received": self.sink_received})
        self._sink = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.urls["oncall"] = f"http://127.0.0.1:{self._sink.server_address[1]}"
        threading.Thread(target=self._sink.serve_forever, daemon=True).start()

    def _start_supervisord(self) -> None:
        conf = self.workdir / "supervisord.conf"
        conf.write_text(
            self.demo.render(
                EXAMPLES / "supervisord.conf.template",
                workdir=self.workdir,
                supervisor_port=self.ports["supervisor"],
                python=sys.executable,
                demo_service=EXAMPLES / "demo_service.py",
                base_port=self.base_port,
                state_dir=self.state_dir,
                self_load=5,
                fleet_size=FLEET_SIZE,
                fleet_base_port=self.fleet_base_port,
            )
        )
        supervisord = str(Path(sys.executable).with_name("supervisord"))
        self._spawn("supervisord", [supervisord, "-c", str(conf), "-n"], None, None)
        rpc = self.supervisor()
        self.wait(lambda: _all_running(rpc), 30, "supervisord's demo processes")
        # headroom for the scale step: two replicas run, the third is there to be started
        rpc.stopProcess("demo:demo_02", True)
        self.wait(lambda: len(list(self.state_dir.glob("demo-*.json"))) == 2, 10, "deregistration")

    def _write_configs(self) -> None:
        rules = self.demo.fast_rules((REPO / "rules" / "health.rules.yml").read_text())
        (self.workdir / "health.rules.yml").write_text(rules)
        (self.workdir / "prometheus.yml").write_text(
            self.demo.render(
                EXAMPLES / "prometheus.yml.template",
                health_rules=self.workdir / "health.rules.yml",
                alertmanager_address=f"127.0.0.1:{self.ports['alertmanager']}",
                state_dir=self.state_dir,
                remediator_address=f"127.0.0.1:{self.ports['receiver']}",
            )
        )
        (self.workdir / "remediation.yml").write_text(
            self.demo.render(
                EXAMPLES / "demo-remediation.yml",
                remediator_address=f"127.0.0.1:{self.ports['receiver']}",
                token_file=self.workdir / "token",
                store=f"sqlite:///{self.workdir / 'journal.db'}",
                prometheus_url=self.urls["prometheus"],
                alertmanager_url=self.urls["alertmanager"],
                supervisor_url=f"{self.urls['supervisor']}/RPC2",
                python=sys.executable,
                rollback_script=EXAMPLES / "rollback_release.py",
                state_dir=self.state_dir,
            )
        )
        (self.workdir / "alertmanager.yml").write_text(self._alertmanager_config())

    def _alertmanager_config(self) -> str:
        """The shipped routing with local URLs, the demo's token and 1s timers."""
        config = yaml.safe_load((REPO / "alertmanager" / "alertmanager.yml").read_text())
        for receiver in config["receivers"]:
            for hook in receiver.get("webhook_configs", []):
                if receiver["name"] == "remediator":
                    hook["url"] = f"{self.urls['receiver']}/webhook"
                    hook["http_config"]["authorization"]["credentials_file"] = str(
                        self.workdir / "token"
                    )
                else:
                    hook["url"] = f"{self.urls['oncall']}/{receiver['name']}"
        for route in [config["route"], *config["route"].get("routes", [])]:
            route.update(group_wait="1s", group_interval="1s")
        return yaml.safe_dump(config, sort_keys=False)

    def _spawn(self, name: str, argv: list[str], ready: str | None, url: str | None) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True
        )
        log.close()
        self.processes.append((name, process))
        if ready and url:
            self.wait(lambda: _answers(f"{url}{ready}", process, name, self.workdir), 30, name)
        self.say(f"  started {name:<13} {url or self.urls['supervisor']}")

    def wait(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `check` every 0.2s until it is true; RuntimeError naming `what` and the
        folder of the logs after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}; logs in {self.workdir}")
            time.sleep(0.2)

    # ------------------------------------------------------------------ helpers
    def supervisor(self) -> Any:
        import xmlrpc.client

        return xmlrpc.client.ServerProxy(f"{self.urls['supervisor']}/RPC2").supervisor

    def process_port(self, process: str) -> int:
        base = self.fleet_base_port if process.startswith("fleet:") else self.base_port
        return base + int(process.rsplit("_", 1)[1])

    def inject(self, process: str, payload: dict[str, Any]) -> None:
        url = f"http://127.0.0.1:{self.process_port(process)}/admin/fault"
        requests.post(url, json=payload, timeout=5).raise_for_status()

    def _demo_targets_up(self) -> int:
        try:
            result = requests.get(
                f"{self.urls['prometheus']}/api/v1/query",
                params={"query": 'up{job="demo"} == 1'},
                timeout=2,
            ).json()["data"]["result"]
        except (requests.RequestException, KeyError, ValueError):
            return 0
        return len(result)

    def stop(self) -> None:
        for _name, process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _name, process in reversed(self.processes):
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._sink is not None:
            self._sink.shutdown()


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} not found: install Debian's package (`make demo` does)")
    return path


def _answers(url: str, process: subprocess.Popen, name: str, workdir: Path) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"{name} exited with {process.returncode}; see {workdir / name}.log")
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _all_running(rpc: Any) -> bool:
    try:
        infos = rpc.getAllProcessInfo()
    except OSError:
        return False
    return len(infos) == 3 + FLEET_SIZE and all(info["statename"] == "RUNNING" for info in infos)


# ---------------------------------------------------------------------- the loop


class Narrator:
    """Watches Prometheus, the journal and Alertmanager and tells what happens."""

    def __init__(self, stack: Stack, say: Callable[[str], None] = print) -> None:
        self.stack = stack
        self.say = say
        self.seen_actions: set[int] = set()

    def _get(self, name: str, path: str, **params: Any) -> Any:
        return requests.get(f"{self.stack.urls[name]}{path}", params=params, timeout=5).json()

    def alert_state(self, fault: Fault) -> str | None:
        """pending/firing in Prometheus for this fault's alert, or None."""
        for found in self._get("prometheus", "/api/v1/alerts")["data"]["alerts"]:
            labels = found["labels"]
            if labels.get("alertname") != fault.alertname:
                continue
            if "process" in labels and labels["process"] != fault.process:
                continue
            return found["state"]
        return None

    def incident(self, fault: Fault, since: float) -> dict[str, Any] | None:
        incidents = self._get("receiver", "/api/v1/incidents", alertname=fault.alertname)["data"]
        for incident in incidents:
            process = incident["labels"].get("process", fault.process)
            started = _epoch(incident["starts_at"])
            if process == fault.process and started >= since - 1:
                return incident
        return None

    def run(self, fault: Fault, timeout: float = 150.0) -> Result:
        self.say(f"\n== {fault.name}: inject {json.dumps(fault.payload)} into {fault.process}")
        result = Result(fault, time.time())
        self.stack.inject(fault.process, fault.payload)
        deadline = time.monotonic() + timeout
        cleared = pending = False
        while time.monotonic() < deadline:
            now = time.time()
            state = self.alert_state(fault)
            if state == "pending" and not pending:
                pending = True
                self.say(f"  +{now - result.injected_at:5.1f}s alert {fault.alertname} pending")
            if state == "firing" and result.firing_at is None:
                # Prometheus sends startsAt = the moment the alert FIRES (after `for`)
                result.firing_at = now
                self.say(f"  +{now - result.injected_at:5.1f}s alert {fault.alertname} firing")
            if result.firing_at and not state and result.resolved_seen_at is None:
                result.resolved_seen_at = now
            incident = self.incident(fault, result.injected_at)
            if incident:
                self._narrate_actions(result, incident)
                result.incident = incident
                gave_up = (
                    result.finished
                    and result.action is not None
                    and result.action["status"] in ("failed", "timed_out", "skipped")
                )
                if gave_up and fault.clear_after and not cleared:
                    result.escalations = self._escalations(fault)
                    self.say(
                        f"  +{now - result.injected_at:5.1f}s remediation cannot help:"
                        " the operator repairs the dependency"
                    )
                    self.stack.inject(fault.process, {"fault": "none"})
                    cleared = True
                if incident["status"] == "resolved" and result.resolved_seen_at and result.finished:
                    self.say(
                        f"  +{now - result.injected_at:5.1f}s alert resolved; incident "
                        f"lasted {incident['duration_seconds']:.1f}s"
                    )
                    break
            time.sleep(0.1)
        else:
            self.say(f"  gave up after {timeout:.0f}s")
        result.escalations = max(result.escalations, self._escalations(fault))
        result.breaker = self._breaker(fault)
        return result

    @staticmethod
    def _target(fault: Fault) -> str:
        return fault.process if fault.strategy == "restart-process" else "demo"

    def _breaker(self, fault: Fault) -> str:
        target = self._target(fault)
        for found in self._get("receiver", "/api/v1/breakers")["data"]:
            if found["strategy"] == fault.strategy and found["target"] == target:
                return found["state"]
        return "-"

    def _narrate_actions(self, result: Result, incident: dict[str, Any]) -> None:
        found = self._get("receiver", "/api/v1/actions", incident_id=incident["id"])["data"]
        actions = sorted(found, key=lambda action: action["id"])  # steps in the order tried
        for action in actions:
            if action["strategy"] != result.fault.strategy and result.action is not None:
                continue
            who = f"action {action['id']} {action['strategy']} {action['action']}"
            narrate_events(self.say, result, action, who, 110)
        own = [action for action in actions if action["strategy"] == result.fault.strategy]
        if own:
            result.actions = own
            result.action = own[-1]

    def _escalations(self, fault: Fault) -> int:
        """RemediationFailed alerts Alertmanager holds now for this fault's target; 0 when
        it cannot say this time (its API answers an error object while it settles), and
        the next poll asks again."""
        try:
            alerts = self._get("alertmanager", "/api/v2/alerts")
        except (requests.RequestException, ValueError):
            return 0
        if not isinstance(alerts, list):
            return 0
        return sum(
            1
            for a in alerts
            if a["labels"].get("alertname") == "RemediationFailed"
            and a["labels"].get("remediation_target") == self._target(fault)
        )


class FleetNarrator:
    """Runs the fleet scenes: a fault injected into every process of the fleet at once,
    then what the wave does (alerts, each action's transitions, the analyses' verdicts,
    a halt and its escalation) until every alert of the scene has resolved. After a halt
    the operator repairs every process (`none`), as the escalation asked them to."""

    def __init__(self, stack: Stack, say: Callable[[str], None] = print) -> None:
        self.stack = stack
        self.say = say

    def _get(self, name: str, path: str, **params: Any) -> Any:
        return requests.get(f"{self.stack.urls[name]}{path}", params=params, timeout=5).json()

    def run(self, scene: FleetScene, timeout: float = 240.0) -> SceneResult:
        """Run one scene to its end (or `timeout` seconds) and return what it did."""
        self._ready_for_a_wave()
        payloads = ", ".join(json.dumps(p) for p in scene.payloads)
        self.say(
            f"\n== {scene.name}: inject {payloads} into all {FLEET_SIZE} processes of "
            f"service {FLEET_SERVICE}"
        )
        result = SceneResult(scene, time.time())
        for process in FLEET_PROCESSES:
            for payload in scene.payloads:
                self.stack.inject(process, payload)
        deadline = time.monotonic() + timeout
        firing_told = 0
        repaired = False
        while time.monotonic() < deadline:
            firing = self._alerts("firing")
            if firing > firing_told:
                firing_told = firing
                self._tell(result, f"{firing} of {FLEET_SIZE} HighErrorRatio alerts firing")
            incidents = self._incidents(result.injected_at)
            result.fired = max(result.fired, len(incidents))
            self._narrate_actions(result, {i["id"] for i in incidents})
            self._follow_wave(result)
            self._follow_escalations(result)
            if self._ended(result) and not repaired and result.phase == "halted":
                self._tell(result, "the wave halted: the operator repairs all processes")
                for process in FLEET_PROCESSES:
                    self.stack.inject(process, {"fault": "none"})
                repaired = True
            settled = self._ended(result) and (repaired or result.phase == "done")
            if settled and incidents and all(i["status"] == "resolved" for i in incidents):
                result.resolved = firing == 0
                if result.resolved:
                    self._tell(result, "every alert of the scene resolved")
                    break
            time.sleep(0.2)
        else:
            self.say(f"  gave up after {timeout:.0f}s")
        result.escalations = len(self._escalations(result.injected_at))
        if result.phase != scene.expect:
            self.say(f"  unexpected: the wave ended {result.phase}, not {scene.expect}")
        return result

    def _tell(self, result: SceneResult, text: str) -> None:
        self.say(f"  +{time.time() - result.injected_at:5.1f}s {text}")

    @staticmethod
    def _ended(result: SceneResult) -> bool:
        """Every incident of the scene has its action, and every action has ended."""
        return (
            result.fired > 0
            and len(result.actions) >= result.fired
            and all(a["status"] not in ("planned", "running") for a in result.actions)
        )

    def _ready_for_a_wave(self) -> None:
        """Before a scene: the last scene's alerts are gone, and the fleet's breaker,
        opened by a halt, admits again (a halted fleet stays halted for the strategy's
        breaker recovery_timeout, so the scene's incidents form a new wave)."""
        # pending ones too: one left pending by the last scene would fire at once and
        # reach the gathering seconds before the others, alone
        self.stack.wait(
            lambda: self._alerts("pending", "firing") == 0, 90, "the fleet's alerts to resolve"
        )
        fleet = self._fleet()
        held = (fleet or {}).get("breaker") or {}
        if held.get("state") != "open" or held.get("opened_at") is None:
            return
        admits = float(held["opened_at"]) + self._recovery_timeout() + 1.0
        if admits > time.time():
            self.say(
                f"\n  (the fleet's breaker opened at the last halt: waiting "
                f"{admits - time.time():.0f}s for it to admit a new wave)"
            )
            time.sleep(admits - time.time())

    def _recovery_timeout(self) -> float:
        """The fleet strategy's breaker recovery_timeout, in seconds, from the config."""
        from receiver.durations import parse_duration

        config = yaml.safe_load((self.stack.workdir / "remediation.yml").read_text())
        strategy = next(s for s in config["strategies"] if s["name"] == FLEET_STRATEGY)
        return parse_duration(str(strategy["breaker"]["recovery_timeout"]))

    def _alerts(self, *states: str) -> int:
        """HighErrorRatio alerts of the fleet in Prometheus now whose state is one of
        `states` (Prometheus's: pending, firing)."""
        alerts = self._get("prometheus", "/api/v1/alerts")["data"]["alerts"]
        return sum(
            1
            for a in alerts
            if a["labels"].get("alertname") == "HighErrorRatio"
            and a["labels"].get("service") == FLEET_SERVICE
            and a["state"] in states
        )

    def _incidents(self, since: float) -> list[dict[str, Any]]:
        found = self._get(
            "receiver",
            "/api/v1/incidents",
            alertname="HighErrorRatio",
            service=FLEET_SERVICE,
            limit=500,
        )["data"]
        return [i for i in found if _epoch(i["starts_at"]) >= since - 1]

    def _fleet(self) -> dict[str, Any] | None:
        for fleet in self._get("receiver", "/api/v1/fleets")["data"]:
            if fleet["strategy"] == FLEET_STRATEGY and fleet["fleet"] == FLEET_SERVICE:
                return fleet
        return None

    def _narrate_actions(self, result: SceneResult, incident_ids: set[int]) -> None:
        found = self._get("receiver", "/api/v1/actions", strategy=FLEET_STRATEGY, limit=500)
        actions = sorted(
            (a for a in found["data"] if a["incident_id"] in incident_ids), key=lambda a: a["id"]
        )
        for action in actions:
            who = f"{action['target']:<15} {action['action']}"
            narrate_events(self.say, result, action, who, 90)
        result.actions = actions

    def _follow_wave(self, result: SceneResult) -> None:
        """The wave's phase and verdicts, told as they come (a halted wave is forgotten
        once the breaker admits again: the last phase seen is kept)."""
        fleet = self._fleet()
        wave = (fleet or {}).get("wave")
        if not wave or not result.fired:
            return
        for verdict in wave["verdicts"][len(result.verdicts) :]:
            result.verdicts.append(verdict["verdict"])
            stage = "canary" if verdict["stage"] == 0 else f"stage {verdict['stage']}"
            self._tell(result, f"analysis of the {stage}: {verdict['reason']}")
        if wave["phase"] != result.phase:
            result.phase = wave["phase"]
            result.halt_reason = wave.get("halt_reason") or ""
            self._tell(result, f"wave {wave['phase']} ({wave['stage_label']})")

    def _follow_escalations(self, result: SceneResult) -> None:
        """Tell each escalation of the scene as Alertmanager shows it."""
        found = self._escalations(result.injected_at)
        for alert in found[result.escalations :]:
            labels, annotations = alert["labels"], alert.get("annotations", {})
            summary = annotations.get("fleet_summary", "").splitlines()[:1]
            self._tell(
                result,
                f"escalated: Alertmanager holds {labels.get('alertname')} for "
                f"{labels.get('remediation_target')}: {_brief(''.join(summary), 90)}",
            )
        result.escalations = max(result.escalations, len(found))

    def _escalations(self, since: float) -> list[dict[str, Any]]:
        """Alerts Alertmanager holds from the fleet strategy updated since `since`: its
        escalations during the scene (one alert per label set: a fleet's second
        escalation updates the first one's alert). Empty when Alertmanager cannot say
        this time (its API answers an error object while it settles)."""
        try:
            alerts = self._get("alertmanager", "/api/v2/alerts")
        except (requests.RequestException, ValueError):
            return []
        if not isinstance(alerts, list):
            return []
        return [
            a
            for a in alerts
            if a["labels"].get("remediation_strategy") == FLEET_STRATEGY
            and _epoch(a["updatedAt"]) >= since
        ]


def fleet_summary(results: list[SceneResult]) -> str:
    """The fleet scenes' table: per scene the alerts fired, the actions by outcome (cured,
    failed, halted = skipped by the halt), the most in flight at once against the limit,
    the analyses' verdicts, how the wave ended and the escalations."""
    header = (
        f"{'fleet scene':<18} {'fault':<13} {'fired':>5} {'acted':>5} {'cured':>5} "
        f"{'failed':>6} {'halted':>6} {'peak':>5} {'analyses':<11} {'wave':<7} {'escalated':>9}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        halted = sum(
            1 for a in r.actions if a["status"] == "skipped" and a["reason"].startswith("halted")
        )
        peak = f"{r.peak_in_flight}/{FLEET_MAX_IN_FLIGHT}"
        analyses = ",".join(r.verdicts) or "-"
        lines.append(
            f"{r.scene.name:<18} {r.scene.fault:<13} {r.fired:>5} {r.acted_on:>5} "
            f"{r.count('succeeded'):>5} {r.count('failed'):>6} {halted:>6} {peak:>5} "
            f"{analyses:<11} {r.phase:<7} {r.escalations:>9}"
        )
    return "\n".join(lines)


def narrate_events(
    say: Callable[[str], None], result: Any, action: dict[str, Any], who: str, width: int
) -> None:
    """Say each event of `action` not said yet (`result.events` remembers them), with its
    time since the fault was injected (`result.injected_at`) and its reason cut to `width`."""
    for event in action["events"]:
        key = f"{action['id']}:{event['at']}:{event['reason']}"
        if key in result.events:
            continue
        result.events.append(key)
        at = _epoch(event["at"]) - result.injected_at
        say(f"  +{at:5.1f}s {who} {event['status']}: {_brief(event['reason'], width)}")


def _brief(reason: str, limit: int = 110) -> str:
    """A journaled reason cut to one terminal line. A step planned after a failure says
    which step comes next at its END ("...; next step 2 (rollback)"): keep that end."""
    if len(reason) <= limit:
        return reason
    head, sep, tail = reason.rpartition("; next ")
    if sep and len(tail) < limit // 2:
        return f"{head[: limit - len(tail) - 9]}…{sep}{tail}"
    return reason[:limit]


def _epoch(stamp: str) -> float:
    """Seconds since the epoch of an RFC 3339 time; fractions past microseconds (Go's
    nanoseconds, as Alertmanager writes them) are cut."""
    head, dot, rest = stamp.replace("Z", "+00:00").partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        stamp = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def summary(results: list[Result]) -> str:
    """The table printed at the end: one row per fault; `steps` lists each runbook step
    tried and its outcome, in order (the last one is the fault's outcome)."""
    header = (
        f"{'fault':<19} {'alert':<15} {'detected':>9} {'strategy':<20} {'steps':<36} "
        f"{'breaker':<9} {'escalated':<9} {'MTTR':>7}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        detected = f"{r.detection:.1f}s" if r.detection is not None else "-"
        mttr = "-"
        if r.incident and r.incident.get("duration_seconds") is not None:
            mttr = f"{r.incident['duration_seconds']:.1f}s"
        strategy = r.fault.strategy if r.action else "none"
        escalated = "yes" if r.escalations else "no"
        lines.append(
            f"{r.fault.name:<19} {r.fault.alertname:<15} {detected:>9} {strategy:<20} "
            f"{r.steps:<36} {r.breaker:<9} {escalated:<9} {mttr:>7}"
        )
    return "\n".join(lines)


def went_as_told(results: list[Result | SceneResult]) -> bool:
    """True when the demo ran and did what it tells: every fault got an action, every
    fleet scene's wave ended as the scene expects (`done` or `halted`) and its alerts
    resolved. `remediator demo` exits 0 then, 1 otherwise."""
    if not results:
        return False
    for result in results:
        if isinstance(result, SceneResult):
            if result.phase != result.scene.expect or not result.resolved:
                return False
        elif result.action is None:
            return False
    return True


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def look_at(stack: Stack, keep_running: bool) -> list[str]:
    """The lines naming where to look, printed as soon as the stack is up.

    Returns one line per URL (Prometheus, Alertmanager, the receiver's console, read API
    and metrics) and a last line saying how long they answer: they stop when the demo ends
    unless it runs with `--keep-running`.
    """
    receiver = stack.urls["receiver"]
    lines = ["\nLook at, while the faults run:"]
    lines += [f"  {name:<13} {stack.urls[name]}" for name in ("prometheus", "alertmanager")]
    lines.append(f"  {'console':<13} {receiver}/  (incidents, actions, breakers, strategies)")
    lines.append(f"  {'receiver':<13} {receiver}/api/v1/actions  {receiver}/api/v1/incidents")
    lines.append(f"  {'':<13} {receiver}/api/v1/stats  {receiver}/metrics")
    if keep_running:
        lines.append("--keep-running: they stay up after the summary until Ctrl-C.")
    else:
        lines.append(
            "They stop when the demo ends; `remediator demo --keep-running` "
            "(make demo DEMO_ARGS=--keep-running) keeps them up until Ctrl-C."
        )
    return lines


def run_demo(
    keep_running: bool = False,
    say: Callable[[str], None] = print,
    faults: tuple[Fault, ...] = FAULTS,
    scenes: tuple[FleetScene, ...] = FLEET_SCENES,
) -> list[Result | SceneResult]:
    """Start the stack, run `faults` one after another, then the fleet `scenes`, print
    the summaries, stop.

    The URLs to look at are printed right after the stack is up, while they answer;
    the end says whether they still do. Returns one `Result` per fault run, then one
    `SceneResult` per scene (fewer if interrupted). `faults` and `scenes` are every one
    of the demo unless a caller picks some.
    """
    workdir = Path(tempfile.mkdtemp(prefix="remediator-demo-"))
    say(f"Remediator demo: files in {workdir}")
    stack = Stack(workdir, say)
    results: list[Result] = []
    scene_results: list[SceneResult] = []
    # `kill` stops the stack like Ctrl-C does; the caller's handler comes back after
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        stack.start()
        for line in look_at(stack, keep_running):
            say(line)
        narrator = Narrator(stack, say)
        for fault in faults:
            results.append(narrator.run(fault))
        fleet_narrator = FleetNarrator(stack, say)
        for scene in scenes:
            scene_results.append(fleet_narrator.run(scene))
        say("\n" + summary(results))
        if scenes:
            say("\n" + fleet_summary(scene_results))
        if keep_running:
            say("\nThe stack is still up at the URLs above; Ctrl-C stops everything.")
            signal.pause()
    except KeyboardInterrupt:
        say("\ninterrupted")
    finally:
        stack.stop()
        signal.signal(signal.SIGTERM, previous)
        say(f"stopped everything, the URLs above no longer answer; files kept in {workdir}")
    return [*results, *scene_results]
