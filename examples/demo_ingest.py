"""`make demo` (for now): a real Alertmanager delivering to a real receiver.

Starts `remediator serve` with examples/remediation.yml and a journal in a temporary
folder, starts Debian's Alertmanager routing to it with the bearer token, fires a
ServiceDown alert, shows the incident and the planned action, resolves the alert and
shows the incident closed with its time to recover. Everything stops on exit.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

EXAMPLES = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def start(argv: list[str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


def alertmanager_yml(webhook: str, token_file: Path) -> str:
    return f"""route:
  receiver: remediator
  group_by: [alertname, service]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: remediator
    webhook_configs:
      - url: {webhook}
        send_resolved: true
        http_config:
          authorization: {{credentials_file: {token_file}}}
"""


def show(title: str, data: object) -> None:
    print(f"\n== {title}")
    print(json.dumps(data, indent=2))


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="remediator-demo-"))
    receiver_port, am_port = free_port(), free_port()
    receiver = f"http://127.0.0.1:{receiver_port}"
    am = f"http://127.0.0.1:{am_port}"
    (work / "alertmanager.yml").write_text(
        alertmanager_yml(f"{receiver}/webhook", EXAMPLES / "secrets" / "webhook-token")
    )
    processes = [
        start(
            [
                sys.executable,
                "-m",
                "receiver.cli",
                "serve",
                "--config",
                str(EXAMPLES / "remediation.yml"),
                "--listen",
                f"127.0.0.1:{receiver_port}",
                "--store",
                f"sqlite:///{work / 'journal.db'}",
            ],
            work / "remediator.log",
        ),
        start(
            [
                "prometheus-alertmanager",
                f"--config.file={work / 'alertmanager.yml'}",
                f"--storage.path={work / 'am'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ],
            work / "alertmanager.log",
        ),
    ]
    try:
        wait(f"{receiver}/-/ready")
        wait(f"{am}/-/ready")
        print(f"receiver {receiver}   alertmanager {am}   files {work}")
        started = datetime.now(UTC)
        alert = {
            "labels": {"alertname": "ServiceDown", "service": "checkout", "severity": "page"},
            "annotations": {"summary": "checkout is down"},
            "startsAt": started.isoformat(),
        }
        requests.post(f"{am}/api/v2/alerts", json=[alert], timeout=5).raise_for_status()
        print("fired ServiceDown{service=checkout} into Alertmanager; waiting for delivery...")
        incidents = poll(f"{receiver}/api/v1/incidents?service=checkout")
        show("incident journaled", incidents[0])
        show("action planned", requests.get(f"{receiver}/api/v1/actions", timeout=5).json()["data"])
        alert["endsAt"] = (datetime.now(UTC) - timedelta(milliseconds=1)).isoformat()
        requests.post(f"{am}/api/v2/alerts", json=[alert], timeout=5).raise_for_status()
        print("\nresolved the alert; waiting for delivery...")
        closed = poll(f"{receiver}/api/v1/incidents?service=checkout&status=resolved")
        show("incident resolved", closed[0])
        print(f"\ntime to recover: {closed[0]['duration_seconds']:.1f}s")
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)


def poll(url: str, timeout: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = requests.get(url, timeout=5).json()["data"]
        if data:
            return data
        time.sleep(0.3)
    raise SystemExit(f"nothing at {url} after {timeout}s")


if __name__ == "__main__":
    main()
