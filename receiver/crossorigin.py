"""Cross-site request forgery refused by the browser's own headers (pure).

With `--web.config.file` people sign in with Basic credentials, which a browser then
sends by itself with every request to the server, also one that a page of another
site makes it send (a form posted to `/-/reload` or a breaker's reset). Browsers say
where a request comes from: `Sec-Fetch-Site` (Fetch Metadata, sent by every current
browser) and `Origin`. The rule is Go's net/http CrossOriginProtection (Go 1.25):

1. GET, HEAD and OPTIONS are allowed (they change nothing).
2. With `Sec-Fetch-Site`: allowed when it is `same-origin` or `none` (typed by the
   user), refused otherwise (`cross-site`, `same-site`).
3. Without it, a request without `Origin` is not from a browser (curl, Alertmanager,
   scripts) and is allowed; one with `Origin` is allowed only when the Origin's host
   is the request's `Host`.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SAME_ORIGIN_SITES = frozenset({"same-origin", "none"})


def cross_origin_refusal(method: str, headers: Mapping[str, str]) -> str | None:
    """Why a request must be refused as cross-origin, or None to let it through.
    `headers` is looked up by name as sent (Werkzeug's headers ignore case)."""
    if method.upper() in SAFE_METHODS:
        return None
    site = headers.get("Sec-Fetch-Site")
    if site is not None:
        if site.strip().lower() in SAME_ORIGIN_SITES:
            return None
        return f"cross-origin request refused (Sec-Fetch-Site: {site[:32]})"
    origin = headers.get("Origin")
    if origin is None:
        return None
    host = headers.get("Host", "")
    try:
        origin_host = urlsplit(origin.strip()).netloc
    except ValueError:
        origin_host = ""
    if origin_host and origin_host.lower() == host.strip().lower():
        return None
    return f"cross-origin request refused (Origin {origin[:64]} is not {host[:64]})"
