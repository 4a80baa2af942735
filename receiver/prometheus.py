"""The little of Prometheus' HTTP API that remediation needs: instant and range queries.

PromQL comparisons filter rather than return booleans, so "true" means the query
returned at least one sample whose value is not 0 (a scalar result: not 0).

Range queries feed the canary analysis of issue 15 (receiver/canary.py): every sample of
every series, pooled. Their arguments are checked here, before anything is sent, by the
rules Prometheus' own ``/api/v1/query_range`` applies (web/api/v1/api.go): a positive
step, an end not before the start, and at most 11,000 steps per series.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import requests

# Prometheus refuses a range query when (end - start) / step exceeds this
# ("exceeded maximum resolution of 11,000 points per timeseries").
MAX_RANGE_POINTS = 11_000


class PrometheusError(RuntimeError):
    """The query could not be answered; the message says why."""


class PrometheusUnreachable(PrometheusError):
    """No answer at all (connection refused, timeout): later queries will fare no better."""


@dataclass(frozen=True)
class PrometheusClient:
    """A client of one Prometheus server: ``url`` its base URL (no trailing slash),
    ``timeout`` seconds per HTTP request."""

    url: str
    timeout: float = 10.0

    def query(self, expr: str) -> list[float]:
        """Values of an instant query (vector samples, or a single scalar).

        Raises PrometheusUnreachable when Prometheus does not answer, PrometheusError
        when it answers with an error or something other than a vector or scalar.
        """
        data = self._get("/api/v1/query", {"query": expr}, expr)
        return _values(data)

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[float]:
        """Every sample value of a range query: ``start`` and ``end`` in seconds since the
        epoch, ``step`` in seconds. The series of the matrix are concatenated, each in time
        order; NaN and +-Inf are kept as floats (the canary judge drops and counts them).
        An expression matching nothing gives [].

        Raises ValueError, before sending, for a non-finite argument, ``step <= 0``,
        ``end < start`` or ``(end - start) / step`` over 11,000 (Prometheus' own limits);
        PrometheusUnreachable when Prometheus does not answer; PrometheusError when it
        answers with an error or a result that is not a matrix.
        """
        check_range(start, end, step)
        params = {"query": expr, "start": _seconds(start), "end": _seconds(end), "step": step}
        data = self._get("/api/v1/query_range", params, expr)
        return _matrix_values(expr, data)

    def is_true(self, expr: str) -> bool:
        """Whether an instant query holds (see truthy). Raises as query() does."""
        return truthy(self.query(expr))

    def scalar(self, expr: str) -> float:
        """The single value a scale query must produce; anything else is an error."""
        values = self.query(expr)
        if len(values) != 1 or not math.isfinite(values[0]):
            raise PrometheusError(
                f"query {expr!r} must return exactly one finite value, got {values[:5]}"
            )
        return values[0]

    def _get(self, path: str, params: dict[str, Any], expr: str) -> dict:
        try:
            response = requests.get(f"{self.url}{path}", params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise PrometheusUnreachable(f"Prometheus at {self.url} unreachable: {exc}") from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise PrometheusError(f"Prometheus answered HTTP {response.status_code}") from exc
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error", response.text) if isinstance(body, dict) else body
            raise PrometheusError(f"query {expr!r} failed: {error}")
        data = body.get("data")
        if not isinstance(data, dict):
            raise PrometheusError(f"query {expr!r}: Prometheus answered without data")
        return data


def check_range(start: float, end: float, step: float) -> None:
    """Refuse a range Prometheus would refuse (or that makes no sense), with its reason.

    ``start``/``end`` in seconds since the epoch, ``step`` in seconds. Raises ValueError
    for a non-finite or non-numeric value, ``step <= 0``, ``end < start``, or
    ``(end - start) / step`` (truncated) over 11,000, as Prometheus' query_range handler
    checks ("exceeded maximum resolution of 11,000 points per timeseries"; it does answer
    at exactly 11,000 steps, which is 11,001 points counting both ends).
    """
    for name, value in (("start", start), ("end", end), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"query_range {name} must be a number of seconds, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"query_range {name} must be finite, got {value!r}")
    if step <= 0:
        raise ValueError(f"query_range step must be > 0 seconds, got {step!r}")
    if end < start:
        raise ValueError(f"query_range end {end!r} is before start {start!r}")
    # Prometheus divides durations as integers (truncating): it answers when
    # (end - start) / step is exactly 11,000, i.e. 11,001 points, and refuses above.
    steps = math.floor((end - start) / step)
    if steps > MAX_RANGE_POINTS:
        raise ValueError(
            f"query_range over {end - start:g} s at a {step:g} s step is {steps + 1:,} points "
            f"per series; Prometheus refuses more than {MAX_RANGE_POINTS:,} steps "
            "(exceeded maximum resolution): use a larger step or a shorter interval"
        )


def range_points(start: float, end: float, step: float) -> int:
    """How many points per series a range query yields when the series has a value at
    every step: start, start + step, ... up to end (as Prometheus' evaluation loop).
    Raises ValueError for a range ``check_range`` refuses."""
    check_range(start, end, step)
    return math.floor((end - start) / step) + 1


def _seconds(t: float) -> str:
    # Prometheus reads timestamps to the millisecond; repr of a float may use an exponent.
    return f"{t:.3f}"


def _values(data: dict) -> list[float]:
    kind, result = data.get("resultType"), data.get("result")
    if kind == "vector":
        return [float(sample["value"][1]) for sample in result]
    if kind == "scalar":
        return [float(result[1])]
    raise PrometheusError(f"expected an instant vector or scalar, got {kind}")


def _matrix_values(expr: str, data: dict) -> list[float]:
    kind, result = data.get("resultType"), data.get("result")
    if kind != "matrix" or not isinstance(result, list):
        raise PrometheusError(f"range query {expr!r}: expected a matrix, got {kind}")
    pooled: list[float] = []
    try:
        for series in result:
            # Prometheus sorts each series by time; sorting again costs little and makes
            # the order a property of this client, not an assumption about the server.
            points = sorted(series.get("values", ()), key=lambda point: float(point[0]))
            pooled.extend(float(value) for _, value in points)
    except (TypeError, ValueError, AttributeError, IndexError) as exc:
        raise PrometheusError(f"range query {expr!r}: malformed matrix: {exc}") from exc
    return pooled


#: Values of one sample shown in the journal (a verification poll); the rest are counted.
SHOWN_VALUES = 5


def truthy(values: list[float]) -> bool:
    """Whether a query result holds, as an alerting rule's does: some value other than 0
    and NaN (an empty result, or only zeros, does not)."""
    return any(value != 0 and not math.isnan(value) for value in values)


def describe_sample(values: list[float]) -> str:
    """A query result as the journal shows one poll of it: `no series`, `1` or
    `0, 0, 1 (+7 more)`, then `(true)` or `(false)` by truthy()."""
    verdict = "true" if truthy(values) else "false"
    if not values:
        return f"no series ({verdict})"
    shown = ", ".join(f"{value:g}" for value in values[:SHOWN_VALUES])
    more = f" (+{len(values) - SHOWN_VALUES} more)" if len(values) > SHOWN_VALUES else ""
    return f"{shown}{more} ({verdict})"
