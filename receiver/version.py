"""What is running: the installed remediator's version and the Python that runs it.

Shown as Prometheus components show theirs: `remediator --version`, the second line of
`/-/ready`, the start log line and the `remediator_build_info` gauge (as
`prometheus_build_info{version, revision, branch, goversion}`).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "remediator"


@dataclass(frozen=True)
class BuildInfo:
    """version: of the installed `remediator` distribution (its metadata, so what pip
    installed, not a constant that can drift), or "unknown" when run from a tree that was
    never installed; python: the interpreter's version, e.g. "3.12.3"."""

    version: str
    python: str

    def __str__(self) -> str:
        return f"remediator {self.version} (Python {self.python})"


@cache  # what is installed does not change under a running process; probes ask often
def build_info() -> BuildInfo:
    """The running build; never raises."""
    try:
        installed = version(DISTRIBUTION)
    except PackageNotFoundError:
        installed = "unknown"
    return BuildInfo(installed, platform.python_version())
