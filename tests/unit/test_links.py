"""The external URL people reach Remediator at (receiver/links.py) and the config key
and command-line flag that set it (server.external_url, --web.external-url)."""

from __future__ import annotations

import socket

import pytest

from receiver import links
from receiver.cli import build_parser
from receiver.config import ConfigError, parse_config, with_overrides
from receiver.writer.process import parse_options


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://remediator:9095", "http://remediator:9095"),
        ("https://ops.example.com/remediator/", "https://ops.example.com/remediator"),
        ("https://ops.example.com/", "https://ops.example.com"),
        ("http://[::1]:9095", "http://[::1]:9095"),
        ("  http://10.0.0.7:80  ", "http://10.0.0.7:80"),
    ],
)
def test_a_valid_external_url_is_kept_without_its_trailing_slash(given, expected):
    assert links.parse_external_url(given) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("", "empty"),
        ("remediator:9095", "http:// or https://"),
        ("ftp://remediator", "http:// or https://"),
        ("http://", "expected a host"),
        ("http://:9095/x", "expected a host"),
        ("http://remediator:99999", "not a valid URL"),
        ("http://remediator:port", "not a valid URL"),
        ("https://ops.example.com/?a=1", "must not carry a query"),
        ("https://ops.example.com/?", "must not carry a query"),
        ("https://ops.example.com/#top", "must not carry a fragment"),
        ("https://ops.example.com#", "must not carry a fragment"),
        ("https://alice:pw@ops.example.com", "must not carry user:password"),
        ("https://ops.example.com/a b", "without spaces"),
    ],
)
def test_an_invalid_external_url_is_refused_saying_why(given, message):
    with pytest.raises(ValueError, match=message):
        links.parse_external_url(given)


@pytest.mark.parametrize(
    ("listen", "port"), [("0.0.0.0:9095", "9095"), ("[::]:8080", "8080"), ("127.0.0.1:1", "1")]
)
def test_the_default_is_the_host_name_and_the_listen_port_as_prometheus_derives_it(listen, port):
    assert links.default_external_url(listen, "box.example") == f"http://box.example:{port}"
    assert links.external_url(None, listen, "box.example") == f"http://box.example:{port}"
    assert links.external_url("https://set", listen, "box.example") == "https://set"


def test_console_url_appends_a_path_to_the_external_url():
    assert links.console_url("https://ops.example.com/rem", "/actions/7") == (
        "https://ops.example.com/rem/actions/7"
    )


def test_server_external_url_is_read_and_validated_from_the_config():
    config = parse_config("server:\n  external_url: https://ops.example.com/remediator/\n")
    assert config.server.external_url == "https://ops.example.com/remediator"
    assert config.server.public_url == "https://ops.example.com/remediator"


def test_without_server_external_url_links_use_this_host_and_the_listen_port():
    config = parse_config("server:\n  listen: 127.0.0.1:9123\n")
    assert config.server.external_url is None
    assert config.server.public_url == f"http://{socket.gethostname()}:9123"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("https://ops.example.com/?x=1", "must not carry a query"),
        ("ops.example.com", "http:// or https://"),
        ("8080", "expected a string, got int"),
    ],
)
def test_a_bad_server_external_url_is_a_config_error_naming_the_key(value, message):
    with pytest.raises(ConfigError) as caught:
        parse_config(f"server:\n  listen: 127.0.0.1:9095\n  external_url: {value}\n")
    (problem,) = caught.value.problems
    assert (problem.path, problem.line) == ("server.external_url", 3)
    assert message in problem.message


def test_the_command_line_external_url_wins_over_the_config_and_follows_listen_otherwise():
    config = parse_config("server:\n  external_url: http://from-file:1\n")
    flag = with_overrides(config, {"external_url": "https://from-flag"})
    assert flag.server.public_url == "https://from-flag"
    derived = with_overrides(parse_config(""), {"listen": "127.0.0.1:9444"})
    assert derived.server.public_url == f"http://{socket.gethostname()}:9444"


def test_serve_takes_web_external_url_validated_as_the_config_key(capsys):
    args = build_parser().parse_args(
        ["serve", "--config", "x.yml", "--web.external-url", "https://ops.example.com/r/"]
    )
    assert args.external_url == "https://ops.example.com/r"
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(
            ["serve", "--config", "x.yml", "--web.external-url", "https://x/#frag"]
        )
    assert exited.value.code == 2
    assert "--web.external-url" in capsys.readouterr().err


def test_the_journal_writer_gets_the_overrides_its_dispatcher_builds_links_with():
    """The dispatch process (forked by the journal writer) builds the awaiting alert, so
    --listen and --web.external-url reach it as they reach the worker."""
    argv = ["--socket", "s", "--config", "c.yml", "--listen", "127.0.0.1:9444"]
    options = parse_options([*argv, "--web.external-url", "https://ops.example.com"])
    assert options.overrides == {
        "listen": "127.0.0.1:9444",
        "external_url": "https://ops.example.com",
    }
    assert parse_options(argv[:4]).overrides == {}
