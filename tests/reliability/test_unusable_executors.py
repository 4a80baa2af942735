"""Issue 11, item 9: one unusable executor must not break every strategy.

An executor that cannot be built (a `header_files` secret that does not exist, the
optional `kubernetes` client not installed) fails `remediator check`, `remediator
serve` and a reload, with the reason at the executor's setting; an executor that
becomes unusable after start anyway fails only the actions of its own strategies,
loudly, while the others keep working. Everything runs for real: the console script in
a subprocess, `remediator serve` (gunicorn, journal writer), a local HTTP server.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from receiver import breaker
from receiver.store.dispatch import load_breaker
from tests.support.http_server import ScriptedServer, scripted_server
from tests.support.journal import (
    all_actions,
    bearer,
    open_journal,
    post_webhook,
    settle,
    wait_for,
)
from tests.support.payloads import alert, notification
from tests.support.pids import is_writer
from tests.support.processes import free_port, remediator, remediator_argv, run_cli
from tests.support.receiver import write_config

API_TOKEN = "Bearer api-s3cret"
MISSING_HEADER = "executors.api.header_files.Authorization"


def config_text(
    hook_url: str, header_file: str = "api-token", extra: str = "", strategies: str = ""
) -> str:
    """A log strategy and an http strategy whose executor sends a header from a file
    (and `extra` executors, `strategies` appended)."""
    return f"""
server:
  auth: {{bearer_token_file: token}}
defaults:
  cooldown: 0s
executors:
  audit: {{type: log}}
  api: {{type: http, timeout: 5s, retries: 0, header_files: {{Authorization: {header_file}}}}}
{extra}strategies:
  - name: note-it
    matchers: ['alertname="NoteIt"']
    action: restart
    executor: audit
    target: '{{{{ labels.service }}}}'
  - name: call-api
    matchers: ['alertname="CallApi"']
    action: http
    executor: api
    target: '{{{{ labels.service }}}}'
    request: {{method: POST, url: '{hook_url}/restart/{{{{ labels.service }}}}'}}
{strategies}"""


cli = run_cli


def without_kubernetes(tmp_path: Path) -> dict[str, str]:
    """An environment whose `import kubernetes` fails.

    This simulates the optional extra (`remediator[kubernetes]`) not being installed: a
    directory first on PYTHONPATH holds a `kubernetes` package whose __init__ raises
    ImportError, as Python would if the package were absent."""
    shadow = tmp_path / "shadow" / "kubernetes"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        'raise ImportError("simulated: the kubernetes extra is not installed")\n'
    )
    path = os.pathsep.join(filter(None, [str(shadow.parent), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


KUBE_STRATEGY = """  - name: restart-deployment
    matchers: ['alertname="RestartDeployment"']
    action: restart
    executor: cluster
    target: 'deployment/shop/{{ labels.service }}'
"""


def kubernetes_config(tmp_path: Path, api_url: str = "http://127.0.0.1:1") -> Path:
    """The config of config_text with a kubernetes executor (and strategy) added."""
    (tmp_path / "kubeconfig").write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: k, cluster: {{server: '{api_url}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    extra = "  cluster: {type: kubernetes, kubeconfig: kubeconfig, timeout: 2s}\n"
    text = config_text(api_url, extra=extra, strategies=KUBE_STRATEGY)
    return write_config(tmp_path, text)


# ---------------------------------------------------------------- check


def test_check_refuses_a_missing_header_file_naming_executor_and_setting(tmp_path):
    config = write_config(tmp_path, config_text("http://127.0.0.1:1"))
    result = cli("check", "--config", str(config))
    assert result.returncode == 1, result.stdout
    missing = tmp_path / "api-token"
    assert (
        f"{MISSING_HEADER}: cannot read header Authorization from {missing}: "
        "No such file or directory"
    ) in result.stderr

    missing.write_text(API_TOKEN + "\n")  # the same config with its secret passes
    result = cli("check", "--config", str(config))
    assert result.returncode == 0, result.stderr


def test_check_refuses_a_kubernetes_executor_without_the_client(tmp_path):
    config = kubernetes_config(tmp_path)
    (tmp_path / "api-token").write_text(API_TOKEN + "\n")
    result = cli("check", "--config", str(config), env=without_kubernetes(tmp_path))
    assert result.returncode == 1, result.stdout
    assert (
        "executors.cluster.type: the kubernetes executor needs the kubernetes Python client: "
        "pip install 'remediator[kubernetes]'"
    ) in result.stderr

    result = cli("check", "--config", str(config))  # with the client installed: valid
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- serve


@pytest.mark.parametrize("fault", ["missing header file", "kubernetes client missing"])
def test_serve_refuses_to_start(tmp_path, fault):
    if fault == "missing header file":
        config, env = write_config(tmp_path, config_text("http://127.0.0.1:1")), None
        expected = f"{MISSING_HEADER}: cannot read header Authorization"
    else:
        config, env = kubernetes_config(tmp_path), without_kubernetes(tmp_path)
        (tmp_path / "api-token").write_text(API_TOKEN + "\n")
        expected = "executors.cluster.type: the kubernetes executor needs"
    argv = remediator_argv(
        config, f"127.0.0.1:{free_port()}", f"sqlite:///{tmp_path / 'journal.db'}"
    )
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stderr
    assert expected in result.stderr
    assert "Booting worker" not in result.stderr  # refused before gunicorn forked


# ---------------------------------------------------------------- reload


def test_reload_refuses_an_unusable_executor_and_keeps_the_running_config(tmp_path):
    (tmp_path / "api-token").write_text(API_TOKEN + "\n")
    config = write_config(tmp_path, config_text("http://127.0.0.1:1"))
    store_url = f"sqlite:///{tmp_path / 'journal.db'}"
    with remediator(tmp_path, config, store_url) as server:
        sha = requests.get(f"{server.url}/api/v1/status", timeout=5).json()["config_sha256"]
        config.write_text(config_text("http://127.0.0.1:1", header_file="gone-token"))

        answer = requests.post(f"{server.url}/-/reload", headers=bearer(), timeout=10)
        assert answer.status_code == 400, answer.text
        assert "executors.api.header_files.Authorization: cannot read" in answer.text
        assert "gone-token" in answer.text

        server.process.send_signal(signal.SIGHUP)  # the same, by signal
        wait_for(
            lambda: server.output().count("reload refused") >= 2,
            what="the SIGHUP reload to be refused",
        )
        status = requests.get(f"{server.url}/api/v1/status", timeout=5).json()
        assert status["config_sha256"] == sha

        # the file fixed, the same reload is taken: the refusal was about the executor
        (tmp_path / "gone-token").write_text(API_TOKEN + "\n")
        answer = requests.post(f"{server.url}/-/reload", headers=bearer(), timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["sha256"] != sha


# ---------------------------------------------------------------- run time


def _writer_pid(server_pid: int) -> int | None:
    """The journal writer below the server (master -> worker -> writer), from /proc."""
    parents: dict[int, int] = {}
    writers: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
            if is_writer(int(entry.name)):
                writers.add(int(entry.name))
    for pid in writers:
        if parents.get(pid) in writers:
            continue  # the writer's dispatch process (the same command line and name)
        ancestor = parents.get(pid)
        while ancestor and ancestor != server_pid:
            ancestor = parents.get(ancestor)
        if ancestor == server_pid:
            return pid
    return None


@pytest.fixture
def hook() -> Any:
    with scripted_server() as server:
        yield server


@pytest.mark.parametrize(
    ("removed", "alertname", "strategy", "reason"),
    [
        (
            "api-token",
            "CallApi",
            "call-api",
            "unusable executor 'api': cannot read header Authorization from ",
        ),
        ("kubeconfig", "RestartDeployment", "restart-deployment", "unusable executor 'cluster': "),
    ],
    ids=["http header file", "kubeconfig"],
)
def test_an_executor_unusable_at_run_time_fails_only_its_own_strategies(
    tmp_path, hook, removed, alertname, strategy, reason
):
    hook_server: ScriptedServer = hook  # the http endpoint, and the stand-in Kubernetes API
    (tmp_path / "api-token").write_text(API_TOKEN + "\n")
    config = kubernetes_config(tmp_path, hook_server.url)
    store_url = f"sqlite:///{tmp_path / 'journal.db'}"
    with remediator(tmp_path, config, store_url) as server:
        journal = open_journal(store_url)
        first = _writer_pid(server.process.pid)
        assert first is not None, "no journal writer found below the server"
        (tmp_path / removed).unlink()  # after start: check and reload can no longer see it
        os.kill(first, signal.SIGKILL)  # its worker restarts it; it builds executors anew
        wait_for(
            lambda: _writer_pid(server.process.pid) not in (None, first),
            what="the journal writer to be restarted",
        )
        body = notification(
            alert("NoteIt", service="web", starts_at="2026-11-21T10:00:00Z"),
            alert(alertname, service="shop", starts_at="2026-11-21T10:00:00Z"),
        )
        answer = wait_for(
            lambda: _accepted(server.url, body), what="the restarted writer to take the webhook"
        )
        assert answer.status_code == 200, answer.text
        actions = {a["strategy"]: a for a in settle(journal, 2)}

        assert actions["note-it"]["status"] == "succeeded", actions["note-it"]
        failed = actions[strategy]
        assert failed["status"] == "failed", (failed["reason"], failed.get("events"))
        assert failed["reason"].startswith(reason), failed["reason"]
        assert removed in failed["reason"]
        assert hook_server.received == []  # nothing was sent without its credentials
        with journal.transaction() as tx:
            assert load_breaker(tx, "note-it", "web").state == breaker.CLOSED
        errors = [line for line in server.output().splitlines() if "ERROR" in line]
        assert any(reason.strip() in line for line in errors), errors
        assert len(all_actions(journal)) == 2


def _accepted(url: str, body: Any) -> requests.Response | None:
    try:
        answer = post_webhook(url, body)
    except requests.RequestException:
        return None
    return answer if answer.status_code != 503 else None
