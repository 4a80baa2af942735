"""Build ActionRequests for executor tests with sensible defaults."""

from __future__ import annotations

from typing import Any

from receiver.executors.base import ActionRequest


def action_request(
    action: str = "run",
    target: str = "web",
    *,
    rendered: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    timeout: float = 10.0,
    action_id: int = 1,
    **extra: Any,
) -> ActionRequest:
    return ActionRequest(
        action_id=action_id,
        action=action,
        target=target,
        rendered=rendered or {},
        labels=labels if labels is not None else {"alertname": "ServiceDown", "service": target},
        annotations=annotations if annotations is not None else {"summary": f"{target} is down"},
        timeout=timeout,
        **extra,
    )
