"""Range queries and canary analysis against a real Prometheus scraping real exporters.

Six local HTTP exporters (tests/support/http_server.py) are scraped every second by the
Debian ``prometheus`` binary: two "healthy" targets export an error ratio of 0.05, two
"broken" ones 0.5, one exports NaN and one +Inf. The analysis window starts once every
series has a sample, so each step of it has a value and the sample counts are exact:
``range_points(start, end, step)`` per series.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from receiver import analysis, canary
from receiver.prometheus import PrometheusClient, PrometheusError, range_points
from tests.support.http_server import Reply, ScriptedServer, scripted_server, serving
from tests.support.journal import wait_for
from tests.support.processes import free_port, prometheus

pytestmark = pytest.mark.integration

EXPORTED = {
    "web-1": "0.05",
    "web-2": "0.05",
    "web-3": "0.5",
    "web-4": "0.5",
    "web-5": "NaN",
    "web-6": "+Inf",
}
HEALTHY, BROKEN = ("web-1", "web-2"), ("web-3", "web-4")
STEP = 0.5
WINDOW = 5.0  # seconds: 11 points per series at a 0.5 s step


@dataclass(frozen=True)
class Window:
    client: PrometheusClient
    start: float
    end: float
    step: float

    @property
    def points(self) -> int:
        return range_points(self.start, self.end, self.step)


def exporter(value: str) -> ScriptedServer:
    server = ScriptedServer()
    text = f"# TYPE app_error_ratio gauge\napp_error_ratio {value}\n"
    server.default = Reply(200, text.encode(), {"Content-Type": "text/plain; version=0.0.4"})
    return server


def scrape_config(ports: dict[str, int]) -> str:
    targets = "\n".join(
        f"      - targets: ['127.0.0.1:{port}']\n        labels: {{target: {name}}}"
        for name, port in ports.items()
    )
    return f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: app
    static_configs:
{targets}
"""


@pytest.fixture(scope="module")
def window(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Window]:
    """Prometheus with every exporter's series in it, and a window in which each has a
    value at every step (it starts after the first sample of each, and has ended)."""
    with ExitStack() as stack:
        ports = {}
        for name, value in EXPORTED.items():
            server = stack.enter_context(serving(exporter(value)))
            ports[name] = server.server_address[1]
        workdir: Path = tmp_path_factory.mktemp("prometheus")
        prom = stack.enter_context(prometheus(workdir, scrape_config(ports)))
        client = PrometheusClient(prom.url)
        wait_for(
            lambda: len(client.query("app_error_ratio")) == len(EXPORTED),
            60,
            "a sample of every exporter",
        )
        start = float(math.ceil(time.time()))
        end = start + WINDOW
        wait_for(lambda: time.time() > end + 1, 30, "the window to end")
        yield Window(client, start, end, STEP)


def query(target: str) -> str:
    return f'app_error_ratio{{target="{target}"}}'


def samples(win: Window, expr: str) -> list[float]:
    return win.client.query_range(expr, win.start, win.end, win.step)


# --- query_range --------------------------------------------------------------------------


def test_a_window_of_5_seconds_at_half_a_second_has_11_points(window):
    assert window.points == 11


def test_query_range_returns_one_value_per_step_of_one_series(window):
    assert samples(window, query("web-1")) == [0.05] * window.points


def test_query_range_pools_every_series(window):
    values = samples(window, 'app_error_ratio{target=~"web-1|web-3"}')
    assert sorted(values) == [0.05] * window.points + [0.5] * window.points


def test_query_range_keeps_each_series_in_time_order(window):
    # Each series' values are its evaluation times: two series, each start..end by step.
    values = samples(window, 'app_error_ratio{target=~"web-1|web-2"} * 0 + time()')
    times = [window.start + i * window.step for i in range(window.points)]
    assert values == times + times


def test_query_range_keeps_nan_and_infinity_as_floats(window):
    nan = samples(window, query("web-5"))
    inf = samples(window, query("web-6"))
    assert len(nan) == window.points and all(math.isnan(v) for v in nan)
    assert inf == [math.inf] * window.points


def test_query_range_of_a_metric_nobody_exports_is_empty(window):
    assert samples(window, "app_no_such_metric") == []


def test_an_ill_formed_query_raises_prometheus_error_with_its_reason(window):
    with pytest.raises(PrometheusError, match="parse error"):
        samples(window, "app_error_ratio{")


def test_prometheus_answers_exactly_11000_steps_and_refuses_one_more(window):
    start = window.start - 11_000
    assert window.client.query_range("vector(1)", start, start + 11_000, 1) == [1.0] * 11_001
    params = {"query": "vector(1)", "start": start, "end": start + 11_001, "step": 1}
    answer = requests.get(f"{window.client.url}/api/v1/query_range", params=params, timeout=10)
    assert answer.status_code == 400
    assert "exceeded maximum resolution of 11,000 points" in answer.json()["error"]


def test_an_unreachable_prometheus_raises_prometheus_error():
    client = PrometheusClient(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(PrometheusError, match="unreachable"):
        client.query_range("up", 1_700_000_000, 1_700_000_060, 10)


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (
            Reply.json(200, {"status": "success", "data": {"resultType": "vector", "result": []}}),
            "expected a matrix, got vector",
        ),
        (Reply(502, b"Bad Gateway"), "Prometheus answered HTTP 502"),
        (
            Reply.json(
                422, {"status": "error", "errorType": "execution", "error": "too many samples"}
            ),
            "failed: too many samples",
        ),
    ],
)
def test_a_wrong_answer_raises_prometheus_error(reply, message):
    with scripted_server() as server:
        server.answer(reply)
        with pytest.raises(PrometheusError, match=message):
            PrometheusClient(server.url).query_range("up", 1_700_000_000, 1_700_000_060, 10)
        sent = server.received[0]
    assert sent.path.startswith("/api/v1/query_range?")
    assert "start=1700000000.000" in sent.path and "step=10" in sent.path


# --- canary analysis ----------------------------------------------------------------------


SETTINGS = analysis.AnalysisSettings(
    metrics=(analysis.AnalysisMetric("error_ratio", query("{{ target }}"), tolerance=0.1),)
)


def queries(targets) -> list[str]:
    return [query(target) for target in targets]


def analyse(win: Window, canaries: list[str], baselines: list[str]) -> canary.CanaryAnalysis:
    """Judge rendered canary queries against rendered baseline queries over the window."""
    return canary.analyse(
        win.client,
        SETTINGS,
        {"error_ratio": canaries},
        {"error_ratio": baselines},
        win.start,
        win.end,
        win.step,
        now=win.end + 60,
    )


def test_a_canary_better_than_the_baseline_passes(window):
    result = analyse(window, queries(HEALTHY), queries(BROKEN))
    judged = result.judgement.metric("error_ratio")
    assert (result.verdict, result.proceed, result.notes) == ("pass", True, ())
    assert judged.canary_count == judged.baseline_count == 2 * window.points
    assert (judged.canary_median, judged.baseline_median) == (0.05, 0.5)
    assert judged.method == analysis.U_TEST
    assert result.judgement.judged_at == window.end + 60


def test_a_canary_worse_than_the_baseline_fails(window):
    result = analyse(window, queries(BROKEN), queries(HEALTHY))
    judged = result.judgement.metric("error_ratio")
    assert (result.verdict, result.proceed) == ("fail", False)
    assert judged.worse_by == pytest.approx((0.5 - 0.05) / 0.05)  # 900% worse
    assert judged.p_value is not None and judged.p_value < SETTINGS.alpha


def test_a_side_without_data_is_inconclusive_and_halts(window):
    result = analyse(window, queries(["web-9"]), queries(BROKEN))
    judged = result.judgement.metric("error_ratio")
    assert (result.verdict, result.proceed) == ("inconclusive", False)
    assert (judged.canary_count, judged.baseline_count) == (0, 2 * window.points)


def test_nan_and_infinity_reach_the_judge_and_are_dropped_and_counted(window):
    result = analyse(window, queries([*HEALTHY, "web-5", "web-6"]), queries(BROKEN))
    judged = result.judgement.metric("error_ratio")
    assert result.verdict == "pass"
    assert (judged.canary_count, judged.canary_dropped) == (2 * window.points, 2 * window.points)


def test_a_failing_query_is_noted_and_judged_without_its_samples(window):
    canaries = [query("web-1"), "nosuch(app_error_ratio)", "app_error_ratio{"]
    result = analyse(window, canaries, queries(BROKEN))
    judged = result.judgement.metric("error_ratio")
    assert result.verdict == "pass"
    assert judged.canary_count == window.points  # web-1 alone
    assert len(result.notes) == 2
    assert result.notes[0].startswith("error_ratio canary query 2: query 'nosuch(app_error_ratio)'")
    assert 'unknown function with name "nosuch"' in result.notes[0]
    assert result.notes[1].startswith("error_ratio canary query 3: query 'app_error_ratio{'")
    assert "parse error" in result.notes[1]
    assert result.to_dict()["notes"] == list(result.notes)


def test_every_canary_query_failing_is_inconclusive_not_an_exception(window):
    result = analyse(window, ["app_error_ratio{"], queries(BROKEN))
    assert result.verdict == "inconclusive"
    assert len(result.notes) == 1


def test_only_the_first_50_targets_of_a_side_are_sampled(window):
    canaries = queries(HEALTHY[i % 2] for i in range(60))
    result = analyse(window, canaries, queries(BROKEN))
    judged = result.judgement.metric("error_ratio")
    assert judged.canary_count == canary.MAX_TARGETS_PER_SIDE * window.points
    assert result.notes == ("error_ratio canary: sampled the first 50 of 60 targets",)


def test_an_unreachable_prometheus_is_one_note_and_no_more_queries(window):
    gone = PrometheusClient(f"http://127.0.0.1:{free_port()}", timeout=2)
    metrics = [("error_ratio", queries(HEALTHY), queries(BROKEN))]
    found_canary, found_baseline, notes = canary.sample_metrics(
        gone, metrics, window.start, window.end, window.step
    )
    assert (found_canary, found_baseline) == ({"error_ratio": []}, {"error_ratio": []})
    assert len(notes) == 2
    assert notes[0].startswith(f"error_ratio canary query 1 ({query('web-1')}): Prometheus at")
    assert "unreachable" in notes[0]
    assert notes[1].startswith("3 more queries not sent: Prometheus at")
