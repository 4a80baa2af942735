"""The worker builds no access line the log config drops (receiver/server.py).

Remediator's gunicorn log config keeps `gunicorn.access` at WARNING, so no access line
is ever written; gunicorn would still format each request's line (issue 16: about 40 us
per request) because a `logconfig_dict` is set. AccessOffLogger asks the access logger
first. Real gunicorn config and loggers; the request objects are left out on purpose
(None): building the line from them fails, so a test can tell whether it was built.
"""

from __future__ import annotations

import datetime
import logging

import pytest
from gunicorn.config import Config

from receiver.config import parse_config
from receiver.server import AccessOffLogger, RemediatorServer, ServeOptions


def server_config(log_format: str = "text") -> Config:
    """gunicorn's config as `remediator serve` builds it (nothing is started)."""
    options = ServeOptions("remediation.yml", parse_config("strategies: []\n"), {}, log_format)
    return RemediatorServer(options).cfg


ELAPSED = datetime.timedelta(milliseconds=2)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_serve_uses_the_logger_that_skips_the_access_line(log_format: str) -> None:
    cfg = server_config(log_format)
    assert cfg.logger_class is AccessOffLogger
    logger = cfg.logger_class(cfg)  # as gunicorn's arbiter and worker build theirs
    assert not logger.access_log.isEnabledFor(logging.INFO)  # the config drops them
    logger.access(None, None, {}, ELAPSED)  # nothing built from the request: no error


def test_an_access_logger_that_would_emit_gets_its_line_built() -> None:
    cfg = server_config()
    logger = AccessOffLogger(cfg)
    logger.access_log.setLevel(logging.INFO)
    try:
        with pytest.raises(AttributeError):  # gunicorn builds the line from the request
            logger.access(None, None, {}, ELAPSED)
    finally:
        logger.access_log.setLevel(logging.WARNING)
