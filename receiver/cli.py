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

from receiver import fleets
from receiver.alerts import Alert, fingerprint_of
from receiver.config import (
    Config,
    ConfigError,
    FleetConfig,
    Strategy,
    config_warnings,
    load_config,
    with_overrides,
)
from receiver.durations import format_duration
from receiver.links import parse_external_url
from receiver.matchers import MatcherError, parse_label_args
from receiver.plans import Plan, plan_for, render_plan
from receiver.templates import RenderError, Template, UnsafeValueError
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
    config = _load(args.config)
    if config is None:
        return EXIT_INVALID
    try:
        labels = parse_label_args(args.labels)
    except MatcherError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    alert = Alert(
        status="firing",
        labels=labels,
        annotations=dict(parse_label_args(args.annotation or [])),
        starts_at=datetime.now(UTC),
        ends_at=None,
        fingerprint=fingerprint_of(labels),
    )
    plans = plan_for(config, alert)
    context = alert.template_context()
    if args.json:
        print(json.dumps([_plan_json(config, p, context) for p in plans], indent=2))
    else:
        print(_explain_text(config, labels, plans, context))
    return EXIT_OK


def _explain_text(
    config: Config, labels: dict[str, str], plans: list[Plan], context: dict[str, Any]
) -> str:
    """What `explain` prints: per matching strategy, its action (or each runbook step)
    rendered for the alert, with the gates that apply. `context` is the alert's template
    context (later steps are rendered from it, as runs.py renders them from the incident)."""
    shown = " ".join(f"{k}={v!r}" for k, v in labels.items())
    lines = [f"alert: {shown}", f"service: {config.service_of(labels) or '(none)'}"]
    if not plans:
        lines.append("no strategy matches: the alert would be journaled as unmatched, no action")
        return "\n".join(lines)
    for number, plan in enumerate(plans, 1):
        strategy = _runbook_of(config, plan)
        lines += [
            "",
            f"match {number}: strategy {strategy.name!r}",
            "  matchers: " + (", ".join(map(str, strategy.matchers)) or "(none: every alert)"),
        ]
        if not strategy.steps:
            lines += _action_lines(config, plan, "  ")
            lines.append(f"  failed:   one escalation via {_escalation_text(config)}")
        else:
            lines.append(
                f"  runbook:  {len(strategy.steps)} steps; a failed step is followed by the "
                "next while the alert fires, a success ends the run (cooldown does not "
                "apply between the steps of one incident: `wait` paces them)"
            )
            for index, step_plan in enumerate(_step_plans(strategy, plan, context), 1):
                lines.append(f"  step {_step_title(strategy, index)}:")
                lines += _action_lines(config, step_plan, "    ", step=index)
            lines.append(
                "  uncured (every step failed, or a step ended by budget or breaker_open): "
                f"one escalation via {_escalation_text(config)}"
            )
        lines += _fleet_lines(config, strategy, plan, context)
        lines.append(_repeat_line(strategy))
        if strategy.continue_matching:
            lines.append("  continue: true, later strategies are tried too")
    return "\n".join(lines)


def _escalation_text(config: Config) -> str:
    name = config.defaults.escalation_executor
    if name:
        return f"executor {name!r}"
    return "no executor (defaults.escalation_executor unset: journaled only)"


def _runbook_of(config: Config, plan: Plan) -> Strategy:
    """The configured strategy a plan was made for (a plan holds its step 1, which for a
    runbook is not the strategy itself). Strategy names are unique (config.py)."""
    return next(s for s in config.strategies if s.name == plan.strategy.name)


def _step_plans(strategy: Strategy, first: Plan, context: dict[str, Any]) -> list[Plan]:
    """Each step of a runbook rendered for the alert (step 1 as already planned)."""
    return [first] + [
        render_plan(strategy.step(index), context) for index in range(2, len(strategy.steps) + 1)
    ]


def _step_title(strategy: Strategy, index: int) -> str:
    name = strategy.step(index).step_name
    return f"{index} {name!r}" if name else str(index)


def _action_lines(config: Config, plan: Plan, indent: str, *, step: int = 0) -> list[str]:
    """One action (a strategy, or `step` (its 1-based index) of its runbook) as explain
    shows it."""
    strategy = plan.strategy
    executor = config.executors[strategy.executor]
    lines = [
        f"{indent}action:   {strategy.action} via executor {executor.name!r} ({executor.type})"
    ]
    if step:
        lines.append(f"{indent}wait:     {_wait_text(strategy.wait, step)}")
    if plan.refused:
        lines.append(f"{indent}REFUSED:  {plan.refused}")
        return lines
    if strategy.when is not None:
        lines.append(
            f"{indent}when:     {json.dumps(plan.params.get('when_query'))} (PromQL; false: "
            "the step is skipped and the next follows)"
        )
    lines.append(f"{indent}target:   {plan.target}")
    for key, value in plan.params.items():
        if value and key != "when_query":
            lines.append(f"{indent}{key + ':':<9} {json.dumps(value)}")
    lines.append(f"{indent}gates (in order):")
    lines += [f"{indent}  - {gate}" for gate in gates(config, strategy, plan.target)]
    return lines


def _wait_text(wait: float, step: int) -> str:
    if not wait:
        return "none"
    after = "the run starts" if step == 1 else "the step before ends"
    return f"{format_duration(wait)} after {after}"


def _repeat_line(strategy: Strategy) -> str:
    if strategy.repeat_after is None:
        return "  repeat_after: none (a cured run is not repeated)"
    budget = strategy.budget
    bound = f"; at most {budget.max_actions} runs" if budget else ""
    return (
        f"  repeat_after: {format_duration(strategy.repeat_after)}: a cured run starts again "
        f"if the incident still fires then{bound}"
    )


def _fleet_lines(
    config: Config, strategy: Strategy, plan: Plan, context: dict[str, Any]
) -> list[str]:
    """The strategy's fleet settings as explain shows them: the alert's fleet, its blast
    radius, its waves, the analysis with each metric's query rendered for the alert (as
    for its own target), the escalation window and the undo step."""
    fleet = strategy.fleet
    if fleet is None:
        return ["  fleet:    none (each target is acted on alone)"]
    settings, queries = fleet.settings, _fleet_queries(fleet, strategy, plan, context)
    lines = [
        f"  fleet:    {_fleet_key(fleet, plan, context)!r} (group_by: "
        f"{', '.join(settings.group_by)}); size: "
        + (
            f"PromQL {json.dumps(queries['size_query'])}"
            if fleet.size_query is not None
            else f"distinct targets of the fleet journaled within "
            f"{format_duration(fleet.size_window)}"
        ),
        "  max_in_flight: "
        + (
            f"{settings.max_in_flight} of the fleet size (rounded down, at least 1)"
            if settings.max_in_flight is not None
            else "none (no limit on the fleet's targets acted on at once)"
        ),
        *_progressive_lines(settings.progressive),
        *_analysis_lines(fleet, queries),
        f"  escalation_window: {format_duration(settings.escalation_window)} (the fleet's "
        "failures within it share one escalation)",
    ]
    if strategy.undo is not None:
        lines.append("  undo:     on the canaries when the analysis finds them worse:")
        lines += _action_lines(config, render_plan(strategy.undo, context), "    ")
    return lines


def _fleet_key(fleet: FleetConfig, plan: Plan, context: dict[str, Any]) -> str:
    return fleets.fleet_key(context["labels"], fleet.settings.group_by, plan.target)


def _progressive_lines(progressive: fleets.ProgressiveSettings | None) -> list[str]:
    if progressive is None:
        return ["  progressive: none (no waves: each target proceeds alone)"]
    stages = ", ".join(str(stage) for stage in progressive.stages)
    return [
        f"  progressive: a wave when at least {progressive.min_targets} incidents of the "
        f"fleet wait within {format_duration(progressive.gather)}; canary "
        f"{progressive.canary} first, then stages {stages} of the wave, each "
        f"{format_duration(progressive.pause)} after the analysis passed; "
        f"{progressive.max_failures} failed action(s) halt the wave"
    ]


def _analysis_lines(fleet: FleetConfig, queries: dict[str, Any]) -> list[str]:
    found = fleet.analysis
    if found is None:
        return ["  analysis: none (a stage follows when the previous one's actions verified)"]
    settings = found.settings
    lines = [
        f"  analysis: canaries against the baseline over {format_duration(found.interval)} "
        f"at {format_duration(found.step)} steps; passes at score {settings.pass_score:g} "
        f"(share of metrics passing); inconclusive: {settings.on_inconclusive}"
    ]
    for metric, query in zip(settings.metrics, queries["analysis"], strict=True):
        lines.append(
            f"    - {metric.name} ({metric.direction} is better, tolerance "
            f"{metric.tolerance * 100:g}%): {json.dumps(query)}"
        )
    return lines


def _fleet_queries(
    fleet: FleetConfig, strategy: Strategy, plan: Plan, context: dict[str, Any]
) -> dict[str, Any]:
    """The fleet's PromQL templates rendered for the alert, with its labels and target as
    a verify query is (plans.py); a template refused for this alert shows why."""
    variables = {**context, "target": plan.target}
    found: dict[str, Any] = {
        "size_query": _rendered(fleet.size_query, variables, strategy),
        "analysis": [],
    }
    if fleet.analysis is not None:
        found["analysis"] = [
            _rendered(query, variables, strategy) for query in fleet.analysis.queries
        ]
    return found


def _rendered(template: Template | None, variables: dict[str, Any], strategy: Strategy) -> Any:
    if template is None:
        return None
    try:
        return template.render(variables, strategy.safe_pattern)
    except (RenderError, UnsafeValueError) as exc:
        return f"refused: {exc}"


def gates(config: Config, strategy: Strategy, target: str) -> list[str]:
    """The safety checks this action would pass through, described for a person."""
    breaker = strategy.breaker
    rate = ""
    if breaker.failure_rate_threshold is not None:
        rate = (
            f" or failure rate >= {breaker.failure_rate_threshold:.0%} over "
            f"{format_duration(breaker.window)} (min {breaker.minimum_calls} calls)"
        )
    budget = strategy.budget
    described = [
        f"dry-run: {'yes, journal only' if strategy.dry_run else 'no'}",
        *_approval_gate(strategy),
        f"lock: one action at a time on target {target!r}",
        f"cooldown: {format_duration(strategy.cooldown)} per ({strategy.name}, {target})",
        "budget: "
        + (f"{budget.max_actions} per {format_duration(budget.window)}" if budget else "none"),
        f"concurrency: at most {config.defaults.max_concurrent_actions} actions at once",
        f"breaker: opens after {breaker.failure_threshold} consecutive failures{rate}; "
        f"half-open after {format_duration(breaker.recovery_timeout)}, "
        f"{breaker.half_open_max_calls} trial(s), closes after "
        f"{breaker.success_threshold} success(es)",
    ]
    described += [f"precondition: {p.describe()}" for p in strategy.preconditions]
    if strategy.verify:
        described.append(
            f"verify: PromQL true within {format_duration(strategy.verify.timeout)} "
            f"(polled every {format_duration(strategy.verify.interval)})"
        )
    return described


def _approval_gate(strategy: Strategy) -> list[str]:
    if strategy.approval is None:
        return []
    return [
        f"approval: {strategy.approval.describe()}; announced as RemediationAwaitingApproval, "
        "decided by POST /api/v1/actions/<id>/approve or /deny"
    ]


def _plan_json(config: Config, plan: Plan, context: dict[str, Any]) -> dict[str, Any]:
    """A matching strategy for `explain --json`: step 1's plan in the top-level fields
    (as for a strategy without steps), `steps` (each step rendered, with its index, name,
    wait in seconds and gates; a strategy without steps is its own one step) and
    `repeat_after` (seconds, or null)."""
    strategy = _runbook_of(config, plan)
    steps = [
        {"index": index, "name": step_plan.strategy.step_name, **_action_json(config, step_plan)}
        for index, step_plan in enumerate(_step_plans(strategy, plan, context), 1)
    ]
    return {
        "strategy": strategy.name,
        **_action_json(config, plan),
        "steps": steps,
        "repeat_after": strategy.repeat_after,
        "fleet": _fleet_json(config, strategy, plan, context),
    }


def _fleet_json(
    config: Config, strategy: Strategy, plan: Plan, context: dict[str, Any]
) -> dict[str, Any] | None:
    """The fleet of `explain --json`: null without one; else its key for the alert,
    group_by, max_in_flight (a count or "N%", or null), seconds for windows, the
    progressive settings (or null), the analysis with each metric's rendered query (or
    null) and the undo step rendered (or null)."""
    fleet = strategy.fleet
    if fleet is None:
        return None
    settings, queries = fleet.settings, _fleet_queries(fleet, strategy, plan, context)
    progressive = settings.progressive
    analysis = fleet.analysis
    undo = strategy.undo
    return {
        "key": _fleet_key(fleet, plan, context),
        "group_by": list(settings.group_by),
        "size_query": queries["size_query"],
        "size_window_seconds": fleet.size_window,
        "max_in_flight": _amount_json(settings.max_in_flight),
        "escalation_window_seconds": settings.escalation_window,
        "progressive": None
        if progressive is None
        else {
            "min_targets": progressive.min_targets,
            "gather_seconds": progressive.gather,
            "canary": _amount_json(progressive.canary),
            "stages": [_amount_json(stage) for stage in progressive.stages],
            "pause_seconds": progressive.pause,
            "max_failures": _amount_json(progressive.max_failures),
            "on_inconclusive": progressive.on_inconclusive,
        },
        "analysis": None
        if analysis is None
        else {
            **analysis.settings.to_dict(),
            "queries": queries["analysis"],
            "interval_seconds": analysis.interval,
            "step_seconds": analysis.step,
        },
        "undo": None if undo is None else _action_json(config, render_plan(undo, context)),
    }


def _amount_json(amount: Any) -> int | str | None:
    """A count as a number, a percentage as "N%" (as the config takes them)."""
    if amount is None:
        return None
    return str(amount) if amount.percent else int(amount.value)


def _action_json(config: Config, plan: Plan) -> dict[str, Any]:
    step = plan.strategy
    return {
        "action": step.action,
        "executor": step.executor,
        "target": plan.target,
        "rendered": plan.params,
        "refused": plan.refused,
        "wait_seconds": step.wait,
        "gates": [] if plan.refused else gates(config, step, plan.target),
    }


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
