"""The operator console in a real headless Chromium (tests/browser): Debian's `chromium`
driven by Playwright for Python, a real `remediator serve --web.config.file` with real
incidents, and the collectors every browser test shares.

Playwright never downloads a browser here (no `playwright install`): it launches the
system's Chromium by its path (`make system-deps` installs the Debian package, as root).

- `chromium_path()`: where Chromium is, or None.
- `ConsoleServer` / `console_server(...)`: the server, its journal and the file its
  script writes; `post_alert`, `api` read and write as Alertmanager and a person would.
- `Watched`: a page whose console messages, uncaught errors and Content-Security-Policy
  violations are collected (a test asserts `problems()` is empty).
- `Screenshots`: each page's PNG as a test artifact, and as docs/console/*.png when
  REMEDIATOR_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests

from tests.support.journal import wait_for
from tests.support.payloads import alert, notification
from tests.support.processes import REPO, free_port, remediator_argv, stop
from tests.support.webconfig import web_config

T = TypeVar("T")

#: Debian's package and binary; the Makefile's system-deps installs it when missing.
CHROMIUM = "chromium"
#: How Chromium is started (the issue's flags; no first-run dialogs, no phoning home).
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
)
#: The laptop screen the pages are checked and photographed on (CSS pixels).
VIEWPORT = {"width": 1280, "height": 800}
USER, PASSWORD = "alice", "wonderland"
#: The webhook's bearer token (server.auth): Alertmanager's credentials, not a person's.
WEBHOOK_TOKEN = "browser-webhook-token"
#: Where the screenshots go: a directory named by this variable, else the test's tmp dir.
SCREENSHOTS_ENV = "REMEDIATOR_SCREENSHOTS"
#: "1": also write the screenshots to docs/console/ (the README embeds them).
UPDATE_ENV = "REMEDIATOR_UPDATE_SCREENSHOTS"
DOCS = REPO / "docs" / "console"


def chromium_path() -> str | None:
    """The Chromium binary on PATH (Debian's `chromium`), or None."""
    found = shutil.which(CHROMIUM)
    if found is None and Path("/usr/bin/chromium").exists():
        found = "/usr/bin/chromium"
    return found


def is_root() -> bool:
    return os.geteuid() == 0


# ---------------------------------------------------------------- the server

#: The script every command action runs (`remediate VERB SERVICE`, found on the server's
#: PATH): records what it was asked (one line per run in runs.log, and a file named after
#: the verb and service in ran/, both beside its bin/), then exits 0, or 1 for the verb
#: `fail` (a failure the breaker counts).
SCRIPT = """\
import pathlib, sys
verb, service = sys.argv[1], sys.argv[2]
home = pathlib.Path(__file__).resolve().parent.parent
with (home / "runs.log").open("a") as log:
    log.write(f"{verb} {service}\\n")
(home / "ran").mkdir(exist_ok=True)
(home / "ran" / f"{verb}-{service}").write_text(f"{verb} {service}\\n")
print(f"{verb} done for {service}")
sys.exit(1 if verb == "fail" else 0)
"""


def config_text() -> str:
    """The console's test config: a restart that succeeds (a command), a cache flush that
    waits for a person (approval, escalated through a `log` executor), and a log rotation
    that fails, so that one failure opens its breaker (failure_threshold 1, open for 1 h).
    The commands name the script by its name alone (found on PATH), so that no path of
    this machine shows on the pages and their screenshots."""
    return """
server:
  auth: {bearer_token_file: token}
defaults:
  cooldown: 0s
  escalation_executor: logger
  breaker: {failure_threshold: 1, recovery_timeout: 1h}
executors:
  local: {type: command}
  logger: {type: log}
strategies:
  - name: restart-service
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: local
    target: '{{ labels.service }}'
    command: [remediate, restart, '{{ labels.service }}']
    timeout: 30s
  - name: flush-cache
    matchers: ['alertname="CacheStale"']
    action: run
    executor: local
    target: '{{ labels.service }}'
    command: [remediate, flush, '{{ labels.service }}']
    timeout: 30s
    approval: {required: true, timeout: 1h, on_timeout: skip}
  - name: rotate-logs
    matchers: ['alertname="DiskFilling"']
    action: run
    executor: local
    target: '{{ labels.service }}'
    command: [remediate, fail, '{{ labels.service }}']
    timeout: 30s
"""


@dataclass
class ConsoleServer:
    """A running `remediator serve --web.config.file` (see console_server)."""

    process: subprocess.Popen
    url: str
    workdir: Path
    log: Path

    @property
    def auth(self) -> tuple[str, str]:
        return (USER, PASSWORD)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def post_alert(
        self,
        name: str,
        service: str,
        starts_at: str,
        *,
        status: str = "firing",
        ends_at: str | None = None,
    ) -> None:
        """Post one alert as Alertmanager does (v4 payload, the webhook's bearer token)."""
        extra = {"ends_at": ends_at} if ends_at else {}
        one = alert(name, service=service, starts_at=starts_at, status=status, **extra)
        self.post_notification(notification(one, group_key=f'{{}}:{{alertname="{name}"}}'))

    def post_notification(self, body: dict[str, Any]) -> None:
        """Post a whole webhook body as Alertmanager does (the webhook's bearer token)."""
        answer = requests.post(
            f"{self.url}/webhook",
            json=body,
            headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text

    def api(self, path: str, **params: Any) -> Any:
        """GET /api/v1/PATH as the signed-in person; the JSON answer."""
        answer = requests.get(f"{self.url}/api/v1{path}", params=params, auth=self.auth, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def actions_of(self, strategy: str, target: str) -> list[dict[str, Any]]:
        """The actions of one (strategy, target), oldest first."""
        rows = self.api("/actions", strategy=strategy, limit=100)["data"]
        return sorted((a for a in rows if a["target"] == target), key=lambda a: a["id"])

    def breaker_state(self, key: str) -> str | None:
        """The state of breaker `strategy/target` from the API, None when it has none."""
        for row in self.api("/breakers")["data"]:
            if row["key"] == key:
                return row["state"]
        return None


@contextmanager
def console_server(workdir: Path) -> Iterator[ConsoleServer]:
    """`remediator serve` with config_text, a SQLite journal in workdir and a web config
    whose one user is USER (a bcrypt hash made here); ready once /-/ready answers USER."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "token").write_text(WEBHOOK_TOKEN + "\n")
    bin_dir = workdir / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "remediate"
    script.write_text(f"#!{sys.executable}\n{SCRIPT}")
    script.chmod(0o755)
    config = workdir / "remediation.yml"
    config.write_text(config_text())
    web = workdir / "web.yml"
    web.write_text(web_config({USER: PASSWORD}))
    port = free_port()
    store = f"sqlite:///{workdir / 'journal.db'}"
    argv = remediator_argv(config, f"127.0.0.1:{port}", store, "--web.config.file", str(web))
    log = workdir / "remediator.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env={
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            },
        )
    server = ConsoleServer(process, f"http://127.0.0.1:{port}", workdir, log)
    try:
        wait_until(lambda: _ready(server), timeout=60, what="the server to answer /-/ready")
        yield server
    finally:
        stop(process)


def _ready(server: ConsoleServer) -> bool:
    if server.process.poll() is not None:
        raise RuntimeError(f"remediator exited early:\n{server.output()}")
    try:
        answer = requests.get(f"{server.url}/-/ready", auth=server.auth, timeout=2)
    except requests.RequestException:
        return False
    return answer.status_code == 200


def wait_until(check: Callable[[], T], timeout: float = 30.0, what: str = "a condition") -> T:
    """journal.wait_for with the browser tests' longer default (30 s): a wait for real
    processes, not a timing assertion."""
    return wait_for(check, timeout=timeout, what=what)


# ---------------------------------------------------------------- the page

#: Registered before any page script runs (Playwright's init scripts are not subject to
#: the page's CSP): every `securitypolicyviolation` the browser reports is kept.
CSP_RECORDER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__cspViolations.push(event.violatedDirective + " " + (event.blockedURI || "inline"));
});
"""


@dataclass
class Watched:
    """A page and what went wrong on it: console messages of type error or warning,
    uncaught exceptions, CSP violations (from the recorder and from Chromium's log)."""

    page: Any
    messages: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    @classmethod
    def attach(cls, page: Any) -> Watched:
        watched = cls(page)
        page.add_init_script(CSP_RECORDER)
        page.on("console", watched._console)
        page.on("pageerror", lambda exc: watched.errors.append(str(exc)))
        page.on("dialog", watched._dialog)
        return watched

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            where = (message.location or {}).get("url", "")
            self.messages.append(f"{message.type}: {message.text} ({where})")

    def _dialog(self, dialog: Any) -> None:
        """console.js asks before a button acts: say yes, as the person would."""
        self.dialogs.append(dialog.message)
        dialog.accept()

    def collect_violations(self) -> None:
        """Add the current document's recorded CSP violations (call before leaving it)."""
        try:
            found = self.page.evaluate("window.__cspViolations || []")
        except Exception:  # the page is gone or navigating: nothing more to read
            return
        self.violations.extend(v for v in found if v not in self.violations)

    def problems(self) -> list[str]:
        """Everything wrong so far on every page this one showed."""
        self.collect_violations()
        return [
            *self.messages,
            *(f"uncaught: {e}" for e in self.errors),
            *(f"CSP: {v}" for v in self.violations),
        ]

    def visit(self, url: str, status: int = 200) -> Any:
        """Go to url (leaving the current page's violations recorded); require `status`
        and the strict policy header. Returns Playwright's response."""
        self.collect_violations()
        response = self.page.goto(url)
        assert response is not None, url
        assert response.status == status, f"{url}: {response.status}"
        assert "default-src 'none'" in response.headers.get("content-security-policy", ""), url
        return response


class Screenshots:
    """Each page's screenshot (the whole page, in its 1280x800 viewport) saved as
    `<name>.png` in the artifacts directory and, for the README's ones when
    REMEDIATOR_UPDATE_SCREENSHOTS=1, in docs/console/."""

    def __init__(self, artifacts: Path) -> None:
        self.artifacts = artifacts
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.update_docs = os.environ.get(UPDATE_ENV) == "1"

    def take(self, page: Any, name: str, docs: bool = False) -> Path:
        """Photograph `page` as name.png (also in docs/console/ when `docs` and the
        update is asked for); returns the artifact's path."""
        path = self.artifacts / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if docs and self.update_docs:
            DOCS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS / f"{name}.png")
        return path


# ---------------------------------------------------------------- the scene

#: Services of the scene (see set_scene).
RESTARTED = "web"  # ServiceDown: restarted by the script, then resolved
APPROVE, DENY, UNDECIDED = "checkout", "payments", "cart"  # CacheStale: awaiting approval
RESET, LEFT_OPEN = "logs-a", "logs-b"  # DiskFilling: the script fails, the breaker opens


@dataclass(frozen=True)
class Scene:
    """What set_scene made: incident ids by service, awaiting action ids by service, the
    breaker keys (`strategy/target`) left open."""

    incidents: dict[str, int]
    awaiting: dict[str, int]
    open_breakers: tuple[str, ...]


def iso_at(epoch: float) -> str:
    """An Alertmanager timestamp (RFC 3339, UTC, milliseconds) for epoch seconds."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def set_scene(server: ConsoleServer) -> Scene:
    """Post real alerts and wait for the server to act on them:

    - ServiceDown on web: restart-service runs the script (succeeds), then the alert
      resolves (a whole incident, from notification to resolved);
    - CacheStale on checkout, payments and cart: flush-cache waits for a person
      (awaiting approval);
    - DiskFilling on logs-a and logs-b: rotate-logs fails, each breaker opens.
    """
    now = time.time()
    started = {service: now - 600 + i * 30 for i, service in enumerate(
        (RESTARTED, APPROVE, DENY, UNDECIDED, RESET, LEFT_OPEN)
    )}  # fmt: skip
    server.post_alert("ServiceDown", RESTARTED, iso_at(started[RESTARTED]))
    for service in (APPROVE, DENY, UNDECIDED):
        server.post_alert("CacheStale", service, iso_at(started[service]))
    for service in (RESET, LEFT_OPEN):
        server.post_alert("DiskFilling", service, iso_at(started[service]))

    def restarted() -> bool:
        done = server.actions_of("restart-service", RESTARTED)
        return bool(done) and done[-1]["status"] == "succeeded"

    wait_until(restarted, what="the restart of web to succeed")
    # resolved now, after the restart: Prometheus's endsAt is when the rule stopped firing
    server.post_alert(
        "ServiceDown",
        RESTARTED,
        iso_at(started[RESTARTED]),
        status="resolved",
        ends_at=iso_at(time.time()),
    )

    def awaiting() -> dict[str, int] | None:
        found = {}
        for service in (APPROVE, DENY, UNDECIDED):
            rows = server.actions_of("flush-cache", service)
            if not rows or rows[-1]["waiting"] != "awaiting_approval":
                return None
            found[service] = rows[-1]["id"]
        return found

    held = wait_until(awaiting, what="three actions awaiting approval")
    keys = tuple(f"rotate-logs/{service}" for service in (RESET, LEFT_OPEN))
    wait_until(
        lambda: all(server.breaker_state(key) == "open" for key in keys),
        what="both rotate-logs breakers to open",
    )
    incidents = {}
    for row in server.api("/incidents", limit=100)["data"]:
        incidents[row["service"]] = row["id"]
    wait_until(
        lambda: server.api(f"/incidents/{incidents[RESTARTED]}")["status"] == "resolved",
        what="the web incident to resolve",
    )
    return Scene(incidents, held, keys)


#: The tables (by their section's data-testid, else their class) that stick out of the
#: box around them without that box scrolling: cut or painted over on the screen.
OVERFLOWING_TABLES = """() => Array.from(document.querySelectorAll("table")).filter(table => {
  let box = table.parentElement;
  while (box && box !== document.body) {
    const style = getComputedStyle(box);
    if (["auto", "scroll"].includes(style.overflowX)) { return false; }
    if (table.getBoundingClientRect().right > box.getBoundingClientRect().right + 1) {
      return true;
    }
    box = box.parentElement;
  }
  return false;
}).map(table => {
  const named = table.closest("[data-testid]");
  return named ? named.getAttribute("data-testid") : (table.className || "table");
})"""


def overflowing(page: Any) -> list[str]:
    """The tables of the page wider than a box around them that does not scroll (see
    OVERFLOWING_TABLES): what a laptop screen would show cut."""
    return page.evaluate(OVERFLOWING_TABLES)
