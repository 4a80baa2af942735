"""`--web.config.file` read and checked, and Basic credentials judged (receiver/webconfig.py)."""

from __future__ import annotations

import base64

import pytest

from receiver.config import ConfigError
from receiver.webconfig import WebAuth, load_web_config
from tests.support.webconfig import bcrypt_hash, web_config

#: the example of the toolkit's docs/web-config.yml: alice's hash, of a password unknown
TOOLKIT_HASH = "$2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def problems_of(tmp_path, text: str) -> list[str]:
    path = tmp_path / "web.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_web_config(str(path))
    assert caught.value.source == str(path)
    return [str(p) for p in caught.value.problems]


@pytest.fixture
def auth(tmp_path) -> WebAuth:
    path = tmp_path / "web.yml"
    path.write_text(web_config({"alice": "wonderland", "bob": "builder"}))
    return WebAuth(load_web_config(str(path)))


# ---------------------------------------------------------------- reading


def test_users_with_toolkit_hashes_are_read(tmp_path):
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  alice: {TOOLKIT_HASH}\n")
    config = load_web_config(str(path))
    assert dict(config.users) == {"alice": TOOLKIT_HASH.encode()}
    assert config.tls is None and config.ssl_context is None


def test_an_empty_file_guards_nothing(tmp_path):
    path = tmp_path / "web.yml"
    path.write_text("")
    auth = WebAuth(load_web_config(str(path)))
    assert not auth.guards
    assert auth.authorized("")


def test_unknown_keys_are_refused_with_key_and_line(tmp_path):
    found = problems_of(tmp_path, "basic_auth_user:\n  alice: x\n")
    assert found == [
        "basic_auth_user (line 1): unknown key (known: tls_server_config, basic_auth_users)"
    ]


def test_keys_of_the_toolkit_not_implemented_are_refused_by_name(tmp_path):
    text = (
        "http_server_config: {http2: false}\n"
        "tls_server_config:\n"
        "  cert_file: a.crt\n"
        "  key_file: a.key\n"
        "  client_ca: inline-pem\n"
    )
    found = problems_of(tmp_path, text)
    assert (
        "http_server_config (line 1): a key of Prometheus's web config that remediator "
        "does not implement" in found
    )
    assert (
        "tls_server_config.client_ca (line 5): a key of Prometheus's web config "
        "that remediator does not implement" in found
    )


@pytest.mark.parametrize(
    "hashed",
    [
        "wonderland",  # a password written where its hash belongs
        "$2y$10$tooshort",
        "$1$abcdefgh$0123456789012345678901",  # MD5 crypt, not bcrypt
        "$2y$99$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze",  # cost past 31
    ],
)
def test_a_bad_bcrypt_hash_is_refused(tmp_path, hashed):
    found = problems_of(tmp_path, f"basic_auth_users:\n  alice: '{hashed}'\n")
    assert found == [
        "basic_auth_users.alice (line 2): not a bcrypt hash ($2y$10$ then 53 characters)"
    ]


def test_missing_cert_and_key_files_are_named(tmp_path):
    text = "tls_server_config:\n  cert_file: nowhere.crt\n  key_file: /nonexistent/x.key\n"
    found = problems_of(tmp_path, text)
    assert found == [
        f"tls_server_config.cert_file (line 2): cannot read {tmp_path / 'nowhere.crt'}: "
        "No such file or directory",
        "tls_server_config.key_file (line 3): cannot read /nonexistent/x.key: "
        "No such file or directory",
    ]


def test_tls_without_key_file_and_a_bad_version_are_refused(tmp_path):
    text = "tls_server_config:\n  cert_file: a.crt\n  min_version: TLS14\n"
    found = problems_of(tmp_path, text)
    assert "tls_server_config.key_file (line 1): required: a file name" in found
    assert (
        "tls_server_config.min_version (line 3): must be one of TLS10, TLS11, TLS12, TLS13" in found
    )


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        (
            "  client_auth_type: RequireAnyClientCert\n  client_ca_file: ca.crt\n",
            "tls_server_config.client_auth_type (line 4): RequireAnyClientCert is not supported "
            "by remediator (it asks for a certificate without verifying it); use "
            "VerifyClientCertIfGiven or RequireAndVerifyClientCert",
        ),
        (
            "  client_auth_type: RequireAndVerifyClientCert\n",
            "tls_server_config.client_auth_type (line 4): RequireAndVerifyClientCert needs "
            "client_ca_file: the CAs client certificates must chain to",
        ),
        (
            "  client_ca_file: ca.crt\n",
            "tls_server_config.client_auth_type (line 4): client_ca_file is set but "
            "client_auth_type NoClientCert verifies nothing",
        ),
        (
            "  client_auth_type: VerifyAll\n",
            "tls_server_config.client_auth_type (line 4): must be one of NoClientCert, "
            "VerifyClientCertIfGiven, RequireAndVerifyClientCert",
        ),
    ],
)
def test_client_certificate_settings_are_checked(tmp_path, client, expected):
    text = "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n" + client
    assert problems_of(tmp_path, text) == [expected]


def test_yaml_syntax_and_unreadable_file_are_reported(tmp_path):
    assert problems_of(tmp_path, "basic_auth_users: [\n")[0].startswith("<top>: invalid YAML")
    with pytest.raises(ConfigError, match="cannot read the web config file"):
        load_web_config(str(tmp_path / "absent.yml"))


# ---------------------------------------------------------------- credentials


def test_right_credentials_pass_and_wrong_ones_do_not(auth):
    assert auth.guards
    assert auth.authorized(basic("alice", "wonderland"))
    assert auth.authorized(basic("bob", "builder"))
    assert not auth.authorized(basic("alice", "builder"))  # bob's password
    assert not auth.authorized(basic("carol", "wonderland"))  # not a user
    assert not auth.authorized("")
    assert not auth.authorized("Bearer wonderland")
    assert not auth.authorized("Basic not-base64!")
    assert not auth.authorized("Basic " + base64.b64encode(b"alice").decode())  # no colon


def test_a_password_longer_than_bcrypt_takes_is_refused_not_an_error(auth):
    assert not auth.authorized(basic("alice", "x" * 100))


def test_successful_checks_are_remembered_failed_ones_not(auth):
    assert auth.authorized(basic("alice", "wonderland"))
    assert not auth.authorized(basic("alice", "wrong"))
    assert not auth.authorized(basic("carol", "wonderland"))
    assert len(auth._verified) == 1
    assert auth.authorized(basic("alice", "wonderland"))  # from memory
    assert len(auth._verified) == 1


def test_a_reload_puts_new_users_in_force_and_forgets_remembered_checks(auth):
    assert auth.authorized(basic("alice", "wonderland"))
    path = auth.config.path
    with open(path, "w") as handle:
        handle.write(f"basic_auth_users:\n  alice: '{bcrypt_hash('new-password')}'\n")
    auth.apply(auth.load())
    assert not auth._verified
    assert not auth.authorized(basic("alice", "wonderland"))
    assert not auth.authorized(basic("bob", "builder"))
    assert auth.authorized(basic("alice", "new-password"))


def test_a_bad_file_at_reload_is_refused_and_nothing_changes(auth):
    before = auth.config
    with open(auth.config.path, "w") as handle:
        handle.write("basic_auth_users:\n  alice: plain-text\n")
    with pytest.raises(ConfigError, match="not a bcrypt hash"):
        auth.load()
    assert auth.config is before
    assert auth.authorized(basic("alice", "wonderland"))
