"""Several `remediator serve` replicas on one PostgreSQL journal, behind a clustered pair
of real Alertmanagers, and a private PostgreSQL cluster that a test may restart.

- `ReplicaSet`: N replicas (the venv's `remediator` console script, real gunicorn), each
  in its own session, working dir and listen port, all on one store URL. Each can be
  killed with SIGKILL (its whole process group: master, worker, journal writer,
  dispatch process) and started again. Commands they start run in sessions of their
  own and survive such a kill, as on a real machine.
- `alertmanager_pair`: two real `prometheus-alertmanager`s clustered with each other
  (`--cluster.listen-address`, `--cluster.peer` of the other), each with its webhook
  receiver pointing at a DIFFERENT replica, `group_by: ['...']` (one group per alert)
  and 1 s timers. Tests post alerts to both (`POST /api/v2/alerts`), as Prometheus does
  with an HA pair, so every alert goes through both notification pipelines.
- `ACTION_SCRIPT`: the command the strategies run. It appends `start TARGET PID TIME`,
  sleeps, then `end TARGET PID TIME` to one file shared by every replica, so how often
  each target was acted on is read from the side effects, not only from the journal.
- `private_postgres`: a PostgreSQL cluster of the machine's version created for one
  test (`pg_createcluster`, trust auth, a free port, data in a temp dir) so that the
  test can restart it (`pg_ctlcluster ... restart`) without touching the shared server;
  dropped with `pg_dropcluster --stop` afterwards, also on failure. Needs root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.support.journal import write_script
from tests.support.processes import (
    Running,
    alertmanager,
    cluster_args,
    cluster_peers,
    free_port,
    webhook_deliveries,
)
from tests.support.receiver import TOKEN
from tests.support.restartable import RestartableServer

# ---------------------------------------------------------------- the command acted with

ACTION_SCRIPT = """#!/bin/sh
# act.sh LOG TARGET SECONDS: one line as it starts and one as it ends, with its pid and
# the time, appended to LOG (O_APPEND: lines of concurrent runs never interleave).
echo "start $2 $$ $(date +%s.%N)" >> "$1"
sleep "$3"
echo "end $2 $$ $(date +%s.%N)" >> "$1"
"""


@dataclass(frozen=True)
class Run:
    """One line of the action log: `phase` is start or end; `at` in seconds (epoch)."""

    phase: str
    target: str
    pid: int
    at: float


@dataclass
class SideEffects:
    """What the commands did, read from the action log."""

    runs: list[Run] = field(default_factory=list)

    @property
    def starts(self) -> Counter:
        """target -> how many times its command started."""
        return Counter(r.target for r in self.runs if r.phase == "start")

    @property
    def ends(self) -> Counter:
        return Counter(r.target for r in self.runs if r.phase == "end")

    def ended_at(self, target: str) -> float:
        """When the target's (last) command ended, epoch seconds; inf if it never did."""
        ends = [r.at for r in self.runs if r.phase == "end" and r.target == target]
        return max(ends, default=float("inf"))

    def peak_overlap(self) -> int:
        """The most commands running at one instant (from their start and end times)."""
        edges = sorted((r.at, 1 if r.phase == "start" else -1) for r in self.runs)
        peak = current = 0
        for _, step in edges:
            current += step
            peak = max(peak, current)
        return peak


def write_action_script(workdir: Path) -> Path:
    return write_script(workdir, "act.sh", ACTION_SCRIPT)


def read_side_effects(path: Path) -> SideEffects:
    effects = SideEffects()
    if path.exists():
        for line in path.read_text().splitlines():
            phase, target, pid, at = line.split(" ")
            effects.runs.append(Run(phase, target, int(pid), float(at)))
    return effects


def replica_config(script: Path, action_log: Path, max_concurrent_actions: int = 6) -> str:
    """The config every replica runs: strategy `act` runs ACTION_SCRIPT on the alert's
    `instance`, sleeping the alert's `seconds` label; not idempotent, so the crash rule
    never runs it again (README, Crash rule)."""
    target = "{{ labels.instance }}"
    return f"""
server:
  auth: {{bearer_token_file: token}}
defaults:
  max_concurrent_actions: {max_concurrent_actions}
  cooldown: 0s
limits:
  shutdown_grace: 2s
executors:
  local: {{type: command}}
strategies:
  - name: act
    matchers: ['alertname=~"Replica.+"']
    action: run
    executor: local
    target: '{target}'
    command: ['/bin/sh', '{script}', '{action_log}', '{target}', '{{{{ labels.seconds }}}}']
    timeout: 60s
"""


# ---------------------------------------------------------------- replicas


def console_script() -> list[str]:
    """The `remediator` console script installed beside this Python, else the module."""
    script = Path(sys.executable).parent / "remediator"
    return [str(script)] if script.exists() else [sys.executable, "-m", "receiver.cli"]


def _parent(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text.rsplit(")", 1)[1].split()[1])


def descends_from(pid: int, ancestor: int) -> bool:
    """True when `pid` is `ancestor` or one of its descendants (walks /proc's ppids)."""
    current: int | None = pid
    while current and current > 1:
        if current == ancestor:
            return True
        current = _parent(current)
    return False


def claimer_pid(claimed_by: str) -> int:
    """The pid in a dispatcher's `claimed_by` (`host:pid:random`, dispatcher.py)."""
    return int(claimed_by.rsplit(":", 2)[1])


class Replica(RestartableServer):
    """One `remediator serve` replica, run by the installed console script, in its own
    session, working dir and port."""

    def __init__(self, name: str, workdir: Path, config: Path, store: str) -> None:
        super().__init__(
            workdir, config, store, name=name, program=console_script(), stop_timeout=20.0
        )

    def owns(self, claimed_by: str) -> bool:
        """True when the dispatcher named `claimed_by` is a process of this replica."""
        return self.alive() and descends_from(claimer_pid(claimed_by), self.process.pid)


@dataclass
class ReplicaSet:
    """Replicas sharing one store URL, and the files they share (action log)."""

    replicas: list[Replica]
    store_url: str
    action_log: Path

    def __getitem__(self, index: int) -> Replica:
        return self.replicas[index]

    def owner(self, claimed_by: str) -> Replica | None:
        """The live replica whose dispatcher is `claimed_by`, if any."""
        return next((r for r in self.replicas if r.owns(claimed_by)), None)

    def side_effects(self) -> SideEffects:
        return read_side_effects(self.action_log)

    def outputs(self, tail: int = 3000) -> str:
        return "\n".join(f"--- {r.name} ---\n{r.output()[-tail:]}" for r in self.replicas)


@contextmanager
def replica_set(
    workdir: Path, store_url: str, count: int = 3, **config: Any
) -> Iterator[ReplicaSet]:
    """`count` replicas of `remediator serve` on `store_url`, each with its own working
    dir under `workdir` (its config, token and log); started together (their first
    schema creation races, as replicas starting together do), stopped at the end."""
    script = write_action_script(workdir)
    action_log = workdir / "actions.log"
    text = replica_config(script, action_log, **config)
    replicas = []
    for number in range(count):
        home = workdir / f"replica{number}"
        home.mkdir(parents=True, exist_ok=True)
        (home / "token").write_text(TOKEN + "\n")
        path = home / "remediation.yml"
        path.write_text(text)
        replicas.append(Replica(f"replica{number}", home, path, store_url))
    try:
        for replica in replicas:
            replica.launch()
        for replica in replicas:
            replica.ready()
        yield ReplicaSet(replicas, store_url, action_log)
    finally:
        for replica in replicas:
            replica.stop()


# ---------------------------------------------------------------- Alertmanagers

#: `--cluster.peer-timeout` of the pair: how long the second member waits for the first
#: one's notification log before it sends too. Short, so that both usually deliver:
#: every alert then reaches two replicas, the case the journal must deduplicate.
PEER_TIMEOUT = 0.0


def pair_config(webhook_url: str, token_file: Path) -> str:
    return f"""route:
  receiver: remediator
  group_by: ['...']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: remediator
    webhook_configs:
    - url: {webhook_url}
      send_resolved: true
      http_config:
        authorization:
          credentials_file: {token_file}
"""


@contextmanager
def alertmanager_pair(workdir: Path, receivers: Sequence[Replica]) -> Iterator[list[Running]]:
    """Two clustered Alertmanagers; member i sends its webhooks to receivers[i]."""
    ports = (free_port(), free_port())
    with ExitStack() as stack:
        pair = []
        for index in (0, 1):
            home = workdir / f"alertmanager{index}"
            home.mkdir(parents=True, exist_ok=True)
            token = home / "token"
            token.write_text(TOKEN + "\n")
            text = pair_config(f"{receivers[index].url}/webhook", token)
            args = cluster_args(ports[index], ports[1 - index], PEER_TIMEOUT)
            pair.append(stack.enter_context(alertmanager(home, text, extra_args=args)))
        deadline = time.monotonic() + 30
        while not all(cluster_peers(am) == 2 for am in pair):
            if time.monotonic() > deadline:
                raise RuntimeError("the Alertmanagers did not see each other within 30 s")
            time.sleep(0.2)
        yield pair


def post_alerts(pair: Sequence[Running], alerts: list[dict[str, Any]]) -> None:
    """Post the alerts to every member (API v2), as Prometheus does with an HA pair."""
    for am in pair:
        response = requests.post(f"{am.url}/api/v2/alerts", json=alerts, timeout=10)
        assert response.status_code == 200, response.text


def quiet_deliveries(pair: Sequence[Running], timeout: float = 60.0) -> list[tuple[float, float]]:
    """Wait until neither member's webhook counters moved for 3 s; return each member's
    (attempted, failed)."""
    history: list[list[tuple[float, float]]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history.append([webhook_deliveries(am) for am in pair])
        if len(history) >= 15 and all(h == history[-1] for h in history[-15:]):
            return history[-1]
        time.sleep(0.2)
    raise AssertionError(f"Alertmanager deliveries still moving after {timeout}s: {history[-1]}")


# ---------------------------------------------------------------- a private PostgreSQL


def postgres_unavailable() -> str | None:
    """Why a private PostgreSQL cluster cannot be made here, or None when it can."""
    if os.geteuid() != 0:
        return "creating a PostgreSQL cluster needs root (pg_createcluster)"
    for tool in ("pg_createcluster", "pg_ctlcluster", "pg_dropcluster", "pg_lsclusters"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (Debian package postgresql-common)"
    if not installed_version():
        return "no PostgreSQL server version is installed (Debian package postgresql)"
    return None


def installed_version() -> str | None:
    """The newest PostgreSQL major version installed (Debian's /usr/lib/postgresql/N)."""
    versions = [p.name for p in Path("/usr/lib/postgresql").glob("*") if p.name.isdigit()]
    return max(versions, key=int) if versions else None


@dataclass
class PrivatePostgres:
    """A cluster of its own: `url` reaches its `postgres` database over TCP."""

    version: str
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, command: str) -> None:
        """`pg_ctlcluster VERSION NAME COMMAND` (start, stop, restart), required to work."""
        done = subprocess.run(
            ["pg_ctlcluster", self.version, self.name, command],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctlcluster {command} failed: {done.stderr or done.stdout}")

    def restart(self) -> None:
        self.ctl("restart")

    def accepts(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=2) as connection:
                connection.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """Create, start and (always) drop a PostgreSQL cluster for one test (root only)."""
    version = installed_version()
    assert version is not None
    name = f"remediator_{uuid.uuid4().hex[:10]}"
    port = free_port()
    base = Path(tempfile.mkdtemp(prefix="remediator-pg-"))
    base.chmod(0o755)  # the server runs as postgres; it only needs to reach its data dir
    data = base / "data"
    argv = ["pg_createcluster", version, name, "-p", str(port), "-d", str(data), "--start"]
    created = subprocess.run(
        [*argv, "--", "--auth=trust"],  # after --: initdb's options
        capture_output=True,
        text=True,
        timeout=120,
    )
    cluster = PrivatePostgres(version, name, port)
    try:
        if created.returncode != 0:
            raise RuntimeError(f"pg_createcluster failed: {created.stderr or created.stdout}")
        deadline = time.monotonic() + 30
        while not cluster.accepts():
            if time.monotonic() > deadline:
                raise RuntimeError(f"private PostgreSQL {name} does not accept connections")
            time.sleep(0.2)
        yield cluster
    finally:
        subprocess.run(
            ["pg_dropcluster", "--stop", version, name], capture_output=True, timeout=120
        )
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------- journal reading


def actions_by_target(actions: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for action in actions:
        grouped[action["target"]].append(action)
    return dict(grouped)


_ADOPTED = re.compile(r"adopted by (\S+) after a crash")


def adopters(action: dict[str, Any]) -> list[str]:
    """The dispatchers (`claimed_by` names) that adopted this action after a crash."""
    found = []
    for event in action["events"]:
        match = _ADOPTED.match(event["reason"] or "")
        if match:
            found.append(match.group(1))
    return found
