"""The README's Layout block matches the tree, both ways, so it cannot drift again.

The block is a fenced code block under `## Layout`: one entry per line, its name in the
first column (folders end with `/`), a description after two spaces or more, lines
indented deeper continuing the entry above. Entries at column 0 are paths from the
repository's root; entries at column 2 are modules and subpackages of `receiver/`. A
line holding only names (`README.md  Dockerfile`) names each of them.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
FIELD_GAP = re.compile(r" {2,}")
NAME = re.compile(r"[\w.][\w.-]*/?")  # a file or folder name (a description has spaces or /)


@dataclass(frozen=True)
class Entry:
    """One line of the Layout block (and its continuation lines).

    `indent` is 0 (a path from the root) or 2 (inside `receiver/`); `names` the paths it
    names; `text` every word of the entry, continuation lines included.
    """

    indent: int
    names: tuple[str, ...]
    text: str


def layout_entries(readme: str) -> list[Entry]:
    """Parse the `## Layout` fenced block of `readme` into entries.

    Raises AssertionError when the section or its block is missing.
    """
    match = re.search(r"^## Layout\n.*?^```\n(.*?)^```", readme, re.S | re.M)
    assert match, "README has no ## Layout section with a code block"
    entries: list[Entry] = []
    for line in match.group(1).splitlines():
        indent = len(line) - len(line.lstrip(" "))
        if indent > 2 and entries:  # continues the entry above
            last = entries[-1]
            entries[-1] = Entry(last.indent, last.names, f"{last.text} {line.strip()}")
            continue
        fields = FIELD_GAP.split(line.strip())
        only_names = all(NAME.fullmatch(field) for field in fields)
        names = tuple(fields) if only_names else (fields[0],)
        entries.append(Entry(indent, names, line.strip()))
    return entries


def ignored(name: str) -> bool:
    """True for what git does not track: .git and the .gitignore patterns."""
    patterns = [
        line.strip().rstrip("/")
        for line in (REPO / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return name == ".git" or any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def tree_name(path: Path) -> str:
    return f"{path.name}/" if path.is_dir() else path.name


@pytest.fixture(scope="module")
def entries() -> list[Entry]:
    return layout_entries(README.read_text())


def root_names(entries: list[Entry]) -> list[str]:
    return [name for entry in entries if entry.indent == 0 for name in entry.names]


def receiver_entries(entries: list[Entry]) -> dict[str, Entry]:
    return {name: entry for entry in entries if entry.indent == 2 for name in entry.names}


def entry_for(entries: list[Entry], name: str) -> Entry:
    matching = [entry for entry in entries if entry.indent == 0 and name in entry.names]
    assert len(matching) == 1, f"{name} is not one entry of the Layout block"
    return matching[0]


def test_every_top_level_file_and_folder_is_named(entries):
    named = {re.sub(r"/.*", "/", name) for name in root_names(entries)}
    tree = {tree_name(path) for path in REPO.iterdir() if not ignored(path.name)}
    assert tree - named == set(), "not in the README's Layout"


def test_every_name_at_the_root_exists(entries):
    missing = [name for name in root_names(entries) if not (REPO / name).exists()]
    assert missing == [], "named in the README's Layout but not in the tree"


def test_every_receiver_module_and_subpackage_is_named(entries):
    named = set(receiver_entries(entries))
    tree = {
        tree_name(path)
        for path in (REPO / "receiver").iterdir()
        if path.name != "__init__.py" and not ignored(path.name)
    }
    assert tree - named == set(), "receiver/ modules not in the README's Layout"
    assert named - tree == set(), "named under receiver/ in the Layout but not in the tree"


def test_every_module_of_a_receiver_subpackage_is_named_in_its_entry(entries):
    by_name = receiver_entries(entries)
    missing = []
    for package in sorted(p for p in (REPO / "receiver").iterdir() if p.is_dir()):
        if ignored(package.name):
            continue
        words = set(re.findall(r"[\w.]+", by_name[f"{package.name}/"].text))
        for module in sorted(package.glob("*.py")):
            if module.name != "__init__.py" and not {module.stem, module.name} & words:
                missing.append(f"receiver/{package.name}/{module.name}")
    assert missing == []


@pytest.mark.parametrize("folder", ["tests", "deploy", ".ci"])
def test_every_part_of_tests_deploy_and_ci_is_named(entries, folder):
    """tests/ names its subfolders (and files) in its entry; deploy/ and .ci/ have one per
    part."""
    parts = {
        tree_name(path)
        for path in (REPO / folder).iterdir()
        if not ignored(path.name) and path.name != "__init__.py"
    }
    if folder == "tests":
        described = entry_for(entries, "tests/").text.removeprefix("tests/")
        named = set(re.findall(r"\b\w+/", described))
        files = set(re.findall(r"\b\w+\.py\b", described))  # support/'s are named too
        assert parts - named - files == set(), "tests/ subfolders or files not in the Layout"
        assert named - parts == set(), "named in tests/ of the Layout but not in the tree"
    else:
        named = {
            name.removeprefix(f"{folder}/")
            for name in root_names(entries)
            if name.startswith(f"{folder}/")
        }
        assert parts == named


def test_the_parser_reads_names_descriptions_and_continuations():
    readme = (
        "## Layout\n\n```\nreceiver/            the package\n  app.py             "
        "Flask app\n  store/             base.py (interface),\n"
        "                     sqlite.py\nMakefile  Dockerfile\n```\n"
    )
    parsed = layout_entries(readme)
    assert [entry.names for entry in parsed] == [
        ("receiver/",),
        ("app.py",),
        ("store/",),
        ("Makefile", "Dockerfile"),
    ]
    assert [entry.indent for entry in parsed] == [0, 2, 2, 0]
    assert "sqlite.py" in parsed[2].text
