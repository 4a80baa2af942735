"""Configs more than one test module runs under."""

from __future__ import annotations

#: One strategy: a `ServiceDown` alert restarts its `service` label through a `log`
#: executor, with no cooldown, so every alert's action runs at once.
RESTART_ON_SERVICE_DOWN = """
defaults: {cooldown: 0s}
executors: {logger: {type: log}}
strategies:
  - name: restart
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: logger
    target: '{{ labels.service }}'
"""
