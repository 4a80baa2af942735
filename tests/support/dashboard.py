"""The shipped Grafana dashboard's queries and the metric contract they (and the rules) use.

`dashboard_exprs()` gives every panel query with Grafana's variables substituted, ready
to send to a real Prometheus; `annotation_exprs()` the same for the annotation queries,
and `dashboard_links()` every link the dashboard carries (dashboard, panel, data links).
`selectors()` / `metric_names()` read the metric names and label matchers out of a PromQL
expression, so tests can hold the dashboard and the alerting rules to the metric contract
(a typo in a metric or label name fails a test).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "grafana" / "dashboards" / "remediator.json"
DATASOURCE_UID = "remediator-prometheus"

# The metrics GET /metrics exports (DESIGN.md, "Fixed interfaces"): name -> its labels.
# Prometheus adds `job` and `instance` to every series it scrapes.
CONTRACT: dict[str, frozenset[str]] = {
    "remediator_breaker_state": frozenset({"strategy", "target", "state"}),
    "remediator_replicas": frozenset({"target"}),
    "remediator_replicas_desired": frozenset({"target"}),
    "remediator_replicas_min": frozenset({"target"}),
    "remediator_replicas_max": frozenset({"target"}),
    "remediator_incident_duration_seconds": frozenset({"service"}),
    "remediator_mttr_seconds": frozenset({"service"}),
    "remediator_availability_ratio": frozenset({"service"}),
    "remediator_service_health": frozenset({"service", "status"}),
    "remediator_actions_total": frozenset({"strategy", "action", "outcome"}),
    "remediator_actions_skipped_total": frozenset({"strategy", "reason"}),
    "remediator_action_duration_seconds": frozenset({"strategy", "action"}),
    "remediator_time_to_remediate_seconds": frozenset({"strategy"}),
    "remediator_alerts_received_total": frozenset({"status"}),
    "remediator_open_incidents": frozenset(),
    "remediator_http_requests_total": frozenset({"handler", "method", "code"}),
    "remediator_http_request_duration_seconds": frozenset({"handler"}),
    # planned actions by what delays them, and fleets (issue 15)
    "remediator_actions_waiting": frozenset({"reason"}),
    "remediator_fleet_in_flight": frozenset({"strategy", "fleet"}),
    "remediator_fleet_wave_stage": frozenset({"strategy", "fleet"}),
    "remediator_canary_verdicts_total": frozenset({"strategy", "verdict"}),
}
# The values the contract fixes for some labels: (metric, label) -> values.
LABEL_VALUES: dict[tuple[str, str], frozenset[str]] = {
    ("remediator_breaker_state", "state"): frozenset({"closed", "open", "half_open"}),
    ("remediator_service_health", "status"): frozenset(
        {"healthy", "unhealthy", "degraded", "critical"}
    ),
    ("remediator_actions_total", "outcome"): frozenset(
        {"succeeded", "failed", "timed_out", "skipped", "cancelled"}
    ),
    ("remediator_actions_skipped_total", "reason"): frozenset(
        {"dry_run", "locked", "cooldown", "budget", "breaker_open", "precondition", "refused"}
        | {"config", "when", "halted"}
    ),
    ("remediator_actions_waiting", "reason"): frozenset(
        {"wait", "locked", "cooldown", "concurrency", "fleet", "awaiting_approval", "queued"}
    ),
    ("remediator_canary_verdicts_total", "verdict"): frozenset({"pass", "fail", "inconclusive"}),
    ("remediator_alerts_received_total", "status"): frozenset({"firing", "resolved"}),
}
HISTOGRAMS = frozenset(
    {
        "remediator_incident_duration_seconds",
        "remediator_action_duration_seconds",
        "remediator_time_to_remediate_seconds",
        "remediator_http_request_duration_seconds",
    }
)
TARGET_LABELS = frozenset({"job", "instance"})

# Grafana's template variables that queries may use (besides the dashboard's own).
BUILTIN_VARIABLES = ("__rate_interval", "__interval", "__range")
DEFAULT_VARIABLES = {
    "service": ".*",
    "strategy": ".*",
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
}


def series_labels() -> dict[str, frozenset[str]]:
    """Every series name a query may select, with the labels it may match on.

    Histograms are selected as `_bucket` (plus `le`), `_sum` and `_count`, never bare.
    `up` is Prometheus' own (target labels only).
    """
    names: dict[str, frozenset[str]] = {"up": TARGET_LABELS}
    for name, labels in CONTRACT.items():
        labels = labels | TARGET_LABELS
        if name in HISTOGRAMS:
            names[f"{name}_bucket"] = labels | {"le"}
            names[f"{name}_sum"] = labels
            names[f"{name}_count"] = labels
        else:
            names[name] = labels
    return names


# ---------------------------------------------------------------------------- the dashboard


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    return json.loads(path.read_text())


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Replace `$name` / `${name}` with variables[name]; unknown variables raise KeyError."""
    values = {name.lstrip("$"): value for name, value in variables.items()}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value given for ${name} in: {expr}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def dashboard_exprs(variables: dict[str, str], path: Path = DASHBOARD) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel, variables substituted.

    `variables` maps names (with or without `$`) to values, e.g. {"service": ".*",
    "strategy": ".*", "__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
    (that is DEFAULT_VARIABLES). A query using a variable not given raises KeyError.
    """
    found = []
    for panel in panels(load_dashboard(path)):
        for target in panel.get("targets", []):
            if target.get("expr"):
                found.append((panel["title"], substitute(target["expr"], variables)))
    return found


def annotation_exprs(variables: dict[str, str], path: Path = DASHBOARD) -> list[tuple[str, str]]:
    """(annotation name, PromQL) for every Prometheus annotation query, variables
    substituted as in dashboard_exprs (a query using one not given raises KeyError)."""
    found = []
    for annotation in load_dashboard(path)["annotations"]["list"]:
        expr = annotation.get("expr") or annotation.get("target", {}).get("expr")
        if expr:
            found.append((annotation["name"], substitute(expr, variables)))
    return found


@dataclass(frozen=True)
class Link:
    """One link of the dashboard: `where` it is (dashboard, a panel's title, a panel's
    data links), its `title` and its `url` as written (variables unresolved)."""

    where: str
    title: str
    url: str


def dashboard_links(dashboard: dict[str, Any]) -> list[Link]:
    """Every link: the dashboard's own, each panel's (header) links, and the data links
    of each panel's fields (defaults and overrides)."""
    found = [Link("dashboard", link["title"], link["url"]) for link in dashboard.get("links", [])]
    for panel in panels(dashboard):
        title = panel.get("title", "")
        found += [Link(title, link["title"], link["url"]) for link in panel.get("links", [])]
        config = panel.get("fieldConfig", {})
        data = list(config.get("defaults", {}).get("links", []))
        for override in config.get("overrides", []):
            for prop in override.get("properties", []):
                if prop.get("id") == "links":
                    data += prop.get("value", [])
        found += [Link(f"{title} (data link)", link["title"], link["url"]) for link in data]
    return found


# ----------------------------------------------------------------------------------- PromQL

KEYWORDS_WITH_LABEL_LIST = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right"}
)
OPERATOR_WORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"})
AGGREGATIONS = frozenset(
    {
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    }
)
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER = re.compile(r"[0-9.]+(?:[eE][+-]?[0-9]+)?[A-Za-z0-9]*")  # numbers and durations
_MATCHER = re.compile(
    r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`)\s*,?"
)


@dataclass(frozen=True)
class Selector:
    """One vector selector: `name{label op "value", ...}`."""

    name: str
    matchers: tuple[tuple[str, str, str], ...]

    def label_names(self) -> set[str]:
        return {label for label, _, _ in self.matchers}

    def has(self, label: str, op: str, value: str) -> bool:
        return (label, op, value) in self.matchers


def _skip_string(expr: str, i: int) -> int:
    quote = expr[i]
    i += 1
    while i < len(expr) and expr[i] != quote:
        i += 2 if expr[i] == "\\" and quote != "`" else 1
    return i + 1


def _skip_balanced(expr: str, i: int, open_: str, close: str) -> int:
    depth = 0
    while i < len(expr):
        char = expr[i]
        if char in "\"'`":
            i = _skip_string(expr, i)
            continue
        if char == open_:
            depth += 1
        elif char == close:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError(f"unbalanced {open_}{close} in: {expr}")


def _matchers(block: str, expr: str) -> tuple[tuple[str, str, str], ...]:
    found = []
    pos = 0
    body = block.strip()
    while pos < len(body):
        match = _MATCHER.match(body, pos)
        if match is None:
            raise ValueError(f"cannot read label matchers {{{block}}} in: {expr}")
        label, op, quoted = match.groups()
        found.append((label, op, quoted[1:-1]))
        pos = match.end()
    return tuple(found)


def _next_char(expr: str, i: int) -> str:
    while i < len(expr) and expr[i].isspace():
        i += 1
    return expr[i] if i < len(expr) else ""


def selectors(expr: str) -> list[Selector]:
    """The vector selectors of a PromQL expression (function and keyword names excluded).

    A small scanner, not a full parser: strings, `[...]` ranges, `by (...)`-style label
    lists and `#` comments are skipped; any other identifier not called as a function is
    a metric name. `$variables` are left alone, so raw dashboard queries work too.
    """
    found: list[Selector] = []
    i = 0
    while i < len(expr):
        char = expr[i]
        if char.isspace():
            i += 1
        elif char == "#":
            newline = expr.find("\n", i)
            i = len(expr) if newline < 0 else newline
        elif char in "\"'`":
            i = _skip_string(expr, i)
        elif char == "[":
            i = _skip_balanced(expr, i, "[", "]")
        elif char == "$":
            match = _VARIABLE.match(expr, i)
            i = match.end() if match else i + 1
        elif char.isdigit() or (char == "." and expr[i + 1 : i + 2].isdigit()):
            i = _NUMBER.match(expr, i).end()
        elif char == "{":
            end = _skip_balanced(expr, i, "{", "}")
            matchers = _matchers(expr[i + 1 : end - 1], expr)
            names = [value for label, op, value in matchers if label == "__name__" and op == "="]
            found.append(Selector(names[0] if names else "", matchers))
            i = end
        elif _IDENT.match(expr, i):
            word = _IDENT.match(expr, i).group(0)
            i += len(word)
            following = _next_char(expr, i)
            if word in KEYWORDS_WITH_LABEL_LIST:
                if following == "(":
                    i = _skip_balanced(expr, expr.index("(", i), "(", ")")
            elif word in OPERATOR_WORDS:
                pass
            elif following == "(" or (
                word in AGGREGATIONS and re.match(r"(by|without)\b", expr[i:].lstrip())
            ):
                pass  # a function call, or an aggregation with its `by (...)` first
            elif following == "{":
                start = expr.index("{", i)
                end = _skip_balanced(expr, start, "{", "}")
                found.append(Selector(word, _matchers(expr[start + 1 : end - 1], expr)))
                i = end
            else:
                found.append(Selector(word, ()))
        else:
            i += 1
    return found


def metric_names(expr: str) -> set[str]:
    return {selector.name for selector in selectors(expr)}


def contract_problems(expr: str) -> list[str]:
    """Why `expr` breaks the metric contract: unknown metric, label or label value."""
    known = series_labels()
    problems = []
    for selector in selectors(expr):
        if selector.name not in known:
            problems.append(f"unknown metric {selector.name!r}")
            continue
        unknown = selector.label_names() - known[selector.name] - {"__name__"}
        if unknown:
            problems.append(f"{selector.name} has no label(s) {sorted(unknown)}")
        for label, op, value in selector.matchers:
            allowed = LABEL_VALUES.get((selector.name, label))
            if allowed is None:
                continue
            if op in ("=", "!="):
                values = {value}
            elif _ALTERNATION.fullmatch(value):  # a plain list like "failed|timed_out"
                values = set(value.split("|"))
            else:
                continue
            if values - allowed:
                problems.append(
                    f"{selector.name}{{{label}{op}{value!r}}}: not a contract value "
                    f"{sorted(values - allowed)} (known: {sorted(allowed)})"
                )
    return problems


_ALTERNATION = re.compile(r"\w+(?:\|\w+)*")
