"""Command line: `remediator serve | check | explain | demo | db`, and `--version`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from receiver.config import Config, ConfigError, config_warnings, load_config, with_overrides
from receiver.explain import explain
from receiver.explain import gates as gates  # re-exported: callers of cli.gates
from receiver.links import parse_external_url
from receiver.matchers import MatcherError, parse_label_args
from receiver.version import build_info

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def _load(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        _report(path, exc)
        return None


def _report(path: str, exc: ConfigError) -> None:
    print(f"{path}: invalid configuration:", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)


def _load_web(path: str | None) -> tuple[bool, Any]:
    """(ok, WebAuth or None) for `--web.config.file`: its problems are printed as
    `check` prints the config's."""
    if path is None:
        return True, None
    from receiver.webconfig import WebAuth, load_web_config  # bcrypt only when asked

    try:
        return True, WebAuth(load_web_config(path))
    except ConfigError as exc:
        _report(path, exc)
        return False, None


def add_web_config_argument(parser: argparse.ArgumentParser) -> None:
    """--web.config.file FILE, in Prometheus's web configuration format (serve, check)."""
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        help="Prometheus-style web config: basic_auth_users (bcrypt) guard every endpoint "
        "but the webhook, tls_server_config serves HTTPS (default: none, plain HTTP)",
    )


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 when the config (and the web config, if given) is valid, 1 with every
    problem on stderr when not; either way, warnings (what a config does not do, see
    config_warnings) follow on stderr."""
    config = _load(args.config)
    web_ok, _ = _load_web(args.web_config_file)
    if config is None or not web_ok:
        return EXIT_INVALID
    from receiver.executors import require_usable_executors  # requests only when needed

    try:
        # What is safe anywhere: secret files, the optional client; never the network.
        require_usable_executors(config, full=False)
    except ConfigError as exc:
        _report(args.config, exc)
        _warn(args.config, config)
        return EXIT_INVALID
    print(
        f"{args.config}: OK ({len(config.strategies)} strategies, "
        f"{len(config.executors)} executors)"
    )
    for line in approval_lines(config):
        print(f"  {line}")
    _warn(args.config, config)
    return EXIT_OK


def approval_lines(config: Config) -> list[str]:
    """One line per strategy (or runbook step) that holds its actions for a person."""
    lines = []
    for strategy in config.strategies:
        if strategy.approval is not None and not strategy.steps:
            lines.append(f"{strategy.name}: approval required, {strategy.approval.describe()}")
        for index, step in enumerate(strategy.steps, start=1):
            if step.approval is not None:
                title = f"{strategy.name} step {index}" + (
                    f" ({step.step_name})" if step.step_name else ""
                )
                lines.append(f"{title}: approval required, {step.approval.describe()}")
    return lines


def _warn(path: str, config: Config) -> None:
    warnings = config_warnings(config)
    if warnings:
        print(f"{path}: {len(warnings)} warning(s):", file=sys.stderr)
    for warning in warnings:
        print(f"  warning: {warning}", file=sys.stderr)


def cmd_serve(args: argparse.Namespace) -> int:
    config = _load(args.config)
    web_ok, web = _load_web(args.web_config_file)
    if config is None or not web_ok:  # nothing started
        return EXIT_INVALID
    flags = (("store", args.store), ("listen", args.listen), ("external_url", args.external_url))
    overrides = {k: v for k, v in flags if v}
    from receiver.server import ServeOptions, serve  # gunicorn only when serving
    from receiver.store import StoreUnavailable
    from receiver.store.schema import SchemaError, redacted

    options = ServeOptions(
        os.path.abspath(args.config),
        with_overrides(config, overrides),
        overrides,
        args.log_format,
        web=web,
    )
    try:
        serve(options)
    except ConfigError as exc:  # an executor that cannot be built here: refused to start
        _report(args.config, exc)
        return EXIT_INVALID
    except (SchemaError, StoreUnavailable) as exc:  # e.g. a journal newer than this release
        journal = redacted(options.config.store)
        print(f"error: cannot open the journal {journal}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    """Print what a firing alert with these labels would get (receiver/explain.py)."""
    config = _load(args.config)
    if config is None:
        return EXIT_INVALID
    try:
        labels = parse_label_args(args.labels)
    except MatcherError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    annotations = dict(parse_label_args(args.annotation or []))
    found = explain(config, labels, annotations, datetime.now(UTC))
    if args.json:
        print(json.dumps(found.as_json(), indent=2))
    else:
        print(found.text())
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from receiver.demo import run_demo, went_as_told

    results = run_demo(keep_running=args.keep_running)
    return EXIT_OK if went_as_told(results) else EXIT_INVALID


def _command(
    commands: Any, name: str, summary: str, description: str, examples: str
) -> argparse.ArgumentParser:
    """A subcommand whose `--help` says what it does, every flag and an example."""
    return commands.add_parser(
        name,
        help=summary,
        # pre-wrapped: the raw formatter keeps the examples' lines, and would not wrap
        description=textwrap.fill(description, 88),
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    """The `remediator` command line: one subcommand per task, each with its help."""
    parser = argparse.ArgumentParser(
        prog="remediator",
        description="Turn Prometheus Alertmanager alerts into safe, audited remediation.",
        epilog="Run `remediator COMMAND --help` for a command's flags and an example.",
    )
    parser.add_argument("--version", action="version", version=str(build_info()))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _serve_parser(commands)
    _check_parser(commands)
    _explain_parser(commands)
    _demo_parser(commands)
    from receiver.dbcli import add_db_parser  # it builds on this module's helpers

    add_db_parser(commands)
    return parser


def _serve_parser(commands: Any) -> None:
    serve = _command(
        commands,
        "serve",
        "run the receiver: the webhook, the API, /metrics and the dispatcher",
        "Validate the config, check the journal answers, then serve Alertmanager's webhook "
        "(POST /webhook), the read API (/api/v1/...), /metrics, /-/healthy, /-/ready and "
        "/-/reload under gunicorn, and carry out the planned actions. SIGHUP or POST "
        "/-/reload re-reads the config without interrupting actions in flight.",
        "  remediator serve --config examples/remediation.yml\n"
        "  remediator serve --config remediation.yml --listen 127.0.0.1:9095 \\\n"
        "      --store postgresql://remediator@db/remediator --log-format json\n"
        "  remediator serve --config remediation.yml --web.config.file web.yml\n",
    )
    serve.add_argument("--config", required=True, help="remediation YAML file")
    serve.add_argument(
        "--listen", help="HOST:PORT to serve on (default: server.listen, else 0.0.0.0:9095)"
    )
    add_store_argument(serve)
    add_web_config_argument(serve)
    serve.add_argument(
        "--web.external-url",
        dest="external_url",
        metavar="URL",
        type=_external_url_argument,
        help="the URL people reach Remediator at, for links such as the approval alert's "
        "(default: server.external_url, else http://<hostname>:<listen port>)",
    )
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines as text or as one JSON object each (default: text)",
    )
    serve.set_defaults(func=cmd_serve)


def _external_url_argument(value: str) -> str:
    """--web.external-url: validated as server.external_url is (links.py)."""
    try:
        return parse_external_url(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_store_argument(parser: argparse.ArgumentParser) -> None:
    """--store URL, which wins over the config's `store` (serve, db)."""
    parser.add_argument(
        "--store",
        help="journal URL, sqlite:///PATH or postgresql://... (default: the config's store)",
    )


def _check_parser(commands: Any) -> None:
    check = _command(
        commands,
        "check",
        "validate a config file and exit (0 valid, 1 invalid)",
        "Load the config as `serve` would and list every problem found, with its key and "
        "line, without starting anything or reaching the network. Exits 0 when the config "
        "is valid, 1 when it is not.",
        "  remediator check --config examples/remediation.yml\n",
    )
    check.add_argument("--config", required=True, help="remediation YAML file")
    add_web_config_argument(check)
    check.set_defaults(func=cmd_check)


def _explain_parser(commands: Any) -> None:
    explain = _command(
        commands,
        "explain",
        "show what an alert with these labels would get, without acting",
        "Match an imaginary firing alert with these labels against the config: which "
        "strategies match, the rendered target and parameters, and every gate the action "
        "would pass through (dry-run, lock, cooldown, budget, concurrency, breaker, "
        "preconditions, verification). Nothing is journaled or executed.",
        "  remediator explain --config examples/remediation.yml \\\n"
        "      alertname=ServiceDown service=checkout severity=page\n"
        "  remediator explain --config examples/remediation.yml --json \\\n"
        "      --annotation summary='checkout is down' alertname=ServiceDown service=checkout\n",
    )
    explain.add_argument("--config", required=True, help="remediation YAML file")
    explain.add_argument(
        "--annotation",
        action="append",
        metavar="NAME=VALUE",
        help="an annotation of the alert, for templates that use one (repeatable)",
    )
    explain.add_argument("--json", action="store_true", help="machine-readable output")
    explain.add_argument("labels", nargs="+", metavar="LABEL=VALUE", help="the alert's labels")
    explain.set_defaults(func=cmd_explain)


def _demo_parser(commands: Any) -> None:
    demo = _command(
        commands,
        "demo",
        "run the closed loop on this machine: alert, action, verification",
        "Start demo services (under supervisord), Prometheus, Alertmanager and this receiver "
        "on free loopback ports, inject faults one after another, and narrate each: fault, "
        "alert, action, verification, resolution; then a summary table. Needs the "
        "repository (examples/, rules/, alertmanager/). Exits 0 when every fault got its "
        "action. Everything stops at the end or on Ctrl-C, unless --keep-running is given.",
        "  remediator demo\n  remediator demo --keep-running\n",
    )
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the stack up after the demo, to look at its URLs; Ctrl-C stops it",
    )
    demo.set_defaults(func=cmd_demo)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        # the reader went away (`remediator explain ... | head`): what it read was whole
        # lines; say nothing more, and keep Python from complaining at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
