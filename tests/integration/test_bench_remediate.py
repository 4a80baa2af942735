"""bench.remediate's instruments against real processes: the one-line scripts (built
with the real C compiler, run by the real interpreter) and the spawning baseline under
real gunicorn, with the same config file the benchmark writes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import common, payloads, remediate
from tests.support.journal import wait_for

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")


@pytest.mark.parametrize("kind", [pytest.param("c", marks=needs_cc), "python"])
def test_the_script_appends_its_target_and_a_start_time_taken_while_it_ran(
    tmp_path: Path, kind: str
) -> None:
    script = remediate.prepare_script(tmp_path, kind)
    assert script.kind == kind
    target = "web-1:9100; echo $(id) > pwned"  # one argv entry: nothing interprets it
    before = time.time()
    subprocess.run(script.argv(target), check=True)
    after = time.time()
    rows = remediate.read_lines(script.output)
    assert [t for t, _ in rows] == [target]
    assert before <= rows[0][1] <= after
    assert not (tmp_path / "pwned").exists()


def test_auto_falls_back_to_python_without_a_compiler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert remediate.prepare_script(tmp_path, "auto").kind == "python"
    with pytest.raises(RuntimeError, match="no C compiler"):
        remediate.prepare_script(tmp_path, "c")


def test_the_baseline_runs_the_command_once_per_firing_alert_with_a_safe_target(
    tmp_path: Path,
) -> None:
    script = remediate.prepare_script(tmp_path, "python")
    config = remediate.config_for(tmp_path, script)
    starts_at = payloads.now_rfc3339(-60)

    def alert(i: int, instance: str, status: str = "firing") -> dict:
        return payloads.alert(
            f"{i:016x}",
            alertname=remediate.ALERTNAME,
            service="svc",
            instance=instance,
            starts_at=starts_at,
            status=status,
        )

    alerts = [
        alert(1, "web-1:9100"),
        alert(2, "web-2:9100", status="resolved"),
        alert(3, "web-3;reboot"),
        alert(4, "web-4:9100"),
    ]
    body = payloads.encode(payloads.notification(alerts, "{}:{}"))
    with common.server("remediate_baseline", tmp_path, config) as srv:
        _, answers = common.post_all(srv, [body], 1)
        assert answers[0][0] == 200
        wait_for(lambda: len(remediate.read_lines(script.output)) >= 2, what="two lines")
        # idle: both scripts exited and were reaped, so nothing more will be written
        pids = remediate.server_pids(srv, script)
        wait_for(lambda: set(remediate.tree(srv.process.pid)) == set(pids), what="idle")
    rows = remediate.read_lines(script.output)
    assert sorted(t for t, _ in rows) == ["web-1:9100", "web-4:9100"]


def test_the_remediator_tree_holds_the_dispatch_process_and_no_script_once_idle(
    tmp_path: Path,
) -> None:
    script = remediate.prepare_script(tmp_path, "python")
    config = remediate.config_for(tmp_path, script)
    alert = payloads.alert(
        f"{1:016x}",
        alertname=remediate.ALERTNAME,
        service="svc",
        instance="web-1:9100",
        starts_at=payloads.now_rfc3339(-60),
    )
    body = payloads.encode(payloads.notification([alert], "{}:{}"))
    with common.server("remediator", tmp_path, config) as srv:
        _, answers = common.post_all(srv, [body], 1)
        assert answers[0][0] == 200
        wait_for(lambda: remediate.read_lines(script.output), what="the script's line")
        (writer,) = srv.writers()
        (dispatcher,) = srv.dispatchers()  # the writer's child, which runs the script
        expected = {srv.process.pid, *srv.workers(), writer, dispatcher}
        assert remediate.wait_idle(srv, sorted(expected), 30)
        pids = remediate.server_pids(srv, script)
        names = [p["cmdline"] for p in remediate.describe(pids)]
    assert set(pids) == expected
    assert sum(name.startswith("(dispatch process) ") for name in names) == 1


def test_pss_at_start_is_read_per_process_of_the_real_tree(tmp_path: Path) -> None:
    script = remediate.prepare_script(tmp_path, "python")
    config = remediate.config_for(tmp_path, script)
    with common.server("remediate_baseline", tmp_path, config) as srv:
        pids = remediate.server_pids(srv, script)
        at_start = remediate.pss_by_process(pids)
        rss = [remediate.rollup_kb(pid)[0] for pid in pids]
    assert len(at_start) == len(pids) == 2  # gunicorn's master and its worker
    # each an interpreter with its imports: megabytes, never more than what it maps
    assert all(1024 < pss <= resident for pss, resident in zip(at_start, rss, strict=True))
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert remediate.pss_by_process([gone.pid]) == [0]


def test_machine_busy_counts_at_least_the_cpu_a_real_process_burned() -> None:
    """The burst's busy cores come from /proc/stat: a child that spins for 0.4 s of its
    own CPU moves the machine's busy seconds by at least that much (idle time, which
    grows as fast as the wall clock on an idle CPU, is not counted)."""
    spin = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass"
    before = remediate.machine_busy_s()
    child = subprocess.run(
        [sys.executable, "-c", spin + "\nimport os; t = os.times(); print(t.user + t.system)"],
        capture_output=True,
        text=True,
        check=True,
    )
    burned = float(child.stdout)
    assert remediate.machine_busy_s() - before >= burned * 0.9


@pytest.mark.parametrize(("setting", "threads"), [(None, 4), (1, 1), (8, 8)])
def test_the_config_sets_the_dispatcher_threads_only_when_asked(
    tmp_path: Path, setting: int | None, threads: int
) -> None:
    """`--max-concurrent-actions` reaches the config the server parses (None: the
    default), so a run with one dispatcher thread is the same benchmark otherwise."""
    from receiver.config import parse_config

    script = remediate.prepare_script(tmp_path, "python")
    text = remediate.config_for(tmp_path, script, setting).read_text()
    config = parse_config(text, base_dir=tmp_path)
    assert config.defaults.max_concurrent_actions == threads
    assert config.defaults.dry_run is False


def test_the_growth_burst_runs_every_new_alert_and_reads_each_process(tmp_path: Path) -> None:
    """The second burst (growth_phase) posts alerts not seen before, waits until every
    one ran and the tree is idle, and reads the Pss of each process before and after."""
    script = remediate.prepare_script(tmp_path, "python")
    config = remediate.config_for(tmp_path, script)
    with common.server("remediate_baseline", tmp_path, config) as srv:
        pids = remediate.server_pids(srv, script)
        growth = remediate.growth_phase(srv, script.output, pids, first=100, alerts=5)
    targets = sorted(t for t, _ in remediate.read_lines(script.output))
    assert targets == [f"rem-{i:06d}" for i in range(100, 105)]
    assert growth["alerts"] == 5
    assert len(growth["growth_by_process_mb"]) == len(pids) == 2
    assert growth["pss_idle_before_mb"] > 1 and growth["pss_idle_after_mb"] > 1
    assert growth["growth_mb"] == pytest.approx(
        growth["pss_idle_after_mb"] - growth["pss_idle_before_mb"], abs=0.11
    )


def test_context_switches_count_every_thread_of_a_real_process() -> None:
    """A second thread that sleeps 30 times switches out at least 30 times, counted
    although it is not the process's main thread (which only waits for it, once); a
    process that is gone counts 0."""
    sleeper = (
        "import sys, threading, time\n"
        "def work():\n"
        "    for _ in range(30):\n"
        "        time.sleep(0.002)\n"
        "    print('done', flush=True)\n"
        "    sys.stdin.read()\n"
        "t = threading.Thread(target=work)\n"
        "t.start()\n"
        "t.join()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", sleeper], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "done\n"
        switched = remediate.context_switches(child.pid)
    finally:
        child.communicate("")
    assert switched >= 30
    assert remediate.context_switches(child.pid) == 0
