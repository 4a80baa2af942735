"""A STAND-IN for the few Kubernetes API endpoints the kubernetes executor uses.

No Kubernetes API server can run on this machine, so the executor's tests talk to this
local HTTP server instead, through a kubeconfig with token auth, using the real
`kubernetes` client. It is not Kubernetes: it answers with the real API's paths, JSON
shapes, status codes and `Status` error objects for exactly these endpoints, and fakes
just enough of the controllers to make rollouts observable:

- apps/v1 deployments and statefulsets: GET, PATCH (strategic merge, merge patch and
  JSON patch, as the client sends them; a `metadata.resourceVersion` in the patched
  object is a precondition answered 409 Conflict when stale, as the API server does);
- their `scale` subresources (autoscaling/v1 Scale): GET, PATCH;
- apps/v1 replicasets: list by `labelSelector`;
- autoscaling/v2 horizontalpodautoscalers: list.

Simplifications, on purpose: strategic merge patches replace lists instead of merging
them by key (the executor only patches maps); there is no admission, validation or
defaulting beyond the fields the executor reads. A change of the pod template (or of
spec.replicas) starts a simulated rollout: the first GET after it shows
`observedGeneration < generation`, the next a half-done rollout, later ones a complete
one (`rollout_reads` sets how many reads it takes; `stall` makes it hang or exceed its
progress deadline). A changed Deployment template makes a new ReplicaSet with the next
revision, or re-uses the owned ReplicaSet whose template matches and gives it the next
revision, like the deployment controller does on a rollback; as on a cluster, that
happens in the controller's sync after the write (here: the next read of the object),
so a PATCH answers with the old revision annotation. The new ReplicaSet carries the
Deployment's annotations except the controller's own (as SetNewReplicaSetAnnotations).

Every write gets a new `resourceVersion`, the simulated controllers' status writes
included, as on a real API server (it is the object's etcd revision);
`status_write_after_scale_reads` and `write_status` add status writes between a
client's read and its write, to produce genuine 409s.

Faults are scripted with `fail_next` (any status, any number of times) or with
`answer(Reply(..., delay=...))` for slow answers; every request is recorded.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.support.http_server import Received, Reply, ScriptedServer, serving

TOKEN = "stand-in-token-not-a-secret"
REVISION = "deployment.kubernetes.io/revision"
HASH = "pod-template-hash"
CHANGE_CAUSE = "kubernetes.io/change-cause"
KINDS = {"deployments": "Deployment", "statefulsets": "StatefulSet"}

_OBJECT = re.compile(
    r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/(?P<resource>deployments|statefulsets)"
    r"/(?P<name>[^/]+)(?P<scale>/scale)?$"
)
_REPLICASETS = re.compile(r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/replicasets$")
_HPAS = re.compile(r"^/apis/autoscaling/v2/namespaces/(?P<ns>[^/]+)/horizontalpodautoscalers$")


def status(code: int, reason: str, message: str, details: dict | None = None) -> Reply:
    """A `Status` object as the API server answers errors."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details or {},
        "code": code,
    }
    return Reply.json(code, body)


def forbidden(verb: str, resource: str, namespace: str, name: str = "") -> Reply:
    """403 worded as RBAC words it, for the executor's service account."""
    group = "autoscaling" if resource.startswith("horizontal") else "apps"
    subject = f'{resource.split("/")[0]}.{group} "{name}"' if name else f"{resource}.{group}"
    message = (
        f'{subject} is forbidden: User "system:serviceaccount:ops:remediator" cannot {verb} '
        f'resource "{resource}" in API group "{group}" in the namespace "{namespace}"'
    )
    return status(403, "Forbidden", message, {"name": name, "group": group, "kind": resource})


def conflict(resource: str, name: str) -> Reply:
    message = (
        f'Operation cannot be fulfilled on {resource}.apps "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again"
    )
    return status(409, "Conflict", message, {"name": name, "group": "apps", "kind": resource})


def not_found(resource: str, name: str) -> Reply:
    return status(
        404,
        "NotFound",
        f'{resource}.apps "{name}" not found',
        {"name": name, "group": "apps", "kind": resource},
    )


def pod_template(app: str, image: str) -> dict[str, Any]:
    """A pod template with the defaults the API server fills in, as a GET returns it."""
    return {
        "metadata": {"creationTimestamp": None, "labels": {"app": app}},
        "spec": {
            "containers": [
                {
                    "name": app,
                    "image": image,
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                }
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "securityContext": {},
            "schedulerName": "default-scheduler",
        },
    }


def header(request: Received, name: str) -> str | None:
    """A received header by case-insensitive name (the client lower-cases some)."""
    return {k.lower(): v for k, v in request.headers.items()}.get(name.lower())


def template_hash(template: dict[str, Any]) -> str:
    unhashed = copy.deepcopy(template)
    unhashed.get("metadata", {}).get("labels", {}).pop(HASH, None)
    return hashlib.sha256(json.dumps(unhashed, sort_keys=True).encode()).hexdigest()[:10]


#: Deployment annotations the deployment controller does not copy to its ReplicaSets
#: (annotationsToSkip in the controller's deployment/util).
NOT_COPIED = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)


def _copied(deployment: dict[str, Any]) -> dict[str, str]:
    annotations = deployment["metadata"].get("annotations") or {}
    return {k: v for k, v in annotations.items() if k not in NOT_COPIED}


def _without_hash(template: dict[str, Any]) -> dict[str, Any]:
    unhashed = copy.deepcopy(template)
    unhashed.get("metadata", {}).get("labels", {}).pop(HASH, None)
    return unhashed


# ---------------------------------------------------------------- patches


class PatchError(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 merge patch; also the stand-in's strategic merge (lists replaced)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise PatchError(status(422, "Invalid", f"invalid JSON pointer {path!r}"))
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(document: Any, operations: Any) -> Any:
    """RFC 6902 add / replace / remove / test, enough for the executor's patches."""
    if not isinstance(operations, list):
        raise PatchError(status(400, "BadRequest", "json patch must be a list of operations"))
    result = copy.deepcopy(document)
    for operation in operations:
        op, parts = operation.get("op"), _pointer(operation.get("path", ""))
        parent = result
        for part in parts[:-1]:
            if not isinstance(parent, dict) or part not in parent:
                raise PatchError(
                    status(422, "Invalid", f"{op} operation does not apply: doc is missing path")
                )
            parent = parent[part]
        last = parts[-1]
        if op in ("replace", "remove", "test") and last not in parent:
            raise PatchError(
                status(422, "Invalid", f"{op} operation does not apply: doc is missing key")
            )
        if op in ("add", "replace"):
            parent[last] = copy.deepcopy(operation["value"])
        elif op == "remove":
            del parent[last]
        elif op == "test":
            if parent[last] != operation["value"]:
                raise PatchError(status(422, "Invalid", "testing value failed"))
        else:
            raise PatchError(status(422, "Invalid", f"unsupported operation {op!r}"))
    return result


def apply_patch(document: dict[str, Any], content_type: str, body: bytes) -> dict[str, Any]:
    media = content_type.split(";")[0].strip()
    try:
        patch = json.loads(body)
    except ValueError as exc:
        raise PatchError(status(400, "BadRequest", f"invalid JSON: {exc}")) from exc
    if media == "application/json-patch+json":
        return json_patch(document, patch)
    if media in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
        if not isinstance(patch, dict):
            raise PatchError(status(400, "BadRequest", "the patch must be a JSON object"))
        return merge(document, patch)
    raise PatchError(
        status(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types "
            f"include: application/json-patch+json, application/merge-patch+json, "
            f"application/apply-patch+yaml, application/strategic-merge-patch+json "
            f"(got {media!r})",
        )
    )


# ---------------------------------------------------------------- selectors

_TERM = re.compile(
    r"^\s*(?:(?P<neg>!)(?P<absent>[\w./-]+)"
    r"|(?P<key>[\w./-]+)\s*(?:(?P<op>==|=|!=)\s*(?P<value>[\w.-]*)"
    r"|\s+(?P<setop>in|notin)\s+\((?P<values>[^)]*)\))?)\s*$"
)


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    terms = re.split(r",(?![^(]*\))", selector) if selector else []
    for term in terms:
        found = _TERM.match(term)
        if not found:
            raise PatchError(status(400, "BadRequest", f"unable to parse requirement: {term!r}"))
        if found["absent"]:
            ok = found["absent"] not in labels
        elif found["op"]:
            equal = labels.get(found["key"]) == found["value"]
            ok = equal if found["op"] != "!=" else not equal
        elif found["setop"]:
            values = {v.strip() for v in found["values"].split(",")}
            inside = labels.get(found["key"]) in values
            ok = inside if found["setop"] == "in" else (found["key"] not in labels or not inside)
        else:
            ok = found["key"] in labels
        if not ok:
            return False
    return True


# ---------------------------------------------------------------- the server


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    reply: Reply
    times: int


class KubeAPI(ScriptedServer):
    """The stand-in; state is plain JSON, guarded by the server's lock."""

    def __init__(self, token: str = TOKEN) -> None:
        super().__init__()
        self.token = token
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.replicasets: dict[tuple[str, str], dict[str, Any]] = {}
        self.hpas: dict[tuple[str, str], dict[str, Any]] = {}
        self.faults: list[Fault] = []
        #: GETs after a change before the rollout is complete (1: not yet observed, ...).
        self.rollout_reads = 2
        #: None, "stuck" (never completes) or "deadline" (ProgressDeadlineExceeded).
        self.stall: str | None = None
        self._pending: dict[tuple[str, str, str], int] = {}
        self._unsynced: set[tuple[str, str, str]] = set()
        #: Reads of a scale subresource after which the controller writes the object's
        #: status (a new resourceVersion), as it does while pods come and go: the next
        #: conditional write from that read meets 409.
        self.status_write_after_scale_reads = 0
        self._version = 1000

    # ------------------------------------------------------------ set-up

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def _metadata(self, namespace: str, name: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "resourceVersion": self._next_version(),
            "generation": 1,
            "creationTimestamp": "2024-05-01T10:00:00Z",
            **extra,
        }

    def add_deployment(
        self,
        namespace: str,
        name: str,
        *,
        replicas: int = 3,
        images: tuple[str, ...] = ("registry.example/web:1.0", "registry.example/web:1.1"),
        paused: bool = False,
        change_causes: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """A deployment at revision len(images), with one owned ReplicaSet per image;
        `change_causes` (one per image) are each revision's kubernetes.io/change-cause,
        the last one also the Deployment's, as after `kubectl annotate` at each release."""
        with self.lock:
            template = pod_template(name, images[-1])
            deployment = {
                "kind": "Deployment",
                "apiVersion": "apps/v1",
                "metadata": self._metadata(
                    namespace,
                    name,
                    labels={"app": name},
                    annotations={REVISION: str(len(images))},
                ),
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": name}},
                    "template": template,
                    "strategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
                    },
                    "revisionHistoryLimit": 10,
                    "progressDeadlineSeconds": 600,
                    **({"paused": True} if paused else {}),
                },
                "status": {},
            }
            self._complete(deployment)
            self.objects[("deployments", namespace, name)] = deployment
            for revision, image in enumerate(images, start=1):
                if change_causes:
                    deployment["metadata"]["annotations"][CHANGE_CAUSE] = change_causes[
                        revision - 1
                    ]
                self._new_replicaset(deployment, pod_template(name, image), revision)
            return copy.deepcopy(deployment)

    def add_statefulset(
        self,
        namespace: str,
        name: str,
        *,
        replicas: int = 3,
        image: str = "registry.example/db:15",
        update_strategy: str = "RollingUpdate",
        partition: int = 0,
    ) -> dict[str, Any]:
        with self.lock:
            template = pod_template(name, image)
            revision = f"{name}-{template_hash(template)}"
            statefulset = {
                "kind": "StatefulSet",
                "apiVersion": "apps/v1",
                "metadata": self._metadata(namespace, name, labels={"app": name}),
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": name}},
                    "template": template,
                    "serviceName": name,
                    "podManagementPolicy": "OrderedReady",
                    "updateStrategy": {"type": update_strategy}
                    | (
                        {"rollingUpdate": {"partition": partition}}
                        if update_strategy == "RollingUpdate"
                        else {}
                    ),
                    "revisionHistoryLimit": 10,
                },
                "status": {"currentRevision": revision, "updateRevision": revision},
            }
            self._complete(statefulset)
            self.objects[("statefulsets", namespace, name)] = statefulset
            return copy.deepcopy(statefulset)

    def add_replicaset(
        self, namespace: str, name: str, labels: dict[str, str], revision: int, owner_uid: str
    ) -> None:
        """A ReplicaSet with the given labels owned by owner_uid (e.g. someone else's)."""
        with self.lock:
            template = pod_template(labels.get("app", name), "registry.example/other:9")
            template["metadata"]["labels"] = dict(labels)
            self.replicasets[(namespace, name)] = {
                "metadata": self._metadata(
                    namespace,
                    name,
                    labels=dict(labels),
                    annotations={REVISION: str(revision)},
                    ownerReferences=[
                        {
                            "apiVersion": "apps/v1",
                            "kind": "Deployment",
                            "name": "other",
                            "uid": owner_uid,
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                ),
                "spec": {"replicas": 0, "template": template},
                "status": {"replicas": 0},
            }

    def add_hpa(
        self, namespace: str, name: str, kind: str, target: str, api_version: str = "apps/v1"
    ) -> None:
        with self.lock:
            self.hpas[(namespace, name)] = {
                "metadata": self._metadata(namespace, name),
                "spec": {
                    "scaleTargetRef": {"apiVersion": api_version, "kind": kind, "name": target},
                    "minReplicas": 2,
                    "maxReplicas": 10,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {"type": "Utilization", "averageUtilization": 80},
                            },
                        }
                    ],
                },
                "status": {"currentReplicas": 3, "desiredReplicas": 3},
            }

    def delete_replicaset(self, namespace: str, deployment: str, revision: int) -> None:
        """Drop one revision's ReplicaSet, as revisionHistoryLimit pruning does."""
        with self.lock:
            uid = self.objects[("deployments", namespace, deployment)]["metadata"]["uid"]
            for key, rs in list(self.replicasets.items()):
                owners = rs["metadata"].get("ownerReferences", [])
                if (
                    key[0] == namespace
                    and any(o["uid"] == uid for o in owners)
                    and rs["metadata"]["annotations"][REVISION] == str(revision)
                ):
                    del self.replicasets[key]

    def write_status(self, key: tuple[str, str, str]) -> None:
        """A controller's status write (here: observedGeneration rewritten): no spec
        change, but a new resourceVersion, as on a real API server. Call with the lock
        held or from a request handler."""
        obj = self.objects[key]
        obj["status"]["observedGeneration"] = obj["status"].get("observedGeneration", 0)
        obj["metadata"]["resourceVersion"] = self._next_version()

    def set_template_annotation(
        self, resource: str, namespace: str, name: str, key: str, value: str
    ) -> None:
        """Set a pod template annotation as a previous write would have (no rollout)."""
        with self.lock:
            obj = self.objects[(resource, namespace, name)]
            obj["spec"]["template"]["metadata"].setdefault("annotations", {})[key] = value
            obj["metadata"]["resourceVersion"] = self._next_version()

    def fail_next(self, method: str, path: str, reply: Reply, times: int = 1) -> None:
        """The next `times` requests with this method and a path matching `path` get reply."""
        with self.lock:
            self.faults.append(Fault(method, re.compile(path), reply, times))

    # ------------------------------------------------------------ inspection

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.objects[(resource, namespace, name)])

    def revisions(self, namespace: str, deployment: str) -> dict[int, str]:
        """revision -> image of the deployment's ReplicaSets."""
        with self.lock:
            uid = self.objects[("deployments", namespace, deployment)]["metadata"]["uid"]
            found = {}
            for (ns, _), rs in self.replicasets.items():
                owners = rs["metadata"].get("ownerReferences", [])
                if ns == namespace and any(o["uid"] == uid for o in owners):
                    image = rs["spec"]["template"]["spec"]["containers"][0]["image"]
                    found[int(rs["metadata"]["annotations"][REVISION])] = image
            return found

    def requests(self, method: str = "", path: str = "") -> list[Received]:
        """Requests received with this method whose path (query left out) matches `path`."""
        with self.lock:
            return [
                r
                for r in self.received
                if (not method or r.method == method) and re.search(path, urlsplit(r.path).path)
            ]

    # ------------------------------------------------------------ serving

    def next_reply(self, request: Received) -> Reply:
        with self.lock:
            self.received.append(request)
            if self.script:
                return self.script.pop(0)
            headers = {k.lower(): v for k, v in request.headers.items()}
            if headers.get("authorization") != f"Bearer {self.token}":
                return status(401, "Unauthorized", "Unauthorized")
            path = urlsplit(request.path).path
            for fault in self.faults:
                if fault.method == request.method and fault.path.search(path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault.reply
            try:
                return self._route(request, headers)
            except PatchError as exc:
                return exc.reply

    def _route(self, request: Received, headers: dict[str, str]) -> Reply:
        url = urlsplit(request.path)
        query = parse_qs(url.query)
        if found := _OBJECT.match(url.path):
            key = (found["resource"], found["ns"], found["name"])
            obj = self.objects.get(key)
            if obj is None:
                return not_found(found["resource"], found["name"])
            content_type = headers.get("content-type", "")
            if found["scale"]:
                if request.method == "GET":
                    reply = Reply.json(200, self._scale_of(obj))
                    if self.status_write_after_scale_reads > 0:
                        self.status_write_after_scale_reads -= 1
                        self.write_status(key)
                    return reply
                if request.method == "PATCH":
                    return self._patch_scale(key, obj, content_type, request.body)
            elif request.method == "GET":
                reply = Reply.json(200, obj)
                self._controller_step(key, obj)
                return reply
            elif request.method == "PATCH":
                return self._patch(key, obj, content_type, request.body)
            return status(405, "MethodNotAllowed", f"{request.method} is not supported here")
        if found := _REPLICASETS.match(url.path):
            if request.method != "GET":
                return status(405, "MethodNotAllowed", "only list is supported here")
            selector = query.get("labelSelector", [""])[0]
            items = [
                rs
                for (ns, _), rs in sorted(self.replicasets.items())
                if ns == found["ns"] and selector_matches(selector, rs["metadata"]["labels"])
            ]
            return Reply.json(200, self._list("ReplicaSetList", "apps/v1", items))
        if found := _HPAS.match(url.path):
            if request.method != "GET":
                return status(405, "MethodNotAllowed", "only list is supported here")
            items = [h for (ns, _), h in sorted(self.hpas.items()) if ns == found["ns"]]
            return Reply.json(
                200, self._list("HorizontalPodAutoscalerList", "autoscaling/v2", items)
            )
        return status(404, "NotFound", "the server could not find the requested resource")

    def _list(self, kind: str, api_version: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "kind": kind,
            "apiVersion": api_version,
            "metadata": {"resourceVersion": str(self._version)},
            "items": items,
        }

    # ------------------------------------------------------------ writes

    def _check_version(self, resource: str, name: str, old: str, new: dict[str, Any]) -> None:
        if new.get("metadata", {}).get("resourceVersion") != old:
            raise PatchError(conflict(resource, name))

    def _patch(
        self, key: tuple[str, str, str], obj: dict[str, Any], content_type: str, body: bytes
    ) -> Reply:
        patched = apply_patch(obj, content_type, body)
        self._check_version(key[0], key[2], obj["metadata"]["resourceVersion"], patched)
        for immutable in ("name", "namespace", "uid", "generation"):
            patched["metadata"][immutable] = obj["metadata"][immutable]
        patched["status"] = obj["status"]
        if patched == obj:
            return Reply.json(200, obj)
        self._store(key, obj, patched)
        return Reply.json(200, patched)

    def _scale_of(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            },
            "spec": {"replicas": obj["spec"]["replicas"]},
            "status": {
                "replicas": obj["status"].get("replicas", 0),
                "selector": ",".join(
                    f"{k}={v}" for k, v in sorted(obj["spec"]["selector"]["matchLabels"].items())
                ),
            },
        }

    def _patch_scale(
        self, key: tuple[str, str, str], obj: dict[str, Any], content_type: str, body: bytes
    ) -> Reply:
        scale = self._scale_of(obj)
        patched_scale = apply_patch(scale, content_type, body)
        self._check_version(key[0], key[2], scale["metadata"]["resourceVersion"], patched_scale)
        replicas = patched_scale.get("spec", {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            return status(422, "Invalid", f"Scale.spec.replicas: Invalid value: {replicas!r}")
        patched = copy.deepcopy(obj)
        patched["spec"]["replicas"] = replicas
        if patched != obj:
            self._store(key, obj, patched)
        return Reply.json(200, self._scale_of(self.objects[key]))

    def _store(self, key: tuple[str, str, str], old: dict[str, Any], new: dict[str, Any]) -> None:
        """Persist a changed object as the API server and its controllers would."""
        new["metadata"]["resourceVersion"] = self._next_version()
        if new["spec"] != old["spec"]:
            new["metadata"]["generation"] = old["metadata"]["generation"] + 1
            template_changed = new["spec"]["template"] != old["spec"]["template"]
            if key[0] == "deployments" and template_changed:
                # the API server only stores the write; the deployment controller picks
                # the ReplicaSet and writes the revision annotation in its next sync
                # (getAllReplicaSetsAndSyncRevision), modelled as the next GET
                self._unsynced.add(key)
            if key[0] == "statefulsets" and template_changed:
                new["status"]["updateRevision"] = (
                    f"{key[2]}-{template_hash(new['spec']['template'])}"
                )
            self._pending[key] = self.rollout_reads
        self.objects[key] = new

    def _roll_replicasets(self, deployment: dict[str, Any]) -> None:
        """The deployment controller: the next revision goes to a matching or new RS.

        Like the real controller, each of these is a write: the re-used ReplicaSet and
        the Deployment (its revision annotation) get a new resourceVersion."""
        uid = deployment["metadata"]["uid"]
        owned = [
            rs
            for rs in self.replicasets.values()
            if any(o["uid"] == uid for o in rs["metadata"].get("ownerReferences", []))
        ]
        revision = 1 + max(
            (int(rs["metadata"]["annotations"][REVISION]) for rs in owned), default=0
        )
        template = deployment["spec"]["template"]
        for rs in owned:
            if _without_hash(rs["spec"]["template"]) == _without_hash(template):
                if rs["metadata"]["annotations"][REVISION] == deployment["metadata"][
                    "annotations"
                ].get(REVISION):
                    return  # already the current revision: nothing to sync
                rs["metadata"]["annotations"][REVISION] = str(revision)
                # the controller copies the Deployment's annotations to the new RS
                # (SetNewReplicaSetAnnotations), e.g. kubernetes.io/change-cause
                rs["metadata"]["annotations"].update(_copied(deployment))
                rs["metadata"]["resourceVersion"] = self._next_version()
                break
        else:
            self._new_replicaset(deployment, template, revision)
        deployment["metadata"]["annotations"][REVISION] = str(revision)
        deployment["metadata"]["resourceVersion"] = self._next_version()

    def _new_replicaset(
        self, deployment: dict[str, Any], template: dict[str, Any], revision: int
    ) -> None:
        meta = deployment["metadata"]
        pod_hash = template_hash(template)
        hashed = copy.deepcopy(template)
        hashed["metadata"]["labels"][HASH] = pod_hash
        labels = dict(hashed["metadata"]["labels"])
        name = f"{meta['name']}-{pod_hash}"
        self.replicasets[(meta["namespace"], name)] = {
            "metadata": self._metadata(
                meta["namespace"],
                name,
                labels=labels,
                annotations={
                    **_copied(deployment),
                    REVISION: str(revision),
                    "deployment.kubernetes.io/desired-replicas": str(
                        deployment["spec"]["replicas"]
                    ),
                },
                ownerReferences=[
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            ),
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": labels},
                "template": hashed,
            },
            "status": {"replicas": 0, "observedGeneration": 1},
        }

    # ------------------------------------------------------------ the fake controllers

    def _complete(self, obj: dict[str, Any]) -> None:
        replicas = obj["spec"]["replicas"]
        status_ = obj["status"]
        status_.update(
            observedGeneration=obj["metadata"]["generation"],
            replicas=replicas,
            updatedReplicas=replicas,
            readyReplicas=replicas,
            availableReplicas=replicas,
        )
        if obj["kind"] == "StatefulSet":
            # as the StatefulSet controller: with a RollingUpdate partition only the pods
            # with an ordinal >= partition get the update revision, and currentRevision
            # moves to it only once every pod has it
            strategy = obj["spec"].get("updateStrategy") or {}
            partition = (strategy.get("rollingUpdate") or {}).get("partition") or 0
            updated = max(replicas - partition, 0)
            status_["updatedReplicas"] = updated
            if updated == replicas:
                status_["currentReplicas"] = replicas
                status_["currentRevision"] = status_["updateRevision"]
            else:
                status_["currentReplicas"] = replicas - updated
        else:
            status_["conditions"] = [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ]

    def _controller_step(self, key: tuple[str, str, str], obj: dict[str, Any]) -> None:
        """After each GET, the rollout moves on: observed, then half done, then complete.

        Every step is a status write, and a real API server gives every write, status
        writes included, a new resourceVersion (it is the object's etcd revision)."""
        if key in self._unsynced:
            self._unsynced.discard(key)
            self._roll_replicasets(obj)
        left = self._pending.get(key)
        if left is None:
            return
        obj["metadata"]["resourceVersion"] = self._next_version()
        left -= 1
        replicas = obj["spec"]["replicas"]
        if left > 0 or self.stall:
            obj["status"].update(
                observedGeneration=obj["metadata"]["generation"],
                updatedReplicas=replicas // 2,
                availableReplicas=max(replicas - 1, 0),
                readyReplicas=max(replicas - 1, 0),
                replicas=replicas + 1,
            )
            if self.stall == "deadline":
                obj["status"]["conditions"] = [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                    {
                        "type": "Progressing",
                        "status": "False",
                        "reason": "ProgressDeadlineExceeded",
                        "message": f'ReplicaSet "{key[2]}" has timed out progressing.',
                    },
                ]
            self._pending[key] = max(left, 1)
            return
        del self._pending[key]
        self._complete(obj)


@contextmanager
def kube_api() -> Iterator[KubeAPI]:
    with serving(KubeAPI()) as server:
        yield server


def write_kubeconfig(
    path: Path, server: str, token: str = TOKEN, context: str = "stand-in"
) -> Path:
    """A kubeconfig with token auth for the stand-in (and an unused second context)."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "stand-in", "cluster": {"server": server}},
                    {"name": "elsewhere", "cluster": {"server": "http://127.0.0.1:9"}},
                ],
                "users": [{"name": "remediator", "user": {"token": token}}],
                "contexts": [
                    {"name": context, "context": {"cluster": "stand-in", "user": "remediator"}},
                    {
                        "name": "elsewhere",
                        "context": {"cluster": "elsewhere", "user": "remediator"},
                    },
                ],
                "current-context": context,
            }
        )
    )
    return path


# ---------------------------------------------------------------- discovery, for kubectl

#: (group version, resource, kind, namespaced) that the discovery stand-in announces.
DISCOVERY_RESOURCES = (
    ("v1", "namespaces", "Namespace", False),
    ("v1", "serviceaccounts", "ServiceAccount", True),
    ("v1", "configmaps", "ConfigMap", True),
    ("v1", "secrets", "Secret", True),
    ("v1", "services", "Service", True),
    ("v1", "persistentvolumeclaims", "PersistentVolumeClaim", True),
    ("apps/v1", "deployments", "Deployment", True),
    ("apps/v1", "statefulsets", "StatefulSet", True),
    ("apps/v1", "replicasets", "ReplicaSet", True),
    ("autoscaling/v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True),
    ("rbac.authorization.k8s.io/v1", "roles", "Role", True),
    ("rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding", True),
    ("rbac.authorization.k8s.io/v1", "clusterroles", "ClusterRole", False),
    ("rbac.authorization.k8s.io/v1", "clusterrolebindings", "ClusterRoleBinding", False),
)


class DiscoveryAPI(ScriptedServer):
    """A STAND-IN for an empty cluster as `kubectl apply --dry-run=client` sees it.

    kubectl needs the API's discovery documents to map kinds to resources, even for a
    client-side dry run, and GETs each object to decide between create and patch. This
    server answers /version, /api, /apis and the APIResourceLists for the kinds above
    (legacy discovery: kubectl falls back to it when the answer is plain JSON), and 404
    for every object, so kubectl reports each one as it would be created. Anonymous, like
    the discovery endpoints of a real API server; it holds no objects.
    """

    def next_reply(self, request: Received) -> Reply:
        with self.lock:
            self.received.append(request)
        path = urlsplit(request.path).path.rstrip("/")
        versions = sorted({gv for gv, *_ in DISCOVERY_RESOURCES})
        if path == "/version":
            return Reply.json(
                200,
                {"major": "1", "minor": "32", "gitVersion": "v1.32.4", "platform": "linux/amd64"},
            )
        if path == "/api":
            return Reply.json(200, {"kind": "APIVersions", "versions": ["v1"]})
        if path == "/apis":
            groups = [
                {
                    "name": gv.split("/")[0],
                    "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                    "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]},
                }
                for gv in versions
                if "/" in gv
            ]
            return Reply.json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        for gv in versions:
            if path == ("/api/v1" if gv == "v1" else f"/apis/{gv}"):
                resources = [
                    {
                        "name": resource,
                        "singularName": kind.lower(),
                        "namespaced": namespaced,
                        "kind": kind,
                        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                    }
                    for group_version, resource, kind, namespaced in DISCOVERY_RESOURCES
                    if group_version == gv
                ]
                return Reply.json(
                    200,
                    {
                        "kind": "APIResourceList",
                        "apiVersion": "v1",
                        "groupVersion": gv,
                        "resources": resources,
                    },
                )
        name = path.rsplit("/", 1)[-1]
        return status(404, "NotFound", f'"{name}" not found', {"name": name})


@contextmanager
def discovery_api() -> Iterator[DiscoveryAPI]:
    with serving(DiscoveryAPI()) as server:
        yield server
