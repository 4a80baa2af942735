"""A real supervisord (from the venv) on a free loopback port, for executor and e2e tests.

supervisord puts every child in its own process group, so killing supervisord alone can
leave orphans behind; teardown therefore remembers every pid it has seen and kills what
survives supervisord's own shutdown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.processes import free_port, stop

SUPERVISORD = Path(sys.executable).with_name("supervisord")
#: A child that does nothing until SIGTERM, started in milliseconds.
SLEEPER = f'{sys.executable} -c "import signal; signal.pause()"'


def program(
    name: str = "web",
    numprocs: int = 3,
    command: str = SLEEPER,
    startsecs: int = 1,
    autostart: bool = True,
    startretries: int = 3,
) -> str:
    """A `[program:x]` section; numbered process names when numprocs > 1.

    startsecs defaults to 1 on purpose: with 0 a process counts as RUNNING before it has
    exec'd, and a SIGTERM sent in that gap is swallowed by the handler the forked child
    inherited from supervisord, so a quick restart would wait for stopwaitsecs and SIGKILL.
    """
    numbered = "\nprocess_name=%(program_name)s_%(process_num)02d" if numprocs > 1 else ""
    return f"""
[program:{name}]
command={command}
numprocs={numprocs}{numbered}
autostart={str(autostart).lower()}
autorestart=true
startsecs={startsecs}
startretries={startretries}
stopwaitsecs=2
"""


def supervisord_config(
    workdir: Path, port: int, programs: str, username: str = "", password: str = ""
) -> str:
    auth = f"\nusername={username}\npassword={password}" if username else ""
    return f"""[supervisord]
nodaemon=true
logfile={workdir / "supervisord.log"}
pidfile={workdir / "supervisord.pid"}
childlogdir={workdir}
loglevel=info

[inet_http_server]
port=127.0.0.1:{port}{auth}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=http://127.0.0.1:{port}{auth}
{programs}"""


def alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (a container's init may not reap)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


@dataclass
class Supervisord:
    process: subprocess.Popen
    url: str
    workdir: Path
    username: str = ""
    password: str = ""
    seen_pids: set[int] = field(default_factory=set)

    def rpc(self) -> Any:
        """The `supervisor` namespace of an XML-RPC proxy (a new connection each time)."""
        url = self.url
        if self.username:
            url = url.replace("http://", f"http://{self.username}:{self.password}@", 1)
        return xmlrpc.client.ServerProxy(url).supervisor

    def processes(self, group: str | None = None) -> dict[str, dict[str, Any]]:
        """ "group:name" -> process info, optionally for one group."""
        infos = self.rpc().getAllProcessInfo()
        self.seen_pids.update(info["pid"] for info in infos if info["pid"])
        return {
            f"{i['group']}:{i['name']}": i for i in infos if group is None or i["group"] == group
        }

    def pids(self, group: str) -> dict[str, int]:
        return {spec: info["pid"] for spec, info in self.processes(group).items()}

    def states(self, group: str) -> dict[str, str]:
        return {spec: info["statename"] for spec, info in self.processes(group).items()}

    def running(self, group: str) -> list[str]:
        return sorted(spec for spec, state in self.states(group).items() if state == "RUNNING")

    def wait_until(self, check, timeout: float = 10.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"supervisord exited:\n{self.output()}")
            with suppress(OSError, xmlrpc.client.Error):
                if check():
                    return
            time.sleep(0.05)
        raise TimeoutError(f"supervisord: {what} not reached within {timeout}s\n{self.output()}")

    def wait_all_running(
        self, groups: tuple[str, ...] | None = None, timeout: float = 10.0
    ) -> None:
        """Wait until every process (of the given groups, or of all) is RUNNING."""

        def all_running() -> bool:
            processes = [
                info
                for info in self.processes().values()
                if groups is None or info["group"] in groups
            ]
            return bool(processes) and all(info["statename"] == "RUNNING" for info in processes)

        self.wait_until(all_running, timeout, "all processes RUNNING")

    def start_all(self, group: str, timeout: float = 10.0) -> None:
        """Bring every process of group back to RUNNING (to reset between tests)."""
        for spec, info in self.processes(group).items():
            if info["statename"] not in ("RUNNING", "STARTING", "BACKOFF"):
                with suppress(xmlrpc.client.Fault):
                    self.rpc().startProcess(spec, False)
        self.wait_all_running((group,), timeout)

    def output(self) -> str:
        log = self.workdir / "supervisord.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def shutdown(self) -> None:
        """Stop supervisord (it stops its children), then kill any child that survived."""
        if self.process.poll() is None:
            with suppress(OSError, xmlrpc.client.Error):
                self.processes()
        stop(self.process, timeout=10)
        for pid in self.seen_pids:
            if alive(pid):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@contextmanager
def supervisord(
    workdir: Path,
    programs: str | None = None,
    *,
    wait_for: tuple[str, ...] | None = None,
    username: str = "",
    password: str = "",
) -> Iterator[Supervisord]:
    """Run supervisord with the given program sections (default: `web` with 3 sleepers).

    Yields once supervisord answers and the processes of `wait_for` (default: all) run.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = workdir / "supervisord.conf"
    text = program() if programs is None else programs
    config.write_text(supervisord_config(workdir, port, text, username, password))
    with (workdir / "supervisord.out").open("wb") as out:
        process = subprocess.Popen(
            [str(SUPERVISORD), "-c", str(config), "-n"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    handle = Supervisord(process, f"http://127.0.0.1:{port}/RPC2", workdir, username, password)
    try:
        handle.wait_until(
            lambda: handle.rpc().getState()["statename"] == "RUNNING", 20, "supervisord RUNNING"
        )
        if text.strip():
            handle.wait_all_running(wait_for)
        yield handle
    finally:
        handle.shutdown()
