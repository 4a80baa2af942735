"""Call an HTTP endpoint (a deploy hook, an admin API) with bounded retries.

Retries follow the same rule Alertmanager uses for its own webhooks: only answers that
may succeed on a second try (5xx, connection errors, timeouts) are retried; a 4xx is the
caller's fault and fails at once. The whole call, retries and backoff included, fits in
the action's timeout, and redirects are never followed, so a compromised or misconfigured
endpoint cannot bounce an authenticated request to another host.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.structures import CaseInsensitiveDict

from receiver.config import Config, ExecutorConfig
from receiver.executors.base import (
    EXCERPT_BYTES,
    ActionRequest,
    ExecutionResult,
    Executor,
    effective_timeout,
    excerpt,
    read_secret,
    seconds,
)

DEFAULT_RETRIES = 2
DEFAULT_BACKOFF = 1.0
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\"()\[\]]+)")


@dataclass(frozen=True)
class Attempt:
    """One try: either an HTTP status or the reason no answer came."""

    status: int | None = None
    reason: str = ""
    body: str = ""
    timed_out: bool = False
    retryable: bool = False

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def shown_url(url: str) -> str:
    """The URL without credentials or query string, which may carry tokens."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid url>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def connection_reason(exc: BaseException) -> str:
    """The innermost OS reason ("Connection refused") instead of urllib3's nested repr."""
    match = _ERRNO.search(str(exc))
    if match:
        return match.group(1).strip()
    text = str(exc)
    return text if len(text) <= 200 else text[:197] + "..."


def _read_body(response: requests.Response) -> bytes:
    """Read at most one byte past the excerpt bound, so huge bodies are never buffered."""
    return response.raw.read(EXCERPT_BYTES + 1, decode_content=True) or b""


def _classify(response: requests.Response, body: bytes) -> Attempt:
    status = response.status_code
    text = excerpt(body)
    if 300 <= status < 400:
        location = response.headers.get("Location", "<no Location header>")
        reason = f"HTTP {status} redirect to {location} (redirects are not followed)"
        return Attempt(status, reason, text)
    return Attempt(status, f"HTTP {status}", text, retryable=status >= 500)


def _body_arguments(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if isinstance(body, bytes):
        return {"data": body}
    if isinstance(body, str):
        return {"data": body.encode("utf-8")}
    return {"json": body}


class HttpExecutor(Executor):
    """`http`, `restart` and `rollback` all send the strategy's rendered request."""

    type = "http"
    actions = frozenset({"http", "restart", "rollback"})

    def __init__(self, config: ExecutorConfig, root: Config) -> None:
        super().__init__(config, root)
        self.timeout_cap: float | None = self.settings.get("timeout")
        self.retries = int(self.settings.get("retries", DEFAULT_RETRIES))
        self.backoff = float(self.settings.get("backoff", DEFAULT_BACKOFF))
        self.verify_tls = bool(self.settings.get("verify_tls", True))
        self.headers: CaseInsensitiveDict[str] = CaseInsensitiveDict(
            self.settings.get("headers") or {}
        )
        for header, path in (self.settings.get("header_files") or {}).items():
            self.headers[header] = read_secret(
                root, path, f"header {header}", setting=f"header_files.{header}"
            )

    def execute(self, request: ActionRequest) -> ExecutionResult:
        if request.action not in self.actions:
            return self.unsupported(request)
        spec = request.rendered.get("request")
        if not isinstance(spec, dict) or not spec.get("url"):
            return ExecutionResult(False, "no request to send: the strategy rendered no url")
        headers = CaseInsensitiveDict(self.headers)
        headers.update({str(k): str(v) for k, v in (spec.get("headers") or {}).items()})
        call = _Call(
            method=str(spec.get("method") or "POST").upper(),
            url=str(spec["url"]),
            headers=headers,
            body=_body_arguments(spec.get("body")),
            verify=self.verify_tls,
        )
        return self._with_retries(call, effective_timeout(request.timeout, None))

    def _with_retries(self, call: _Call, budget: float) -> ExecutionResult:
        deadline = time.monotonic() + budget
        last = Attempt(reason="no attempt made")
        attempts, note = 0, ""
        while attempts <= self.retries:
            remaining = deadline - time.monotonic()
            per_attempt = min(self.timeout_cap or remaining, remaining)
            last = call.send(per_attempt)
            attempts += 1
            if not last.retryable or attempts > self.retries:
                break
            delay = self.backoff * 2 ** (attempts - 1)
            if time.monotonic() + delay >= deadline:
                note = f"; no time left to retry within {seconds(budget)}"
                break
            time.sleep(delay)
        return _result(call, last, attempts, note)


@dataclass(frozen=True)
class _Call:
    method: str
    url: str
    headers: CaseInsensitiveDict[str]
    body: dict[str, Any]
    verify: bool

    def send(self, timeout: float) -> Attempt:
        try:
            with requests.request(
                self.method,
                self.url,
                headers=dict(self.headers),
                timeout=timeout,
                allow_redirects=False,
                verify=self.verify,
                stream=True,
                **self.body,
            ) as response:
                return _classify(response, _read_body(response))
        except (requests.Timeout, urllib3.exceptions.ReadTimeoutError):
            return Attempt(
                reason=f"timed out after {seconds(timeout)}", timed_out=True, retryable=True
            )
        except (requests.ConnectionError, urllib3.exceptions.HTTPError) as exc:
            return Attempt(reason=f"connection failed: {connection_reason(exc)}", retryable=True)
        except (requests.RequestException, ValueError) as exc:
            return Attempt(reason=f"invalid request: {exc}")


def _result(call: _Call, last: Attempt, attempts: int, note: str) -> ExecutionResult:
    plural = "attempt" if attempts == 1 else "attempts"
    if last.status is not None:
        outcome = f"{last.reason} after {attempts} {plural}"
    else:
        outcome = f"{last.reason} ({attempts} {plural})"
    detail = f"{outcome}{note} [{call.method} {shown_url(call.url)}]"
    return ExecutionResult(last.ok, detail, last.body, timed_out=last.timed_out)
