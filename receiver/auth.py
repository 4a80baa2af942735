"""Credentials for the endpoints that change state: a bearer token or basic auth."""

from __future__ import annotations

import base64
import hmac
from typing import TYPE_CHECKING

from receiver.config import AuthConfig

if TYPE_CHECKING:
    from receiver.webconfig import WebAuth


def credentials_ok(auth: AuthConfig, header: str) -> bool:
    """Whether an Authorization header carries the configured credentials (always true
    when none are configured). Compared in constant time, so that response timing does
    not leak the secret."""
    if not auth.enabled:
        return True
    scheme, _, value = header.partition(" ")
    if auth.bearer_token is not None:
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), auth.bearer_token.encode()
        )
    if auth.basic_username is not None and auth.basic_password is not None:
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except ValueError:
            return False
        expected = f"{auth.basic_username}:{auth.basic_password}".encode()
        return hmac.compare_digest(decoded, expected)
    return True


def challenge(auth: AuthConfig) -> str:
    """The WWW-Authenticate header that goes with a 401."""
    return 'Bearer realm="remediator"' if auth.bearer_token else 'Basic realm="remediator"'


def signed_in_person(web: WebAuth | None, auth: AuthConfig, username: str | None) -> str | None:
    """Who a request that may change state (may_change) was verified to come from: the
    web config's user when its users guard every request, else `server.auth`'s basic
    user (whose password the request carried), else None (a bearer token or no
    credentials name nobody). `username` is the request's basic-auth user, if any. An
    approval's `decided_by` is this person when there is one: a name the caller types
    never replaces a verified one."""
    if not username:
        return None
    if web is not None and web.guards:
        return username
    if auth.basic_username is not None and username == auth.basic_username:
        return username
    return None


def may_change(web: WebAuth | None, auth: AuthConfig, header: str) -> bool:
    """Whether a request (to the API or from a console form) may change state. With a
    web config that lists users, every request Flask serves has already passed its
    check (receiver.app.guard_web): people signed in may act. Otherwise the configured
    credentials (`server.auth`) decide, as for scripts."""
    if web is not None and web.guards:
        return True
    return credentials_ok(auth, header)
