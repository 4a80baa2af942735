"""Secrets the processes of one journal share (table `secrets`, schema revision 0007).

A secret is made once, by the first process that asks for it, and read by every other:
`INSERT ... ON CONFLICT DO NOTHING` then `SELECT`, in one transaction, so replicas that
ask at the same moment all end up with the one value that was stored. Values are hex
text of `secrets.token_bytes` (32 bytes: HMAC-SHA256's block of key material).
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from receiver.store.sql import SqlTransaction

#: Signs the console's form tokens (receiver/console/csrf.py).
CONSOLE_CSRF = "console_csrf"
KEY_BYTES = 32


def shared_key(tx: SqlTransaction, name: str, now: float | None = None) -> bytes:
    """The secret `name` of this journal (KEY_BYTES bytes), made now if there is none.
    Raises StoreUnavailable (from the transaction) when the journal is."""
    tx.execute(
        "INSERT INTO secrets (name, value, created_at) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO NOTHING",
        (name, secrets.token_hex(KEY_BYTES), time.time() if now is None else now),
    )
    (value,) = tx.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()
    return bytes.fromhex(value)
