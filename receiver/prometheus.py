"""The little of Prometheus' HTTP API that remediation needs: instant queries.

PromQL comparisons filter rather than return booleans, so "true" means the query
returned at least one sample whose value is not 0 (a scalar result: not 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import requests


class PrometheusError(RuntimeError):
    """The query could not be answered; the message says why."""


@dataclass(frozen=True)
class PrometheusClient:
    url: str
    timeout: float = 10.0

    def query(self, expr: str) -> list[float]:
        """Values of an instant query (vector samples, or a single scalar)."""
        try:
            response = requests.get(
                f"{self.url}/api/v1/query", params={"query": expr}, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise PrometheusError(f"Prometheus at {self.url} unreachable: {exc}") from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise PrometheusError(f"Prometheus answered HTTP {response.status_code}") from exc
        if body.get("status") != "success":
            raise PrometheusError(f"query {expr!r} failed: {body.get('error', response.text)}")
        return _values(body["data"])

    def is_true(self, expr: str) -> bool:
        return any(value != 0 and not math.isnan(value) for value in self.query(expr))

    def scalar(self, expr: str) -> float:
        """The single value a scale query must produce; anything else is an error."""
        values = self.query(expr)
        if len(values) != 1 or not math.isfinite(values[0]):
            raise PrometheusError(
                f"query {expr!r} must return exactly one finite value, got {values[:5]}"
            )
        return values[0]


def _values(data: dict) -> list[float]:
    kind, result = data.get("resultType"), data.get("result")
    if kind == "vector":
        return [float(sample["value"][1]) for sample in result]
    if kind == "scalar":
        return [float(result[1])]
    raise PrometheusError(f"expected an instant vector or scalar, got {kind}")
