"""How often do the kubernetes executor's scale and rollback meet 409 during a rollout?

A real API server gives every write a new resourceVersion, the controllers' status
writes included, and a Deployment's status is written each time one of its pods
changes state while a rollout runs. Scale and rollback write with the resourceVersion
they read as a precondition, so a status write landing between their read and their
write is a 409 Conflict, retried from a fresh read (`_retrying_conflict`).

No cluster can run here, so this drives the real client against the stand-in API
server (tests/support/kube_api.py) while a thread plays the controller: it writes the
Deployment's status every `interval` seconds. It counts, per action, the PATCH requests
sent (each one after the first followed a 409), and from that:

- first-attempt 409s: actions whose first write met a conflict;
- needing 2+ retries: actions that the former policy (retry once) would have failed;
- failed: actions that still failed with the current backoff (CONFLICT_ATTEMPTS).

Not part of `make test`. Run: `.venv/bin/python -m bench.kube_conflicts [--quick]`.
The rate depends on the request round trip here (loopback, a few ms); against a
remote API server the read-to-write window is longer, so conflicts are more frequent
at the same status-write rate.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from receiver.config import Config, ExecutorConfig
from receiver.executors import KubernetesExecutor, build_executors
from receiver.executors.base import ActionRequest
from tests.support.kube_api import KubeAPI, kube_api, write_kubeconfig

#: Seconds between status writes: 200/s (a large rollout), 50/s, 10/s.
INTERVALS = (0.005, 0.02, 0.1)


@dataclass
class Row:
    action: str
    interval: float
    actions: int
    first_attempt_409: int
    needing_2_plus_retries: int
    failed: int
    max_retries: int


@contextmanager
def status_writes(api: KubeAPI, key: tuple[str, str, str], interval: float) -> Iterator[None]:
    """A thread writing the object's status every `interval` seconds, as a controller."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval):
            with api.lock:
                api.write_status(key)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def request(action: str, target: str, replicas: int | None = None) -> ActionRequest:
    return ActionRequest(0, action, target, {}, {}, {}, timeout=10.0, replicas=replicas)


def measure(
    api: KubeAPI, executor: KubernetesExecutor, action: str, interval: float, count: int
) -> Row:
    name = "web" if action == "scale" else "api"
    path = f"/deployments/{name}/scale$" if action == "scale" else f"/deployments/{name}$"
    retries: list[int] = []
    failed = 0
    with status_writes(api, ("deployments", "shop", name), interval):
        for n in range(count):
            before = len(api.requests("PATCH", path))
            result = executor.execute(
                request(action, f"deployment/shop/{name}", replicas=10 + n % 2)
            )
            failed += not result.ok
            retries.append(len(api.requests("PATCH", path)) - before - 1)
    return Row(
        action,
        interval,
        count,
        sum(r >= 1 for r in retries),
        sum(r >= 2 for r in retries),
        failed,
        max(retries),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer actions per row")
    parser.add_argument(
        "--out", type=Path, default=Path(tempfile.gettempdir()) / "remediator-bench"
    )
    args = parser.parse_args()
    counts = {"scale": 60 if args.quick else 300, "rollback": 20 if args.quick else 100}
    rows: list[Row] = []
    with kube_api() as api, tempfile.TemporaryDirectory() as folder:
        api.add_deployment("shop", "web", replicas=10)
        api.add_deployment("shop", "api", replicas=10)
        api.rollout_reads = 1
        kubeconfig = write_kubeconfig(Path(folder) / "kubeconfig", api.url)
        spec = ExecutorConfig("k8s", "kubernetes", {"kubeconfig": str(kubeconfig)})
        executor = build_executors(Config(executors={"k8s": spec}))["k8s"]
        assert isinstance(executor, KubernetesExecutor)
        executor.poll_interval = 0.01
        try:
            for action in ("scale", "rollback"):
                for interval in INTERVALS:
                    rows.append(measure(api, executor, action, interval, counts[action]))
        finally:
            executor.close()
    print("| action | status writes/s | actions | first-attempt 409 | needing 2+ retries "
          "(failed when retried once) | failed now | most retries |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row.action} | {1 / row.interval:.0f} | {row.actions} | "
            f"{row.first_attempt_409} ({row.first_attempt_409 / row.actions:.0%}) | "
            f"{row.needing_2_plus_retries} | {row.failed} | {row.max_retries} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kube_conflicts.json").write_text(json.dumps([asdict(r) for r in rows], indent=2))


if __name__ == "__main__":
    main()
