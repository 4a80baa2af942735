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
from collections.abc import Callable
from typing import Any

from receiver.cli import EXIT_INVALID, EXIT_OK, EXIT_USAGE, _command, _load, add_store_argument
from receiver.config import with_overrides


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
    if args.config is None:
        return args.store
    config = _load(args.config)
    if config is None:
        return EXIT_INVALID
    overrides = {"store": args.store} if args.store else {}
    return with_overrides(config, overrides).store


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


#: the `db` subcommands, in --help order
SUBCOMMANDS: list[Callable[[Any], None]] = [_upgrade_parser, _current_parser]
