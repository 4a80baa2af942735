#!/usr/bin/env python3
"""Roll one demo-service process back to its previous release: the demo runbook's rollback.

    rollback_release.py --state-dir DIR SERVICE PROCESS

SERVICE is the `service` label ("demo") and PROCESS the `process` label, supervisord's
"group:name" ("demo:demo_01"). The process serves the release named in
``DIR/<SERVICE>-<name>.release`` (examples/demo_service.py, class Release); this script
replaces that file, atomically, with the release it names as ``previous`` and prints
what it did. The process reads the file on every request, so the rollback takes effect
at once, without a restart.

Remediator's command executor runs it as an argv list (never a shell), with SERVICE and
PROCESS rendered from alert labels: they are untrusted. Each must match a strict pattern
(lower-case letters, digits, `_` and `-`; PROCESS one `:`) or the script refuses before
touching anything, so no label can name a file outside DIR.

Exit status: 0 rolled back; 1 nothing to roll back to (no release deployed, or already
rolled back); 2 refused arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
PROCESS = re.compile(r"([a-z][a-z0-9_-]{0,62}):([a-z][a-z0-9_-]{0,62})")


class Refused(ValueError):
    """An argument that does not match its pattern (exit 2)."""


class NothingToRollBack(RuntimeError):
    """No previous release to switch to (exit 1)."""


def release_file(state_dir: Path, service: str, process: str) -> Path:
    """DIR/<service>-<name>.release for a validated service and process; Refused if
    either does not match its pattern."""
    if not NAME.fullmatch(service):
        raise Refused(f"service {service!r} does not match {NAME.pattern}")
    match = PROCESS.fullmatch(process)
    if match is None:
        raise Refused(f"process {process!r} does not match {PROCESS.pattern}")
    return state_dir / f"{service}-{match.group(2)}.release"


def rollback(path: Path, now: float) -> tuple[str, str]:
    """Switch `path` to its previous release; (from version, to version).
    NothingToRollBack when there is no deployed release or no previous one."""
    try:
        current = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise NothingToRollBack(f"no release deployed in {path.name}") from exc
    previous = current.get("previous")
    if not isinstance(previous, dict) or "version" not in previous:
        raise NothingToRollBack(f"{path.name}: no previous release to roll back to")
    switched = {
        "version": str(previous["version"]),
        "bad": bool(previous.get("bad", False)),
        "deployed_at": now,
        "previous": None,  # one step back only: a second rollback has nothing to go to
        "rolled_back_from": current.get("version"),
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(switched) + "\n")
    os.replace(temporary, path)  # the service never reads a half-written file
    return str(current.get("version")), switched["version"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", required=True, help="the demo processes' state folder")
    parser.add_argument("service", help="the service label, e.g. demo")
    parser.add_argument("process", help="the process label, e.g. demo:demo_01")
    args = parser.parse_args(argv)
    try:
        path = release_file(Path(args.state_dir), args.service, args.process)
        old, new = rollback(path, time.time())
    except Refused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    except NothingToRollBack as exc:
        print(f"cannot roll back {args.process}: {exc}", file=sys.stderr)
        return 1
    print(f"rolled back {args.process} from release {old} to {new}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
