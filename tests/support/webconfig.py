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


def web_config(
    users: dict[str, str],
    cert: Path | None = None,
    key: Path | None = None,
    client_auth: tuple[str, Path] | None = None,
) -> str:
    """The text of a web config file: users (name -> password, hashed here) and, when
    cert and key are given, tls_server_config, with client_auth (client_auth_type,
    client_ca_file) if given."""
    lines = []
    if cert is not None and key is not None:
        lines += ["tls_server_config:", f"  cert_file: {cert}", f"  key_file: {key}"]
    if client_auth is not None:
        lines += [f"  client_auth_type: {client_auth[0]}", f"  client_ca_file: {client_auth[1]}"]
    if users:
        lines.append("basic_auth_users:")
        lines += [f"  {user}: {bcrypt_hash(password)!r}" for user, password in users.items()]
    return "\n".join(lines) + "\n"


def signed_client(
    directory: Path, ca_cert: Path, ca_key: Path, name: str = "client"
) -> tuple[Path, Path]:
    """A client certificate (and key) signed by the CA ca_cert/ca_key (a self_signed
    pair), made by the real `openssl`: (cert_file, key_file) in directory."""
    cert, key, request = (directory / f"{name}{ext}" for ext in (".crt", ".key", ".csr"))
    subprocess.run(
        [
            "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={name}",
            "-keyout", str(key), "-out", str(request),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [
            "openssl", "x509", "-req", "-in", str(request), "-CA", str(ca_cert),
            "-CAkey", str(ca_key), "-CAcreateserial", "-days", "1", "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key
