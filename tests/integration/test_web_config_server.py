"""`remediator serve --web.config.file` for real (gunicorn, SQLite, `openssl` made
certificates): every endpoint but the webhook wants a user of the web config, the
webhook keeps its own token, HTTPS with a self-signed certificate, reloads."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from receiver.app import AppState, create_app
from receiver.config import load_config
from receiver.store import open_store
from tests.support.payloads import alert, notification
from tests.support.processes import free_port, remediator_argv, run_cli, stop
from tests.support.receiver import CONFIG, TOKEN, write_config
from tests.support.webconfig import bcrypt_hash, self_signed, signed_client, web_config

USERS = {"alice": "wonderland", "bob": "builder"}
ALICE = ("alice", "wonderland")
#: placeholder values for the url_map's converters: a breaker that exists nowhere, ids
SAMPLES = {"key": "restart-web/checkout", "incident_id": "1", "id": "1"}


@dataclass
class Guarded:
    process: subprocess.Popen
    url: str
    verify: str | bool
    log: Path


@contextmanager
def serve(
    workdir: Path, web: Path, scheme: str = "https", verify: str | bool = True, text: str = CONFIG
) -> Iterator[Guarded]:
    """`remediator serve --web.config.file web` with the config `text`, ready once
    /-/ready answers alice."""
    port = free_port()
    config = write_config(workdir, text)
    store = f"sqlite:///{workdir / 'journal.db'}"
    argv = remediator_argv(config, f"127.0.0.1:{port}", store, "--web.config.file", str(web))
    log = workdir / f"remediator-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    server = Guarded(process, f"{scheme}://127.0.0.1:{port}", verify, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                answer = requests.get(f"{server.url}/-/ready", auth=ALICE, verify=verify, timeout=2)
                if answer.status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield server
    finally:
        stop(process)


def routes(workdir: Path) -> list[tuple[str, str]]:
    """(method, path) of every route the Flask app serves, from its url_map, with
    sample values for the variable parts: a route added later is covered too."""
    config = write_config(workdir)
    store = open_store(f"sqlite:///{workdir / 'routes.db'}")
    try:
        app = create_app(AppState(config=load_config(str(config)), store=store))
    finally:
        store.close()
    found = []
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: SAMPLES.get(m.group(1), "x"), rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((method, path))
    assert ("GET", "/metrics") in found and ("POST", "/-/reload") in found
    return found


def call(server: Guarded, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, server.url + path, verify=server.verify, timeout=30, **kwargs)


def post_alert(server: Guarded, **kwargs) -> requests.Response:
    body = notification(alert(service="checkout", starts_at="2026-01-01T00:00:00Z"))
    return call(server, "POST", "/webhook", json=body, **kwargs)


@pytest.fixture(scope="module")
def tls_workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("webconfig-tls")


@pytest.fixture(scope="module")
def tls_server(tls_workdir) -> Iterator[Guarded]:
    cert, key = self_signed(tls_workdir)
    web = tls_workdir / "web.yml"
    # relative paths: taken from the web config file's directory, as Prometheus does
    web.write_text(web_config(USERS, Path(cert.name), Path(key.name)))
    with serve(tls_workdir, web, verify=str(cert)) as server:
        yield server


# ---------------------------------------------------------------- who gets in


def test_every_route_refuses_missing_and_wrong_credentials(tls_server, tls_workdir):
    wrong = [None, ("alice", "builder"), ("carol", "wonderland")]
    for method, path in routes(tls_workdir):
        for auth in wrong:
            answer = call(tls_server, method, path, auth=auth)
            assert answer.status_code == 401, (method, path, auth, answer.text)
            assert answer.headers["WWW-Authenticate"] == 'Basic realm="remediator"'
            assert answer.json() == {"status": "error", "error": "missing or invalid credentials"}
        bearer = call(tls_server, method, path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert bearer.status_code == 401, (method, path)  # the webhook's token is not a user


def test_every_route_lets_a_user_in(tls_server, tls_workdir):
    statuses = {}
    for method, path in routes(tls_workdir):
        answer = call(tls_server, method, path, auth=ALICE)
        statuses[(method, path)] = answer.status_code
    assert all(status != 401 for status in statuses.values()), statuses
    for endpoint in ("/metrics", "/-/healthy", "/-/ready", "/api/v1/incidents", "/api/v1/status"):
        assert statuses[("GET", endpoint)] == 200, endpoint
    assert statuses[("POST", "/-/reload")] == 200  # web users, not the webhook's token
    assert statuses[("POST", "/api/v1/breakers/restart-web/checkout/reset")] == 404  # none yet
    assert call(tls_server, "GET", "/no/such/page").status_code == 401  # like Prometheus


def test_the_webhook_keeps_its_own_token(tls_server):
    assert post_alert(tls_server, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert post_alert(tls_server, auth=ALICE).status_code == 401  # a user is not the token
    assert post_alert(tls_server).status_code == 401
    incidents = call(tls_server, "GET", "/api/v1/incidents", auth=("bob", "builder")).json()
    assert [i["service"] for i in incidents["data"]] == ["checkout"]


def test_a_browser_post_from_another_site_is_refused(tls_server):
    """A browser sends alice's Basic credentials with a form another site posts: the
    browser's Sec-Fetch-Site and Origin headers get it refused (403), changing nothing."""
    loaded = call(tls_server, "GET", "/api/v1/status", auth=ALICE).json()["config_loaded_at"]
    host = tls_server.url.split("://", 1)[1]
    for headers in (
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
    ):
        for path in ("/-/reload", "/api/v1/breakers/restart-web/checkout/reset"):
            answer = call(tls_server, "POST", path, auth=ALICE, headers=headers, data="x=1")
            assert answer.status_code == 403, (path, headers, answer.text)
            assert answer.json()["error"].startswith("cross-origin request refused")
    status = call(tls_server, "GET", "/api/v1/status", auth=ALICE).json()
    assert status["config_loaded_at"] == loaded  # no reload happened
    # the same requests from the console's own origin, or GETs from anywhere, pass
    assert (
        call(
            tls_server,
            "GET",
            "/api/v1/status",
            auth=ALICE,
            headers={"Sec-Fetch-Site": "cross-site"},
        ).status_code
        == 200
    )
    for headers in ({"Sec-Fetch-Site": "same-origin"}, {"Origin": f"https://{host}"}):
        answer = call(tls_server, "POST", "/-/reload", auth=ALICE, headers=headers)
        assert answer.status_code == 200, answer.text


# ---------------------------------------------------------------- TLS


def test_tls_with_the_self_signed_certificate_and_no_plain_http(tls_server):
    assert call(tls_server, "GET", "/-/healthy", auth=ALICE).text == "Remediator is Healthy.\n"
    plain = tls_server.url.replace("https://", "http://")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{plain}/-/healthy", auth=ALICE, timeout=10)
    with pytest.raises(requests.exceptions.SSLError):  # not signed by anyone trusted
        requests.get(f"{tls_server.url}/-/healthy", auth=ALICE, timeout=10)
    # keep-alive over TLS: several requests on one connection
    with requests.Session() as session:
        for _ in range(3):
            answer = session.get(
                f"{tls_server.url}/-/healthy", auth=ALICE, verify=tls_server.verify
            )
            assert answer.status_code == 200


def test_a_large_body_over_tls_arrives_whole(tls_server):
    alerts = [alert(service=f"svc-{n:04d}", starts_at="2026-02-01T00:00:00Z") for n in range(150)]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    answer = call(tls_server, "POST", "/webhook", json=notification(*alerts), headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["new_incidents"] == 150


def test_handshakes_that_never_come_hold_no_thread_and_are_closed(tmp_path):
    """Handshakes run on the event loop: more silent clients than threads, one sending
    half a ClientHello, do not keep a user out; read_timeout after accept they are
    closed."""
    cert, key = self_signed(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text(web_config(USERS, cert, key))
    text = CONFIG.replace("server:\n", "server:\n  threads: 2\n").replace(
        "limits:\n", "limits:\n  read_timeout: 2s\n"
    )
    assert "threads: 2" in text and "read_timeout: 2s" in text
    with serve(tmp_path, web, verify=str(cert), text=text) as server:
        port = int(server.url.rsplit(":", 1)[1])
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(6)]
        silent[0].sendall(bytes.fromhex("16030100c8010000c40303"))  # a ClientHello's start
        try:
            answer = call(server, "GET", "/-/healthy", auth=ALICE)
            assert answer.status_code == 200
            for sock in silent:
                sock.settimeout(30)
                assert sock.recv(1024) == b""  # closed by the server, nothing answered
        finally:
            for sock in silent:
                sock.close()


@pytest.mark.parametrize("kind", ["RequireAndVerifyClientCert", "VerifyClientCertIfGiven"])
def test_client_certificates_verified(tmp_path, kind):
    cert, key = self_signed(tmp_path)
    ca_cert, ca_key = self_signed(tmp_path, "clients-ca")
    client = signed_client(tmp_path, ca_cert, ca_key)
    stranger_ca = self_signed(tmp_path, "stranger-ca")
    stranger = signed_client(tmp_path, *stranger_ca, name="stranger")
    web = tmp_path / "web.yml"
    web.write_text(web_config(USERS, cert, key, (kind, ca_cert)))
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    config = write_config(tmp_path)
    argv = remediator_argv(config, f"127.0.0.1:{port}", f"sqlite:///{tmp_path / 'j.db'}")
    log = tmp_path / "remediator.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*argv, "--web.config.file", str(web)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                ready = requests.get(
                    f"{url}/-/ready", auth=ALICE, verify=str(cert), cert=client, timeout=2
                )
                if ready.status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        with pytest.raises(requests.ConnectionError):  # a certificate of another CA
            requests.get(f"{url}/-/ready", auth=ALICE, verify=str(cert), cert=stranger, timeout=10)
        if kind == "RequireAndVerifyClientCert":
            with pytest.raises(requests.ConnectionError):  # no certificate
                requests.get(f"{url}/-/ready", auth=ALICE, verify=str(cert), timeout=10)
        else:
            answer = requests.get(f"{url}/-/ready", auth=ALICE, verify=str(cert), timeout=10)
            assert answer.status_code == 200
        # the certificate is not a user: basic_auth_users still apply on top
        answer = requests.get(f"{url}/-/ready", verify=str(cert), cert=client, timeout=10)
        assert answer.status_code == 401
    finally:
        stop(process)


# ---------------------------------------------------------------- reload


def test_reload_puts_new_users_and_certificate_in_force(tmp_path):
    old_cert, old_key = self_signed(tmp_path, "old")
    web = tmp_path / "web.yml"
    web.write_text(web_config(USERS, old_cert, old_key))
    with serve(tmp_path, web, verify=str(old_cert)) as server:
        new_cert, new_key = self_signed(tmp_path, "new")
        web.write_text(web_config({"carol": "cheshire"}, new_cert, new_key))
        assert call(server, "POST", "/-/reload", auth=ALICE).status_code == 200
        server.verify = str(new_cert)  # new connections get the new certificate
        assert call(server, "GET", "/-/ready", auth=("carol", "cheshire")).status_code == 200
        assert call(server, "GET", "/-/ready", auth=ALICE).status_code == 401
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{server.url}/-/ready", verify=str(old_cert), timeout=10)
        # SIGHUP as well: back to alice
        web.write_text(web_config(USERS, new_cert, new_key))
        os.kill(server.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30
        while call(server, "GET", "/-/ready", auth=ALICE).status_code != 200:
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.2)


def test_a_bad_web_config_at_reload_is_refused_and_the_old_one_kept(tmp_path):
    web = tmp_path / "web.yml"
    web.write_text(web_config(USERS))
    with serve(tmp_path, web, scheme="http") as server:
        web.write_text("basic_auth_users:\n  alice: wonderland\n")  # not a hash
        refused = call(server, "POST", "/-/reload", auth=ALICE)
        assert refused.status_code == 400
        assert "basic_auth_users.alice (line 2): not a bcrypt hash" in refused.json()["problems"]
        cert, key = self_signed(tmp_path)
        web.write_text(web_config(USERS, cert, key))  # TLS on: needs a restart
        refused = call(server, "POST", "/-/reload", auth=ALICE)
        assert refused.status_code == 400
        assert "turning TLS on or off needs a restart" in refused.json()["problems"]
        assert call(server, "GET", "/-/ready", auth=ALICE).status_code == 200
        assert call(server, "GET", "/-/ready").status_code == 401


# ---------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "basic_auth_users:\n  alice: '$2y$10$nothash'\n",
            "basic_auth_users.alice (line 2): not a bcrypt hash",
        ),
        (
            f"basic_auth_users:\n  alice: '{bcrypt_hash('x')}'\nbasic_auth: {{}}\n",
            "basic_auth (line 3): unknown key",
        ),
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n",
            "tls_server_config.cert_file (line 2): cannot read",
        ),
    ],
)
def test_a_bad_web_config_is_reported_and_the_server_does_not_start(tmp_path, text, expected):
    web = tmp_path / "web.yml"
    web.write_text(text)
    config = write_config(tmp_path)
    checked = run_cli("check", "--config", str(config), "--web.config.file", str(web))
    assert checked.returncode == 1
    assert f"{web}: invalid configuration:" in checked.stderr
    assert expected in checked.stderr
    port = free_port()
    argv = remediator_argv(config, f"127.0.0.1:{port}", f"sqlite:///{tmp_path / 'j.db'}")
    served = subprocess.run(
        [*argv, "--web.config.file", str(web)], capture_output=True, text=True, timeout=60
    )
    assert served.returncode == 1
    assert expected in served.stderr
    assert not (tmp_path / "j.db").exists()  # nothing started, no journal made


def test_check_accepts_a_good_web_config(tmp_path):
    cert, key = self_signed(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text(web_config(USERS, cert, key))
    config = write_config(tmp_path)
    checked = run_cli("check", "--config", str(config), "--web.config.file", str(web))
    assert checked.returncode == 0, checked.stderr


def test_a_key_that_does_not_match_its_certificate_is_refused(tmp_path):
    cert, _ = self_signed(tmp_path, "one")
    _, other_key = self_signed(tmp_path, "two")
    web = tmp_path / "web.yml"
    web.write_text(web_config(USERS, cert, other_key))
    config = write_config(tmp_path)
    checked = run_cli("check", "--config", str(config), "--web.config.file", str(web))
    assert checked.returncode == 1
    assert "tls_server_config (line 1): cannot load cert_file/key_file:" in checked.stderr
    assert "KEY_VALUES_MISMATCH" in checked.stderr
