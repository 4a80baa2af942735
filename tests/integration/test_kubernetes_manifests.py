"""deploy/kubernetes/: the manifests' structure, their RBAC, their config, and kubectl.

No Kubernetes cluster can run on this machine. The manifests are parsed and
cross-checked here (kinds, references between objects, security settings, probes, the
Role against what the executor really calls), the ConfigMap's remediation.yml goes
through `remediator check`, the Alertmanager snippet through `amtool check-config`, and
the real kubectl builds the kustomization offline and runs `kubectl apply
--dry-run=client`. kubectl insists on the API's discovery documents even for a
client-side dry run, so that test serves them from a STAND-IN (tests/support/kube_api.py,
DiscoveryAPI: an empty cluster that announces the kinds used here); nothing is applied.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from receiver.config import Config, ExecutorConfig, load_config
from receiver.executors import KubernetesExecutor, build_executors
from tests.support.actions import action_request
from tests.support.kube_api import discovery_api, kube_api, write_kubeconfig
from tests.support.processes import REPO

pytestmark = pytest.mark.integration

MANIFESTS = REPO / "deploy" / "kubernetes"
SNIPPET = MANIFESTS / "alertmanager-snippet.yml"
KUSTOMIZATION = MANIFESTS / "kustomization.yml"

#: (API group, resource, verb): exactly what the kubernetes executor's actions call.
NEEDED = {
    ("apps", "deployments", "get"),
    ("apps", "deployments", "patch"),
    ("apps", "statefulsets", "get"),
    ("apps", "statefulsets", "patch"),
    ("apps", "deployments/scale", "get"),
    ("apps", "deployments/scale", "patch"),
    ("apps", "statefulsets/scale", "get"),
    ("apps", "statefulsets/scale", "patch"),
    ("apps", "replicasets", "list"),
    ("autoscaling", "horizontalpodautoscalers", "list"),
}


def resources() -> list[str]:
    return yaml.safe_load(KUSTOMIZATION.read_text())["resources"]


def objects() -> list[dict[str, Any]]:
    found = []
    for name in resources():
        for doc in yaml.safe_load_all((MANIFESTS / name).read_text()):
            if doc is not None:
                found.append(doc)
    return found


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [
        o
        for o in objects()
        if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def container() -> dict[str, Any]:
    (only,) = one("Deployment")["spec"]["template"]["spec"]["containers"]
    return only


def configmap_config() -> str:
    return one("ConfigMap", "remediator-config")["data"]["remediation.yml"]


def role_grants(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


# ---------------------------------------------------------------- structure


def test_kustomization_lists_every_manifest_and_the_kinds_are_there():
    on_disk = {p.name for p in MANIFESTS.glob("*.y*ml")} - {KUSTOMIZATION.name, SNIPPET.name}
    assert sorted(resources()) == sorted(on_disk)
    kinds = sorted(o["kind"] for o in objects())
    assert kinds == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ConfigMap",
            "Secret",
            "Deployment",
            "Service",
        ]
    )
    for obj in objects():
        assert obj["apiVersion"] and obj["metadata"]["name"], obj
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"], obj["kind"]


def test_role_grants_exactly_the_needed_verbs_and_resources():
    role = one("Role")
    assert role_grants(role) == NEEDED
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}  # no resourceNames tricks
        for values in rule.values():
            assert not any("*" in v for v in values), rule
    assert not [o for o in objects() if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]


def test_role_matches_what_the_executor_calls(tmp_path):
    """Run every action against the API stand-in; map each request to its RBAC triple."""
    with kube_api() as api:
        api.add_deployment("shop", "web")
        api.add_statefulset("shop", "db")
        spec = ExecutorConfig(
            "k8s", "kubernetes", {"kubeconfig": str(write_kubeconfig(tmp_path / "kc", api.url))}
        )
        executor = build_executors(Config(executors={"k8s": spec}))["k8s"]
        assert isinstance(executor, KubernetesExecutor)
        executor.poll_interval = 0.02
        for target in ("deployment/shop/web", "statefulset/shop/db"):
            executor.replicas(target)
            for action in ("restart", "scale", "rollback"):
                executor.execute(action_request(action, target, replicas=5))
        used = set()
        for request in api.received:
            path = urlsplit(request.path).path
            found = re.fullmatch(
                r"/apis/(?P<group>[^/]+)/[^/]+/namespaces/[^/]+/(?P<resource>[^/]+)"
                r"(?:/[^/]+(?P<sub>/[^/]+)?)?",
                path,
            )
            assert found, path
            resource = found["resource"] + (found["sub"] or "")
            is_list = path.rstrip("/").endswith(found["resource"])
            verb = {"GET": "list" if is_list else "get", "PATCH": "patch"}[request.method]
            used.add((found["group"], resource, verb))
    assert used == role_grants(one("Role"))


def test_a_namespace_the_manifests_do_not_create_is_said_to_be_yours():
    """Objects and matchers may use a namespace no manifest creates only when rbac.yml,
    the kustomization and the README say so, with the error an apply would give."""
    created = {o["metadata"]["name"] for o in objects() if o["kind"] == "Namespace"}
    used = {o["metadata"]["namespace"] for o in objects() if "namespace" in o["metadata"]}
    # matchers naming a namespace literally (templates such as {{ labels.namespace }} aside)
    used |= set(re.findall(r'namespace="([^"{]+)"', configmap_config()))
    readme = (REPO / "README.md").read_text().split("\n## Kubernetes\n", 1)[1]
    documents = {
        "rbac.yml": (MANIFESTS / "rbac.yml").read_text(),
        "kustomization.yml": KUSTOMIZATION.read_text(),
        "README Kubernetes": readme.split("\n## ", 1)[0],
    }
    assert used - created == {"shop"}  # the example namespace of the workloads
    for namespace in used - created:
        for where, text in documents.items():
            assert f"`{namespace}`" in text, where
            if where != "kustomization.yml":
                assert f'namespaces "{namespace}" not found' in text, where


def test_rolebinding_binds_the_role_to_the_service_account():
    role, binding, account = one("Role"), one("RoleBinding"), one("ServiceAccount")
    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]


def test_deployment_references_objects_that_exist():
    deployment = one("Deployment")
    namespace = deployment["metadata"]["namespace"]
    assert one("Namespace")["metadata"]["name"] == namespace
    pod = deployment["spec"]["template"]["spec"]
    account = one("ServiceAccount", pod["serviceAccountName"])
    assert account["metadata"]["namespace"] == namespace
    volumes = {v["name"]: v for v in pod["volumes"]}
    sources = volumes["config"]["projected"]["sources"]
    config_source = next(s["configMap"] for s in sources if "configMap" in s)
    secret_source = next(s["secret"] for s in sources if "secret" in s)
    configmap = one("ConfigMap", config_source["name"])
    secret = one("Secret", secret_source["name"])
    assert configmap["metadata"]["namespace"] == secret["metadata"]["namespace"] == namespace
    for source, data in ((config_source, configmap["data"]), (secret_source, secret["stringData"])):
        for item in source["items"]:
            assert item["key"] in data
    mounts = {m["name"]: m for m in container()["volumeMounts"]}
    assert set(mounts) == set(volumes)
    config_dir = mounts["config"]["mountPath"]
    args = container()["args"]
    assert args[0] == "serve"
    assert args[args.index("--config") + 1] == f"{config_dir}/remediation.yml"
    # the token the config names is projected beside the config file
    token_file = yaml.safe_load(configmap_config())["server"]["auth"]["bearer_token_file"]
    assert token_file in [item["path"] for item in secret_source["items"]]


def test_deployment_runs_non_root_with_probes_resources_and_scrape_annotations():
    deployment = one("Deployment")
    template = deployment["spec"]["template"]
    pod = template["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert f"USER {pod['securityContext']['runAsUser']}" in (REPO / "Dockerfile").read_text()
    main = container()
    security = main["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    (port,) = main["ports"]
    assert (port["name"], port["containerPort"]) == ("http", 9095)
    assert main["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http"}
    assert {"cpu", "memory"} <= set(main["resources"]["requests"])
    assert "memory" in main["resources"]["limits"]
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9095",
        "prometheus.io/path": "/metrics",
    }
    assert template["metadata"]["labels"] == deployment["spec"]["selector"]["matchLabels"]


def test_journal_is_on_a_writable_volume_at_the_store_path():
    store = yaml.safe_load(configmap_config())["store"]
    assert store.startswith("sqlite:////")
    journal_dir = str(Path(store.removeprefix("sqlite:///")).parent)
    mounts = {m["mountPath"]: m for m in container()["volumeMounts"]}
    assert journal_dir in mounts and not mounts[journal_dir].get("readOnly")
    volumes = {v["name"]: v for v in one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    journal = volumes[mounts[journal_dir]["name"]]
    assert "emptyDir" in journal or "persistentVolumeClaim" in journal
    assert "/tmp" in mounts  # the root filesystem is read-only
    # SQLite has one writer: one replica, and never two pods during a rollout
    assert one("Deployment")["spec"]["replicas"] == 1
    assert one("Deployment")["spec"]["strategy"]["type"] == "Recreate"


def test_service_targets_the_pods_on_9095():
    service, deployment = one("Service"), one("Deployment")
    assert service["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (9095, "http")


def test_secret_is_a_documented_placeholder():
    secret = one("Secret")
    assert secret["stringData"]["webhook-token"].startswith("REPLACE-ME")
    assert "PLACEHOLDER" in (MANIFESTS / "secret.yml").read_text()


# ---------------------------------------------------------------- the config it carries


def test_configmap_config_passes_remediator_check(tmp_path):
    (tmp_path / "remediation.yml").write_text(configmap_config())
    token = one("Secret")["stringData"]["webhook-token"]
    (tmp_path / "webhook-token").write_text(token)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "receiver.cli",
            "check",
            "--config",
            str(tmp_path / "remediation.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert "OK (4 strategies, 2 executors)" in result.stdout
    config = load_config(tmp_path / "remediation.yml")
    assert config.server.auth.bearer_token == token
    (cluster,) = [e for e in config.executors.values() if e.type == "kubernetes"]
    assert cluster.settings["in_cluster"] is True
    # every kubernetes strategy acts only in a namespace the Role covers
    role_namespace = one("Role")["metadata"]["namespace"]
    kube_strategies = [s for s in config.strategies if s.executor == cluster.name]
    assert {s.action for s in kube_strategies} == {"restart", "scale", "rollback"}
    for strategy in kube_strategies:
        namespaces = [m.value for m in strategy.matchers if m.name == "namespace"]
        assert namespaces == [role_namespace], strategy.name
        assert re.match(
            r"'?(deployment|statefulset)/\{\{ labels.namespace }}/", strategy.target.source
        )


def test_configmap_config_without_the_token_fails_check(tmp_path):
    """The check above can fail: the token must really be found beside the config."""
    (tmp_path / "remediation.yml").write_text(configmap_config())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "receiver.cli",
            "check",
            "--config",
            str(tmp_path / "remediation.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 1
    assert "server.auth.bearer_token_file" in result.stderr


# ---------------------------------------------------------------- Alertmanager


def test_alertmanager_snippet_points_at_the_service_with_a_credentials_file():
    snippet = yaml.safe_load(SNIPPET.read_text())
    (receiver,) = snippet["receivers"]
    (webhook,) = receiver["webhook_configs"]
    service = one("Service")
    url = urlsplit(webhook["url"])
    namespace = service["metadata"]["namespace"]
    assert url.hostname in (
        f"{service['metadata']['name']}.{namespace}.svc",
        f"{service['metadata']['name']}.{namespace}.svc.cluster.local",
    )
    assert (url.port, url.path) == (service["spec"]["ports"][0]["port"], "/webhook")
    assert webhook["send_resolved"] is True
    assert webhook["http_config"]["authorization"]["credentials_file"].startswith("/")
    assert snippet["route"]["routes"][0]["receiver"] == receiver["name"]


def test_alertmanager_snippet_passes_amtool(tmp_path):
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not installed (make test installs prometheus-alertmanager)")
    snippet = yaml.safe_load(SNIPPET.read_text())
    full = {
        "route": {"receiver": "people", "routes": snippet["route"]["routes"]},
        "receivers": [{"name": "people"}, *snippet["receivers"]],
    }
    config = tmp_path / "alertmanager.yml"
    config.write_text(yaml.safe_dump(full))
    result = subprocess.run(
        [amtool, "check-config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    routed = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={config}", "remediation=restart"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert routed.stdout.split() == ["remediator"], routed.stdout + routed.stderr
    # the approval request carries the original labels: it goes to people, never back
    labels = ["alertname=RemediationAwaitingApproval", "remediation=restart"]
    routed = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={config}", *labels],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert routed.stdout.split() == ["people"], routed.stdout + routed.stderr


# ---------------------------------------------------------------- kubectl


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl not installed")
    return path


def test_kubectl_kustomize_builds_the_manifests_offline():
    result = subprocess.run(
        [kubectl(), "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, built)) == sorted(map(key, objects()))


def test_kubectl_apply_client_dry_run(tmp_path):
    with discovery_api() as api:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api.url)
        result = subprocess.run(
            [
                kubectl(),
                "--kubeconfig",
                str(kubeconfig),
                "apply",
                "--dry-run=client",
                "--validate=false",
                "-k",
                str(MANIFESTS),
                "-o",
                "name",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        )
    if result.returncode != 0 and re.search(
        r"couldn't get current server API group list|unable to recognize|failed to download "
        r"openapi|connection refused",
        result.stderr,
    ):
        pytest.skip(f"kubectl insists on a real API server for a dry run: {result.stderr[:300]}")
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == sorted(
        [
            "namespace/remediator",
            "serviceaccount/remediator",
            "role.rbac.authorization.k8s.io/remediator",
            "rolebinding.rbac.authorization.k8s.io/remediator",
            "configmap/remediator-config",
            "secret/remediator-webhook-token",
            "deployment.apps/remediator",
            "service/remediator",
        ]
    )
