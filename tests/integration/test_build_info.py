"""What runs, shown as Prometheus components show it (issue 13): the version of the
installed distribution and the Python, on `/-/ready`'s second line (the first stays
"Remediator is Ready." for probes), in the start log line and as the
`remediator_build_info{version, python}` gauge of 1. Through the real `remediator serve`.
"""

from __future__ import annotations

import platform
from importlib.metadata import version
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import remediator
from tests.support.receiver import AUTH_SERVER, LOG_RESTART, write_config


def test_ready_metrics_and_start_log_name_the_version(tmp_path: Path) -> None:
    installed, python = version("remediator"), platform.python_version()
    config = write_config(tmp_path, AUTH_SERVER + LOG_RESTART)
    with remediator(tmp_path, config, f"sqlite:///{tmp_path / 'journal.db'}") as server:
        ready = requests.get(f"{server.url}/-/ready", timeout=10)
        metrics = requests.get(f"{server.url}/metrics", timeout=10).text
        output = server.output()

    assert ready.status_code == 200
    assert ready.text.splitlines() == [
        "Remediator is Ready.",
        f"remediator {installed} (Python {python})",
    ]
    families = text_string_to_metric_families(metrics)
    [family] = [f for f in families if f.name == "remediator_build_info"]
    assert family.type == "gauge"
    assert [(s.name, s.labels, s.value) for s in family.samples] == [
        ("remediator_build_info", {"version": installed, "python": python}, 1.0)
    ]
    [started] = [line for line in output.splitlines() if "remediator listening on" in line]
    assert f"(version {installed}, Python {python})" in started
