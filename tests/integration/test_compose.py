"""docker-compose.yml's structure (no Docker engine can run here): every service and
build target exists, every mounted file is in the repository, and the configs it mounts
are valid for the real tools (promtool, amtool, supervisord's parser, remediator check)."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.processes import REPO, binary

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def mounts(service: str) -> dict[str, str]:
    """host path -> container path, for bind mounts (those starting with ./)."""
    found = {}
    for volume in SERVICES[service].get("volumes", []):
        host, container = volume.split(":")[:2]
        if host.startswith("./"):
            found[host] = container
    return found


def test_services_and_dependencies():
    assert set(SERVICES) == {"demo", "remediator", "prometheus", "alertmanager", "grafana"}
    for name, service in SERVICES.items():
        for dependency in service.get("depends_on", []):
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
        assert "image" in service or "build" in service, name
    for name in ("prometheus", "alertmanager", "grafana"):
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", SERVICES[name]["image"]), name
    named = {v.split(":")[0] for s in SERVICES.values() for v in s.get("volumes", [])}
    named = {v for v in named if not v.startswith("./")}
    assert named <= set(COMPOSE.get("volumes", {})), named


def test_build_targets_exist_in_the_dockerfile():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert SERVICES["remediator"]["build"] == "."
    assert SERVICES["demo"]["build"]["target"] == "demo"
    assert re.search(r"^FROM \S+ AS demo$", dockerfile, re.MULTILINE)
    for source in re.findall(r"^COPY (?!--from)(\S+) ", dockerfile, re.MULTILINE):
        assert (REPO / source).exists(), f"Dockerfile copies missing {source}"


def test_every_bind_mount_exists_in_the_repository():
    for name in SERVICES:
        for host in mounts(name):
            assert (REPO / host).exists(), f"{name} mounts missing {host}"


def test_grafana_mounts_match_provisioning():
    grafana = mounts("grafana")
    assert grafana["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load(
        (REPO / "grafana" / "provisioning" / "dashboards" / "remediator.yml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    assert grafana["./grafana/dashboards"] == path


def test_prometheus_config_is_valid_with_its_mounted_rules(tmp_path: Path):
    config = (REPO / "deploy" / "compose" / "prometheus.yml").read_text()
    rules_mount = mounts("prometheus")["./rules"]
    local = config.replace(rules_mount, str(REPO / "rules"))
    (tmp_path / "prometheus.yml").write_text(local)
    result = subprocess.run(
        [binary("promtool"), "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "remediator:9095" in config and "alertmanager:9093" in config


def test_alertmanager_mounts_the_shipped_routing_and_token():
    am = mounts("alertmanager")
    assert am["./alertmanager/alertmanager.yml"] == "/etc/alertmanager/alertmanager.yml"
    routing = yaml.safe_load((REPO / "alertmanager" / "alertmanager.yml").read_text())
    remediator = next(r for r in routing["receivers"] if r["name"] == "remediator")
    hook = remediator["webhook_configs"][0]
    assert hook["url"] == "http://remediator:9095/webhook"
    assert am["./deploy/compose/token"] == hook["http_config"]["authorization"]["credentials_file"]


def test_remediator_config_passes_check_and_shares_the_token():
    remediator = mounts("remediator")
    config = remediator["./deploy/compose/remediation.yml"]
    token = remediator["./deploy/compose/token"]
    assert Path(config).parent == Path(token).parent  # `bearer_token_file: token` resolves
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "receiver.cli",
            "check",
            "--config",
            str(REPO / "deploy" / "compose" / "remediation.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_demo_supervisord_config_runs_three_demo_processes():
    parser = configparser.RawConfigParser()
    parser.read(REPO / "deploy" / "compose" / "supervisord.conf")
    program = parser["program:demo"]
    assert program["numprocs"] == "3"
    assert "--advertise demo" in program["command"]
    assert "/var/lib/demo/state" in program["command"]
    assert parser["inet_http_server"]["port"].endswith(":9001")
    remediation = yaml.safe_load((REPO / "deploy" / "compose" / "remediation.yml").read_text())
    assert remediation["executors"]["procs"]["url"] == "http://demo:9001/RPC2"
