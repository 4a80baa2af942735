"""The container image, without a Docker engine (none can run on this machine).

hadolint lints the Dockerfile; the image's install steps are replayed in a clean
virtualenv (wheel, download of the wheels, offline install as in the final stage);
then the image's CMD and HEALTHCHECK commands, read from the Dockerfile itself, are
run against that install.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import venv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.processes import REPO, free_port, stop

DOCKERFILE = REPO / "Dockerfile"
#: The extras the image installs: PostgreSQL and the Kubernetes client (deploy/kubernetes/).
EXTRAS = "postgres,kubernetes"


def instruction(name: str) -> list[str]:
    """The JSON-array form of the (last) instruction `name` in the Dockerfile."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith(name + " ")]
    assert lines, f"no {name} in the Dockerfile"
    value = lines[-1][len(name) :].strip()
    if name == "HEALTHCHECK":
        value = value[value.index("CMD") + 3 :].strip()
    return json.loads(value)


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{argv}\n{result.stdout}\n{result.stderr}"
    return result


def test_hadolint_is_clean():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    run([hadolint, str(DOCKERFILE)])


def test_image_runs_as_non_root_with_healthcheck_on_healthy():
    text = DOCKERFILE.read_text()
    assert "USER 10001" in text
    assert "/-/healthy" in " ".join(instruction("HEALTHCHECK"))
    assert instruction("ENTRYPOINT") == ["remediator"]
    assert instruction("CMD")[0] == "serve"
    assert "FROM python:3.11" in text and "slim" in text
    assert f'whl[{EXTRAS}]"' in text and f'"remediator[{EXTRAS}]==' in text


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A clean virtualenv installed exactly as the image's stages do. The virtualenv is
    made while the build stage's wheel and download run (neither depends on the other);
    the install into it waits for both.

    Its interpreter is a symlink, as `python -m venv` makes it on Linux, not a copy: a
    copy is written by one thread and then executed (ensurepip) while the other thread
    forks pip, whose children hold the copy's write descriptor open until they exec, and
    the kernel refuses to execute a file open for writing (ETXTBSY, "Text file busy",
    seen in CI)."""
    work = tmp_path_factory.mktemp("image")
    wheels = work / "wheels"
    env_dir = work / "venv"
    with ThreadPoolExecutor(max_workers=1) as pool:
        made = pool.submit(venv.create, env_dir, with_pip=True, symlinks=True)
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-cache-dir",
                "--no-deps",
                "--wheel-dir",
                str(wheels),
                str(REPO),
            ]
        )
        (wheel,) = wheels.glob("remediator-*.whl")
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-cache-dir",
                "--dest",
                str(wheels),
                "--only-binary=:all:",
                f"{wheel}[{EXTRAS}]",
            ]
        )
        made.result()  # re-raises whatever failed in making the virtualenv
    python = env_dir / "bin" / "python"
    version = wheel.name.split("-")[1]
    run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--no-index",
            "--find-links",
            str(wheels),
            f"remediator[{EXTRAS}]=={version}",
        ],
        # as in the image: no PYTHONPATH, which could name a source tree whose
        # remediator.egg-info pip would take for remediator already installed
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    return env_dir


def test_image_cmd_starts_and_healthcheck_passes(installed, tmp_path):
    config = tmp_path / "etc" / "remediation.yml"
    config.parent.mkdir()
    shutil.copy(REPO / "examples" / "remediation.yml", config)
    shutil.copytree(REPO / "examples" / "secrets", config.parent / "secrets")
    port = free_port()
    argv = [
        arg.replace("/etc/remediator/remediation.yml", str(config))
        .replace("0.0.0.0:9095", f"127.0.0.1:{port}")
        .replace("/var/lib/remediator", str(tmp_path))
        for arg in instruction("CMD")
    ]
    bin_dir = installed / "bin"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    process = subprocess.Popen(
        [str(bin_dir / instruction("ENTRYPOINT")[0]), *argv],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        healthcheck = [arg.replace("9095", str(port)) for arg in instruction("HEALTHCHECK")]
        healthcheck[0] = str(bin_dir / healthcheck[0])
        deadline = time.monotonic() + 30
        while True:
            result = subprocess.run(healthcheck, capture_output=True, env=env, timeout=10)
            if result.returncode == 0:
                break
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, result.stderr.decode()
            time.sleep(0.3)
        assert (tmp_path / "journal.db").exists()
    finally:
        stop(process)
        if process.stdout:
            process.stdout.close()


def test_image_builds_every_example_executor_including_kubernetes(installed, tmp_path):
    """The image carries the kubernetes client, so deploy/kubernetes/ can use the executor."""
    config = tmp_path / "etc" / "remediation.yml"
    config.parent.mkdir()
    shutil.copy(REPO / "examples" / "remediation.yml", config)
    shutil.copytree(REPO / "examples" / "secrets", config.parent / "secrets")
    code = (
        "import sys\n"
        "from receiver.config import load_config\n"
        "from receiver.executors import build_executors\n"
        "built = build_executors(load_config(sys.argv[1]))\n"
        "print(sorted(type(e).__name__ for e in built.values()))\n"
    )
    result = run([str(installed / "bin" / "python"), "-c", code, str(config)], cwd=tmp_path)
    assert "KubernetesExecutor" in result.stdout


def test_the_installed_package_carries_the_schema_migrations(installed, tmp_path):
    """Alembic's script directory ships inside the package: env.py, the revisions and
    the template a developer's new revision starts from; a journal upgrades from it."""
    code = (
        "from receiver.store import migrate\n"
        "where = migrate.SCRIPT_LOCATION\n"
        "found = sorted(p.relative_to(where).as_posix()\n"
        "               for p in where.rglob('*') if p.suffix in ('.py', '.mako'))\n"
        "print(' '.join(found))\n"
        "print(migrate.upgrade('sqlite:///journal.db'))\n"
    )
    result = run([str(installed / "bin" / "python"), "-c", code], cwd=tmp_path)
    shipped, upgraded = result.stdout.splitlines()
    source = REPO / "receiver" / "store" / "migrations"
    expected = sorted(
        p.relative_to(source).as_posix() for p in source.rglob("*") if p.suffix in (".py", ".mako")
    )
    assert shipped.split() == expected
    assert "script.py.mako" in expected and "versions/0001_baseline.py" in expected
    assert upgraded.startswith("journal schema upgraded from none to ")
