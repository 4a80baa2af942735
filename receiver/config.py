"""Load and validate the YAML configuration into typed, immutable objects.

Everything is checked up front and every problem is reported at once with its key path
and line, because an operator fixing a config under pressure should not have to iterate
one error at a time, and a bad config must never half-apply.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from receiver import analysis, fleets, links
from receiver.approvals import DEFAULT_TIMEOUT as DEFAULT_APPROVAL_TIMEOUT
from receiver.approvals import ON_TIMEOUT as APPROVAL_ON_TIMEOUT
from receiver.approvals import SKIP_ON_TIMEOUT, ApprovalSettings
from receiver.breaker import BreakerSettings
from receiver.durations import format_duration, parse_duration
from receiver.matchers import LABEL_NAME, Matcher, MatcherError, is_label_name, parse_matcher
from receiver.prometheus import check_range
from receiver.regex import LinearPattern
from receiver.retention import RetentionSettings, longest, read_windows, shorter_than_windows
from receiver.runbooks import RunbookSettings, one_step
from receiver.runbooks import Step as RunbookStep
from receiver.scaling import ScalePolicy
from receiver.templates import DEFAULT_PATTERN, Template, compile_pattern, compile_template
from receiver.url_templates import compile_url_template
from receiver.yamlsource import LineDict, LineList, load_yaml

ACTIONS = ("restart", "rollback", "scale", "run", "http", "escalate")
EXECUTOR_TYPES = ("command", "http", "supervisor", "kubernetes", "alertmanager", "log")
#: Types named in the design that this build cannot run yet (type -> why it is refused).
PLANNED_EXECUTOR_TYPES: dict[str, str] = {}
#: Which actions each executor type can carry out.
EXECUTOR_ACTIONS = {
    "command": {"run", "restart", "rollback"},
    "http": {"http", "restart", "rollback"},
    "supervisor": {"restart", "scale"},
    "kubernetes": {"restart", "scale", "rollback"},
    "alertmanager": {"escalate"},
    "log": set(ACTIONS),
}
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: Executor types that can carry an escalation (defaults.escalation_executor); `log`
#: only writes it to the log, for trials.
ESCALATION_EXECUTOR_TYPES = ("alertmanager", "log")
DEFAULT_MAX_BODY = 5 * 1024 * 1024
DEFAULT_LISTEN = "0.0.0.0:9095"
DEFAULT_STORE = "sqlite:///remediator.db"


# ---------------------------------------------------------------- problems


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path or '<top>'}" + (f" (line {self.line})" if self.line else "")
        return f"{where}: {self.message}"


class ConfigError(ValueError):
    """One or more problems; str() lists them all, one per line."""

    def __init__(self, problems: list[Problem], source: str = "") -> None:
        self.problems = problems
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(f"{prefix}{p}" for p in problems))


# ---------------------------------------------------------------- typed config


@dataclass(frozen=True)
class AuthConfig:
    """Credentials Alertmanager must present; secrets are read from files, never inline."""

    bearer_token: str | None = None
    basic_username: str | None = None
    basic_password: str | None = None

    @property
    def enabled(self) -> bool:
        return self.bearer_token is not None or self.basic_username is not None


@dataclass(frozen=True)
class ServerConfig:
    """`server:`: where to listen (HOST:PORT), the webhook's credentials, the largest
    body (bytes), request threads, and `external_url`: the URL people reach Remediator
    at (links.py; None: derived from this host's name and the listen port)."""

    listen: str = DEFAULT_LISTEN
    auth: AuthConfig = field(default_factory=AuthConfig)
    max_body_bytes: int = DEFAULT_MAX_BODY
    threads: int = 8
    external_url: str | None = None

    @property
    def public_url(self) -> str:
        """The external URL links point at: `external_url`, else
        `http://<hostname>:<listen port>` as Prometheus derives its own (links.py)."""
        return links.external_url(self.external_url, self.listen)


@dataclass(frozen=True)
class Limits:
    """Bounds that keep one client, one alert or one reader from taking the server down.

    Each is documented with its default in the README (Limits). Seconds are seconds,
    bytes are bytes; every value is validated at load (`_LIMIT_KEYS`).
    """

    #: headers and body of one HTTP request must have arrived within this (seconds)
    read_timeout: float = 10.0
    #: open HTTP connections in all, and from one client address
    max_connections: int = 1000
    max_connections_per_peer: int = 64
    #: the journal writer holding work without progress this long is unhealthy (seconds)
    writer_stall_timeout: float = 30.0
    #: alerts journaled per transaction when a notification is large
    notification_chunk_alerts: int = 500
    #: one read-API page, and one field inside a listing (longer: truncated with a marker)
    max_page_bytes: int = 1024 * 1024
    max_field_bytes: int = 4096
    #: distinct values of one label of one exported metric; the rest fold into "other"
    max_label_values: int = 1000
    #: one ALERT_*/REMEDIATOR_* variable handed to a command, and all of them together
    command_env_value_bytes: int = 4096
    command_env_bytes: int = 65536
    #: running commands are waited for this long at shutdown, then killed (seconds)
    shutdown_grace: float = 30.0


@dataclass(frozen=True)
class Endpoint:
    url: str
    timeout: float = 10.0


#: Reconciliation with Alertmanager, by default: every 5 minutes; an incident notified
#: within the last 10 minutes (twice Alertmanager's default group_interval of 5m) is left
#: alone, so a resolution on its way, or an HA peer's gossip lagging behind the
#: notification, is never overtaken by a reconciliation.
DEFAULT_RECONCILE_INTERVAL = 300.0
DEFAULT_RECONCILE_GRACE = 600.0


@dataclass(frozen=True)
class AlertmanagerEndpoint(Endpoint):
    """The top-level `alertmanager` section: where to escalate and silence, and whom
    reconciliation asks which alerts still fire (receiver/reconcile.py).

    `reconcile_interval` (seconds; 0 disables reconciliation), `reconcile_grace`
    (seconds an incident refreshed by a notification is left alone) and `external_urls`
    (the URLs this Alertmanager advertises as externalURL in its notifications, when
    they differ from `url`).
    """

    reconcile_interval: float = DEFAULT_RECONCILE_INTERVAL
    reconcile_grace: float = DEFAULT_RECONCILE_GRACE
    external_urls: tuple[str, ...] = ()

    @property
    def own_urls(self) -> frozenset[str]:
        """The externalURLs whose incidents reconciliation may close (no trailing /)."""
        return frozenset(url.rstrip("/") for url in (self.url, *self.external_urls))


@dataclass(frozen=True)
class Budget:
    max_actions: int
    window: float


@dataclass(frozen=True)
class Verify:
    query: Template
    timeout: float
    interval: float


@dataclass(frozen=True)
class Precondition:
    """`alert_not_firing` holds matchers; `query` holds a PromQL template that must be true."""

    alert_not_firing: tuple[Matcher, ...] = ()
    value_templates: tuple[Template, ...] = ()  # one per matcher: values may use labels
    query: Template | None = None

    def describe(self) -> str:
        if self.query is not None:
            return f"only if Prometheus query {self.query.source!r} is true"
        return (
            "only if no alert matching {" + ", ".join(map(str, self.alert_not_firing)) + "} fires"
        )


@dataclass(frozen=True)
class ScaleSpec:
    """Where the value comes from (one of query, annotation) and the HPA policy."""

    policy: ScalePolicy
    query: Template | None = None
    annotation: str | None = None


@dataclass(frozen=True)
class RequestSpec:
    method: str
    url: Template
    headers: dict[str, Template] = field(default_factory=dict)
    body: Any = None  # nested JSON whose strings are unchecked templates


@dataclass(frozen=True)
class ExecutorConfig:
    name: str
    type: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Defaults:
    cooldown: float = 300.0
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    budget: Budget | None = None
    max_concurrent_actions: int = 4
    dry_run: bool = False
    safe_pattern: LinearPattern = DEFAULT_PATTERN
    service_labels: tuple[str, ...] = ("service", "job")
    timeout: float = 60.0
    verify_timeout: float = 60.0
    verify_interval: float = 2.0
    escalation_executor: str | None = None
    mttr_window: float = 86400.0


#: The step number of an action carrying out a strategy's `undo` (outside its runbook).
UNDO_STEP = 0


@dataclass(frozen=True)
class FleetAnalysis:
    """A strategy's `fleet.analysis`: how a wave's canaries are judged after each stage.

    `settings`: the judge's (analysis.AnalysisSettings: metrics, pass_score,
    on_inconclusive). `interval`: seconds sampled after a stage, with one Prometheus
    `query_range` per metric and target; `step`: its resolution in seconds (> 0, at most
    `interval`). `queries`: each metric's PromQL template, in the order of
    `settings.metrics`, rendered per target with the alert's labels and checked against
    the strategy's safe pattern as `verify` queries are.
    """

    settings: analysis.AnalysisSettings
    interval: float = 120.0
    step: float = 15.0
    queries: tuple[Template, ...] = ()


@dataclass(frozen=True)
class FleetConfig:
    """A strategy's `fleet` section (README, Fleets).

    `settings`: fleets.FleetSettings (group_by, max_in_flight, escalation_window,
    progressive; a progressive wave's on_inconclusive is the analysis's). `size_query`:
    a PromQL template whose one number is the fleet's size, or None; then the size is the
    number of distinct targets of the fleet seen in the journal within `size_window`
    seconds. `analysis`: the canary analysis, or None (only with `progressive`).
    """

    settings: fleets.FleetSettings
    size_query: Template | None = None
    size_window: float = 3600.0
    analysis: FleetAnalysis | None = None


@dataclass(frozen=True)
class Strategy:
    name: str
    matchers: tuple[Matcher, ...]
    action: str
    executor: str
    target: Template
    params: dict[str, Template] = field(default_factory=dict)
    command: tuple[Template, ...] = ()
    request: RequestSpec | None = None
    scale: ScaleSpec | None = None
    timeout: float = 60.0
    cooldown: float = 300.0
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    budget: Budget | None = None
    verify: Verify | None = None
    preconditions: tuple[Precondition, ...] = ()
    continue_matching: bool = False
    dry_run: bool = False
    safe_pattern: LinearPattern = DEFAULT_PATTERN
    silence: bool = False
    escalate_on_failure: bool = False
    idempotent: bool = False
    #: the runbook: one strategy per step, each with the strategy's name and what it
    #: inherits (empty: the strategy is its own one step)
    steps: tuple[Strategy, ...] = ()
    #: of a step: its optional name, seconds to wait before it runs, a PromQL template
    #: that must be true for it to run (a false one skips it, and the next step follows)
    step_name: str | None = None
    wait: float = 0.0
    when: Template | None = None
    #: seconds after a cured run to run the runbook again if the incident still fires
    repeat_after: float | None = None
    #: the fleet the strategy's targets belong to (blast radius, waves, canary analysis);
    #: each step of a runbook carries its strategy's
    fleet: FleetConfig | None = None
    #: a step run on a wave's canaries when the analysis finds them worse than the
    #: baseline: a strategy of its own, with the strategy's name and its unset keys
    #: (needs fleet.analysis); each step of a runbook carries its strategy's
    undo: Strategy | None = None
    #: `approval:` held for a person before each of its actions runs (approvals.py);
    #: None: not required. A runbook's steps inherit their strategy's.
    approval: ApprovalSettings | None = None

    def step(self, index: int) -> Strategy:
        """The strategy of step `index` (1-based): itself for a strategy without steps;
        UNDO_STEP (0) is its `undo` (run on a fleet's canaries, see fleetrun.py).
        Raises IndexError for a step the config no longer has."""
        if index == UNDO_STEP:
            if self.undo is None:
                raise IndexError(f"{self.name} has no undo")
            return self.undo
        if not self.steps:
            if index != 1:
                raise IndexError(f"{self.name} has one step, not {index}")
            return self
        if not 1 <= index <= len(self.steps):
            raise IndexError(f"{self.name} has {len(self.steps)} steps, not {index}")
        return self.steps[index - 1]

    @cached_property
    def runbook(self) -> RunbookSettings:
        """The step machine's view of the strategy (runbooks.py). Built once per
        strategy (the strategy is frozen): each action's end asked for it twice, and
        building and validating it was about 5% of the dispatcher's CPU per action."""
        if not self.steps:
            return one_step(repeat_after=self.repeat_after)
        return RunbookSettings(
            steps=tuple(
                RunbookStep(index, s.step_name, s.wait, s.when is not None)
                for index, s in enumerate(self.steps, start=1)
            ),
            repeat_after=self.repeat_after,
        )


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    store: str = DEFAULT_STORE
    prometheus: Endpoint | None = None
    alertmanager: AlertmanagerEndpoint | None = None
    defaults: Defaults = field(default_factory=Defaults)
    limits: Limits = field(default_factory=Limits)
    executors: dict[str, ExecutorConfig] = field(default_factory=dict)
    strategies: tuple[Strategy, ...] = ()
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    source: str = ""
    sha256: str = ""
    text: str = field(default="", repr=False, compare=False)  # as read: the journal writer
    # process is given this, so that it runs exactly what the worker runs

    def service_of(self, labels: Mapping[str, str]) -> str:
        """The service an alert belongs to: the first configured label that is set."""
        for name in self.defaults.service_labels:
            if labels.get(name):
                return labels[name]
        return ""

    def strategy_named(self, name: str) -> Strategy | None:
        """The strategy called `name` (the first, as a scan would find), or None. The
        dispatcher asks at every action's claim and end: a dict built once per config."""
        return self._strategies_by_name.get(name)

    @cached_property
    def _strategies_by_name(self) -> dict[str, Strategy]:
        found: dict[str, Strategy] = {}
        for strategy in self.strategies:
            found.setdefault(strategy.name, strategy)
        return found


# ---------------------------------------------------------------- reading


_MISSING = object()


class _Reader:
    """Walks the YAML tree, converting values and collecting problems with their lines."""

    def __init__(self, base_dir: Path) -> None:
        self.problems: list[Problem] = []
        self.base_dir = base_dir
        #: strategies (name, line) that query Prometheus, valid or not: a missing
        #: prometheus.url is reported even when such a strategy has other problems
        self.prometheus_users: list[tuple[str, int | None]] = []
        #: (executor, setting) present but invalid, already reported
        self.invalid_settings: set[tuple[str, str]] = set()

    def fail(self, path: str, message: str, line: int | None) -> None:
        self.problems.append(Problem(path, message, line))

    def reported(self, section: str) -> bool:
        """Whether a problem inside this top-level section was reported already (then
        a rule that needs the section must not report it again as missing)."""
        return any(p.path == section or p.path.startswith(f"{section}.") for p in self.problems)

    def section(
        self,
        node: Any,
        path: str,
        line: int | None,
        allowed: set[str],
        required: frozenset[str] | set[str] = frozenset(),
    ) -> LineDict | None:
        if node is None:
            node = LineDict()
            node.line, node.key_lines = line, {}
        if not isinstance(node, dict):
            self.fail(path, f"expected a mapping, got {_kind(node)}", line)
            return None
        for key in node:
            if key not in allowed:
                hint = f"; allowed: {', '.join(sorted(allowed))}" if allowed else ""
                self.fail(_join(path, key), f"unknown key {key!r}{hint}", _line(node, key))
        for key in sorted(required - set(node)):
            self.fail(_join(path, key), "required key is missing", getattr(node, "line", line))
        return node

    def subsection(
        self,
        parent: Mapping,
        path: str,
        key: str,
        allowed: set[str],
        required: frozenset[str] | set[str] = frozenset(),
    ) -> tuple[LineDict, str] | None:
        """An optional mapping `key` of `parent` checked as `section` does, with its path;
        None when it is absent or not a mapping (refused)."""
        if key not in parent:
            return None
        path = f"{path}.{key}"
        node = self.section(parent[key], path, _line(parent, key), allowed, required)
        return None if node is None else (node, path)

    def value(
        self,
        node: Mapping[str, Any],
        path: str,
        key: str,
        convert: Callable[[Any], Any],
        default: Any = _MISSING,
    ) -> Any:
        if key not in node:
            return None if default is _MISSING else default
        try:
            return convert(node[key])
        except (ValueError, TypeError, MatcherError) as exc:
            self.fail(_join(path, key), str(exc), _line(node, key))
            return None if default is _MISSING else default

    def secret_file(self, node: Mapping[str, Any], path: str, key: str) -> str | None:
        filename = self.value(node, path, key, _string)
        if filename is None:
            return None
        target = Path(filename)
        if not target.is_absolute():
            target = self.base_dir / target
        try:
            secret = target.read_text(encoding="utf-8").strip()
        except OSError as exc:
            self.fail(_join(path, key), f"cannot read {filename}: {exc.strerror}", _line(node, key))
            return None
        if not secret:
            self.fail(_join(path, key), f"{filename} is empty", _line(node, key))
            return None
        return secret


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _line(node: Any, key: Any) -> int | None:
    if isinstance(node, LineDict):
        return node.key_lines.get(key, node.line)
    if isinstance(node, LineList) and isinstance(key, int) and key < len(node.item_lines):
        return node.item_lines[key]
    return getattr(node, "line", None)


def _kind(value: Any) -> str:
    names = {dict: "mapping", LineDict: "mapping", list: "list", LineList: "list"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {_kind(value)}")
    return value


def _nonempty(value: Any) -> str:
    if not _string(value).strip():
        raise ValueError("must not be empty")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {_kind(value)}")
    return value


def _int(minimum: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {_kind(value)}")
        if value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")
        return value

    return convert


def _bounded_int(minimum: int, maximum: int) -> Callable[[Any], int]:
    at_least = _int(minimum)

    def convert(value: Any) -> int:
        if at_least(value) > maximum:
            raise ValueError(f"must be at most {maximum}, got {value}")
        return value

    return convert


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"expected a number, got {_kind(value)}")
    return float(value)


def _positive(value: Any) -> float:
    number = _number(value)
    if number <= 0:
        raise ValueError(f"must be greater than 0, got {value}")
    return number


def _duration(value: Any) -> float:
    if not isinstance(value, str):
        raise TypeError(f"expected a duration string such as 30s or 5m, got {_kind(value)}")
    return parse_duration(value)


def _positive_duration(value: Any) -> float:
    seconds = _duration(value)
    if seconds <= 0:
        raise ValueError(f"must be longer than 0s, got {value!r}")
    return seconds


def _url(value: Any) -> str:
    text = _nonempty(value)
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s]*)?", text):
        raise ValueError(f"expected an http:// or https:// URL, got {text!r}")
    return text.rstrip("/")


def _external_url(value: Any) -> str:
    return links.parse_external_url(_string(value))


def _listen(value: Any) -> str:
    text = _string(value)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return text


def _template(value: Any) -> Template:
    return compile_template(_string(value))


def _text_template(value: Any) -> Template:
    return compile_template(_string(value), checked=False)


def _url_template(value: Any) -> Template:
    """A request URL: labels may not change its scheme, host or port (url_templates.py)."""
    return compile_url_template(_string(value))


def _matchers(value: Any) -> tuple[Matcher, ...]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list of matcher strings, got {_kind(value)}")
    return tuple(parse_matcher(item) for item in value)


def _pattern(value: Any) -> LinearPattern:
    return compile_pattern(_nonempty(value))


def _label_names(value: Any) -> tuple[str, ...]:
    """One label name or a list of them; UTF-8 names (`service.name`) are label names."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise TypeError("expected a label name or a non-empty list of label names")
    for name in names:
        if not isinstance(name, str) or not is_label_name(name):
            raise ValueError(f"invalid label name {name!r}: expected a non-empty string")
    return tuple(names)


def _alertname(value: Any) -> str:
    """The escalation's alertname: a classic name, which every Alertmanager takes."""
    if not isinstance(value, str) or not LABEL_NAME.fullmatch(value):
        raise ValueError(f"invalid alertname {value!r}: expected [a-zA-Z_][a-zA-Z0-9_]*")
    return value


# ---------------------------------------------------------------- sections


_BREAKER_KEYS = {
    "failure_threshold": _int(1),
    "recovery_timeout": _positive_duration,
    "half_open_max_calls": _int(1),
    "success_threshold": _int(1),
    "failure_rate_threshold": _positive,
    "window": _positive_duration,
    "minimum_calls": _int(1),
}


def _read_breaker(r: _Reader, node: Any, path: str, line: int | None, base: BreakerSettings):
    section = r.section(node, path, line, set(_BREAKER_KEYS))
    if section is None:
        return base
    values = {key: r.value(section, path, key, convert) for key, convert in _BREAKER_KEYS.items()}
    merged = {k: v for k, v in values.items() if v is not None}
    if not merged:
        return base
    try:
        return BreakerSettings(**{**base.__dict__, **merged})
    except ValueError as exc:
        r.fail(path, str(exc), line)
        return base


def _read_budget(r: _Reader, node: Any, path: str, line: int | None) -> Budget | None:
    section = r.section(node, path, line, {"max_actions", "window"}, {"max_actions", "window"})
    if section is None:
        return None
    max_actions = r.value(section, path, "max_actions", _int(1))
    window = r.value(section, path, "window", _positive_duration)
    return Budget(max_actions, window) if max_actions and window else None


def _read_server(r: _Reader, node: Any, line: int | None) -> ServerConfig:
    keys = {"listen", "auth", "max_body_bytes", "threads", "external_url"}
    section = r.section(node, "server", line, keys)
    if section is None:
        return ServerConfig()
    return ServerConfig(
        listen=r.value(section, "server", "listen", _listen, DEFAULT_LISTEN),
        external_url=r.value(section, "server", "external_url", _external_url),
        auth=_read_auth(r, section.get("auth"), _line(section, "auth")),
        max_body_bytes=r.value(section, "server", "max_body_bytes", _int(1024), DEFAULT_MAX_BODY),
        threads=r.value(section, "server", "threads", _bounded_int(1, 256), 8),
    )


def _read_auth(r: _Reader, node: Any, line: int | None) -> AuthConfig:
    path = "server.auth"
    section = r.section(node, path, line, {"bearer_token_file", "basic_auth"})
    if section is None:
        return AuthConfig()
    if "bearer_token_file" in section and "basic_auth" in section:
        r.fail(path, "set either bearer_token_file or basic_auth, not both", section.line)
    token = r.secret_file(section, path, "bearer_token_file")
    basic_path = f"{path}.basic_auth"
    basic = r.section(
        section.get("basic_auth", {}),
        basic_path,
        _line(section, "basic_auth"),
        {"username", "password_file"},
        {"username", "password_file"} if "basic_auth" in section else set(),
    )
    username = password = None
    if basic:
        username = r.value(basic, basic_path, "username", _nonempty)
        password = r.secret_file(basic, basic_path, "password_file")
    return AuthConfig(bearer_token=token, basic_username=username, basic_password=password)


def _read_endpoint(r: _Reader, node: Any, path: str, line: int | None) -> Endpoint | None:
    if node is None:
        return None
    section = r.section(node, path, line, {"url", "timeout"}, {"url"})
    if section is None:
        return None
    url = r.value(section, path, "url", _url)
    timeout = r.value(section, path, "timeout", _positive_duration, 10.0)
    return Endpoint(url, timeout) if url else None


def _read_alertmanager(r: _Reader, node: Any, line: int | None) -> AlertmanagerEndpoint | None:
    if node is None:
        return None
    keys = {"url", "timeout", "reconcile_interval", "reconcile_grace", "external_urls"}
    section = r.section(node, "alertmanager", line, keys, {"url"})
    if section is None:
        return None
    url = r.value(section, "alertmanager", "url", _url)
    endpoint = AlertmanagerEndpoint(  # every key checked, even when the url is not valid
        url or "",
        r.value(section, "alertmanager", "timeout", _positive_duration, 10.0),
        r.value(
            section, "alertmanager", "reconcile_interval", _duration, DEFAULT_RECONCILE_INTERVAL
        ),
        r.value(section, "alertmanager", "reconcile_grace", _duration, DEFAULT_RECONCILE_GRACE),
        r.value(section, "alertmanager", "external_urls", _urls, ()),
    )
    return endpoint if url else None


def _urls(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list of http:// or https:// URLs, got {_kind(value)}")
    return tuple(_url(item) for item in value)


_LIMIT_KEYS: dict[str, Callable[[Any], Any]] = {
    "read_timeout": _positive_duration,
    "max_connections": _bounded_int(1, 100_000),
    "max_connections_per_peer": _bounded_int(1, 100_000),
    "writer_stall_timeout": _positive_duration,
    "notification_chunk_alerts": _bounded_int(1, 100_000),
    "max_page_bytes": _int(4096),
    "max_field_bytes": _int(64),
    "max_label_values": _bounded_int(1, 1_000_000),
    "command_env_value_bytes": _int(64),
    "command_env_bytes": _int(1024),
    "shutdown_grace": _duration,
}


def _read_limits(r: _Reader, node: Any, line: int | None) -> Limits:
    section = r.section(node, "limits", line, set(_LIMIT_KEYS))
    if section is None:
        return Limits()
    values = {key: r.value(section, "limits", key, convert) for key, convert in _LIMIT_KEYS.items()}
    return Limits(**{key: value for key, value in values.items() if value is not None})


_DEFAULT_KEYS = {
    "cooldown",
    "breaker",
    "budget",
    "max_concurrent_actions",
    "dry_run",
    "safe_pattern",
    "service_label",
    "timeout",
    "verify_timeout",
    "verify_interval",
    "escalation_executor",
    "mttr_window",
}


def _read_defaults(r: _Reader, node: Any, line: int | None) -> Defaults:
    path = "defaults"
    section = r.section(node, path, line, _DEFAULT_KEYS)
    if section is None:
        return Defaults()
    base = Defaults()
    budget = None
    if "budget" in section:
        budget = _read_budget(r, section["budget"], "defaults.budget", _line(section, "budget"))
    return Defaults(
        cooldown=r.value(section, path, "cooldown", _duration, base.cooldown),
        breaker=_read_breaker(
            r, section.get("breaker"), "defaults.breaker", _line(section, "breaker"), base.breaker
        ),
        budget=budget,
        max_concurrent_actions=r.value(
            section, path, "max_concurrent_actions", _bounded_int(1, 64), 4
        ),
        dry_run=r.value(section, path, "dry_run", _bool, False),
        safe_pattern=r.value(section, path, "safe_pattern", _pattern, DEFAULT_PATTERN),
        service_labels=r.value(section, path, "service_label", _label_names, base.service_labels),
        timeout=r.value(section, path, "timeout", _positive_duration, base.timeout),
        verify_timeout=r.value(section, path, "verify_timeout", _positive_duration, 60.0),
        verify_interval=r.value(section, path, "verify_interval", _positive_duration, 2.0),
        escalation_executor=r.value(section, path, "escalation_executor", _nonempty),
        mttr_window=r.value(section, path, "mttr_window", _positive_duration, base.mttr_window),
    )


_EXECUTOR_SETTINGS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "command": {
        "timeout": _positive_duration,
        "max_output_bytes": _int(0),
        "cwd": _nonempty,
        "env": lambda v: _string_map(v, "environment variable"),
    },
    "http": {
        "timeout": _positive_duration,
        "retries": _int(0),
        "backoff": _positive_duration,
        "headers": lambda v: _string_map(v, "header"),
        "header_files": lambda v: _string_map(v, "header"),
        "verify_tls": _bool,
    },
    "supervisor": {
        "url": _url,
        "timeout": _positive_duration,
        "username": _nonempty,
        "password_file": _nonempty,
    },
    "kubernetes": {
        "in_cluster": _bool,
        "kubeconfig": _nonempty,
        "context": _nonempty,
        "timeout": _positive_duration,
    },
    "alertmanager": {
        "url": _url,
        "timeout": _positive_duration,
        "alertname": _alertname,
        "silence_duration": _positive_duration,
    },
    "log": {
        # what a trial of a scale strategy decides from: the log executor changes nothing,
        # so it cannot read a real count (required by scale strategies on it)
        "current_replicas": _int(0),
    },
}


def _string_map(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a mapping of {what} names to strings, got {_kind(value)}")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise TypeError(f"{what} {key!r}: expected a string value, got {_kind(item)}")
    return dict(value)


def _read_executors(r: _Reader, node: Any, line: int | None) -> dict[str, ExecutorConfig]:
    if node is None:
        return {}
    if not isinstance(node, dict):
        r.fail("executors", f"expected a mapping of executor names, got {_kind(node)}", line)
        return {}
    executors = {}
    for name, spec in node.items():
        path = f"executors.{name}"
        spec_line = _line(node, name)
        kind = spec.get("type") if isinstance(spec, dict) else None
        if isinstance(kind, str) and kind in PLANNED_EXECUTOR_TYPES:
            r.fail(f"{path}.type", PLANNED_EXECUTOR_TYPES[kind], _line(spec, "type"))
            continue
        if kind not in EXECUTOR_TYPES:
            if isinstance(spec, dict):
                r.fail(
                    f"{path}.type",
                    f"expected one of {', '.join(EXECUTOR_TYPES)}, got {kind!r}",
                    _line(spec, "type"),
                )
            else:
                r.fail(path, f"expected a mapping with a type, got {_kind(spec)}", spec_line)
            continue
        converters = _EXECUTOR_SETTINGS[kind]
        section = r.section(spec, path, spec_line, {"type", *converters})
        if section is None:
            continue
        settings = {}
        for key, convert in converters.items():
            converted = r.value(section, path, key, convert)
            if converted is not None:
                settings[key] = converted
            elif key in section:  # reported here: strategies must not ask for it again
                r.invalid_settings.add((name, key))
        if kind == "supervisor" and "url" not in section:
            r.fail(f"{path}.url", "required key is missing", spec_line)
        if kind == "kubernetes":
            _check_kubernetes(r, section, path, settings)
        executors[name] = ExecutorConfig(name, kind, settings)
    return executors


def _check_kubernetes(r: _Reader, section: LineDict, path: str, settings: dict[str, Any]) -> None:
    """in_cluster or a kubeconfig (and context), not both.

    Files are not read here: the kubeconfig (readable, parsed, its context present) is
    checked with the executor (KubernetesExecutor.preflight, by `check`, start and
    reload), so a kubeconfig removed after start fails only the strategies that use it,
    never the journal writer's restart.
    """
    if settings.get("in_cluster") and ("kubeconfig" in settings or "context" in settings):
        r.fail(
            f"{path}.in_cluster",
            "set either in_cluster: true or kubeconfig/context, not both",
            _line(section, "in_cluster"),
        )


#: Keys that say what one action does: a strategy's, or each of its steps' (a step
#: inherits those it does not set from its strategy).
_ACTION_KEYS = {
    "action",
    "executor",
    "target",
    "params",
    "command",
    "request",
    "scale",
    "timeout",
    "cooldown",
    "breaker",
    "verify",
    "preconditions",
    "dry_run",
    "silence",
    "idempotent",
    "approval",
}
_STRATEGY_KEYS = _ACTION_KEYS | {
    "name",
    "matchers",
    "budget",
    "continue",
    "safe_pattern",
    "escalate_on_failure",
    "steps",
    "repeat_after",
    "fleet",
    "undo",
}
_STEP_KEYS = _ACTION_KEYS | {"name", "wait", "when"}
#: More steps than a person would follow is a config mistake (and each is a metric label).
MAX_STEPS = 20


def _read_strategies(
    r: _Reader, node: Any, line: int | None, defaults: Defaults, executors: dict
) -> tuple[Strategy, ...]:
    if node is None:
        return ()
    if not isinstance(node, list):
        r.fail("strategies", f"expected a list of strategies, got {_kind(node)}", line)
        return ()
    strategies: list[Strategy] = []
    names: set[str] = set()
    for index, item in enumerate(node):
        name, strategy = _read_strategy(r, item, index, _line(node, index), defaults, executors)
        # a duplicate is a fault of its own, reported whether or not the strategy is valid
        if name is not None and name in names:
            r.fail(  # item may be a bare `-` (null): take the line from the list
                f"strategies[{index}].name", f"duplicate name {name!r}", _line(node, index)
            )
            continue
        if name is not None:
            names.add(name)
        if strategy is not None:
            strategies.append(strategy)
    return tuple(strategies)


def _read_strategy(
    r: _Reader, node: Any, index: int, line: int | None, defaults: Defaults, executors: dict
) -> tuple[str | None, Strategy | None]:
    """(its name if readable, the strategy if valid): every problem is reported, and the
    name still takes part in the duplicate check when the strategy is invalid.

    A strategy with `steps` is a runbook: each step is read as a strategy of its own
    whose unset action keys are the strategy's (read and checked once, here)."""
    path = f"strategies[{index}]"
    has_steps = isinstance(node, dict) and "steps" in node
    required = {"name", "matchers", "target"} | (set() if has_steps else {"action", "executor"})
    section = r.section(node, path, line, _STRATEGY_KEYS, required)
    if section is None:
        return None, None
    before = len(r.problems)
    name = r.value(section, path, "name", _nonempty)
    base = {
        "timeout": defaults.timeout,
        "cooldown": defaults.cooldown,
        "breaker": defaults.breaker,
        "dry_run": defaults.dry_run,
        "safe_pattern": r.value(section, path, "safe_pattern", _pattern, defaults.safe_pattern),
    }
    fields = _read_action_fields(r, section, path, defaults, base)
    fields.update(
        name=name,
        matchers=r.value(section, path, "matchers", _matchers, ()),
        budget=_read_budget(r, section["budget"], f"{path}.budget", _line(section, "budget"))
        if "budget" in section
        else defaults.budget,
        continue_matching=r.value(section, path, "continue", _bool, False),
        escalate_on_failure=r.value(section, path, "escalate_on_failure", _bool, False),
        repeat_after=r.value(section, path, "repeat_after", _positive_duration),
    )
    fields["fleet"] = _read_fleet(r, section, path)
    fields["undo"] = _read_undo(r, section, path, fields, executors, defaults)
    if fields["repeat_after"] is not None and fields["budget"] is None:
        r.fail(
            f"{path}.repeat_after",
            "needs a budget (here or in defaults): the budget bounds how often a runbook "
            "whose cure does not last runs again",
            _line(section, "repeat_after"),
        )
    if has_steps:
        steps = _read_steps(r, section, path, fields, executors, defaults)
        if len(r.problems) > before:
            return name, None
        first = steps[0]
        return name, Strategy(
            **{**fields, "action": first.action, "executor": first.executor}, steps=steps
        )
    can_run = _check_executor(r, section, path, fields["action"], fields["executor"], executors)
    _check_action_needs(r, section, path, fields, executors.get(fields["executor"]), can_run)
    if _queries_prometheus(fields):
        r.prometheus_users.append((name or path, line))
    if len(r.problems) > before:
        return name, None
    return name, Strategy(**fields)


def _read_action_fields(
    r: _Reader, section: Mapping, path: str, defaults: Defaults, base: Mapping[str, Any]
) -> dict[str, Any]:
    """The action keys present in `section`, read and checked; the others from `base`
    (the defaults for a strategy, the strategy's own fields for a step)."""

    def value(key: str, convert: Callable[[Any], Any], fallback: Any = None) -> Any:
        return r.value(section, path, key, convert, base.get(key, fallback))

    breaker = base["breaker"]
    if "breaker" in section:
        breaker = _read_breaker(
            r, section["breaker"], f"{path}.breaker", _line(section, "breaker"), breaker
        )
    return {
        **base,
        "action": value("action", _action),
        "executor": value("executor", _nonempty),
        "target": value("target", _template),
        "params": value("params", _template_map, {}),
        "command": value("command", _argv, ()),
        "request": _read_request(r, section, path) if "request" in section else base.get("request"),
        "scale": _read_scale(r, section, path) if "scale" in section else base.get("scale"),
        "timeout": value("timeout", _positive_duration),
        "cooldown": value("cooldown", _duration),
        "breaker": breaker,
        "verify": _read_verify(r, section, path, defaults)
        if "verify" in section
        else base.get("verify"),
        "preconditions": _read_preconditions(r, section, path)
        if "preconditions" in section
        else base.get("preconditions", ()),
        "dry_run": value("dry_run", _bool),
        "silence": value("silence", _bool, False),
        "idempotent": value("idempotent", _bool, False),
        "approval": _read_approval(r, section, path, defaults)
        if "approval" in section
        else base.get("approval"),
    }


_APPROVAL_KEYS = {"required", "timeout", "on_timeout"}


def _read_approval(
    r: _Reader, section: Mapping, path: str, defaults: Defaults
) -> ApprovalSettings | None:
    """`approval: {required, timeout, on_timeout}` (defaults: true, 15m, skip); None when
    not required. Needs `defaults.escalation_executor`: the RemediationAwaitingApproval
    alert is how people hear that an action waits for them."""
    found = r.subsection(section, path, "approval", _APPROVAL_KEYS)
    if found is None:
        return None
    node, path = found
    required = r.value(node, path, "required", _bool, True)
    timeout = r.value(node, path, "timeout", _positive_duration, DEFAULT_APPROVAL_TIMEOUT)
    on_timeout = r.value(node, path, "on_timeout", _on_timeout, SKIP_ON_TIMEOUT)
    if not required:
        return None
    if not defaults.escalation_executor:
        r.fail(
            path,
            "needs defaults.escalation_executor (an alertmanager executor): the "
            "RemediationAwaitingApproval alert is how people hear an action waits for them",
            _line(section, "approval"),
        )
        return None
    if timeout is None or on_timeout is None:
        return None
    return ApprovalSettings(True, timeout, on_timeout)


def _on_timeout(value: Any) -> str:
    if value not in APPROVAL_ON_TIMEOUT:
        raise ValueError(f"expected skip or run, got {value!r}")
    return value


def _read_steps(
    r: _Reader,
    section: Mapping,
    path: str,
    strategy: dict[str, Any],
    executors: dict,
    defaults: Defaults,
) -> tuple[Strategy, ...]:
    """The runbook's steps, in order; each a complete strategy (see _read_strategy)."""
    node, line = section["steps"], _line(section, "steps")
    if "action" in section:
        r.fail(
            f"{path}.action",
            "a strategy with steps has no action of its own: give each step its action",
            _line(section, "action"),
        )
    if not isinstance(node, list) or not node or len(node) > MAX_STEPS:
        r.fail(f"{path}.steps", f"expected a list of 1 to {MAX_STEPS} steps", line)
        return ()
    steps: list[Strategy] = []
    named: set[str] = set()
    for index, item in enumerate(node):
        step_path = f"{path}.steps[{index}]"
        # a duplicate is reported whether or not the step is otherwise valid
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str) and name in named:
            r.fail(f"{step_path}.name", f"duplicate step name {name!r}", _line(node, index))
        elif isinstance(name, str):
            named.add(name)
        step = _read_step(r, item, step_path, _line(node, index), strategy, executors, defaults)
        if step is not None:
            steps.append(step)
    return tuple(steps)


def _read_step(
    r: _Reader,
    node: Any,
    path: str,
    line: int | None,
    strategy: dict[str, Any],
    executors: dict,
    defaults: Defaults,
    keys: set[str] = _STEP_KEYS,
) -> Strategy | None:
    """One step: its own keys read and checked, the others its strategy's. A step's own
    `verify` without timeout or interval takes them from `defaults`, as a strategy's.
    `keys`: those it may set (a strategy's `undo` has no name, wait or when)."""
    section = r.section(node, path, line, keys)
    if section is None:
        return None
    before = len(r.problems)
    fields = _read_action_fields(r, section, path, defaults, strategy)
    fields.update(
        step_name=r.value(section, path, "name", _nonempty),
        wait=r.value(section, path, "wait", _duration, 0.0),
        when=r.value(section, path, "when", _template),
        repeat_after=None,
    )
    for key in ("action", "executor"):
        if fields[key] is None:
            r.fail(f"{path}.{key}", "required key is missing (here or on the strategy)", line)
    present = set(section) | {key for key in ("command", "request") if fields[key]}
    can_run = _check_executor(r, section, path, fields["action"], fields["executor"], executors)
    _check_action_needs(
        r, section, path, fields, executors.get(fields["executor"]), can_run, present
    )
    name = strategy["name"] or path
    named = any(user == name for user, _ in r.prometheus_users)  # a runbook is named once
    if _queries_prometheus(fields) and not named:
        r.prometheus_users.append((name, line))
    if len(r.problems) > before:
        return None
    return Strategy(**fields)


def _queries_prometheus(fields: Mapping[str, Any]) -> bool:
    scale = fields["scale"]
    fleet = fields.get("fleet")
    return bool(
        fields["verify"]
        or fields.get("when")
        or (fleet and (fleet.size_query or fleet.analysis))
        or (scale and scale.query)
        or any(p.query for p in fields["preconditions"])
    )


def _action(value: Any) -> str:
    if _string(value) not in ACTIONS:
        raise ValueError(f"expected one of {', '.join(ACTIONS)}, got {value!r}")
    return value


def _check_executor(r, section, path, action, executor, executors) -> bool:
    """False when the named executor is unknown or cannot carry out the action: then the
    executor's own needs (command, request) are not asked for, they would contradict."""
    if executor is None:
        return False
    if executor not in executors:
        known = ", ".join(sorted(executors)) or "none defined"
        r.fail(
            f"{path}.executor",
            f"no executor named {executor!r} (known: {known})",
            _line(section, "executor"),
        )
        return False
    kind = executors[executor].type
    if action and action not in EXECUTOR_ACTIONS[kind]:
        r.fail(
            f"{path}.action",
            f"a {kind} executor cannot {action}; it supports "
            + ", ".join(sorted(EXECUTOR_ACTIONS[kind])),
            _line(section, "action"),
        )
        return False
    return True


def _check_action_needs(
    r,
    section,
    path,
    fields: Mapping[str, Any],
    executor: ExecutorConfig | None,
    can_run: bool,
    present: set[str] | None = None,
) -> None:
    """What the action needs (scale: a `scale` section) and, when the executor can carry
    the action out, what the executor needs (command, request, current_replicas).
    `present`: the keys given (a step's own and those it inherits), default `section`'s."""
    line = getattr(section, "line", None)
    action = fields["action"]
    present = set(section) if present is None else present
    if action == "scale" and fields["scale"] is None and "scale" not in section:
        r.fail(f"{path}.scale", "required for action 'scale'", line)
    if not can_run or executor is None:
        return
    needs = {"command": executor.type == "command", "request": executor.type == "http"}
    for key, needed in needs.items():
        if needed and key not in present:
            r.fail(
                f"{path}.{key}",
                f"required for action {action!r} on a {executor.type} executor",
                line,
            )
    if executor.type == "kubernetes" and fields["target"] is not None:
        _check_kubernetes_target(r, section, path, fields["target"], action)
    given = "current_replicas" in executor.settings
    if given or (executor.name, "current_replicas") in r.invalid_settings:
        return
    if action == "scale" and executor.type == "log":
        r.fail(
            f"{path}.executor",
            f"log executor {executor.name!r} changes nothing and cannot read replicas: to trial "
            f"this scale strategy, add current_replicas: N to executors.{executor.name} "
            "(the count the decision starts from)",
            _line(section, "executor"),
        )


def _check_kubernetes_target(r, section, path, target: Template, action: str | None) -> None:
    """A kubernetes target whose literal kind cannot work fails here, not at 3 a.m."""
    # imported here: the executor module imports this one
    from receiver.executors.kubernetes import target_template_problem

    problem = target_template_problem(target.source, action)
    if problem:
        r.fail(f"{path}.target", problem, _line(section, "target"))


def _template_map(value: Any) -> dict[str, Template]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a mapping of names to template strings, got {_kind(value)}")
    return {str(key): _template(item) for key, item in value.items()}


def _argv(value: Any) -> tuple[Template, ...]:
    if not isinstance(value, list) or not value:
        raise TypeError("expected a non-empty list of arguments (no shell is ever used)")
    return tuple(_template(item) for item in value)


def _read_request(r: _Reader, section: Mapping, path: str) -> RequestSpec | None:
    if "request" not in section:
        return None
    path = f"{path}.request"
    node = r.section(
        section["request"], path, _line(section, "request"), {"method", "url", "headers", "body"}
    )
    if node is None:
        return None
    if "url" not in node:
        r.fail(f"{path}.url", "required key is missing", node.line)
    url = r.value(node, path, "url", _url_template)
    # the other keys are checked even when the url is missing or invalid
    method = r.value(node, path, "method", _method, "POST")
    headers = r.value(node, path, "headers", _template_map, {})
    body = r.value(node, path, "body", _body_templates)
    if url is None:
        return None
    return RequestSpec(method=method, url=url, headers=headers, body=body)


def _method(value: Any) -> str:
    if _string(value).upper() not in HTTP_METHODS:
        raise ValueError(f"expected one of {', '.join(HTTP_METHODS)}, got {value!r}")
    return value.upper()


def _body_templates(value: Any) -> Any:
    """JSON body: strings become (unchecked) templates; the body is data, not a command."""
    if isinstance(value, str):
        return _text_template(value)
    if isinstance(value, dict):
        return {str(k): _body_templates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_body_templates(v) for v in value]
    return value


def _read_scale(r: _Reader, section: Mapping, path: str) -> ScaleSpec | None:
    if "scale" not in section:
        return None
    path = f"{path}.scale"
    keys = {
        "target_value",
        "min_replicas",
        "max_replicas",
        "query",
        "annotation",
        "tolerance",
        "scale_up_limit",
        "scale_up_period",
        "stabilization_window",
    }
    node = r.section(section["scale"], path, _line(section, "scale"), keys, {"target_value"})
    if node is None:
        return None
    if ("query" in node) == ("annotation" in node):
        r.fail(path, "set exactly one of query (PromQL) or annotation (alert value)", node.line)
    # the value's source is checked even when the policy is refused below
    query = r.value(node, path, "query", _template)
    annotation = r.value(node, path, "annotation", _nonempty)
    try:
        policy = ScalePolicy(
            target_value=r.value(node, path, "target_value", _positive, 1.0),
            min_replicas=r.value(node, path, "min_replicas", _int(0), 1),
            max_replicas=r.value(node, path, "max_replicas", _int(1), 10),
            tolerance=r.value(node, path, "tolerance", _number, 0.1),
            scale_up_limit=r.value(node, path, "scale_up_limit", _int(1)),
            scale_up_period=r.value(node, path, "scale_up_period", _positive_duration, 60.0),
            stabilization_window=r.value(node, path, "stabilization_window", _duration, 300.0),
        )
    except ValueError as exc:  # the policy's own rules, e.g. min_replicas > max_replicas
        r.fail(path, str(exc), node.line)
        return None
    return ScaleSpec(policy=policy, query=query, annotation=annotation)


def _read_verify(r: _Reader, section: Mapping, path: str, defaults: Defaults) -> Verify | None:
    if "verify" not in section:
        return None
    path = f"{path}.verify"
    node = r.section(
        section["verify"], path, _line(section, "verify"), {"query", "timeout", "interval"}
    )
    if node is None:
        return None
    if "query" not in node:
        r.fail(f"{path}.query", "required key is missing", node.line)
    query = r.value(node, path, "query", _template)
    # timeout and interval are checked even when the query is missing or invalid
    timeout = r.value(node, path, "timeout", _positive_duration, defaults.verify_timeout)
    interval = r.value(node, path, "interval", _positive_duration, defaults.verify_interval)
    if query is None:
        return None
    return Verify(query=query, timeout=timeout, interval=interval)


def _read_preconditions(r: _Reader, section: Mapping, path: str) -> tuple[Precondition, ...]:
    node = section.get("preconditions")
    if node is None:
        return ()
    if not isinstance(node, list):
        r.fail(f"{path}.preconditions", "expected a list", _line(section, "preconditions"))
        return ()
    found = []
    for index, item in enumerate(node):
        item_path = f"{path}.preconditions[{index}]"
        entry = r.section(item, item_path, _line(node, index), {"alert_not_firing", "query"})
        if entry is None:
            continue
        if len(entry) != 1:
            r.fail(item_path, "set exactly one of alert_not_firing or query", _line(node, index))
            continue
        matchers = r.value(entry, item_path, "alert_not_firing", _matchers, ())
        found.append(
            Precondition(
                alert_not_firing=matchers,
                value_templates=tuple(compile_template(m.value) for m in matchers),
                query=r.value(entry, item_path, "query", _template),
            )
        )
    return tuple(found)


# ---------------------------------------------------------------- fleets

_FLEET_KEYS = {
    "group_by",
    "size_query",
    "size_window",
    "max_in_flight",
    "escalation_window",
    "progressive",
    "analysis",
}
_PROGRESSIVE_KEYS = {"min_targets", "gather", "canary", "stages", "pause", "max_failures"}
_ANALYSIS_KEYS = {"metrics", "interval", "step", "pass_score", "on_inconclusive"}
_METRIC_KEYS = {"name", "query", "direction", "tolerance"}


def _read_fleet(r: _Reader, section: Mapping, path: str) -> FleetConfig | None:
    """A strategy's `fleet`, or None when it has none. The pure settings' own rules
    (fleets.py, analysis.py) are applied key by key, so each refusal names its key."""
    found = r.subsection(section, path, "fleet", _FLEET_KEYS)
    if found is None:
        return None
    node, path = found
    before = len(r.problems)
    group_by = r.value(node, path, "group_by", _label_names, ("service",))
    max_in_flight = r.value(node, path, "max_in_flight", _amount("max_in_flight"))
    window = r.value(node, path, "escalation_window", _positive_duration, 600.0)
    size_query = r.value(node, path, "size_query", _template)
    size_window = r.value(node, path, "size_window", _positive_duration, 3600.0)
    fleet_analysis = _read_analysis(r, node, path)
    progressive = _read_progressive(r, node, path, fleet_analysis)
    if fleet_analysis is not None and "progressive" not in node:
        r.fail(
            f"{path}.analysis",
            "needs fleet.progressive: the analysis judges the stages of a wave, and without "
            "progressive there are no waves, so it would never run",
            _line(node, "analysis"),
        )
    if len(r.problems) > before:
        return None
    try:  # group_by naming a label twice is the one rule left to FleetSettings
        settings = fleets.FleetSettings(group_by, max_in_flight, window, progressive)
    except ValueError as exc:
        r.fail(f"{path}.group_by", str(exc), _line(node, "group_by"))
        return None
    return FleetConfig(settings, size_query, size_window, fleet_analysis)


def _amount(name: str, *, zero: bool = False) -> Callable[[Any], fleets.Amount]:
    """A count or a percentage ("10%") of something, as fleets.Amount parses it."""

    def convert(value: Any) -> fleets.Amount:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError(f"expected a count or a percentage like '10%', got {_kind(value)}")
        return fleets.Amount.parse(value, name, zero=zero)

    return convert


def _stages(value: Any) -> tuple[fleets.Amount, ...]:
    if not isinstance(value, list) or not value:
        raise TypeError("expected a non-empty list of counts or percentages, the last 100%")
    stages = tuple(_amount(f"stages[{i}]")(item) for i, item in enumerate(value))
    fleets.ProgressiveSettings(stages=stages)  # the last 100%, increasing
    return stages


def _read_progressive(
    r: _Reader, fleet: Mapping, path: str, fleet_analysis: FleetAnalysis | None
) -> fleets.ProgressiveSettings | None:
    found = r.subsection(fleet, path, "progressive", _PROGRESSIVE_KEYS)
    if found is None:
        return None
    node, path = found
    base = fleets.ProgressiveSettings()
    values = {
        "min_targets": r.value(node, path, "min_targets", _int(1), base.min_targets),
        "gather": r.value(node, path, "gather", _duration, base.gather),
        "canary": r.value(node, path, "canary", _amount("canary"), base.canary),
        "stages": r.value(node, path, "stages", _stages, base.stages),
        "pause": r.value(node, path, "pause", _duration, base.pause),
        "max_failures": r.value(node, path, "max_failures", _amount("max_failures"), None),
    }
    if values["max_failures"] is None:
        values["max_failures"] = base.max_failures
    if fleet_analysis is not None:  # one key says what an inconclusive judgement does
        values["on_inconclusive"] = fleet_analysis.settings.on_inconclusive
    try:
        return fleets.ProgressiveSettings(**values)
    except ValueError as exc:  # each key was checked alone: a rule across keys
        r.fail(path, str(exc), node.line)
        return None


def _read_analysis(r: _Reader, fleet: Mapping, path: str) -> FleetAnalysis | None:
    found = r.subsection(fleet, path, "analysis", _ANALYSIS_KEYS, {"metrics"})
    if found is None:
        return None
    node, path = found
    before = len(r.problems)
    metrics, queries = _read_metrics(r, node, path)
    interval = r.value(node, path, "interval", _positive_duration, 120.0)
    step = r.value(node, path, "step", _positive_duration, 15.0)
    if step > interval:
        r.fail(
            f"{path}.step",
            f"must not be longer than analysis.interval ({format_duration(interval)}), got "
            f"{format_duration(step)}: a query_range step longer than its range gives one sample",
            _line(node, "step"),
        )
    try:  # refused at load, not when the first wave's analysis asks Prometheus
        check_range(0.0, interval, step)
    except ValueError as exc:
        r.fail(f"{path}.step", str(exc), _line(node, "step"))
    pass_score = r.value(node, path, "pass_score", _ratio, analysis.DEFAULT_PASS_SCORE)
    inconclusive = r.value(node, path, "on_inconclusive", _choice(analysis.ON_INCONCLUSIVE))
    if len(r.problems) > before or not metrics:
        return None
    try:
        settings = analysis.AnalysisSettings(metrics, pass_score, inconclusive or analysis.HALT)
    except ValueError as exc:  # e.g. two metrics of one name
        r.fail(f"{path}.metrics", str(exc), _line(node, "metrics"))
        return None
    return FleetAnalysis(settings, interval, step, queries)


def _read_metrics(
    r: _Reader, node: Mapping, path: str
) -> tuple[tuple[analysis.AnalysisMetric, ...], tuple[Template, ...]]:
    items = node.get("metrics")
    if "metrics" in node and (not isinstance(items, list) or not items):
        r.fail(f"{path}.metrics", "expected a non-empty list of metrics", _line(node, "metrics"))
        return (), ()
    metrics, queries = [], []
    for index, item in enumerate(items or []):
        item_path = f"{path}.metrics[{index}]"
        entry = r.section(item, item_path, _line(items, index), _METRIC_KEYS, {"name", "query"})
        if entry is None:
            continue
        before = len(r.problems)
        name = r.value(entry, item_path, "name", _nonempty)
        query = r.value(entry, item_path, "query", _template)
        direction = r.value(
            entry, item_path, "direction", _choice(analysis.DIRECTIONS), analysis.LOWER
        )
        tolerance = r.value(entry, item_path, "tolerance", _non_negative, 0.0)
        if len(r.problems) > before or name is None or query is None:
            continue
        metrics.append(analysis.AnalysisMetric(name, query.source, direction, tolerance))
        queries.append(query)
    return tuple(metrics), tuple(queries)


def _read_undo(
    r: _Reader,
    section: Mapping,
    path: str,
    strategy: dict[str, Any],
    executors: dict,
    defaults: Defaults,
) -> Strategy | None:
    """A strategy's `undo`: read as a runbook step is (its own keys, the others the
    strategy's), without a name, wait or when; it needs the strategy's fleet.analysis,
    the only judge of whether the canaries are worse than the baseline."""
    if "undo" not in section:
        return None
    line = _line(section, "undo")
    fleet = strategy["fleet"]
    # a fleet present but invalid was reported already
    if "fleet" not in section or (fleet is not None and fleet.analysis is None):
        r.fail(
            f"{path}.undo",
            "needs fleet.analysis: undo runs on a wave's canaries when the analysis finds "
            "them worse than the baseline",
            line,
        )
    base = {**strategy, "fleet": None, "undo": None}
    return _read_step(
        r, section["undo"], f"{path}.undo", line, base, executors, defaults, _ACTION_KEYS
    )


def _ratio(value: Any) -> float:
    number = _number(value)
    if not 0 < number <= 1:
        raise ValueError(f"must be a ratio in (0, 1] (1.0 = every metric), got {value}")
    return number


def _non_negative(value: Any) -> float:
    number = _number(value)
    if number < 0:
        raise ValueError(f"must be 0 or more (a ratio: 0.1 = 10%), got {value}")
    return number


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if _string(value) not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    return convert


# ---------------------------------------------------------------- entry points

_TOP_KEYS = {
    "server",
    "store",
    "prometheus",
    "alertmanager",
    "defaults",
    "limits",
    "executors",
    "strategies",
    "retention",
}


def parse_config(text: str, source: str = "", base_dir: Path | None = None) -> Config:
    """Parse and validate; raise ConfigError listing every problem found."""
    try:
        raw = load_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else None
        raise ConfigError([Problem("", f"invalid YAML: {exc.problem}", line)], source) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([Problem("", f"invalid YAML: {exc}")], source) from exc
    except RecursionError as exc:
        raise ConfigError([Problem("", "invalid YAML: nested too deeply")], source) from exc
    r = _Reader(base_dir or Path.cwd())
    top = r.section(raw, "", 1, _TOP_KEYS)
    if top is None:
        raise ConfigError(r.problems, source)
    defaults = _read_defaults(r, top.get("defaults"), _line(top, "defaults"))
    executors = _read_executors(r, top.get("executors"), _line(top, "executors"))
    config = Config(
        server=_read_server(r, top.get("server"), _line(top, "server")),
        store=r.value(top, "", "store", _store_url, DEFAULT_STORE),
        prometheus=_read_endpoint(r, top.get("prometheus"), "prometheus", _line(top, "prometheus")),
        alertmanager=_read_alertmanager(r, top.get("alertmanager"), _line(top, "alertmanager")),
        defaults=defaults,
        limits=_read_limits(r, top.get("limits"), _line(top, "limits")),
        executors=executors,
        strategies=_read_strategies(
            r, top.get("strategies"), _line(top, "strategies"), defaults, executors
        ),
        retention=_read_retention(r, top.get("retention"), _line(top, "retention")),
        source=source,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        text=text,
    )
    _check_references(r, config, top)
    config = _check_retention(r, config, top)
    if r.problems:
        raise ConfigError(r.problems, source)
    return config


def _kept_for(value: Any) -> float:
    """How long rows are kept: a duration, 0s for forever; never negative."""
    if isinstance(value, str) and value.startswith("-"):
        raise ValueError(f"must be 0s (keep forever) or longer, got {value!r}")
    return _duration(value)


_RETENTION_KEYS = {
    "notifications": _kept_for,
    "incidents": _kept_for,
    "interval": _positive_duration,
    "batch_size": _bounded_int(1, 100_000),
}


def _read_retention(r: _Reader, node: Any, line: int | None) -> RetentionSettings:
    """The `retention` section (receiver/retention.py); absent keys keep their defaults."""
    section = r.section(node, "retention", line, set(_RETENTION_KEYS))
    if section is None:
        return RetentionSettings()
    values = {
        key: r.value(section, "retention", key, convert) for key, convert in _RETENTION_KEYS.items()
    }
    return RetentionSettings(**{key: value for key, value in values.items() if value is not None})


def _check_retention(r: _Reader, config: Config, top: Mapping) -> Config:
    """An `incidents` retention shorter than a window read from the journal would let
    pruning change a figure or a verdict (retention.shorter_than_windows): an error when
    it is set so; when it is not set, the default (90d) grows to the longest window."""
    if r.reported("retention"):
        return config
    windows = read_windows(config)
    section = top.get("retention")
    if not isinstance(section, Mapping) or "incidents" not in section:
        widest = longest(windows).seconds
        if config.retention.incidents < widest:
            return replace(config, retention=replace(config.retention, incidents=widest))
        return config
    problem = shorter_than_windows(config.retention, windows)
    if problem:
        r.fail("retention.incidents", problem, _line(section, "incidents"))
    return config


def _store_url(value: Any) -> str:
    text = _nonempty(value)
    if not re.match(r"(sqlite:///|postgres(ql)?://)", text):
        raise ValueError(f"expected sqlite:///PATH or postgresql://..., got {text!r}")
    return text


def _check_references(r: _Reader, config: Config, top: Mapping) -> None:
    """Cross-section rules: things that are only wrong in combination."""
    escalation = config.defaults.escalation_executor
    if escalation and escalation not in config.executors:
        r.fail(
            "defaults.escalation_executor",
            f"no executor named {escalation!r}",
            _line(top.get("defaults"), "escalation_executor"),
        )
    elif escalation and config.executors[escalation].type not in ESCALATION_EXECUTOR_TYPES:
        kind = config.executors[escalation].type
        r.fail(
            "defaults.escalation_executor",
            f"executor {escalation!r} is a {kind} executor, which cannot escalate: name an "
            f"executor of type {' or '.join(ESCALATION_EXECUTOR_TYPES)}",
            _line(top.get("defaults"), "escalation_executor"),
        )
    for name, executor in config.executors.items():
        # a url present but invalid (here or top-level) was reported already, once
        given = (name, "url") in r.invalid_settings or r.reported("alertmanager")
        if executor.type == "alertmanager" and not (
            executor.settings.get("url") or config.alertmanager or given
        ):
            r.fail(
                f"executors.{name}.url",
                "an alertmanager executor needs a url here or a top-level alertmanager.url",
                _line(top, "executors"),
            )
    if r.prometheus_users and config.prometheus is None and not r.reported("prometheus"):
        r.fail(
            "prometheus.url",
            "required by strategies that query Prometheus: "
            + ", ".join(name for name, _ in r.prometheus_users),
            r.prometheus_users[0][1],
        )


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; secrets files resolve relative to it."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem("", f"cannot read config: {exc.strerror}")], str(path)) from exc
    return parse_config(text, source=str(path), base_dir=file.resolve().parent)


def with_overrides(config: Config, overrides: Mapping[str, str]) -> Config:
    """Command-line --store, --listen and --web.external-url (`external_url`, validated
    by the command line) win over the file, on start and on reload."""
    if "store" in overrides:
        config = replace(config, store=overrides["store"])
    if "listen" in overrides:
        config = replace(config, server=replace(config.server, listen=overrides["listen"]))
    if "external_url" in overrides:
        server = replace(config.server, external_url=overrides["external_url"])
        config = replace(config, server=server)
    return config


# ---------------------------------------------------------------- warnings

#: Executor types whose own `timeout` bounds the whole action: the shorter of it and the
#: strategy's timeout applies. The other types' `timeout` bounds one request or attempt
#: within the strategy's timeout, so a longer strategy timeout is no contradiction there.
CAPPING_EXECUTOR_TYPES = frozenset({"command", "alertmanager"})


def config_warnings(config: Config) -> list[Problem]:
    """What a valid config does not do, or does not do as written, one Problem each.

    Shown by `remediator check` after its verdict (exit status unchanged) and logged as
    WARNINGs when `serve` starts. Each message stands alone (it names the keys at fault),
    since logs show it without its path. Empty when there is nothing to say.
    """
    warnings: list[Problem] = []
    if not config.strategies:
        warnings.append(
            Problem(
                "strategies",
                "no strategies: every alert is journaled as unmatched and nothing is "
                "remediated; add strategies (see examples/remediation.yml)",
            )
        )
    auth = _auth_warning(config.server)
    if auth is not None:
        warnings.append(auth)
    warnings += _timeout_warnings(config)
    warnings += _breaker_warnings(config)
    warnings += _fleet_warnings(config)
    warnings += _kubernetes_client_warnings(config)
    warnings += _retention_warnings(config)
    return warnings


def _retention_warnings(config: Config) -> list[Problem]:
    """Pruning turned off: the journal grows without bound (about 1 KB per alert)."""
    off = [name for name in ("notifications", "incidents") if not getattr(config.retention, name)]
    return [
        Problem(
            f"retention.{name}",
            f"retention.{name} is 0s: {name} are never pruned and the journal grows "
            "without bound (about 1 KB per alert)",
        )
        for name in off
    ]


def _kubernetes_client_warnings(config: Config) -> list[Problem]:
    """An installed `kubernetes` client outside the range the kubernetes executor supports
    (receiver.executors.kubernetes.SUPPORTED_CLIENTS), at each kubernetes executor."""
    names = [name for name, spec in config.executors.items() if spec.type == "kubernetes"]
    if not names:
        return []
    # imported here: the executor module imports this one
    from receiver.executors.kubernetes import client_version_warning, installed_client_version

    warning = client_version_warning(installed_client_version())
    if warning is None:
        return []
    return [Problem(f"executors.{name}", f"executor {name!r}: {warning}") for name in names]


def _auth_warning(server: ServerConfig) -> Problem | None:
    if server.auth.enabled:
        return None
    if not is_loopback(server.listen):
        return Problem(
            "server.auth",
            f"no server.auth is configured and the server listens on {server.listen}, not "
            "only on loopback: anyone who can reach it can post alerts that start "
            "remediation, reload the config and reset breakers; set server.auth (bearer "
            "token or basic auth) or listen on 127.0.0.1",
        )
    return Problem(
        "server.auth",
        f"server.auth is not set: any process of this host can post alerts to "
        f"{server.listen} that start remediation, reload the config and reset breakers; "
        "set server.auth (bearer token or basic auth) before listening beyond loopback",
    )


def is_loopback(listen: str) -> bool:
    """Whether HOST:PORT accepts connections from this host only (a loopback address or
    `localhost`); a host name may resolve to any address, so it is not."""
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _timeout_warnings(config: Config) -> list[Problem]:
    """A strategy (or step) timeout longer than the cap its executor sets: 60 s asked, 5 s
    applied."""
    found = []
    for path, strategy in _each_step(config):
        executor = config.executors[strategy.executor]
        cap = executor.settings.get("timeout")
        if executor.type not in CAPPING_EXECUTOR_TYPES or cap is None:
            continue
        if strategy.timeout > cap:
            asked, applied = format_duration(strategy.timeout), format_duration(cap)
            found.append(
                Problem(
                    f"{path}.timeout",
                    f"strategy {strategy.name!r} asks for {asked} (its timeout, or "
                    f"defaults.timeout) but executor {executor.name!r} caps every action at "
                    f"{applied} (executors.{executor.name}.timeout): the action is stopped "
                    f"after {applied}; lower the strategy's timeout or raise the executor's",
                )
            )
    return found


def _each_step(config: Config) -> list[tuple[str, Strategy]]:
    """(config path, strategy) of every action a config can take: each strategy without
    steps, each step of the others, and each strategy's undo."""
    found = []
    for index, strategy in enumerate(config.strategies):
        if not strategy.steps:
            found.append((f"strategies[{index}]", strategy))
        for number, step in enumerate(strategy.steps):
            found.append((f"strategies[{index}].steps[{number}]", step))
        if strategy.undo is not None:
            found.append((f"strategies[{index}].undo", strategy.undo))
    return found


def _breaker_warnings(config: Config) -> list[Problem]:
    """A runbook whose breaker opens before its last step: the steps of one strategy share
    its breaker on a target, so step i's failure is at least the i-th in a row."""
    found = []
    for index, strategy in enumerate(config.strategies):
        steps = strategy.steps
        for number, step in enumerate(steps[:-1], start=1):
            target = step.target.source  # steps with one target template share a breaker
            failures = sum(1 for s in steps[:number] if s.target.source == target)
            later = any(s.target.source == target for s in steps[number:])
            threshold = step.breaker.failure_threshold
            if later and threshold <= failures:
                found.append(
                    Problem(
                        f"strategies[{index}].steps[{number - 1}].breaker",
                        f"runbook {strategy.name!r}: its breaker on {target!r} opens after "
                        f"{threshold} failure(s) in a row, so when step {number} fails too "
                        f"the later steps on that target are skipped (breaker_open) and the "
                        f"run ends uncured; raise breaker.failure_threshold above {failures} "
                        "to let every step run",
                    )
                )
                break
    return found


def _fleet_warnings(config: Config) -> list[Problem]:
    """Fleet settings that defeat their own purpose: an analysis interval too short for
    the U test, and a canary as large as the smallest wave (no baseline is left)."""
    found = []
    for index, strategy in enumerate(config.strategies):
        fleet = strategy.fleet
        if fleet is None:
            continue
        path = f"strategies[{index}].fleet"
        if fleet.analysis is not None:
            found += _sample_warning(path, strategy.name, fleet.analysis)
        progressive = fleet.settings.progressive
        if progressive is not None:
            found += _canary_warning(path, strategy.name, progressive)
    return found


def _sample_warning(path: str, name: str, fleet_analysis: FleetAnalysis) -> list[Problem]:
    """A query_range over `interval` at `step` returns interval // step + 1 samples per
    target (both ends included, as Prometheus evaluates range queries)."""
    samples = int(fleet_analysis.interval // fleet_analysis.step) + 1
    needed = fleet_analysis.settings.min_samples
    if samples >= needed:
        return []
    interval, step = format_duration(fleet_analysis.interval), format_duration(fleet_analysis.step)
    return [
        Problem(
            f"{path}.analysis.interval",
            f"strategy {name!r}: fleet.analysis samples {interval} at {step} steps, "
            f"{samples} sample(s) per target, fewer than the {needed} the Mann-Whitney U test "
            "needs on each side: a one-target canary is judged by comparing means only; "
            f"make the interval at least {needed - 1} steps long",
        )
    ]


def _canary_warning(path: str, name: str, progressive: fleets.ProgressiveSettings) -> list[Problem]:
    """The canary of the smallest wave (min_targets targets) takes the whole wave."""
    smallest = progressive.min_targets
    canary = fleets.canary_size(smallest, progressive)
    if canary < smallest:
        return []
    return [
        Problem(
            f"{path}.progressive.canary",
            f"strategy {name!r}: fleet.progressive.canary {progressive.canary} takes all of a "
            f"wave of {smallest} (min_targets): every target is a canary, none is left as the "
            "baseline to compare with, and the wave has no stages to hold back; lower canary "
            "or raise min_targets",
        )
    ]
