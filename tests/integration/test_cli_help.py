"""`remediator --help`, each subcommand's `--help` and `--version`, as a user runs them
(issue 13): a description, every flag explained, examples that work."""

from __future__ import annotations

import argparse
import platform
import re
import shlex
import subprocess
from importlib.metadata import version

import pytest

from receiver.cli import build_parser
from tests.support.processes import run_cli

COMMANDS = ("serve", "check", "explain", "demo")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"})


def subparser(name: str) -> argparse.ArgumentParser:
    [commands] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return commands.choices[name]


def examples(help_text: str) -> list[str]:
    """The commands under `examples:`, continuation lines (`\\`) joined."""
    tail = help_text.split("\nexamples:\n", 1)[1]
    return [" ".join(cmd.split()) for cmd in re.sub(r"\\\n\s*", "", tail).splitlines() if cmd]


def test_version_is_the_installed_distribution_and_the_python() -> None:
    result = cli("--version")
    assert result.returncode == 0, result.stderr
    expected = f"remediator {version('remediator')} (Python {platform.python_version()})"
    assert result.stdout.strip() == expected


def test_top_level_help_lists_every_command_with_one_line() -> None:
    result = cli("--help")
    assert result.returncode == 0, result.stderr
    assert "--version" in result.stdout
    for name in COMMANDS:
        [line] = [x for x in result.stdout.splitlines() if x.split()[:1] == [name]]
        assert len(line.split()) > 3, f"{name} has no one-line summary: {line!r}"


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_help_has_a_description_every_flag_and_an_example(name: str) -> None:
    result = cli(name, "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    description = text.split("\n\n")[1]
    assert len(description.split()) >= 15, description
    for action in subparser(name)._actions:
        for flag in action.option_strings:
            assert flag in text, f"{flag} missing from `{name} --help`"
        assert action.help, f"{action.option_strings or action.dest} of {name} is unexplained"
    commands = examples(text)
    assert commands and all(cmd.startswith(f"remediator {name}") for cmd in commands)


@pytest.mark.parametrize("name", ("check", "explain"))
def test_the_examples_of_check_and_explain_run(name: str) -> None:
    for command in examples(cli(name, "--help").stdout):
        result = cli(*shlex.split(command)[1:])
        assert result.returncode == 0, f"{command}\n{result.stderr}"
        assert result.stdout.strip()
