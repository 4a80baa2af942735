"""Form tokens against cross-site request forgery (pure; the clock is injected).

People sign in to the console with Basic credentials (`--web.config.file`), which the
browser sends by itself with every request, also one that another site's page makes it
send. crossorigin.py refuses such requests by the browser's Fetch Metadata; a token in
every state-changing form is the second, independent guard (OWASP's "synchronizer
token", in its stateless HMAC form, since Basic auth has no session to keep one in):

    issue(key, user, now)  ──►  "<issued_at hex>.<HMAC-SHA256(key, user \\n issued_at) hex>"
    check(key, user, token, now)  ──►  None (valid) | why not

A token is bound to the signed-in user (one user's token is refused for another) and
expires after MAX_AGE seconds; the key is the journal's shared secret (store/secrets.py),
so a form served by one replica is accepted by another and after a restart.
"""

from __future__ import annotations

import hashlib
import hmac

#: Seconds a form stays usable: a console page left open over a shift still works.
MAX_AGE = 12 * 3600.0
#: A token issued this many seconds "in the future" is still taken (replicas' clocks).
CLOCK_SKEW = 60.0
FIELD = "csrf_token"


def issue(key: bytes, user: str, now: float) -> str:
    """A token for `user` (the basic-auth user, "" without one) issued at `now` (epoch
    seconds, whole seconds kept)."""
    issued = int(now)
    return f"{issued:x}.{_mac(key, user, issued)}"


def check(key: bytes, user: str, token: str | None, now: float) -> str | None:
    """None when `token` was issued by `key` for `user` within MAX_AGE seconds of
    `now`; otherwise why it is refused (for the 403 page and the log)."""
    if not token:
        return "the form has no token: reload the page and submit it again"
    issued_hex, dot, mac = token.partition(".")
    try:
        issued = int(issued_hex, 16) if dot and len(issued_hex) <= 16 else None
    except ValueError:
        issued = None
    if issued is None or not hmac.compare_digest(mac, _mac(key, user, issued)):
        return "the form's token is not valid for this user: reload the page"
    if now - issued > MAX_AGE or issued - now > CLOCK_SKEW:
        return "the form has expired: reload the page and submit it again"
    return None


def _mac(key: bytes, user: str, issued: int) -> str:
    message = f"{user}\n{issued}".encode("utf-8", "surrogateescape")
    return hmac.new(key, message, hashlib.sha256).hexdigest()
