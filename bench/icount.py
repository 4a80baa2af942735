"""Instructions per alert, which the machine's load does not move: valgrind's callgrind.

Journals N one-alert notifications, each planning one `run` action of a `command`
executor (bench.remediate's config: a C program per action), through the real ingest on
a fresh SQLite journal; with `--dispatch`, then carries them out with the real
dispatcher's `run_once` in this thread (the journal's checkpoint thread running, as in
the dispatch process). `main` runs that under callgrind four times (N and 2N alerts,
with and without dispatch) and prints the marginal instructions per ingested alert and
per dispatched action, so start-up and set-up cancel out:

    python -m bench.icount [--alerts 100]

Needs valgrind (Debian package) and a C compiler for the program (else Python runs it).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
from types import SimpleNamespace

from bench import common, remediate

COLLECTED = re.compile(r"Collected : (\d+)")


def journal_and_dispatch(alerts: int, dispatch: bool) -> None:
    """The measured work (run under callgrind by `main`)."""
    from receiver.alerts import parse_notification
    from receiver.config import parse_config
    from receiver.dispatcher import Dispatcher
    from receiver.engine import ingest
    from receiver.store import open_store
    from receiver.store.checkpoint import Checkpointer

    logging.basicConfig(level=logging.CRITICAL)
    with common.workdir("icount", False) as wd:
        script = remediate.prepare_script(wd, "auto")
        config = parse_config(remediate.config_for(wd, script).read_text(), base_dir=wd)
        store = open_store(f"sqlite:///{wd / 'journal.db'}")
        _, bodies = remediate.bodies(0, alerts)
        for body in bodies:
            ingest(store, config, parse_notification(json.loads(body)), 1.8e9)
        if dispatch:
            checkpointer = Checkpointer(store)
            checkpointer.start()
            dispatcher = Dispatcher(SimpleNamespace(config=config), store)
            done = 0
            while dispatcher.run_once():
                done += 1
            checkpointer.stop()
            if done != alerts:
                raise RuntimeError(f"dispatched {done} of {alerts}")
        store.close()


def instructions(alerts: int, dispatch: bool) -> int:
    """Instructions callgrind counts for journal_and_dispatch (this interpreter)."""
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
    argv += ["-m", "bench.icount", "--run", str(alerts)] + (["--dispatch"] if dispatch else [])
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return int(COLLECTED.findall(done.stderr)[0])


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--alerts", type=int, default=100, help="N: measured from N to 2N")
    p.add_argument("--run", type=int, help=argparse.SUPPRESS)
    p.add_argument("--dispatch", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.run is not None:
        journal_and_dispatch(args.run, args.dispatch)
        return {}
    n = args.alerts
    ingest_n, both_n = instructions(n, False), instructions(n, True)
    ingest_2n, both_2n = instructions(2 * n, False), instructions(2 * n, True)
    result = {
        "ingest_per_alert": (ingest_2n - ingest_n) / n,
        "dispatch_per_action": ((both_2n - ingest_2n) - (both_n - ingest_n)) / n,
    }
    print(
        f"ingest {result['ingest_per_alert'] / 1000:,.0f}k instructions per alert; dispatch "
        f"{result['dispatch_per_action'] / 1000:,.0f}k per action (marginal, {n} to {2 * n})"
    )
    return result


if __name__ == "__main__":
    main()
