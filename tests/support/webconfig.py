"""Web config files, bcrypt hashes and self-signed certificates for the tests of
`--web.config.file` (receiver/webconfig.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import bcrypt

#: the lowest cost bcrypt allows: a fast hash keeps the tests quick; the cost is part
#: of the hash, so the server checks it at whatever cost it was made
TEST_COST = 4


def bcrypt_hash(password: str, cost: int = TEST_COST) -> str:
    """The `$2b$` bcrypt hash of password, as `basic_auth_users` takes it."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


def self_signed(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """A new self-signed certificate for 127.0.0.1 and localhost (and its key), made by
    the real `openssl req -x509`: (cert_file, key_file) in directory."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
            "-subj", "/CN=remediator-test", "-keyout", str(key), "-out", str(cert),
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def web_config(users: dict[str, str], cert: Path | None = None, key: Path | None = None) -> str:
    """The text of a web config file: users (name -> password, hashed here) and, when
    cert and key are given, tls_server_config."""
    lines = []
    if cert is not None and key is not None:
        lines += ["tls_server_config:", f"  cert_file: {cert}", f"  key_file: {key}"]
    if users:
        lines.append("basic_auth_users:")
        lines += [f"  {user}: {bcrypt_hash(password)!r}" for user, password in users.items()]
    return "\n".join(lines) + "\n"
