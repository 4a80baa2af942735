"""Pure pieces of the kubernetes executor: targets, selectors, rollout status, error reasons.

The executor's API calls are tested against a local stand-in for the Kubernetes API in
tests/integration/test_executor_kubernetes.py.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import kubernetes
import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

import receiver.executors.kubernetes as kube_module
from receiver.cli import main as cli_main
from receiver.config import config_warnings, parse_config
from receiver.executors import check_executors
from receiver.executors.kubernetes import (
    ANNOTATIONS_TO_SKIP,
    EXCLUDED_CLIENTS,
    RESTARTED_AT,
    REVISION,
    SUPPORTED_CLIENTS,
    Call,
    Conflict,
    KubeError,
    Rollout,
    api_error,
    choose_revision,
    client_version_warning,
    images,
    installed_client_version,
    label_selector,
    parse_target,
    ref_group,
    rfc3339_now,
    rollback_annotations,
    rollout_status,
)
from tests.support.kubeconfig import KUBECONFIG

# ---------------------------------------------------------------- targets


def test_parse_target_deployment_and_statefulset():
    target = parse_target("deployment/shop/web")
    assert (target.kind.kind, target.kind.resource, target.namespace, target.name) == (
        "Deployment",
        "deployments",
        "shop",
        "web",
    )
    assert str(target) == "deployment/shop/web"
    assert target.described == "deployment shop/web"
    sts = parse_target("statefulset/data/db.primary-0")
    assert (sts.kind.kind, sts.name) == ("StatefulSet", "db.primary-0")


def test_longest_valid_names_are_accepted():
    namespace, name = "n" * 63, ".".join(["a" * 63] * 3) + "." + "b" * 61
    assert len(name) == 253
    assert parse_target(f"deployment/{namespace}/{name}").name == name


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("deployment/shop", "is not <kind>/<namespace>/<name>"),
        ("deployment/shop/web/extra", "is not <kind>/<namespace>/<name>"),
        ("pod/shop/web", "kind must be deployment or statefulset, got 'pod'"),
        ("Deployment/shop/web", "kind must be deployment or statefulset"),
        ("deployment/Shop/web", "namespace 'Shop' is not a valid Kubernetes namespace"),
        ("deployment/shop.eu/web", "namespace 'shop.eu' is not a valid"),  # a label: no dots
        ("deployment/-shop/web", "namespace '-shop' is not a valid"),
        ("deployment/" + "n" * 64 + "/web", "is not a valid Kubernetes namespace"),
        ("deployment//web", "namespace '' is not a valid"),
        ("deployment/shop/web_1", "name 'web_1' is not a valid Deployment name"),
        ("deployment/shop/web-", "name 'web-' is not a valid Deployment name"),
        ("deployment/shop/web..x", "is not a valid Deployment name"),
        ("statefulset/shop/DB", "name 'DB' is not a valid StatefulSet name"),
        ("deployment/shop/" + "a" * 254, "is not a valid Deployment name"),
    ],
)
def test_invalid_targets_say_why(text, reason):
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_target(text)


# ---------------------------------------------------------------- selectors


def test_label_selector_from_match_labels_and_expressions():
    selector = {
        "matchLabels": {"tier": "web", "app": "shop"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "canary"]},
            {"key": "legacy", "operator": "DoesNotExist"},
            {"key": "zone", "operator": "NotIn", "values": ["b"]},
            {"key": "owner", "operator": "Exists"},
        ],
    }
    assert label_selector(selector) == (
        "app=shop,tier=web,env in (canary,prod),!legacy,zone notin (b),owner"
    )


def test_empty_selector_is_refused():
    with pytest.raises(KubeError, match="empty selector"):
        label_selector({})


# ---------------------------------------------------------------- rollout status


def deployment(generation=2, observed=2, replicas=3, updated=3, available=3, total=3, **extra):
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "replicas": total,
            **extra,
        },
    }


def test_deployment_rollout_complete():
    state = rollout_status("deployment", deployment(), 2)
    assert (state.done, state.progress, state.failure) == (
        True,
        "3/3 updated, 3/3 available",
        None,
    )


@pytest.mark.parametrize(
    ("obj", "progress"),
    [
        (deployment(observed=1), "waiting for the controller to observe generation 2 (at 1)"),
        (deployment(updated=1, total=4), "1/3 updated, 3/3 available, 3 old pending termination"),
        (deployment(available=2), "3/3 updated, 2/3 available"),
        (deployment(total=4), "3/3 updated, 3/3 available, 1 old pending termination"),
    ],
)
def test_deployment_rollout_in_progress(obj, progress):
    state = rollout_status("deployment", obj, 2)
    assert (state.done, state.progress) == (False, progress)


def test_generation_we_produced_counts_even_if_the_read_is_older():
    # the read still shows generation 2 but our patch produced 3
    assert not rollout_status("deployment", deployment(), 3).done


def test_deployment_progress_deadline_is_a_failure():
    condition = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
    state = rollout_status("deployment", deployment(updated=1, conditions=[condition]), 2)
    assert state.failure == "exceeded its progress deadline"


def statefulset(current="db-1", update="db-2", ready=3, updated=3, partition=None, **spec):
    strategy = {"type": "RollingUpdate"}
    if partition is not None:
        strategy["rollingUpdate"] = {"partition": partition}
    return {
        "metadata": {"generation": 5},
        "spec": {"replicas": 3, "updateStrategy": strategy, **spec},
        "status": {
            "observedGeneration": 5,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "currentRevision": current,
            "updateRevision": update,
        },
    }


def test_statefulset_without_rolling_update_needs_current_revision_to_reach_update():
    """kubectl's fallback when updateStrategy has no rollingUpdate block: ready replicas
    and currentRevision == updateRevision (updatedReplicas is not consulted)."""
    state = rollout_status("statefulset", statefulset(), 5)
    assert (state.done, state.progress) == (False, "3/3 updated, 3/3 ready, revision db-1 -> db-2")
    done = rollout_status("statefulset", statefulset(current="db-2"), 5)
    assert (done.done, done.progress) == (True, "3/3 updated, 3/3 ready")
    assert not rollout_status("statefulset", statefulset(current="db-2", ready=2), 5).done


@pytest.mark.parametrize(
    ("partition", "ready", "updated", "done", "progress"),
    [
        (0, 3, 3, True, "3/3 updated, 3/3 ready"),  # currentRevision db-1 is not consulted
        (0, 3, 2, False, "2/3 updated, 3/3 ready"),
        (0, 2, 3, False, "3/3 updated, 2/3 ready"),
        (0, 4, 3, True, "3/3 updated, 4/3 ready"),  # ready >= replicas, as kubectl
        (2, 3, 1, True, "1/1 updated, 3/3 ready"),
        (2, 3, 0, False, "0/1 updated, 3/3 ready"),
        (2, 2, 1, False, "1/1 updated, 2/3 ready"),
        (5, 3, 0, True, "0/0 updated, 3/3 ready"),  # partition above replicas: nothing to do
    ],
)
def test_statefulset_rolling_update_follows_kubectls_partition_rule(
    partition, ready, updated, done, progress
):
    """kubectl's StatefulSetStatusViewer: ready >= replicas and updated >= replicas -
    partition (the API server always defaults rollingUpdate.partition to 0)."""
    obj = statefulset(ready=ready, updated=updated, partition=partition)
    assert rollout_status("statefulset", obj, 5) == Rollout(done, progress)


def test_statefulset_on_delete_never_completes():
    obj = statefulset()
    obj["spec"]["updateStrategy"] = {"type": "OnDelete"}
    assert "OnDelete" in rollout_status("statefulset", obj, 5).failure


# ---------------------------------------------------------------- errors

STATUS_403 = (
    '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
    '"message":"deployments.apps \\"web\\" is forbidden: User \\"system:serviceaccount:ops:'
    'remediator\\" cannot patch resource \\"deployments/scale\\"","reason":"Forbidden",'
    '"code":403}'
)


def test_forbidden_names_verb_resource_and_namespace():
    call = Call("patch", "deployments/scale", "shop", "deployment shop/web")
    error = api_error(403, STATUS_403, call)
    assert str(error) == "forbidden: needs `patch` on `deployments/scale` in namespace shop (RBAC)"
    assert 'cannot patch resource "deployments/scale"' in error.output


def test_other_statuses():
    call = Call("get", "deployments", "shop", "deployment shop/web")
    assert str(api_error(404, b'{"message": "nope"}', call)) == "deployment shop/web not found"
    assert isinstance(api_error(409, "", call), Conflict)
    assert "credentials" in str(api_error(401, "", call))
    assert str(api_error(500, '{"message": "etcd is sad"}', call)) == (
        "Kubernetes API answered 500 to get deployment shop/web: etcd is sad"
    )
    assert str(api_error(422, '{"message": "bad"}', call)) == (
        "the Kubernetes API refused to get deployment shop/web: bad"
    )
    assert str(api_error(502, "<html>gateway</html>", call)).endswith(": <html>gateway</html>")


def test_restarted_at_is_rfc3339_utc_seconds():
    text = rfc3339_now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text)
    parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 5


# ---------------------------------------------------------------- check (no client, no network)


def kubeconfig_problems(tmp_path: Path, settings: str) -> list[str]:
    """What `remediator check` says of a kubernetes executor (its preflight)."""
    text = f"executors:\n  k8s: {{type: kubernetes, {settings}}}\n"
    config = parse_config(text, source=str(tmp_path / "remediation.yml"), base_dir=tmp_path)
    return [str(problem) for problem in check_executors(config, full=False)]


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ("kubeconfig: kubeconfig", []),
        ("kubeconfig: kubeconfig, context: prod", []),
        (
            "kubeconfig: nope/config",
            ["executors.k8s.kubeconfig: cannot read nope/config: No such file or directory"],
        ),
        (
            "kubeconfig: kubeconfig, context: dev",
            ["executors.k8s.context: no context 'dev' in kubeconfig (contexts: staging, prod)"],
        ),
        ("kubeconfig: broken", ["executors.k8s.kubeconfig: broken is not a valid kubeconfig"]),
        (
            "kubeconfig: nocontext",
            ["executors.k8s.kubeconfig: nocontext has no current-context; set context"],
        ),
    ],
)
def test_check_reads_and_parses_the_kubeconfig(tmp_path, settings, expected):
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    (tmp_path / "broken").write_text("clusters: [\n")
    (tmp_path / "nocontext").write_text(KUBECONFIG.replace("current-context: staging\n", ""))
    found = kubeconfig_problems(tmp_path, settings)
    assert len(found) == len(expected), found
    for problem, start in zip(found, expected, strict=True):
        assert problem.startswith(start), problem


# ---------------------------------------------------------------- rollback choice


def template(image: str, restarted_at: str | None = None, hashed: str = "") -> dict:
    metadata: dict = {"labels": {"app": "api"}}
    if hashed:
        metadata["labels"]["pod-template-hash"] = hashed
    if restarted_at:
        metadata["annotations"] = {RESTARTED_AT: restarted_at}
    return {"metadata": metadata, "spec": {"containers": [{"name": "api", "image": image}]}}


def replicaset(revision: int, tmpl: dict, **annotations: str) -> dict:
    return {
        "metadata": {"annotations": {REVISION: str(revision), **annotations}},
        "spec": {"template": tmpl},
    }


def deployment_at(tmpl: dict) -> dict:
    return {"metadata": {"annotations": {}}, "spec": {"template": tmpl}}


def test_rollback_skips_the_restart_and_goes_to_the_release_before():
    """Issue 19's case: 1 = v1, 2 = v2 (the bad release), 3 = v2 restarted."""
    current = template("api:v2", "2026-01-01T10:00:00Z")
    history = [
        replicaset(1, template("api:v1", hashed="aaa")),
        replicaset(2, template("api:v2", hashed="bbb")),
        replicaset(3, template("api:v2", "2026-01-01T10:00:00Z", hashed="ccc")),
    ]
    choice = choose_revision("deployment shop/api", deployment_at(current), 3, history)
    assert (choice.revision, choice.already) == (1, False)
    assert choice.skipped == (
        "skipped revision 2: differs from the current template only in restartedAt",
    )
    assert choice.template == template("api:v1")  # pod-template-hash removed
    assert images(choice.template) == ["api:v1"]


def test_an_earlier_restart_differs_too_only_in_restarted_at():
    current = template("api:v2", "2026-01-01T11:00:00Z")
    history = [
        replicaset(1, template("api:v1", "2025-12-01T00:00:00Z")),
        replicaset(2, template("api:v2", "2025-12-24T00:00:00Z")),  # restarted before
        replicaset(3, template("api:v2", "2026-01-01T11:00:00Z")),
    ]
    choice = choose_revision("deployment shop/api", deployment_at(current), 3, history)
    assert choice.revision == 1
    # the target's own restartedAt comes back with it, as kubectl rollout undo would
    assert choice.template["metadata"]["annotations"] == {RESTARTED_AT: "2025-12-01T00:00:00Z"}


def test_without_any_restart_the_previous_revision_is_chosen_as_kubectl_does():
    current = template("api:3")
    history = [replicaset(n, template(f"api:{n}")) for n in (1, 2, 3)]
    choice = choose_revision("deployment shop/api", deployment_at(current), 3, history)
    assert (choice.revision, choice.skipped) == (2, ())


def test_only_restarts_of_the_current_release_is_refused_with_the_reason():
    current = template("api:v1", "2026-01-01T10:00:01Z")
    history = [
        replicaset(1, template("api:v1")),
        replicaset(2, template("api:v1", "2026-01-01T10:00:00Z")),
        replicaset(3, template("api:v1", "2026-01-01T10:00:01Z")),
    ]
    with pytest.raises(KubeError) as raised:
        choose_revision("deployment shop/api", deployment_at(current), 3, history)
    assert str(raised.value) == (
        "cannot roll back deployment shop/api: no earlier release (current revision 3; "
        "skipped revision 2: differs from the current template only in restartedAt; "
        "skipped revision 1: differs from the current template only in restartedAt)"
    )


def test_no_older_revision_at_all_is_refused():
    with pytest.raises(KubeError, match=r"no previous revision \(current revision 1\)$"):
        choose_revision(
            "deployment shop/api",
            deployment_at(template("api:1")),
            1,
            [replicaset(1, template("api:1"))],
        )


def test_an_older_revision_equal_to_the_current_template_means_already_there():
    """kubectl: "skipped rollback (current template already matches revision 1)"."""
    current = template("api:v1")
    history = [replicaset(1, template("api:v1", hashed="aaa")), replicaset(2, template("api:v2"))]
    choice = choose_revision("deployment shop/api", deployment_at(current), 2, history)
    assert (choice.revision, choice.already) == (1, True)


def test_a_change_beyond_restarted_at_is_another_release():
    changed = template("api:v2", "2026-01-01T10:00:00Z")
    changed["spec"]["containers"][0]["env"] = [{"name": "MODE", "value": "safe"}]
    history = [
        replicaset(1, template("api:v1")),
        replicaset(2, template("api:v2")),
        replicaset(3, changed),
    ]
    choice = choose_revision("deployment shop/api", deployment_at(changed), 3, history)
    assert (choice.revision, choice.skipped) == (2, ())


def test_rollback_annotations_are_kubectls():
    """The Deployment keeps its own ANNOTATIONS_TO_SKIP and takes every other one from
    the target ReplicaSet; annotations only the Deployment had are dropped, as kubectl's
    replace of /metadata/annotations drops them."""
    deployment = {
        "metadata": {
            "annotations": {
                REVISION: "3",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                "kubernetes.io/change-cause": "release v2",
                "team": "shop",
            }
        }
    }
    target = {
        REVISION: "1",
        "deployment.kubernetes.io/desired-replicas": "3",
        "deployment.kubernetes.io/max-replicas": "4",
        "kubernetes.io/change-cause": "release v1",
    }
    assert rollback_annotations(deployment, target) == {
        REVISION: "3",
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
        "kubernetes.io/change-cause": "release v1",
    }
    assert REVISION in ANNOTATIONS_TO_SKIP


@pytest.mark.parametrize(
    ("api_version", "group"),
    [("apps/v1", "apps"), ("example.com/v1", "example.com"), ("v1", ""), (None, None), ("", None)],
)
def test_ref_group_is_the_part_of_api_version_before_the_slash(api_version, group):
    assert ref_group({"apiVersion": api_version} if api_version is not None else {}) == group


# ---------------------------------------------------------------- supported client versions

REPO = Path(__file__).resolve().parents[2]
#: Set by `make test-kube-min` to the client version it installed (the range's floor).
RUN_CLIENT = os.environ.get("REMEDIATOR_KUBERNETES_CLIENT")
TOKEN_LOST = (
    "it never sends the kubeconfig's or service account's token, so the API refuses "
    "every call (401)"
)


def test_the_installed_client_is_within_the_supported_range():
    assert installed_client_version() == kubernetes.__version__
    assert Version(kubernetes.__version__) in SpecifierSet(SUPPORTED_CLIENTS)
    assert client_version_warning(kubernetes.__version__) is None


@pytest.mark.skipif(RUN_CLIENT is None, reason="only the oldest-client run names its client")
def test_the_oldest_client_run_uses_the_client_it_names():
    assert kubernetes.__version__ == RUN_CLIENT


def declared_requirements() -> dict[str, Requirement]:
    """pyproject.toml's `kubernetes` requirement in each extra that has one."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    found = {}
    for extra, requirements in project["optional-dependencies"].items():
        for text in requirements:
            requirement = Requirement(text)
            if requirement.name == "kubernetes":
                found[extra] = requirement
    return found


def test_pyproject_declares_the_supported_range_in_both_extras():
    declared = declared_requirements()
    assert sorted(declared) == ["kubernetes", "test"]
    for requirement in declared.values():
        assert requirement.specifier == SpecifierSet(SUPPORTED_CLIENTS)


def test_make_test_runs_the_executor_tests_at_the_floor_of_the_range():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    floor = re.search(r"^KUBE_MIN := (\S+)$", makefile, re.MULTILINE)
    assert floor is not None
    lowest = [s.version for s in SpecifierSet(SUPPORTED_CLIENTS) if s.operator == ">="]
    assert lowest == ["29"]
    assert Version(floor[1]) == Version(lowest[0])
    assert Version(floor[1]) in SpecifierSet(SUPPORTED_CLIENTS)
    # `make test` runs them beside the suite and fails when they fail
    test_rule = re.search(r"^test: .*?(?=^\S|\Z)", makefile, re.MULTILINE | re.DOTALL)
    assert test_rule is not None
    assert "$(MAKE) --no-print-directory test-kube-min" in test_rule[0]
    assert "test $$kube_status = 0" in test_rule[0]
    assert "tests/unit/test_executors_kubernetes.py" in makefile
    assert "tests/integration/test_executor_kubernetes.py" in makefile


def test_every_excluded_version_says_why():
    excluded = [s.version for s in SpecifierSet(SUPPORTED_CLIENTS) if s.operator == "!="]
    assert sorted(excluded) == sorted(EXCLUDED_CLIENTS) == ["36.0.0"]


@pytest.mark.parametrize(
    ("version", "why"),
    [
        ("29.0.0", None),
        ("35.0.0", None),
        ("36.0.2", None),
        ("37.0.2", None),
        (None, None),  # not installed: the build says so, not this warning
        ("28.1.0", "the executor is not tested with it"),
        ("36.0.0", TOKEN_LOST),
        # 36.0.1: its loaders store the token where its client reads it (executor tests
        # pass with it; only 36.0.0 loses it)
        ("36.0.1", None),
        ("not-a-version", "the executor is not tested with it"),
    ],
)
def test_client_version_warning_names_the_version_and_the_range(version, why):
    expected = (
        None
        if why is None
        else f"the installed kubernetes client {version} is outside the supported range "
        f">=29,!=36.0.0 ({why}): restart, scale or rollback may fail; install a "
        "supported one: pip install 'kubernetes>=29,!=36.0.0'"
    )
    assert client_version_warning(version) == expected


def test_check_warns_about_an_unsupported_client(tmp_path, monkeypatch, capsys):
    # The version is given here, not installed: the installed one is supported (above).
    monkeypatch.setattr(kube_module, "installed_client_version", lambda: "36.0.0")
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    config = tmp_path / "remediation.yml"
    config.write_text(
        "executors:\n  k8s: {type: kubernetes, kubeconfig: kubeconfig}\n  echo: {type: log}\n"
    )
    assert cli_main(["check", "--config", str(config)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert (
        "  warning: executors.k8s: executor 'k8s': " + client_version_warning("36.0.0")  # type: ignore[operator]
    ) in err


def test_no_client_warning_without_a_kubernetes_executor(monkeypatch):
    monkeypatch.setattr(kube_module, "installed_client_version", lambda: "28.1.0")
    config = parse_config("executors:\n  echo: {type: log}\n")
    assert [w for w in config_warnings(config) if w.path.startswith("executors")] == []
