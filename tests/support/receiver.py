"""A small receiver config shared by the integration tests: bearer auth, log executor."""

from __future__ import annotations

from pathlib import Path

TOKEN = "s3cret-token"
MAX_BODY = 64 * 1024

CONFIG = f"""
server:
  auth: {{bearer_token_file: token}}
  max_body_bytes: {MAX_BODY}
executors:
  logger: {{type: log}}
strategies:
  - name: restart-web
    matchers: ['alertname="ServiceDown"']
    action: restart
    executor: logger
    target: '{{{{ labels.service }}}}'
  - name: note-everything
    matchers: ['severity="page"']
    action: escalate
    executor: logger
    target: '{{{{ labels.alertname }}}}'
"""


def write_config(workdir: Path, text: str = CONFIG) -> Path:
    (workdir / "token").write_text(TOKEN + "\n")
    path = workdir / "remediation.yml"
    path.write_text(text)
    return path
