"""Configs more than one test module runs under."""

from __future__ import annotations


def restart_on_service_down(max_concurrent_actions: int | None = None, breaker: str = "") -> str:
    """One strategy: a `ServiceDown` alert restarts its `service` label through a `log`
    executor, with no cooldown, so every alert's action runs at once.

    `max_concurrent_actions` sets the global cap (`defaults.max_concurrent_actions`,
    unset: the config's default); `breaker` is the strategy's breaker as YAML flow text
    (e.g. `{failure_threshold: 2, recovery_timeout: 1m}`), none when empty."""
    cap = (
        ""
        if max_concurrent_actions is None
        else f"max_concurrent_actions: {max_concurrent_actions}, "
    )
    text = (
        f"defaults: {{{cap}cooldown: 0s}}\n"
        "executors: {logger: {type: log}}\n"
        "strategies:\n"
        "  - name: restart\n"
        "    matchers: ['alertname=\"ServiceDown\"']\n"
        "    action: restart\n"
        "    executor: logger\n"
        "    target: '{{ labels.service }}'\n"
    )
    return text + (f"    breaker: {breaker}\n" if breaker else "")


#: restart_on_service_down() with no cap and no breaker.
RESTART_ON_SERVICE_DOWN = restart_on_service_down()
