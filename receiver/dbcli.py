"""`remediator db upgrade | current`: the journal's schema from the command line.

Each subcommand takes the journal as `serve` does: `--config FILE` (its `store`), or
`--store URL`, which wins over the file. Exit status: 0 done, 1 an error said on stderr
(unreachable store, bad URL or config, a journal newer than this release), 2 usage.

A subcommand is one `_..._parser(db_commands)` function listed in SUBCOMMANDS, that
adds its parser with `journal_arguments` and sets `func`; its command resolves the URL
with `journal_url` and returns an exit status.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from receiver.cli import EXIT_INVALID, EXIT_OK, EXIT_USAGE, _command, _load, add_store_argument
from receiver.config import Config, with_overrides
from receiver.durations import format_duration


def add_db_parser(commands: Any) -> None:
    """`remediator db ...`, with one sub-parser per entry of SUBCOMMANDS."""
    db = _command(
        commands,
        "db",
        "manage the journal's schema: upgrade it, show its revision",
        "Manage the journal (the store `serve` writes): its schema is versioned with "
        "Alembic revisions shipped in this release. `serve` upgrades it at start; these "
        "commands do it, or show where it stands, without starting the server.",
        "  remediator db current --config examples/remediation.yml\n"
        "  remediator db upgrade --store postgresql://remediator@db/remediator\n",
    )
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    for add in SUBCOMMANDS:
        add(db_commands)


def journal_arguments(parser: argparse.ArgumentParser) -> None:
    """--config FILE and --store URL, as `serve` takes them (one is needed)."""
    parser.add_argument("--config", help="remediation YAML file whose `store` names the journal")
    add_store_argument(parser)


def journal_url(args: argparse.Namespace) -> str | int:
    """The store URL the arguments name, as `serve` picks it (--store over the config's
    `store`), or the exit status after saying on stderr what is wrong."""
    if args.config is None and args.store is None:
        print("error: give --config FILE or --store URL", file=sys.stderr)
        return EXIT_USAGE
    config = _journal_config(args)
    return EXIT_INVALID if config is None else config.store


def cmd_upgrade(args: argparse.Namespace) -> int:
    """Upgrade the journal to this release's head; print what was done."""
    url = journal_url(args)
    if isinstance(url, int):
        return url
    from receiver.store import migrate  # Alembic only when asked
    from receiver.store.schema import SchemaError

    try:
        print(migrate.upgrade(url))
    except SchemaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


def cmd_current(args: argparse.Namespace) -> int:
    """Print the journal's revision and how it stands against this release's head;
    exit 1 when it is newer than this release (which would refuse to serve it)."""
    url = journal_url(args)
    if isinstance(url, int):
        return url
    from receiver.store import migrate
    from receiver.store.schema import JournalTooNew, SchemaError

    try:
        current = migrate.current(url)
    except SchemaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(current)
    if current.newer:
        assert current.revision is not None
        print(f"error: {JournalTooNew.at(current.revision, current.head)}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


def _upgrade_parser(db_commands: Any) -> None:
    upgrade = _command(
        db_commands,
        "upgrade",
        "upgrade the journal's schema to this release's",
        "Run the schema revisions the journal lacks, under the lock replicas share, as "
        "`serve` does at start; a journal already at this release's head is left as it "
        "is. A journal made before schema revisions existed is brought to the baseline "
        "with every row kept.",
        "  remediator db upgrade --config examples/remediation.yml\n"
        "  remediator db upgrade --store sqlite:///var/lib/remediator/journal.db\n",
    )
    journal_arguments(upgrade)
    upgrade.set_defaults(func=cmd_upgrade)


def _current_parser(db_commands: Any) -> None:
    current = _command(
        db_commands,
        "current",
        "show the journal's schema revision",
        "Print the journal's schema revision and whether it is this release's head, "
        "behind it (by how many revisions), or newer than this release (exit 1: upgrade "
        "Remediator). Changes nothing.",
        "  remediator db current --config examples/remediation.yml\n",
    )
    journal_arguments(current)
    current.set_defaults(func=cmd_current)


def _prune_parser(db_commands: Any) -> None:
    prune = _command(
        db_commands,
        "prune",
        "delete what retention no longer keeps (or say what, with --dry-run)",
        "Delete notifications older than retention.notifications and closed incidents "
        "older than retention.incidents, with their actions, events and runbook runs, in "
        "batches of retention.batch_size rows, each its own short transaction (a server "
        "may run meanwhile). Open incidents and whatever a gate, a breaker or a metric "
        "still reads are kept. Prints the rows deleted per table; with --dry-run, the "
        "cutoffs and what it would delete, changing nothing.",
        "  remediator db prune --dry-run --config examples/remediation.yml\n"
        "  remediator db prune --store postgresql://remediator@db/remediator\n",
    )
    journal_arguments(prune)
    prune.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    prune.set_defaults(func=cmd_prune)


def _journal_config(args: argparse.Namespace) -> Config | None:
    """The config a `db` action works with: --config's (its store overridden by --store),
    or the defaults with --store's journal. None when the config is invalid (reported)."""
    if args.config is None:
        return Config(store=args.store)
    config = _load(args.config)
    if config is None:
        return None
    return with_overrides(config, {"store": args.store} if args.store else {})


def cmd_prune(args: argparse.Namespace) -> int:
    """Prune (or count, with --dry-run) in batches; exit 0, 1 on an invalid config, a
    journal that is missing, unreachable, newer than this release, or (for a dry run,
    which changes nothing) behind it; 2 when neither --config nor --store is given."""
    if args.config is None and args.store is None:
        print("error: give --config FILE or --store URL", file=sys.stderr)
        return EXIT_USAGE
    config = _journal_config(args)
    if config is None:
        return EXIT_INVALID
    from receiver import retention
    from receiver.store import StoreUnavailable, open_store
    from receiver.store import retention as prune_journal
    from receiver.store.schema import SchemaError

    try:
        if not _at_head(config.store, dry_run=args.dry_run):
            return EXIT_INVALID
        window = retention.longest(retention.read_windows(config))
        cutoffs = retention.cutoffs(config.retention, window.seconds, time.time())
        store = open_store(config.store)
        store.apply_limits(config.limits)
        done = prune_journal.prune(
            store, cutoffs, config.retention.batch_size, delete=not args.dry_run
        )
    except (SchemaError, StoreUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(_prune_text(config, cutoffs, window, done, dry_run=args.dry_run))
    return EXIT_OK


def _at_head(url: str, *, dry_run: bool) -> bool:
    """Whether the journal at `url` is at this release's schema, upgrading it first
    (and saying so) unless this is a dry run, which changes nothing: then a journal
    behind is an error to report. A journal newer than this release is one too. Raises
    SchemaError for a journal that is missing, unreachable or not a store URL."""
    from receiver.store import migrate
    from receiver.store.schema import JournalTooNew

    current = migrate.current(url)
    if current.newer:
        assert current.revision is not None
        print(f"error: {JournalTooNew.at(current.revision, current.head)}", file=sys.stderr)
        return False
    if current.behind == 0:
        return True
    if dry_run:
        print(
            f"error: the journal's schema is {current}: a dry run changes nothing, so "
            "run `remediator db upgrade` (or start the server) first",
            file=sys.stderr,
        )
        return False
    print(migrate.upgrade(url))
    return True


def _prune_text(config: Config, cutoffs: Any, window: Any, done: Any, *, dry_run: bool) -> str:
    """What `db prune` prints: the cutoffs as times, then the rows per table."""
    from receiver.store.sql import iso

    kept = config.retention
    lines = [
        "cutoffs:",
        "  notifications received before "
        + (f"{iso(cutoffs.notifications)} ({format_duration(kept.notifications)})"
        if cutoffs.notifications is not None else "(never: retention.notifications is 0s)"),
        "  incidents closed before "
        + (f"{iso(cutoffs.incidents)} ({format_duration(kept.incidents)})"
        if cutoffs.incidents is not None else "(never: retention.incidents is 0s)"),
        f"  actions since {iso(cutoffs.actions)} kept ({window.path or 'no window'}: "
        f"{format_duration(window.seconds)})",
        "would delete (dry run, nothing changed):" if dry_run else "deleted:",
    ]  # fmt: skip
    width = max(len(table) for table in done.deleted)
    lines += [f"  {table:<{width}} {count}" for table, count in done.deleted.items()]
    lines.append(f"  {'total':<{width}} {done.total} in {done.batches} batches")
    return "\n".join(lines)


#: the `db` subcommands, in --help order
SUBCOMMANDS: list[Callable[[Any], None]] = [_upgrade_parser, _current_parser, _prune_parser]
