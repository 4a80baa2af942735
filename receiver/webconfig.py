"""Authentication for people and TLS: `--web.config.file`, in Prometheus's format.

The file is the web configuration file of Prometheus and its exporters (the
exporter-toolkit's docs/web-configuration.md). Remediator reads a faithful subset:

    tls_server_config:
      cert_file: server.crt        # PEM certificate (chain) the server presents
      key_file: server.key         # its PEM private key
      min_version: TLS12           # TLS10 | TLS11 | TLS12 | TLS13 (default TLS12)
      max_version: TLS13           # default: the highest this OpenSSL speaks
      client_auth_type: RequireAndVerifyClientCert   # or VerifyClientCertIfGiven,
      client_ca_file: clients-ca.crt                 # NoClientCert (the default)
    basic_auth_users:              # user -> bcrypt hash of the password
      alice: $2y$10$...

Keys the toolkit knows but Remediator does not implement (inline `cert`/`key`,
`client_ca`, `client_allowed_sans`, the client_auth_types that do not verify the
certificate they ask for, cipher and curve choices, `http_server_config`,
`rate_limit`) are refused by name, as are keys nobody knows: a file is never half
obeyed.

Checking a password with bcrypt costs 50-250 ms on purpose; a successful check is
remembered in memory under a SHA-256 of (user, hash, password), as the toolkit does,
so that a scraper or a console polling every few seconds does not pay it each time.
An unknown user is checked against a fixed hash all the same, so that the answer's
timing does not say which users exist (the toolkit does that too).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import bcrypt
import yaml

from receiver.config import ConfigError, Problem
from receiver.yamlsource import LineDict, load_yaml

#: bcrypt's modular crypt format: $2a$, $2b$ or $2y$, a cost of two digits, 53 characters
#: of salt and hash in bcrypt's base64 alphabet
BCRYPT_HASH = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
#: the costs bcrypt accepts (log2 of its rounds)
BCRYPT_COSTS = range(4, 32)
#: what an unknown user's password is checked against (a hash of a random password at
#: the toolkit's default cost), so that it takes as long as a known user's
DUMMY_HASH = b"$2b$10$QOauhQNbBCuQDKes6eFzPeZb8D/sbk1AVqyowuCZDWaedp1Dpqbka"
#: successful checks remembered at most; past it the memory starts again empty
CACHE_SIZE = 1024

TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
TOP_KEYS = ("tls_server_config", "basic_auth_users")
TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
)
#: the toolkit's client_auth_type values Python's ssl can honour, as verify modes
CLIENT_AUTH_TYPES: dict[str, ssl.VerifyMode] = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
#: the toolkit's values that ask for a certificate without verifying it: Python's ssl
#: verifies every certificate it asks for, so these are refused rather than tightened
UNVERIFIED_CLIENT_AUTH_TYPES = ("RequestClientCert", "RequireAnyClientCert")
#: keys of the toolkit's format this release does not implement: refused by name
UNSUPPORTED = {
    "": ("http_server_config", "rate_limit"),
    "tls_server_config": (
        "cert",
        "key",
        "client_ca",
        "client_allowed_sans",
        "cipher_suites",
        "prefer_server_cipher_suites",
        "curve_preferences",
    ),
}


@dataclass(frozen=True)
class TLSServerConfig:
    """`tls_server_config`: the certificate and key files (a relative path is taken
    from the web config file's directory, as the toolkit does), and the TLS versions
    allowed (TLS_VERSIONS names)."""

    cert_file: str
    key_file: str
    min_version: str = "TLS12"
    max_version: str | None = None
    client_auth_type: str = "NoClientCert"  # a CLIENT_AUTH_TYPES name
    client_ca_file: str | None = None  # PEM CA certificates client certificates chain to

    def context(self) -> ssl.SSLContext:
        """A server-side SSLContext with the certificate loaded (read now, from disk).
        Raises TLSFileError naming the keys whose files cannot be loaded (not PEM, a key
        that does not match its certificate)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[self.min_version]
        if self.max_version is not None:
            context.maximum_version = TLS_VERSIONS[self.max_version]
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except (ssl.SSLError, OSError) as exc:
            raise TLSFileError("cert_file/key_file", exc) from exc
        context.verify_mode = CLIENT_AUTH_TYPES[self.client_auth_type]
        if self.client_ca_file is not None:
            try:
                context.load_verify_locations(cafile=self.client_ca_file)
            except (ssl.SSLError, OSError) as exc:
                raise TLSFileError("client_ca_file", exc) from exc
        return context


class TLSFileError(ValueError):
    """A certificate, key or CA file that cannot be loaded; `keys` names its key(s)."""

    def __init__(self, keys: str, cause: Exception) -> None:
        self.keys = keys
        super().__init__(f"cannot load {keys}: {cause}")


@dataclass(frozen=True)
class WebConfig:
    """One reading of a web config file: `users` maps each user to its bcrypt hash
    (empty: no authentication), `tls` is None for plain HTTP, and `ssl_context` the
    context built from it (None without TLS)."""

    path: str  # absolute: a reload reads it from wherever the process runs
    users: Mapping[str, bytes] = field(default_factory=dict)
    tls: TLSServerConfig | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)


def load_web_config(path: str) -> WebConfig:
    """Read and check a web config file; raises ConfigError (source = path) listing
    every problem with its key and line: unreadable file, YAML syntax, unknown or
    unsupported keys, a malformed bcrypt hash, missing or unreadable certificate or
    key files, a key that does not match its certificate."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem("", f"cannot read the web config file: {exc}")], path) from exc
    try:
        document = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError([Problem("", f"invalid YAML: {exc}")], path) from exc
    problems: list[Problem] = []
    mapping = document if document is not None else LineDict()
    config = _parse(os.path.abspath(path), mapping, problems)
    if problems:
        raise ConfigError(problems, path)
    return config


def _parse(path: str, document: Any, problems: list[Problem]) -> WebConfig:
    if not isinstance(document, dict):
        problems.append(Problem("", "the web config file must be a mapping"))
        return WebConfig(path)
    _known_keys(document, "", TOP_KEYS, problems)
    users = _users(document.get("basic_auth_users"), _line(document, "basic_auth_users"), problems)
    tls = _tls(document.get("tls_server_config"), _line(document, "tls_server_config"), problems)
    if tls is not None:  # relative to the file's directory, as the toolkit resolves them
        folder = os.path.dirname(path)
        tls = replace(
            tls,
            cert_file=os.path.join(folder, tls.cert_file),
            key_file=os.path.join(folder, tls.key_file),
            client_ca_file=tls.client_ca_file and os.path.join(folder, tls.client_ca_file),
        )
        _readable(tls, document["tls_server_config"], problems)
    context = None
    if tls is not None and not problems:
        try:
            context = tls.context()
        except TLSFileError as exc:
            problems.append(
                Problem("tls_server_config", str(exc), _line(document, "tls_server_config"))
            )
    return WebConfig(path, users, tls, context)


def _readable(tls: TLSServerConfig, mapping: Any, problems: list[Problem]) -> None:
    """A problem naming each of cert_file and key_file that cannot be read (ssl's own
    error does not say which file it is)."""
    for key in ("cert_file", "key_file", "client_ca_file"):
        name = getattr(tls, key)
        if name is None:
            continue
        try:
            with open(name, "rb"):
                pass
        except OSError as exc:
            message = f"cannot read {name}: {exc.strerror or exc}"
            problems.append(Problem(f"tls_server_config.{key}", message, _line(mapping, key)))


def _line(mapping: Any, key: str) -> int | None:
    return getattr(mapping, "key_lines", {}).get(key)


def _known_keys(mapping: dict, where: str, known: tuple[str, ...], problems: list[Problem]) -> None:
    for key in mapping:
        path = f"{where}.{key}" if where else str(key)
        if key in UNSUPPORTED.get(where, ()):
            message = "a key of Prometheus's web config that remediator does not implement"
        elif key not in known:
            message = f"unknown key (known: {', '.join(known)})"
        else:
            continue
        problems.append(Problem(path, message, _line(mapping, key)))


def _users(value: Any, line: int | None, problems: list[Problem]) -> dict[str, bytes]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        message = "must be a mapping of user to bcrypt hash"
        problems.append(Problem("basic_auth_users", message, line))
        return {}
    users: dict[str, bytes] = {}
    for user, hashed in value.items():
        path, where = f"basic_auth_users.{user}", _line(value, user)
        if not isinstance(user, str) or not user or ":" in user:
            problems.append(Problem(path, "a user name is a non-empty string without ':'", where))
            continue
        match = BCRYPT_HASH.fullmatch(hashed) if isinstance(hashed, str) else None
        if match is None or int(match.group(1)) not in BCRYPT_COSTS:
            problems.append(Problem(path, "not a bcrypt hash ($2y$10$ then 53 characters)", where))
            continue
        users[user] = hashed.encode()
    return users


def _tls(value: Any, line: int | None, problems: list[Problem]) -> TLSServerConfig | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.append(Problem("tls_server_config", "must be a mapping", line))
        return None
    _known_keys(value, "tls_server_config", TLS_KEYS, problems)
    files = {}
    for key in ("cert_file", "key_file"):
        path = value.get(key)
        if not isinstance(path, str) or not path:
            problems.append(Problem(f"tls_server_config.{key}", "required: a file name", line))
        else:
            files[key] = path
    versions: dict[str, str | None] = {"min_version": "TLS12", "max_version": None}
    for key in versions:
        if key in value:
            if value[key] not in TLS_VERSIONS:
                message = f"must be one of {', '.join(TLS_VERSIONS)}"
                problems.append(Problem(f"tls_server_config.{key}", message, _line(value, key)))
            else:
                versions[key] = value[key]
    client = _client_auth(value, problems)
    if len(files) < 2 or client is None:
        return None
    return TLSServerConfig(files["cert_file"], files["key_file"], **versions, **client)  # type: ignore[arg-type]


def _client_auth(value: dict, problems: list[Problem]) -> dict[str, Any] | None:
    """client_auth_type and client_ca_file, checked as the toolkit checks them (a CA
    without a policy that verifies is refused); None after a problem."""
    kind = value.get("client_auth_type", "NoClientCert")
    ca_file = value.get("client_ca_file")
    where = "tls_server_config.client_auth_type"
    if kind in UNVERIFIED_CLIENT_AUTH_TYPES:
        message = (
            f"{kind} is not supported by remediator (it asks for a certificate without "
            "verifying it); use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
        )
        problems.append(Problem(where, message, _line(value, "client_auth_type")))
        return None
    if kind not in CLIENT_AUTH_TYPES:
        message = f"must be one of {', '.join(CLIENT_AUTH_TYPES)}"
        problems.append(Problem(where, message, _line(value, "client_auth_type")))
        return None
    if ca_file is not None and (not isinstance(ca_file, str) or not ca_file):
        where, message = "tls_server_config.client_ca_file", "must be a file name"
        problems.append(Problem(where, message, _line(value, "client_ca_file")))
        return None
    if kind == "NoClientCert" and ca_file is not None:
        message = "client_ca_file is set but client_auth_type NoClientCert verifies nothing"
        problems.append(Problem(where, message, _line(value, "client_ca_file")))
        return None
    if kind != "NoClientCert" and ca_file is None:
        message = f"{kind} needs client_ca_file: the CAs client certificates must chain to"
        problems.append(Problem(where, message, _line(value, "client_auth_type")))
        return None
    return {"client_auth_type": kind, "client_ca_file": ca_file}


class WebAuth:
    """The web config in force, swapped whole on reload, and the memory of successful
    password checks. Thread-safe: request threads call authorized(), the reload thread
    reload()."""

    def __init__(self, config: WebConfig) -> None:
        self.config = config
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()

    @property
    def guards(self) -> bool:
        """Whether people must authenticate (the file lists basic_auth_users)."""
        return bool(self.config.users)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The context new connections are wrapped with (None: plain HTTP)."""
        return self.config.ssl_context

    def load(self) -> WebConfig:
        """Read the file again without applying it (see apply). Raises ConfigError,
        also when TLS would be turned on or off: the listener is built at start."""
        new = load_web_config(self.config.path)
        if (new.tls is None) != (self.config.tls is None):
            problem = Problem("tls_server_config", "turning TLS on or off needs a restart")
            raise ConfigError([problem], self.config.path)
        return new

    def apply(self, new: WebConfig) -> None:
        """Put a reading from load() in force; remembered checks are forgotten."""
        with self._lock:
            self.config = new
            self._verified = set()

    def authorized(self, header: str) -> bool:
        """Whether an Authorization header carries a listed user and the password its
        bcrypt hash was made from (always true when no users are listed)."""
        users = self.config.users
        if not users:
            return True
        credentials = _basic_credentials(header)
        if credentials is None:
            return False
        user, password = credentials
        hashed = users.get(user)
        known = hashed is not None
        hashed = hashed if known else DUMMY_HASH
        key = hashlib.sha256(b"\0".join((user.encode(), hashed, password))).digest()
        with self._lock:
            if key in self._verified:
                return known
        if not _checkpw(password, hashed) or not known:
            return False
        with self._lock:
            if len(self._verified) >= CACHE_SIZE:
                self._verified = set()
            self._verified.add(key)
        return True


def _basic_credentials(header: str) -> tuple[str, bytes] | None:
    """(user, password) of a `Basic` Authorization header (RFC 7617), or None."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    if not colon:
        return None
    return user.decode("utf-8", "replace"), password


def _checkpw(password: bytes, hashed: bytes) -> bool:
    """bcrypt's check (a constant-time compare inside); False for a password bcrypt
    refuses (longer than its 72 bytes), as Go's bcrypt does."""
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:
        return False
