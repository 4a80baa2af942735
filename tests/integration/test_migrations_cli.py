"""`remediator db upgrade | current` as an operator meets them: the journal named as
`serve` names it (--config, --store over it), and a clear exit 1 that changes nothing
for a journal it cannot reach or a URL that names none."""

from __future__ import annotations

import pytest

from receiver.store import schema
from tests.support.processes import free_port, run_cli
from tests.support.receiver import AUTH_SERVER, LOG_RESTART, write_config

UNREACHABLE = f"postgresql://rem:s3cret-pw@127.0.0.1:{free_port()}/rem"


def test_db_upgrade_takes_the_journal_from_the_config(tmp_path):
    journal = tmp_path / "from-config.db"
    config = write_config(tmp_path, f"store: sqlite:///{journal}\n" + AUTH_SERVER + LOG_RESTART)
    upgraded = run_cli("db", "upgrade", "--config", str(config))
    assert upgraded.returncode == 0, upgraded.stderr
    assert journal.exists()
    current = run_cli("db", "current", "--config", str(config))
    assert current.stdout.strip() == f"{schema.HEAD} (head)"


def test_store_on_the_command_line_wins_over_the_config(tmp_path):
    in_config, on_command_line = tmp_path / "config.db", tmp_path / "flag.db"
    config = write_config(tmp_path, f"store: sqlite:///{in_config}\n" + AUTH_SERVER + LOG_RESTART)
    upgraded = run_cli(
        "db", "upgrade", "--config", str(config), "--store", f"sqlite:///{on_command_line}"
    )
    assert upgraded.returncode == 0, upgraded.stderr
    assert (in_config.exists(), on_command_line.exists()) == (False, True)


def test_an_invalid_config_is_reported_and_nothing_is_done(tmp_path):
    journal = tmp_path / "journal.db"
    config = write_config(tmp_path, f"store: sqlite:///{journal}\nstrategies: 7\n")
    upgraded = run_cli("db", "upgrade", "--config", str(config))
    assert upgraded.returncode == 1
    assert "invalid configuration" in upgraded.stderr
    assert not journal.exists()


@pytest.mark.parametrize("command", ["upgrade", "current"])
def test_without_a_journal_named_db_says_what_it_needs(command):
    answered = run_cli("db", command)
    assert answered.returncode == 2
    assert "give --config FILE or --store URL" in answered.stderr


@pytest.mark.parametrize("command", ["upgrade", "current"])
def test_an_unreachable_store_is_an_error_without_the_password(command):
    answered = run_cli("db", command, "--store", UNREACHABLE)
    assert answered.returncode == 1
    assert "rem:***@127.0.0.1" in answered.stderr
    assert "s3cret-pw" not in answered.stdout + answered.stderr
    assert "Traceback" not in answered.stderr


@pytest.mark.parametrize("command", ["upgrade", "current"])
def test_a_url_of_no_supported_store_is_an_error(command):
    answered = run_cli("db", command, "--store", "mysql://rem@db/rem")
    assert answered.returncode == 1
    assert "unsupported store URL" in answered.stderr


def test_db_current_never_creates_a_journal(tmp_path):
    journal = tmp_path / "none-yet.db"
    answered = run_cli("db", "current", "--store", f"sqlite:///{journal}")
    assert answered.returncode == 1
    assert f"no journal at {journal}" in answered.stderr
    assert not journal.exists()


def test_db_upgrade_into_a_missing_directory_is_an_error(tmp_path):
    journal = tmp_path / "missing" / "journal.db"
    answered = run_cli("db", "upgrade", "--store", f"sqlite:///{journal}")
    assert answered.returncode == 1
    assert f"directory {journal.parent} does not exist" in answered.stderr
    assert not journal.parent.exists()


def test_serve_on_an_unreachable_store_exits_1_with_a_clear_message(tmp_path):
    config = write_config(tmp_path, AUTH_SERVER + LOG_RESTART)
    served = run_cli("serve", "--config", str(config), "--store", UNREACHABLE)
    assert served.returncode == 1
    assert "error: cannot open the journal postgresql://rem:***@127.0.0.1" in served.stderr
    assert "s3cret-pw" not in served.stderr
    assert "Traceback" not in served.stderr
