"""The schema's revisions and the names around them: HEAD matches Alembic's head, the
revisions are frozen SQL, store URLs map to SQLAlchemy URLs, status lines read right."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from receiver.store import migrate, schema

VERSIONS = migrate.SCRIPT_LOCATION / "versions"


def test_the_head_constant_is_alembics_head():
    """schema.HEAD is what a server checks without Alembic: it must name the newest
    revision of the script directory, or every start would run an upgrade."""
    assert migrate.head() == schema.HEAD


def test_the_revisions_form_one_line_from_the_baseline():
    scripts = list(migrate.scripts().walk_revisions())
    assert scripts[-1].revision == "0001"
    assert scripts[-1].down_revision is None
    assert scripts[0].revision == schema.HEAD


@pytest.mark.parametrize("revision", sorted(VERSIONS.glob("[0-9]*.py")), ids=lambda p: p.name)
def test_a_revision_imports_nothing_of_the_live_code(revision: Path):
    """A revision must not change when the code's own lists change later: its SQL is
    written in the file (frozen), never imported from receiver."""
    tree = ast.parse(revision.read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {name for name in imported if name and name.split(".")[0] == "receiver"}


@pytest.mark.parametrize(
    ("store_url", "expected"),
    [
        ("sqlite:///journal.db", "sqlite:///journal.db"),
        ("sqlite:////var/lib/remediator/journal.db", "sqlite:////var/lib/remediator/journal.db"),
        ("postgresql://rem@db:5432/rem", "postgresql+psycopg://rem@db:5432/rem"),
        ("postgres://rem@db/rem", "postgresql+psycopg://rem@db/rem"),
        (
            "postgresql://u@h/d?options=-csearch_path%3Dt_1",
            "postgresql+psycopg://u@h/d?options=-csearch_path%3Dt_1",
        ),
    ],
)
def test_a_store_url_becomes_the_sqlalchemy_url_of_the_same_journal(store_url, expected):
    assert migrate.sqlalchemy_url(store_url) == expected


@pytest.mark.parametrize("store_url", ["mysql://u@h/d", "sqlite:///", "sqlite:///:memory:"])
def test_a_store_url_of_no_journal_is_refused(store_url):
    with pytest.raises(ValueError):
        migrate.sqlalchemy_url(store_url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://rem:s3cret@db/rem", "postgresql://rem:***@db/rem"),
        ("postgresql://rem@db/rem", "postgresql://rem@db/rem"),
        ("sqlite:///journal.db", "sqlite:///journal.db"),
    ],
)
def test_messages_never_show_the_password(url, shown):
    assert schema.redacted(url) == shown


@pytest.mark.parametrize(
    ("current", "line"),
    [
        (migrate.Current("0001", "0001", 0), "0001 (head)"),
        (migrate.Current(None, "0003", 3), "none (behind by 3: head is 0003)"),
        (migrate.Current("0002", "0003", 1), "0002 (behind by 1: head is 0003)"),
        (
            migrate.Current("0009", "0003", None),
            "0009 (newer than this release, whose head is 0003)",
        ),
    ],
)
def test_db_current_says_where_the_journal_stands(current, line):
    assert str(current) == line


def test_an_upgrade_says_what_it_did():
    assert str(migrate.Upgrade(None, "0001")) == "journal schema upgraded from none to 0001 (head)"
    assert str(migrate.Upgrade("0001", "0001")) == "journal schema already at 0001 (head)"


def test_the_refusal_names_both_revisions_and_what_to_do():
    message = str(schema.JournalTooNew.at("0007", "0003"))
    for said in ("'0007'", "'0003'", "Upgrade Remediator"):
        assert said in message


def test_the_server_and_the_stores_do_not_import_sqlalchemy_or_alembic():
    """SQLAlchemy is tens of MB: loaded only to upgrade a journal that is behind."""
    code = (
        "import sys, receiver.server, receiver.store.sqlite, receiver.store.postgres, "
        "receiver.cli; "
        "print(sorted(m for m in ('sqlalchemy', 'alembic') if m in sys.modules))"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (shown.returncode, shown.stdout.strip()) == (0, "[]"), shown.stderr
