"""The demo service's `cold` fault on an in-process DemoService: a clock and a sleep
injected, so a process can be aged and its delays read without waiting. A "restart" is a
new DemoService with the same identity and state directory, as supervisord's restart
gives the new process the same name and folder."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from examples.demo_service import ColdStart, DemoService, FaultError, Identity

IDENTITY = Identity("catalog", "fleet:fleet_00", "127.0.0.1", 18100, "127.0.0.1")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def service(state_dir: Path, clock: Clock, slept: list[float], work: float = 0.0) -> DemoService:
    return DemoService(
        IDENTITY, state_dir=state_dir, clock=clock, sleep=slept.append, work_seconds=work
    )


def get(app: DemoService) -> int:
    status: list[str] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.input": io.BytesIO()}
    app(environ, lambda line, headers: status.append(line))
    return int(status[0].split()[0])


@pytest.mark.parametrize(
    ("started_at", "now", "expected"),
    [
        (1000.0, 1000.0, 0.5),  # started as the fault came: cold
        (1010.0, 1069.9, 0.5),  # 59.9s after its start: still cold
        (1010.0, 1070.0, 0.0),  # `seconds` after its start: warm
        (999.0, 1000.0, 0.0),  # running before the fault came: warm
    ],
)
def test_a_process_is_cold_for_seconds_after_a_start_at_or_after_the_fault(
    started_at, now, expected
):
    fault = ColdStart(seconds=60.0, delay=0.5, since=1000.0)
    assert fault.delay_for(started_at, now) == expected


def test_the_running_process_is_not_slowed_the_restarted_one_is_until_it_warms_up(
    tmp_path: Path,
):
    clock, slept = Clock(1000.0), []
    running = service(tmp_path, clock, slept)
    clock.now = 1005.0
    running.apply({"fault": "cold", "seconds": 30, "delay": 0.2})
    assert get(running) == 200
    assert slept == []
    assert running.active("cold")

    clock.now = 1010.0
    restarted = service(tmp_path, clock, slept)  # the fault lives in the state directory
    assert get(restarted) == 200
    assert slept == [0.2]
    clock.now = 1010.0 + 30
    assert get(restarted) == 200
    assert slept == [0.2]  # warm again: no further delay


def test_the_cold_delay_adds_to_the_work_time(tmp_path: Path):
    clock, slept = Clock(1000.0), []
    service(tmp_path, clock, slept, work=0.01).apply({"fault": "cold", "delay": 0.2})
    restarted = service(tmp_path, clock, slept, work=0.01)
    get(restarted)
    assert slept == [pytest.approx(0.01 + 0.2)]


def test_none_removes_the_cold_fault(tmp_path: Path):
    clock, slept = Clock(1000.0), []
    app = service(tmp_path, clock, slept)
    app.apply({"fault": "cold"})
    assert app.state()["cold_start"] == {
        "seconds": 60.0,
        "delay": 0.5,
        "since": 1000.0,
        "started_at": 1000.0,
        "delay_now": 0.5,
    }
    app.apply({"fault": "none"})
    assert not app.active("cold")
    assert app.state()["cold_start"] is None
    assert get(service(tmp_path, clock, slept)) == 200
    assert slept == []


def test_a_cold_fault_needs_a_state_directory():
    app = DemoService(IDENTITY)
    with pytest.raises(FaultError, match="needs the service to run with --state-dir"):
        app.apply({"fault": "cold"})
