"""The kubernetes executor, with the real `kubernetes` client, against a STAND-IN API server.

No Kubernetes API server can run on this machine. These tests therefore talk to
tests/support/kube_api.py: a small local HTTP server that implements only the endpoints
the executor uses (apps/v1 deployments and statefulsets get/patch, their scale
subresources, replicasets list, autoscaling/v2 horizontalpodautoscalers list) with the
real API's paths, JSON shapes, status codes and Status error objects, and fakes a
rollout's progress so that verification is exercised. It is a stand-in, not Kubernetes:
what it proves is that the executor sends the requests kubectl would and reads the
answers a real API server gives; RBAC, admission and the real controllers are not
exercised here (the RBAC Role is checked in test_kubernetes_manifests.py).

The executor reaches the stand-in the way it reaches a cluster: a kubeconfig written by
the test (server http://127.0.0.1:<port>, bearer token auth). The last test runs
`remediator serve` with the executor against the stand-in, through the dispatcher.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import kubernetes
import pytest
import requests
from packaging.version import Version

from receiver.config import Config, ExecutorConfig, load_config
from receiver.executors import ExecutorError, KubernetesExecutor, build_executors
from receiver.executors.kubernetes import MERGE_PATCH, RESTARTED_AT, KubeError, parse_target
from receiver.store.sqlite import SqliteStore
from tests.support.actions import action_request
from tests.support.http_server import Reply
from tests.support.kube_api import (
    CHANGE_CAUSE,
    HASH,
    REVISION,
    KubeAPI,
    conflict,
    forbidden,
    header,
    kube_api,
    write_kubeconfig,
)
from tests.support.kube_api import TOKEN as KUBE_TOKEN
from tests.support.payloads import alert, notification
from tests.support.processes import free_port, remediator
from tests.support.receiver import TOKEN, settle, write_config

pytestmark = pytest.mark.integration

SCALE_PATH = r"/deployments/web/scale$"


@pytest.fixture
def api() -> Iterator[KubeAPI]:
    with kube_api() as server:
        server.add_deployment("shop", "web")
        server.add_statefulset("shop", "db")
        yield server


def make_executor(kubeconfig: Path, **settings) -> KubernetesExecutor:
    spec = ExecutorConfig("k8s", "kubernetes", {"kubeconfig": str(kubeconfig), **settings})
    executor = build_executors(Config(executors={"k8s": spec}))["k8s"]
    assert isinstance(executor, KubernetesExecutor)
    executor.poll_interval = 0.02
    return executor


@pytest.fixture
def k8s(api: KubeAPI, tmp_path: Path) -> Iterator[KubernetesExecutor]:
    executor = make_executor(write_kubeconfig(tmp_path / "kubeconfig", api.url), timeout=5.0)
    yield executor
    executor.close()


def patches(api: KubeAPI, path: str = "") -> list:
    return api.requests("PATCH", path)


# ---------------------------------------------------------------- restart


def test_restart_patches_restarted_at_and_waits_for_the_rollout(api, k8s):
    before = api.get("deployments", "shop", "web")
    result = k8s.execute(action_request("restart", "deployment/shop/web"))
    assert result.ok, result.detail

    (patch,) = patches(api, "/deployments/web$")
    assert header(patch, "Content-Type") == "application/strategic-merge-patch+json"
    body = patch.json()
    assert body["metadata"] == {"resourceVersion": before["metadata"]["resourceVersion"]}
    assert set(body) == {"spec", "metadata"}
    annotations = body["spec"]["template"]["metadata"]["annotations"]
    assert set(annotations) == {RESTARTED_AT}
    stamp = datetime.strptime(annotations[RESTARTED_AT], "%Y-%m-%dT%H:%M:%SZ")
    assert abs((datetime.now(UTC) - stamp.replace(tzinfo=UTC)).total_seconds()) < 10

    # the executor polled until the (simulated) rollout completed: the first read after
    # the patch shows the generation not yet observed, the next one half done
    reads_after = [r for r in api.requests("GET", "/deployments/web$") if r is not api.received[0]]
    assert len(reads_after) >= 3
    after = api.get("deployments", "shop", "web")
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert after["status"]["observedGeneration"] == after["metadata"]["generation"]
    assert after["spec"]["template"]["metadata"]["annotations"] == annotations
    assert after["metadata"]["annotations"][REVISION] == "3"  # a restart is a new revision
    assert result.detail == (
        f"restarted deployment/shop/web (restartedAt {annotations[RESTARTED_AT]}); "
        "rollout complete: 3/3 updated, 3/3 available"
    )


def test_restart_within_the_same_second_waits_for_the_next_second(api, k8s):
    """kubectl writes restartedAt in seconds, so a second restart in the same second
    would patch nothing (kubectl refuses it); the executor waits for the next second."""
    api.set_template_annotation("deployments", "shop", "web", RESTARTED_AT, "2026-01-01T00:00:00Z")
    stamps = iter(["2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"])
    k8s.clock = lambda: next(stamps)
    result = k8s.execute(action_request("restart", "deployment/shop/web"))
    assert result.ok, result.detail
    assert result.detail.startswith(
        "restarted deployment/shop/web (restartedAt 2026-01-01T00:00:01Z); rollout complete"
    )
    (patch,) = patches(api)
    assert patch.json()["spec"]["template"]["metadata"]["annotations"] == {
        RESTARTED_AT: "2026-01-01T00:00:01Z"
    }


def test_restart_within_the_same_second_fails_when_the_time_runs_out(api, k8s):
    api.set_template_annotation("deployments", "shop", "web", RESTARTED_AT, "2026-01-01T00:00:00Z")
    k8s.clock = lambda: "2026-01-01T00:00:00Z"  # the next second never comes in time
    result = k8s.execute(action_request("restart", "deployment/shop/web", timeout=0.5))
    assert not result.ok
    assert result.detail == (
        "cannot restart deployment/shop/web: it was restarted within this second "
        "(restartedAt 2026-01-01T00:00:00Z) and the action's time ran out before the next "
        "second; a restart within the same second would change nothing"
    )
    assert patches(api) == []


def test_restart_racing_another_restart_in_the_same_second(api, k8s):
    """Someone set the same restartedAt between our read and our patch: the patch's
    resourceVersion precondition answers 409, and the fresh read shows that second."""
    stale = api.get("deployments", "shop", "web")
    api.set_template_annotation("deployments", "shop", "web", RESTARTED_AT, "2026-01-01T00:00:05Z")
    api.answer(Reply.json(200, stale))  # our read, from before that restart
    k8s.clock = lambda: "2026-01-01T00:00:05Z"
    result = k8s.execute(action_request("restart", "deployment/shop/web", timeout=0.5))
    assert not result.ok
    assert result.detail == (
        "cannot restart deployment/shop/web: it was restarted within this second "
        "(restartedAt 2026-01-01T00:00:05Z) and the action's time ran out before the next "
        "second; a restart within the same second would change nothing"
    )
    (patch,) = patches(api)
    assert patch.json()["metadata"] == {"resourceVersion": stale["metadata"]["resourceVersion"]}


def test_restart_answered_with_the_unchanged_object_is_not_reported_as_done(api, k8s):
    """A PATCH that changes nothing is answered with the object as it was (same
    resourceVersion); scripted here, since our precondition keeps the stand-in from it."""
    current = api.get("deployments", "shop", "web")
    api.answer(Reply.json(200, current), Reply.json(200, current))
    k8s.clock = lambda: "2026-01-01T00:00:07Z"
    result = k8s.execute(action_request("restart", "deployment/shop/web"))
    assert not result.ok
    assert result.detail == (
        "restart of deployment/shop/web patched nothing: the API server answered the "
        "object unchanged (restartedAt 2026-01-01T00:00:07Z)"
    )


def test_restart_statefulset_waits_until_current_revision_is_the_update_revision(api, k8s):
    old = api.get("statefulsets", "shop", "db")["status"]["currentRevision"]
    result = k8s.execute(action_request("restart", "statefulset/shop/db"))
    assert result.ok, result.detail
    assert result.detail.endswith("rollout complete: 3/3 updated, 3/3 ready")
    status = api.get("statefulsets", "shop", "db")["status"]
    assert status["currentRevision"] == status["updateRevision"] != old
    (patch,) = patches(api, "/statefulsets/db$")
    assert RESTARTED_AT in patch.json()["spec"]["template"]["metadata"]["annotations"]


def test_restart_whose_rollout_never_completes_times_out(api, k8s):
    api.stall = "stuck"
    started = time.monotonic()
    result = k8s.execute(action_request("restart", "deployment/shop/web", timeout=1.0))
    assert time.monotonic() - started < 3
    assert (result.ok, result.timed_out) == (False, True)
    assert result.detail == (
        "rollout of deployment/shop/web not complete within 1s: "
        "1/3 updated, 2/3 available, 3 old pending termination"
    )


def test_restart_that_exceeds_its_progress_deadline_fails(api, k8s):
    api.stall = "deadline"
    result = k8s.execute(action_request("restart", "deployment/shop/web"))
    assert (result.ok, result.timed_out) == (False, False)
    assert result.detail == "rollout of deployment/shop/web failed: exceeded its progress deadline"


def test_paused_deployment_and_on_delete_statefulset_are_not_restarted(api, k8s):
    api.add_deployment("shop", "paused", paused=True)
    api.add_statefulset("shop", "manual", update_strategy="OnDelete")
    paused = k8s.execute(action_request("restart", "deployment/shop/paused"))
    assert paused.detail == (
        "cannot restart deployment shop/paused: it is paused (resume the rollout first)"
    )
    manual = k8s.execute(action_request("restart", "statefulset/shop/manual"))
    assert not manual.ok
    assert "OnDelete update strategy" in manual.detail
    assert patches(api) == []


@pytest.mark.parametrize(("partition", "replicas"), [(3, 3), (5, 3)])
def test_statefulset_whose_partition_holds_back_every_pod_is_not_restarted(
    api, k8s, partition, replicas
):
    """Only pods with an ordinal >= partition are updated: at or above the replicas a
    rollout restart replaces no pod (and kubectl's rule calls it complete at once), so it
    is refused like OnDelete rather than reported as a restart."""
    api.add_statefulset("shop", "staged", replicas=replicas, partition=partition)
    result = k8s.execute(action_request("restart", "statefulset/shop/staged"))
    assert (result.ok, result.detail) == (
        False,
        f"cannot restart statefulset shop/staged: its rollingUpdate partition {partition} "
        f"is not below its {replicas} replicas, so a rollout restart replaces no pod "
        "(only pods with an ordinal >= the partition are updated)",
    )
    assert patches(api) == []


def test_statefulset_partition_below_the_replicas_restarts_the_pods_above_it(api, k8s):
    api.add_statefulset("shop", "staged", replicas=3, partition=2)
    result = k8s.execute(action_request("restart", "statefulset/shop/staged"))
    assert result.ok, result.detail
    # kubectl's rule: ready >= 3 and updated >= 3 - 2
    assert result.detail.endswith("rollout complete: 1/1 updated, 3/3 ready")
    (patch,) = patches(api, "/statefulsets/staged$")
    assert RESTARTED_AT in patch.json()["spec"]["template"]["metadata"]["annotations"]


# ---------------------------------------------------------------- scale


def test_replicas_reads_the_scale_subresource(api, k8s):
    api.add_statefulset("shop", "cache", replicas=2)
    assert k8s.replicas("deployment/shop/web") == 3
    assert k8s.replicas("statefulset/shop/cache") == 2
    paths = [r.path for r in api.received]
    assert paths == [
        "/apis/apps/v1/namespaces/shop/deployments/web/scale",
        "/apis/apps/v1/namespaces/shop/statefulsets/cache/scale",
    ]


def test_scale_patches_the_scale_subresource_with_the_read_version(api, k8s):
    version = api.get("deployments", "shop", "web")["metadata"]["resourceVersion"]
    result = k8s.execute(action_request("scale", "deployment/shop/web", replicas=5))
    assert result.ok, result.detail
    assert result.detail == "scaled deployment/shop/web from 3 to 5"
    (patch,) = patches(api)
    assert patch.path == "/apis/apps/v1/namespaces/shop/deployments/web/scale"
    # a strategic merge patch: what every supported client sends for a dict body, and on
    # a Scale's spec.replicas the same as the merge patch kubectl scale sends
    assert header(patch, "Content-Type") == "application/strategic-merge-patch+json"
    assert patch.json() == {"spec": {"replicas": 5}, "metadata": {"resourceVersion": version}}
    assert api.get("deployments", "shop", "web")["spec"]["replicas"] == 5
    assert k8s.replicas("deployment/shop/web") == 5
    # the HPA check came first
    assert api.received[0].path == "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers"


def test_scale_statefulset_down(api, k8s):
    result = k8s.execute(action_request("scale", "statefulset/shop/db", replicas=1))
    assert result.detail == "scaled statefulset/shop/db from 3 to 1"
    assert api.get("statefulsets", "shop", "db")["spec"]["replicas"] == 1


def test_scale_to_the_current_count_changes_nothing(api, k8s):
    result = k8s.execute(action_request("scale", "deployment/shop/web", replicas=3))
    assert (result.ok, result.detail) == (True, "deployment/shop/web already has 3 replicas")
    assert patches(api) == []


def test_scale_refuses_to_fight_the_hpa_that_owns_the_target(api, k8s):
    api.add_hpa("shop", "web-cpu", "Deployment", "web")
    api.add_hpa("shop", "db-cpu", "StatefulSet", "web")  # same name, other kind: not web's
    api.add_hpa("other", "web", "Deployment", "web")  # other namespace
    result = k8s.execute(action_request("scale", "deployment/shop/web", replicas=6))
    assert not result.ok
    assert result.detail == (
        "refusing to scale deployment/shop/web: HorizontalPodAutoscaler web-cpu owns it"
    )
    assert patches(api) == []
    assert api.get("deployments", "shop", "web")["spec"]["replicas"] == 3
    # the statefulset named in db-cpu's ref is statefulset/shop/web, not db
    assert k8s.execute(action_request("scale", "statefulset/shop/db", replicas=2)).ok


def test_hpa_ownership_compares_the_api_group(api, k8s):
    """The HPA controller resolves scaleTargetRef by group and kind: an HPA of an
    example.com Deployment (a custom resource) does not own apps/v1 deployment web."""
    api.add_hpa("shop", "custom", "Deployment", "web", api_version="example.com/v1")
    api.add_hpa("shop", "core", "Deployment", "web", api_version="v1")
    assert k8s.execute(action_request("scale", "deployment/shop/web", replicas=4)).detail == (
        "scaled deployment/shop/web from 3 to 4"
    )
    api.add_hpa("shop", "old-apps", "Deployment", "web", api_version="apps/v1beta2")
    result = k8s.execute(action_request("scale", "deployment/shop/web", replicas=5))
    assert result.detail == (
        "refusing to scale deployment/shop/web: HorizontalPodAutoscaler old-apps owns it"
    )


def test_scale_without_a_replica_count_is_refused(k8s):
    result = k8s.execute(action_request("scale", "deployment/shop/web"))
    assert (result.ok, result.detail) == (False, "scale needs a desired replica count, got None")


# ---------------------------------------------------------------- rollback


def test_rollback_restores_the_previous_revisions_template(api, k8s):
    api.add_deployment(
        "shop", "api", images=("registry.example/api:1", "registry.example/api:2", "api:3")
    )
    api.delete_replicaset("shop", "api", 2)  # pruned by revisionHistoryLimit
    # someone else's ReplicaSet with the same labels and a tempting revision
    api.add_replicaset("shop", "impostor", {"app": "api"}, 2, owner_uid="not-the-deployment")
    result = k8s.execute(action_request("rollback", "deployment/shop/api"))
    assert result.ok, result.detail
    assert result.detail == (
        "rolled back deployment/shop/api from revision 3 to revision 1 "
        "(image registry.example/api:1); rollout complete: 3/3 updated, 3/3 available"
    )
    (listing,) = api.requests("GET", "/replicasets$")
    assert listing.path.endswith("/namespaces/shop/replicasets?labelSelector=app%3Dapi")
    (patch,) = patches(api)
    assert header(patch, "Content-Type") == "application/json-patch+json"
    operations = patch.json()
    assert [op["path"] for op in operations] == [
        "/metadata/resourceVersion",
        "/spec/template",
        "/metadata/annotations",
    ]
    assert {op["op"] for op in operations} == {"replace"}
    template = next(op["value"] for op in operations if op["path"] == "/spec/template")
    assert template["spec"]["containers"][0]["image"] == "registry.example/api:1"
    assert HASH not in template["metadata"]["labels"]
    assert template["metadata"]["labels"] == {"app": "api"}
    deployment = api.get("deployments", "shop", "api")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example/api:1"
    )
    # as the deployment controller does: revision 1's ReplicaSet becomes revision 4
    assert deployment["metadata"]["annotations"][REVISION] == "4"
    assert api.revisions("shop", "api") == {3: "api:3", 4: "registry.example/api:1"}


def test_rollback_after_a_restart_goes_to_the_release_before_the_bad_one(api, k8s):
    """Issue 19: revision 1 = v1, revision 2 = v2 (the bad release), revision 3 = v2
    restarted by us. `kubectl rollout undo` would go to revision 2 (v2 again)."""
    api.add_deployment("shop", "api", images=("registry.example/api:v1", "registry.example/api:v2"))
    restarted = k8s.execute(action_request("restart", "deployment/shop/api"))
    assert restarted.ok, restarted.detail
    assert api.revisions("shop", "api") == {
        1: "registry.example/api:v1",
        2: "registry.example/api:v2",
        3: "registry.example/api:v2",
    }
    result = k8s.execute(action_request("rollback", "deployment/shop/api"))
    assert result.ok, result.detail
    assert result.detail == (
        "rolled back deployment/shop/api from revision 3 to revision 1 "
        "(image registry.example/api:v1; skipped revision 2: differs from the current "
        "template only in restartedAt); rollout complete: 3/3 updated, 3/3 available"
    )
    deployment = api.get("deployments", "shop", "api")
    template = deployment["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == "registry.example/api:v1"
    assert RESTARTED_AT not in (template["metadata"].get("annotations") or {})
    assert deployment["metadata"]["annotations"][REVISION] == "4"


def test_rollback_skips_every_restart_of_the_current_release(api, k8s):
    api.add_deployment("shop", "api", images=("registry.example/api:v1", "registry.example/api:v2"))
    stamps = iter(["2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z"])
    k8s.clock = lambda: next(stamps)
    assert k8s.execute(action_request("restart", "deployment/shop/api")).ok
    assert k8s.execute(action_request("restart", "deployment/shop/api")).ok
    result = k8s.execute(action_request("rollback", "deployment/shop/api"))
    assert result.detail == (
        "rolled back deployment/shop/api from revision 4 to revision 1 "
        "(image registry.example/api:v1; "
        "skipped revision 3: differs from the current template only in restartedAt; "
        "skipped revision 2: differs from the current template only in restartedAt); "
        "rollout complete: 3/3 updated, 3/3 available"
    )


def test_rollback_with_only_restarts_before_is_refused(api, k8s):
    api.add_deployment("shop", "solo", images=("registry.example/solo:1",))
    assert k8s.execute(action_request("restart", "deployment/shop/solo")).ok
    result = k8s.execute(action_request("rollback", "deployment/shop/solo"))
    assert not result.ok
    assert result.detail == (
        "cannot roll back deployment shop/solo: no earlier release (current revision 2; "
        "skipped revision 1: differs from the current template only in restartedAt)"
    )
    assert len(patches(api, "/deployments/solo$")) == 1  # the restart's only
    template = api.get("deployments", "shop", "solo")["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == "registry.example/solo:1"


def test_rollback_restores_the_target_revisions_annotations(api, k8s):
    """As kubectl: the ReplicaSet's annotations (change-cause) go back onto the
    Deployment, except the controller's own (revision, desired-replicas, ...)."""
    api.add_deployment(
        "shop",
        "api",
        images=("registry.example/api:v1", "registry.example/api:v2"),
        change_causes=("release v1", "release v2"),
    )
    result = k8s.execute(action_request("rollback", "deployment/shop/api"))
    assert result.ok, result.detail
    (patch,) = patches(api)
    restored = next(op["value"] for op in patch.json() if op["path"] == "/metadata/annotations")
    assert restored == {REVISION: "2", CHANGE_CAUSE: "release v1"}
    annotations = api.get("deployments", "shop", "api")["metadata"]["annotations"]
    assert annotations == {REVISION: "3", CHANGE_CAUSE: "release v1"}


def test_rollback_to_a_template_already_in_place_is_skipped(api, k8s):
    """An operator's `kubectl rollout undo` a moment ago put revision 1's template back;
    the deployment controller syncs the revisions after our read (ReplicaSet 1 becomes
    revision 3). kubectl reports "skipped rollback (current template already matches
    revision N)"; we say so too, patch nothing, and await the rollout under way."""
    api.add_deployment("shop", "api", images=("registry.example/api:v1", "registry.example/api:v2"))
    v1 = api.get("deployments", "shop", "api")["spec"]["template"]
    v1["spec"]["containers"][0]["image"] = "registry.example/api:v1"
    undo = requests.patch(
        f"{api.url}/apis/apps/v1/namespaces/shop/deployments/api",
        data=json.dumps([{"op": "replace", "path": "/spec/template", "value": v1}]),
        headers={
            "Authorization": f"Bearer {KUBE_TOKEN}",
            "Content-Type": "application/json-patch+json",
        },
        timeout=5,
    )
    assert undo.status_code == 200, undo.text
    assert undo.json()["metadata"]["annotations"][REVISION] == "2"  # not synced yet
    result = k8s.execute(action_request("rollback", "deployment/shop/api"))
    assert result.ok, result.detail
    assert result.detail == (
        "skipped, already at revision 3: the template of deployment/shop/api already "
        "matches it, nothing patched; rollout complete: 3/3 updated, 3/3 available"
    )
    assert len(patches(api)) == 1  # the operator's
    assert api.revisions("shop", "api") == {
        2: "registry.example/api:v2",
        3: "registry.example/api:v1",
    }


def test_rollback_without_a_previous_revision_is_refused(api, k8s):
    api.add_deployment("shop", "fresh", images=("registry.example/fresh:1",))
    result = k8s.execute(action_request("rollback", "deployment/shop/fresh"))
    assert not result.ok
    assert result.detail == (
        "cannot roll back deployment shop/fresh: no previous revision (current revision 1)"
    )
    assert patches(api) == []


def test_rollback_needs_a_deployment(api, k8s):
    result = k8s.execute(action_request("rollback", "statefulset/shop/db"))
    assert (result.ok, result.detail) == (
        False,
        "cannot roll back statefulset/shop/db: rollback needs a deployment",
    )
    assert api.received == []


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("action", "target", "method", "path", "verb", "resource"),
    [
        ("scale", "deployment/shop/web", "PATCH", SCALE_PATH, "patch", "deployments/scale"),
        ("scale", "deployment/shop/web", "GET", SCALE_PATH, "get", "deployments/scale"),
        ("scale", "deployment/shop/web", "GET", "horizontalpodautoscalers$", "list",
         "horizontalpodautoscalers"),
        ("restart", "statefulset/shop/db", "GET", "/statefulsets/db$", "get", "statefulsets"),
        ("restart", "deployment/shop/web", "PATCH", "/deployments/web$", "patch", "deployments"),
        ("rollback", "deployment/shop/web", "GET", "/replicasets$", "list", "replicasets"),
    ],
)  # fmt: skip
def test_forbidden_names_the_missing_permission(api, k8s, action, target, method, path, verb,
                                                 resource):  # fmt: skip
    name = "" if verb == "list" else target.rsplit("/", 1)[-1]
    api.fail_next(method, path, forbidden(verb, resource, "shop", name))
    result = k8s.execute(action_request(action, target, replicas=4))
    assert not result.ok
    assert result.detail == f"forbidden: needs `{verb}` on `{resource}` in namespace shop (RBAC)"
    assert "system:serviceaccount:ops:remediator" in result.output


def test_not_found(api, k8s):
    for action in ("restart", "scale", "rollback"):
        result = k8s.execute(action_request(action, "deployment/shop/nope", replicas=2))
        assert (result.ok, result.detail) == (False, "deployment shop/nope not found"), action
    result = k8s.execute(action_request("restart", "statefulset/shop/nope"))
    assert result.detail == "statefulset shop/nope not found"
    with pytest.raises(ExecutorError, match=r"^deployment shop/nope not found$"):
        k8s.replicas("deployment/shop/nope")


def test_conflict_is_retried_once_on_a_fresh_read(api, k8s):
    api.fail_next("PATCH", SCALE_PATH, conflict("deployments", "web"))
    result = k8s.execute(action_request("scale", "deployment/shop/web", replicas=4))
    assert result.ok, result.detail
    assert result.detail == "scaled deployment/shop/web from 3 to 4 after retrying a 409 conflict"
    methods = [r.method for r in api.requests(path=SCALE_PATH)]
    assert methods == ["GET", "PATCH", "GET", "PATCH"]  # read again before the retry
    assert api.get("deployments", "shop", "web")["spec"]["replicas"] == 4


def test_a_stale_read_meets_the_resource_version_precondition(api, k8s):
    """A genuine 409: the first read of the scale is stale, so its patch is refused."""
    stale = {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "1"},
        "spec": {"replicas": 2},
        "status": {"replicas": 2, "selector": "app=web"},
    }
    hpas = {"kind": "HorizontalPodAutoscalerList", "apiVersion": "autoscaling/v2", "items": []}
    api.answer(Reply.json(200, hpas), Reply.json(200, stale))
    result = k8s.execute(action_request("scale", "deployment/shop/web", replicas=5))
    assert result.ok, result.detail
    assert result.detail == "scaled deployment/shop/web from 3 to 5 after retrying a 409 conflict"
    first, second = patches(api)
    assert first.json()["metadata"]["resourceVersion"] == "1"
    assert second.json()["metadata"]["resourceVersion"] != "1"


def test_conflicts_are_retried_with_backoff_up_to_five_attempts(api, k8s):
    api.fail_next("PATCH", SCALE_PATH, conflict("deployments", "web"), times=4)
    result = k8s.execute(action_request("scale", "deployment/shop/web", replicas=4))
    assert result.ok, result.detail
    assert result.detail == (
        "scaled deployment/shop/web from 3 to 4 after retrying 4 409 conflicts"
    )
    methods = [r.method for r in api.requests(path=SCALE_PATH)]
    assert methods == ["GET", "PATCH"] * 5  # each attempt from a fresh read
    assert api.get("deployments", "shop", "web")["spec"]["replicas"] == 4


def test_conflict_on_every_attempt_fails(api, k8s):
    api.fail_next("PATCH", SCALE_PATH, conflict("deployments", "web"), times=5)
    result = k8s.execute(action_request("scale", "deployment/shop/web", replicas=4))
    assert not result.ok
    assert result.detail == (
        "conflict: deployment shop/web kept changing while it was being updated "
        "(409 5 times, retried 4 times on a fresh read)"
    )
    assert "the object has been modified" in result.output
    assert len(patches(api)) == 5
    assert api.get("deployments", "shop", "web")["spec"]["replicas"] == 3


def test_conflict_retries_stop_at_the_actions_deadline(api, k8s):
    """The backoff before the next attempt must fit in what is left of the timeout.
    CONFLICT_BACKOFF's delays grow 0.01, 0.05, 0.25, 1 s: 0.6 s holds the first three and
    not the fourth, and leaves a loaded machine time for the first read and patch."""
    api.fail_next("PATCH", SCALE_PATH, conflict("deployments", "web"), times=5)
    result = k8s.execute(action_request("scale", "deployment/shop/web", replicas=4, timeout=0.6))
    assert not result.ok
    assert result.detail.startswith(
        "conflict: deployment shop/web kept changing while it was being updated (409 "
    )
    assert result.detail.endswith(" times, the action's time ran out before another retry)")
    assert 1 <= len(patches(api)) < 5
    assert api.get("deployments", "shop", "web")["spec"]["replicas"] == 3


def test_status_writes_during_a_rollout_meet_the_precondition_and_are_retried(api, k8s):
    """Genuine 409s: the controller writes the status (a new resourceVersion) after each
    of the next two reads of the scale, so the patches from those reads are stale."""
    api.status_write_after_scale_reads = 2
    result = k8s.execute(action_request("scale", "deployment/shop/web", replicas=5))
    assert result.ok, result.detail
    assert result.detail == "scaled deployment/shop/web from 3 to 5 after retrying 2 409 conflicts"
    versions = [p.json()["metadata"]["resourceVersion"] for p in patches(api)]
    assert len(versions) == len(set(versions)) == 3
    assert api.get("deployments", "shop", "web")["spec"]["replicas"] == 5


def test_rollback_conflict_is_retried(api, k8s):
    api.fail_next("PATCH", "/deployments/web$", conflict("deployments", "web"))
    result = k8s.execute(action_request("rollback", "deployment/shop/web"))
    assert result.ok, result.detail
    assert result.detail.startswith(
        "rolled back deployment/shop/web from revision 2 to revision 1 "
        "(image registry.example/web:1.0) after retrying a 409 conflict; rollout complete"
    )
    assert len(api.requests("GET", "/replicasets$")) == 2


def test_rollback_reads_again_before_its_write_and_rechooses_if_the_spec_moved(api, k8s):
    """The precondition is the resourceVersion of a read just before the patch; if the
    spec changed since the read the choice was made from, the choice is made again."""
    stale = api.get("deployments", "shop", "web")
    stale["spec"]["replicas"] = 7  # the spec as it was a moment ago
    api.answer(Reply.json(200, stale))
    result = k8s.execute(action_request("rollback", "deployment/shop/web"))
    assert result.ok, result.detail
    assert "to revision 1 (image registry.example/web:1.0) after retrying a 409 conflict" in (
        result.detail
    )
    assert len(api.requests("GET", "/replicasets$")) == 2
    assert len(patches(api)) == 1
    methods = [(r.method, r.path.rsplit("/", 1)[-1].split("?")[0]) for r in api.received]
    assert methods[:7] == [
        ("GET", "web"),
        ("GET", "replicasets"),
        ("GET", "web"),
        ("GET", "web"),
        ("GET", "replicasets"),
        ("GET", "web"),
        ("PATCH", "web"),
    ]


def test_slow_api_is_a_timeout(api, tmp_path):
    executor = make_executor(write_kubeconfig(tmp_path / "kubeconfig", api.url), timeout=0.5)
    api.answer(Reply(200, b"{}", delay=2.0))
    result = executor.execute(action_request("restart", "deployment/shop/web"))
    assert (result.ok, result.timed_out) == (False, True)
    assert result.detail.startswith("Kubernetes API unreachable: no answer within 0.5s")
    with pytest.raises(ExecutorError, match=r"^Kubernetes API unreachable: no answer"):
        api.answer(Reply(200, b"{}", delay=2.0))
        executor.replicas("deployment/shop/web")


def test_unreachable_api(tmp_path):
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{free_port()}")
    executor = make_executor(kubeconfig, timeout=2.0)
    result = executor.execute(action_request("scale", "deployment/shop/web", replicas=2))
    assert (result.ok, result.timed_out) == (False, False)
    assert result.detail.startswith("Kubernetes API unreachable: ")
    assert "Connection refused" in result.detail
    with pytest.raises(ExecutorError, match=r"^Kubernetes API unreachable: .*Connection refused"):
        executor.replicas("deployment/shop/web")


def test_wrong_token_is_unauthorized(api, tmp_path):
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api.url, token="wrong")
    result = make_executor(kubeconfig).execute(action_request("restart", "deployment/shop/web"))
    assert result.detail == (
        "unauthorized: the Kubernetes API refused the executor's credentials (401)"
    )
    assert header(api.received[0], "Authorization") == "Bearer wrong"


# ---------------------------------------------------------------- targets, set-up


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("web", "target 'web' is not <kind>/<namespace>/<name>"),
        ("pod/shop/web", "kind must be deployment or statefulset"),
        ("deployment/Shop/web", "namespace 'Shop' is not a valid Kubernetes namespace"),
        ("deployment/" + "n" * 64 + "/web", "is not a valid Kubernetes namespace"),
        ("deployment/shop/web_v2", "name 'web_v2' is not a valid Deployment name"),
        ("statefulset/shop/" + "d" * 254, "is not a valid StatefulSet name"),
    ],
)
def test_invalid_targets_are_refused_before_any_request(api, k8s, target, reason):
    for action in ("restart", "scale", "rollback"):
        result = k8s.execute(action_request(action, target, replicas=2))
        assert not result.ok
        assert reason in result.detail
    with pytest.raises(ExecutorError, match=reason.split("'")[0]):
        k8s.replicas(target)
    assert api.received == []


def test_unsupported_action(k8s, api):
    result = k8s.execute(action_request("run", "deployment/shop/web"))
    assert (result.ok, result.detail) == (False, "kubernetes executor 'k8s' cannot run")


def test_context_from_the_config_is_used(api, tmp_path):
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api.url)  # current: stand-in
    elsewhere = make_executor(kubeconfig, context="elsewhere", timeout=1.0)
    result = elsewhere.execute(action_request("restart", "deployment/shop/web"))
    assert result.detail.startswith("Kubernetes API unreachable")
    assert api.received == []
    chosen = make_executor(kubeconfig, context="stand-in")
    assert chosen.replicas("deployment/shop/web") == 3


def test_each_executor_has_its_own_client_and_the_default_is_untouched(tmp_path):
    import kubernetes.client

    default_host = kubernetes.client.Configuration.get_default_copy().host
    with kube_api() as one, kube_api() as two:
        one.add_deployment("shop", "web", replicas=1)
        two.add_deployment("shop", "web", replicas=7)
        a = make_executor(write_kubeconfig(tmp_path / "one", one.url))
        b = make_executor(write_kubeconfig(tmp_path / "two", two.url))
        assert (a.replicas("deployment/shop/web"), b.replicas("deployment/shop/web")) == (1, 7)
        assert a.api_client is not b.api_client
    assert kubernetes.client.Configuration.get_default_copy().host == default_host


def test_config_file_with_a_relative_kubeconfig(api, tmp_path):
    (tmp_path / "secrets").mkdir()
    write_kubeconfig(tmp_path / "secrets" / "kubeconfig", api.url)
    config_file = tmp_path / "remediation.yml"
    config_file.write_text(
        "executors:\n"
        "  cluster: {type: kubernetes, kubeconfig: secrets/kubeconfig, context: stand-in,"
        " timeout: 5s}\n"
    )
    executor = build_executors(load_config(config_file))["cluster"]
    assert executor.replicas("deployment/shop/web") == 3
    assert "secrets/kubeconfig (context stand-in)" in executor.source


def test_in_cluster_outside_a_pod_fails_at_build(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    spec = ExecutorConfig("k8s", "kubernetes", {"in_cluster": True})
    with pytest.raises(ExecutorError, match="executor 'k8s': in_cluster: no service account"):
        build_executors(Config(executors={"k8s": spec}))


def test_unreadable_kubeconfig_fails_at_build(tmp_path):
    spec = ExecutorConfig("k8s", "kubernetes", {"kubeconfig": str(tmp_path / "missing")})
    with pytest.raises(ExecutorError, match=r"executor 'k8s': cannot load .*missing"):
        build_executors(Config(executors={"k8s": spec}))


def test_without_the_client_installed_the_error_says_how_to_get_it(monkeypatch, tmp_path):
    for module in ("kubernetes", "kubernetes.client", "kubernetes.config"):
        monkeypatch.setitem(sys.modules, module, None)  # makes `import kubernetes` fail
    spec = ExecutorConfig("k8s", "kubernetes", {"kubeconfig": str(tmp_path / "kubeconfig")})
    with pytest.raises(ExecutorError) as info:
        build_executors(Config(executors={"k8s": spec}))
    assert "pip install 'remediator[kubernetes]'" in str(info.value)


def test_the_base_install_imports_without_the_client():
    """receiver.executors must not import kubernetes until a kubernetes executor is built."""
    import subprocess

    code = (
        "import sys; sys.modules['kubernetes'] = None\n"
        "import receiver.executors, receiver.dispatcher, receiver.cli\n"
        "print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_stand_in_speaks_status_objects(api):
    """The stand-in's errors have the API server's Status shape (guards the stand-in)."""
    import urllib.request

    request = urllib.request.Request(f"{api.url}/apis/apps/v1/namespaces/shop/deployments/x")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 401
    request.add_header("Authorization", f"Bearer {api.token}")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    body = json.loads(info.value.read())
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'deployments.apps "x" not found',
        "reason": "NotFound",
        "details": {"name": "x", "group": "apps", "kind": "deployments"},
        "code": 404,
    }


# ---------------------------------------------------------------- through the server

SERVER_CONFIG = """
server: {{auth: {{bearer_token_file: token}}}}
defaults: {{cooldown: 0s}}
executors:
  cluster: {{type: kubernetes, kubeconfig: kubeconfig, timeout: 5s}}
strategies:
  - name: restart-pods
    matchers: ['alertname="Wedged"']
    action: restart
    executor: cluster
    target: 'deployment/{{{{ labels.namespace }}}}/{{{{ labels.deployment }}}}'
    timeout: 20s
  - name: scale-by-annotation
    matchers: ['alertname="Busy"']
    action: scale
    executor: cluster
    target: 'deployment/{{{{ labels.namespace }}}}/{{{{ labels.deployment }}}}'
    scale: {{annotation: value, target_value: 1, min_replicas: 1, max_replicas: 8}}
"""


def test_restart_and_scale_through_remediator_serve(api, tmp_path):
    """The dispatcher reads replicas, decides (HPA arithmetic), scales, and journals why."""
    api.add_deployment("shop", "cart", replicas=2)
    api.add_hpa("shop", "web-hpa", "Deployment", "web")  # web is HPA-owned, cart is not
    write_kubeconfig(tmp_path / "kubeconfig", api.url)
    config = write_config(tmp_path, SERVER_CONFIG.format())
    store_url = f"sqlite:///{tmp_path / 'journal.db'}"

    def post(*alerts):
        response = requests.post(
            f"{server.url}/webhook",
            json=notification(*alerts),
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text

    def busy(deployment, value, starts_at):
        found = alert("Busy", namespace="shop", deployment=deployment, starts_at=starts_at)
        found["annotations"]["value"] = value
        return found

    with remediator(tmp_path, config, store_url) as server:
        journal = SqliteStore(store_url)
        post(alert("Wedged", namespace="shop", deployment="cart"))
        settle(journal, timeout=60)
        post(busy("cart", "2", "2026-06-01T00:00:00Z"), busy("web", "2", "2026-06-01T00:00:01Z"))
        actions = {(a["strategy"], a["target"]): a for a in settle(journal, timeout=60)}

    restart = actions[("restart-pods", "deployment/shop/cart")]
    assert restart["status"] == "succeeded", restart
    assert "rollout complete: 2/2 updated, 2/2 available" in restart["reason"]
    (patch,) = api.requests("PATCH", "/deployments/cart$")
    assert RESTARTED_AT in patch.json()["spec"]["template"]["metadata"]["annotations"]

    scaled = actions[("scale-by-annotation", "deployment/shop/cart")]
    assert scaled["status"] == "succeeded", scaled
    assert scaled["reason"] == "scaled deployment/shop/cart from 2 to 4"  # ceil(2 * 2 / 1)
    assert api.get("deployments", "shop", "cart")["spec"]["replicas"] == 4
    notes = " | ".join(e["reason"] for e in scaled["events"])
    assert "scale: value 2 vs target 1, 2 -> 4" in notes

    refused = actions[("scale-by-annotation", "deployment/shop/web")]
    assert refused["status"] == "failed"
    assert refused["reason"] == (
        "refusing to scale deployment/shop/web: HorizontalPodAutoscaler web-hpa owns it"
    )
    assert api.get("deployments", "shop", "web")["spec"]["replicas"] == 3


# ---------------------------------------------------------------- client versions
# These run at the oldest supported client and the newest (make test-kube-min).


def test_the_executor_learns_whether_the_client_takes_a_content_type(api, k8s):
    assert k8s.sets_content_type is None  # not known before the first patch
    result = k8s.execute(action_request("scale", "deployment/shop/web", replicas=4))
    assert result.ok, result.detail
    # 36.0.0's generated client added `_content_type`; older ones refuse it (ApiTypeError)
    # before sending anything, so the scale went out once either way
    assert k8s.sets_content_type == (Version(kubernetes.__version__) >= Version("36"))
    (patch,) = patches(api)
    assert header(patch, "Content-Type") == "application/strategic-merge-patch+json"
    assert api.get("deployments", "shop", "web")["spec"]["replicas"] == 4


def test_a_client_that_chooses_the_type_sends_each_patch_as_its_own(api, k8s):
    # as after an older client refused `_content_type`: the body's shape decides
    k8s.sets_content_type = False
    api.add_deployment("shop", "api", images=("registry.example/api:1", "registry.example/api:2"))
    for action, target in (
        ("restart", "deployment/shop/web"),
        ("restart", "statefulset/shop/db"),
        ("scale", "statefulset/shop/db"),
        ("rollback", "deployment/shop/api"),
    ):
        result = k8s.execute(action_request(action, target, replicas=2))
        assert result.ok, (action, target, result.detail)
    assert [header(p, "Content-Type") for p in patches(api)] == [
        "application/strategic-merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/json-patch+json",
    ]
    assert api.get("statefulsets", "shop", "db")["spec"]["replicas"] == 2
    deployment = api.get("deployments", "shop", "api")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example/api:1"
    )


def test_a_patch_type_the_body_does_not_give_is_never_sent_as_another(api, k8s):
    k8s.sets_content_type = False
    with pytest.raises(KubeError) as raised:
        k8s._patch(
            parse_target("deployment/shop/web"),
            {"spec": {"paused": True}},
            MERGE_PATCH,
            time.monotonic() + 5,
        )
    assert str(raised.value) == (
        "cannot send a application/merge-patch+json patch with this kubernetes client (it "
        "sends application/strategic-merge-patch+json for this body); install one in "
        ">=29,!=36.0.0"
    )
    assert patches(api) == []
