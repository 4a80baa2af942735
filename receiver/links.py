"""Where people reach Remediator, and the links that point there (pure).

The external URL is what Prometheus calls `--web.external-url`: the URL people type
or click to reach this receiver, which may differ from what it listens on (a reverse
proxy, a DNS name, TLS terminated in front). Links that leave the process carry it:
the `RemediationAwaitingApproval` alert's `action_url` and `generatorURL`, so that a
person reading the alert in Alertmanager, a chat room or a pager lands on the action's
console page.

    server.external_url (config) ──┐
    --web.external-url (serve) ────┴─► external_url() ──► console_url(base, "/actions/7")
    neither: http://<hostname>:<listen port>, as Prometheus derives its own

Rules (as Prometheus's `computeExternalURL`, plus what a link must not carry): http or
https, a host, an optional port and path prefix; no user:password (it would be shown
to everyone who reads the alert), no query, no fragment; a trailing `/` is dropped so
paths append cleanly. The path prefix is only put into links: the receiver serves at
`/` and a proxy in front strips the prefix.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

#: The console page of one action, with its approve and deny buttons (a path of the
#: operator console's URL contract: /, /incidents[/<id>], /actions[/<id>], /breakers,
#: /strategies; the dashboard's links are held to it by its test).
ACTION_PAGE = "/actions/{id}"
#: The API resource of one action, and its decisions (POST).
ACTION_API = "/api/v1/actions/{id}"


def parse_external_url(value: str) -> str:
    """A validated external URL without its trailing `/`, e.g.
    `https://ops.example.com/remediator`. Raises ValueError saying what is wrong."""
    text = value.strip()
    if not text:
        raise ValueError("expected an http:// or https:// URL, got an empty value")
    if any(ch.isspace() for ch in text):
        raise ValueError(f"expected a URL without spaces, got {text!r}")
    try:
        parts = urlsplit(text)
        _ = parts.port  # ValueError for a port out of range or not a number
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc}): {text!r}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"expected an http:// or https:// URL, got {text!r}")
    if not parts.hostname:
        raise ValueError(f"expected a host after {parts.scheme}://, got {text!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry user:password (links are shown to everyone)")
    if parts.query or text.endswith("?"):
        raise ValueError(f"must not carry a query (?...), got {text!r}")
    if parts.fragment or "#" in text:
        raise ValueError(f"must not carry a fragment (#...), got {text!r}")
    return text.rstrip("/")


def default_external_url(listen: str, hostname: str) -> str:
    """`http://<hostname>:<port of listen>` (`listen` is HOST:PORT), as Prometheus
    derives its external URL when none is given."""
    port = listen.rpartition(":")[2]
    return f"http://{hostname}:{port}"


def external_url(configured: str | None, listen: str, hostname: str | None = None) -> str:
    """The URL links point at: the configured one (already validated), else the default
    from this host's name (`hostname`, default: the machine's, as Prometheus reads it)
    and the listen port."""
    if configured:
        return configured
    return default_external_url(listen, hostname if hostname is not None else socket.gethostname())


def console_url(base: str, path: str) -> str:
    """`path` (starting with `/`) under the external URL `base`."""
    return f"{base.rstrip('/')}{path}"
