"""Restart, scale and roll back Deployments and StatefulSets through the Kubernetes API.

Uses the official `kubernetes` client (`pip install 'remediator[kubernetes]'`), imported
only when a kubernetes executor is built, so the base install works without it. Each
executor has its own `ApiClient`, configured the way the client does it: the pod's
service account (`in_cluster: true`) or a kubeconfig file and context; the process-wide
default configuration is never touched.

Targets are `deployment/<namespace>/<name>` or `statefulset/<namespace>/<name>`, checked
as Kubernetes names before any request. What each action does, as kubectl would:

- restart: `kubectl rollout restart` (the pod template annotation
  `kubectl.kubernetes.io/restartedAt`, a strategic merge patch), then waits until the
  rollout is complete (`kubectl rollout status`) within the action's timeout.
- scale: the scale subresource, read for `replicas()` and patched with the read's
  resourceVersion, so a concurrent change is a 409 and not a lost update (a strategic
  merge patch: on a Scale's scalar `spec.replicas` it is the same as the merge patch
  `kubectl scale` sends, and every supported client can send it). A target that a
  HorizontalPodAutoscaler owns is never scaled: the two would fight.
- rollback (Deployments only): like `kubectl rollout undo`, an owned ReplicaSet's pod
  template and annotations go back onto the Deployment (one JSON patch replacing
  /spec/template, so fields the bad release added go too, and /metadata/annotations),
  then it waits for that rollout like restart does. Unlike kubectl, which takes the
  previous revision, it takes the newest older revision that is another release:
  revisions whose template differs from the current one only in `restartedAt` are
  restarts of the current release and are skipped (see `choose_revision`).

Responses are read as raw JSON (`_preload_content=False`) rather than the client's
models, so an old ReplicaSet's template is copied back exactly, field for field, and
the module works across client versions. Supported clients: SUPPORTED_CLIENTS (the
`kubernetes` requirement of pyproject.toml; `check` warns outside it). Clients before
36 take no `_content_type` and choose the patch type from the body (a dict is a
strategic merge patch, a list a JSON patch): every patch here has the body shape of
its type, so it goes out the same on every supported client. API errors become one
line an operator can act on (which RBAC verb is missing, what was not found); a 409 is
retried on a fresh read with a bounded, jittered backoff; timeouts and connection
errors say the API was unreachable.
"""

from __future__ import annotations

import copy
import importlib.metadata
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from receiver.config import Config, ExecutorConfig
from receiver.executors.base import (
    ActionRequest,
    ExecutionResult,
    Executor,
    ExecutorError,
    effective_timeout,
    resolve_path,
    seconds,
)

INSTALL_HINT = "pip install 'remediator[kubernetes]'"
DEFAULT_REQUEST_TIMEOUT = 10.0
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REVISION = "deployment.kubernetes.io/revision"
POD_TEMPLATE_HASH = "pod-template-hash"
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
#: Deployment annotations a rollback keeps instead of taking the ReplicaSet's, as
#: kubectl's rollback does (annotationsToSkip in kubectl's polymorphichelpers/rollback.go).
ANNOTATIONS_TO_SKIP = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)
#: Attempts of a read-then-write that meets 409 Conflict, and the backoff between them
#: (seconds: first delay, factor, cap, jitter ratio), shaped like client-go's
#: wait.Backoff used by retry.RetryOnConflict; all of it bounded by the action's deadline.
CONFLICT_ATTEMPTS = 5
CONFLICT_BACKOFF = (0.01, 5.0, 1.0, 0.1)

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL = re.compile(_LABEL)
DNS1123_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")

T = TypeVar("T")

#: The `kubernetes` client versions the executor supports and the tests run at (the
#: lowest and the newest); pyproject.toml declares the same range (a unit test keeps
#: them equal). 29.0.0 is the oldest the tests install.
SUPPORTED_CLIENTS = ">=29,!=36.0.0"

#: Why a version is left out of SUPPORTED_CLIENTS, said by `check` when it is installed.
EXCLUDED_CLIENTS = {
    # Its generated Configuration sends the token only from api_key["BearerToken"], but
    # its kubeconfig and in-cluster loaders still store it as api_key["authorization"].
    # 36.0.1's loaders store it as "BearerToken" (so it works with both); 36.0.2 also
    # honours "authorization" for code that sets it itself (kubernetes-client/python#2595).
    "36.0.0": "it never sends the kubeconfig's or service account's token, "
    "so the API refuses every call (401)",
}


# ---------------------------------------------------------------- targets


@dataclass(frozen=True)
class Kind:
    name: str  # as in targets: deployment
    kind: str  # as in the API: Deployment
    resource: str  # as in RBAC and URLs: deployments


KINDS = {
    "deployment": Kind("deployment", "Deployment", "deployments"),
    "statefulset": Kind("statefulset", "StatefulSet", "statefulsets"),
}


@dataclass(frozen=True)
class Target:
    kind: Kind
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind.name}/{self.namespace}/{self.name}"

    @property
    def described(self) -> str:
        """`deployment shop/web`, as in error messages."""
        return f"{self.kind.name} {self.namespace}/{self.name}"


def parse_target(text: str) -> Target:
    """`deployment/<namespace>/<name>` or `statefulset/...`; ValueError says what is wrong."""
    parts = text.split("/")
    if len(parts) != 3:
        raise ValueError(
            f"target {text!r} is not <kind>/<namespace>/<name> (kind: {' or '.join(KINDS)})"
        )
    kind, namespace, name = parts
    if kind not in KINDS:
        raise ValueError(f"target {text!r}: kind must be {' or '.join(KINDS)}, got {kind!r}")
    if len(namespace) > 63 or not DNS1123_LABEL.fullmatch(namespace):
        raise ValueError(
            f"target {text!r}: namespace {namespace!r} is not a valid Kubernetes namespace "
            "(a DNS-1123 label: at most 63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit)"
        )
    if len(name) > 253 or not DNS1123_SUBDOMAIN.fullmatch(name):
        raise ValueError(
            f"target {text!r}: name {name!r} is not a valid {KINDS[kind].kind} name "
            "(a DNS-1123 subdomain: at most 253 lowercase letters, digits, '-' and '.', "
            "each part starting and ending with a letter or digit)"
        )
    return Target(KINDS[kind], namespace, name)


def target_template_problem(source: str, action: str | None) -> str | None:
    """What is wrong with a kubernetes target template that can be told from the config
    alone (`check`, start, reload), before any alert renders it; None when nothing can be.

    A template without `{` is the target itself: parse_target's reason. Otherwise the
    kind, when it is literal (the text before the first "/", without `{`), must be one of
    KINDS, and `rollback` needs a deployment: both would fail every action at run time
    (kubectl's short names such as `deploy/` are not targets here).
    """
    if "{" not in source:
        try:
            kind = parse_target(source).kind.name
        except ValueError as exc:
            return str(exc)
    else:
        kind, slash, _ = source.partition("/")
        if not slash or "{" in kind:
            return None  # the kind comes from a label: checked when rendered
        if kind not in KINDS:
            return (
                f"target {source!r}: kind must be {' or '.join(KINDS)}, got {kind!r} "
                "(targets are <kind>/<namespace>/<name>)"
            )
    if action == "rollback" and kind != "deployment":
        return (
            f"target {source!r}: rollback needs a deployment (the executor rolls back only those)"
        )
    return None


# ---------------------------------------------------------------- errors


#: Seconds before the deadline at which a timed-out read counts as the deadline's.
DEADLINE_SLACK = 0.05


class KubeError(Exception):
    """A failed API call or rollout; the message is the detail journaled for the action."""

    def __init__(self, message: str, *, timed_out: bool = False, output: str = "") -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.output = output


class Conflict(KubeError):
    """409: the object changed between our read and our write."""


@dataclass(frozen=True)
class Call:
    """What a request does, to name it in errors: verb, RBAC resource, namespace, object."""

    verb: str
    resource: str
    namespace: str
    what: str  # "deployment shop/web", or for lists "horizontalpodautoscalers in shop"


def _status_message(body: Any) -> str:
    """The `message` of a Kubernetes Status object, else the body's head."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if not body:
        return ""
    try:
        status = json.loads(body)
    except ValueError:
        return str(body)[:300]
    if isinstance(status, dict) and isinstance(status.get("message"), str):
        return status["message"]
    return str(body)[:300]


def api_error(status: int, body: Any, call: Call) -> KubeError:
    """Map an API answer to the reason an operator reads in the journal."""
    message = _status_message(body)
    if status == 401:
        return KubeError(
            "unauthorized: the Kubernetes API refused the executor's credentials (401)",
            output=message,
        )
    if status == 403:
        return KubeError(
            f"forbidden: needs `{call.verb}` on `{call.resource}` "
            f"in namespace {call.namespace} (RBAC)",
            output=message,
        )
    if status == 404:
        return KubeError(f"{call.what} not found", output=message)
    if status == 409:
        return Conflict(f"conflict: {call.what} changed while it was being updated", output=message)
    if status == 422:
        return KubeError(f"the Kubernetes API refused to {call.verb} {call.what}: {message}")
    return KubeError(
        f"Kubernetes API answered {status} to {call.verb} {call.what}"
        + (f": {message}" if message else ""),
        output=message,
    )


def _unreachable_reason(exc: BaseException) -> tuple[str, bool]:
    """(reason, timed_out) for urllib3/socket errors; MaxRetryError wraps the real one."""
    reason: BaseException = getattr(exc, "reason", None) or exc
    if not isinstance(reason, BaseException):
        return str(reason), False
    timed_out = isinstance(reason, TimeoutError) or "Timeout" in type(reason).__name__
    text = str(reason)
    # urllib3 prefixes "<connection object at 0x...>: " to connection errors
    text = re.sub(r"^<[^>]*>: ", "", text)
    return f"{type(reason).__name__}: {text}" if text else type(reason).__name__, timed_out


def check_kubeconfig(shown: str, path: Path, context: str | None) -> None:
    """Read and parse a kubeconfig without the client: ExecutorError (its `setting`
    kubeconfig or context) unless it holds `context`, or a current-context if None."""
    try:
        kubeconfig = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ExecutorError(
            f"cannot read {shown}: {exc.strerror or exc}", setting="kubeconfig"
        ) from exc
    except ValueError as exc:  # not UTF-8, or a NUL in the path
        raise ExecutorError(f"cannot read {shown}: {exc}", setting="kubeconfig") from exc
    except yaml.YAMLError as exc:
        raise ExecutorError(
            f"{shown} is not a valid kubeconfig: {exc}", setting="kubeconfig"
        ) from exc
    contexts = kubeconfig.get("contexts") if isinstance(kubeconfig, dict) else None
    if not isinstance(contexts, list):
        raise ExecutorError(
            f"{shown} is not a valid kubeconfig: it has no contexts", setting="kubeconfig"
        )
    names = [c.get("name") for c in contexts if isinstance(c, dict)]
    wanted = context or kubeconfig.get("current-context")
    if not wanted:
        raise ExecutorError(f"{shown} has no current-context; set context", setting="kubeconfig")
    if wanted not in names:
        raise ExecutorError(
            f"no context {wanted!r} in {shown} (contexts: "
            + (", ".join(map(str, names)) or "none")
            + ")",
            setting="context" if context else "kubeconfig",
        )


def _import_client() -> Any:
    try:
        import kubernetes.client
        import kubernetes.config
    except ImportError as exc:
        raise ExecutorError(
            f"the kubernetes executor needs the kubernetes Python client: {INSTALL_HINT}",
            setting="type",
        ) from exc
    return kubernetes


def installed_client_version() -> str | None:
    """The installed `kubernetes` distribution's version (its metadata, without importing
    the client), or None when it is not installed."""
    try:
        return importlib.metadata.version("kubernetes")
    except importlib.metadata.PackageNotFoundError:
        return None


def client_version_warning(version: str | None) -> str | None:
    """Why `version` of the `kubernetes` client is unsupported, or None when it is within
    SUPPORTED_CLIENTS (or not installed: the build says so). Shown by `check` and at
    start (receiver.config.config_warnings), which do not refuse it: it may still work.
    """
    if version is None:
        return None
    try:
        if Version(version) in SpecifierSet(SUPPORTED_CLIENTS):
            return None
    except InvalidVersion:
        pass  # a local build with an unreadable version: unknown, so unsupported
    why = EXCLUDED_CLIENTS.get(version, "the executor is not tested with it")
    return (
        f"the installed kubernetes client {version} is outside the supported range "
        f"{SUPPORTED_CLIENTS} ({why}): restart, scale or rollback may fail; install a "
        f"supported one: pip install 'kubernetes{SUPPORTED_CLIENTS}'"
    )


# ---------------------------------------------------------------- rollout status


@dataclass(frozen=True)
class Rollout:
    done: bool
    progress: str
    failure: str | None = None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def rollout_status(kind: str, obj: dict[str, Any], generation: int) -> Rollout:
    """Is the rollout of this Deployment/StatefulSet complete (as `kubectl rollout status`)?

    Complete means the controller has observed the generation we produced and every
    wanted replica runs the new template: Deployments by updatedReplicas and
    availableReplicas (and no old replicas left); StatefulSets by kubectl's rule for
    RollingUpdate: readyReplicas >= replicas and updatedReplicas >= replicas -
    partition (without a rollingUpdate block: ready and currentRevision ==
    updateRevision). `generation` is the one our write produced (0 for none).
    """
    metadata, spec, status = (obj.get(k) or {} for k in ("metadata", "spec", "status"))
    generation = max(generation, _int(metadata.get("generation")))
    observed = _int(status.get("observedGeneration"))
    wanted = _int(spec.get("replicas", 1))
    if observed < generation:
        return Rollout(
            False, f"waiting for the controller to observe generation {generation} (at {observed})"
        )
    updated = _int(status.get("updatedReplicas"))
    if kind == "deployment":
        for condition in status.get("conditions") or []:
            if (
                isinstance(condition, dict)
                and condition.get("type") == "Progressing"
                and condition.get("reason") == "ProgressDeadlineExceeded"
            ):
                return Rollout(False, "", "exceeded its progress deadline")
        available = _int(status.get("availableReplicas"))
        total = _int(status.get("replicas"))
        progress = f"{updated}/{wanted} updated, {available}/{wanted} available"
        if total > updated:
            progress += f", {total - updated} old pending termination"
        return Rollout(updated == wanted and available == wanted and total == wanted, progress)
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type") == "OnDelete":
        return Rollout(False, "", "uses the OnDelete update strategy: no pod is replaced")
    ready = _int(status.get("readyReplicas"))
    rolling = strategy.get("rollingUpdate")
    if isinstance(rolling, dict):
        # kubectl's StatefulSetStatusViewer: with a rollingUpdate (the API server defaults
        # it, partition 0), complete once ready >= replicas and updated >= replicas -
        # partition; currentRevision is not consulted (it lags behind on a partition)
        partition = _int(rolling.get("partition"))
        wanted_updated = max(wanted - partition, 0)
        progress = f"{updated}/{wanted_updated} updated, {ready}/{wanted} ready"
        return Rollout(ready >= wanted and updated >= wanted_updated, progress)
    # without one (never defaulted, so not from a real API server) kubectl falls back
    # to currentRevision == updateRevision
    current, update = status.get("currentRevision"), status.get("updateRevision")
    progress = f"{updated}/{wanted} updated, {ready}/{wanted} ready"
    if current != update:
        progress += f", revision {current} -> {update}"
    return Rollout(ready >= wanted and current == update, progress)


# ---------------------------------------------------------------- helpers


def label_selector(selector: dict[str, Any]) -> str:
    """A LabelSelector (matchLabels, matchExpressions) as a labelSelector query string."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = ",".join(sorted(expression.get("values") or []))
        if operator == "In":
            parts.append(f"{key} in ({values})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif operator == "Exists":
            parts.append(str(key))
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            raise KubeError(f"unsupported selector operator {operator!r}")
    if not parts:
        raise KubeError("the deployment has an empty selector")
    return ",".join(parts)


def _revision(obj: dict[str, Any]) -> int | None:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION)
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _comparable(template: Any, *, ignore_restart: bool) -> Any:
    """A pod template without `pod-template-hash` (as kubectl's equalIgnoreHash) and,
    if asked, without `restartedAt`; empty label/annotation maps count as absent."""
    template = copy.deepcopy(template) if isinstance(template, dict) else {}
    metadata = template.get("metadata")
    if not isinstance(metadata, dict):
        return template
    ignored = {"labels": {POD_TEMPLATE_HASH}, "annotations": set()}
    if ignore_restart:
        ignored["annotations"].add(RESTARTED_AT)
    for field, keys in ignored.items():
        values = metadata.get(field)
        if isinstance(values, dict):
            for key in keys:
                values.pop(key, None)
        if not values:
            metadata.pop(field, None)
    return template


def images(template: dict[str, Any]) -> list[str]:
    """The images of a pod template's containers, in order (init containers first)."""
    spec = template.get("spec") or {}
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    return [str(c.get("image")) for c in containers if isinstance(c, dict) and c.get("image")]


@dataclass(frozen=True)
class Choice:
    """What a rollback goes to: `revision` and its ReplicaSet's `template` (without
    pod-template-hash) and `annotations`; `skipped` names the newer revisions passed
    over and why. `already`: the Deployment's template already is that revision's."""

    revision: int
    template: dict[str, Any]
    annotations: dict[str, str]
    skipped: tuple[str, ...] = ()
    already: bool = False


def choose_revision(
    described: str, deployment: dict[str, Any], current: int, replicasets: list[dict[str, Any]]
) -> Choice:
    """The revision a rollback of `deployment` (at revision `current`) goes to.

    `replicasets` are the Deployment's own (owner uid checked by the caller). Walking
    from the newest revision below `current` down, a revision whose template differs
    from the current one only in `kubectl.kubernetes.io/restartedAt` (and the
    pod-template-hash label) is a restart of the current release, not another release:
    it is skipped and named in `skipped`. The first other revision is the choice.

    If an older revision's template equals the current one (pod-template-hash aside),
    the Deployment is already there (a rollback whose revision the deployment
    controller has not yet recorded): Choice(already=True), as kubectl reports
    "skipped rollback (current template already matches revision N)".

    Raises KubeError, naming `described` and the skipped revisions, when there is no
    older revision or only restarts of the current release.
    """
    template = (deployment.get("spec") or {}).get("template") or {}
    exact = _comparable(template, ignore_restart=False)
    release = _comparable(template, ignore_restart=True)
    older: list[tuple[int, dict[str, Any]]] = []
    for rs in replicasets:
        revision = _revision(rs)
        if revision is None or revision == current:
            continue
        if _comparable((rs.get("spec") or {}).get("template"), ignore_restart=False) == exact:
            return _choice(revision, rs, already=True)
        if revision < current:
            older.append((revision, rs))
    skipped: list[str] = []
    for revision, rs in sorted(older, key=lambda pair: pair[0], reverse=True):
        rs_template = (rs.get("spec") or {}).get("template")
        if _comparable(rs_template, ignore_restart=True) == release:
            skipped.append(
                f"skipped revision {revision}: differs from the current template only in "
                "restartedAt"
            )
            continue
        return _choice(revision, rs, skipped=tuple(skipped))
    if not older:
        raise KubeError(
            f"cannot roll back {described}: no previous revision (current revision {current})"
        )
    raise KubeError(
        f"cannot roll back {described}: no earlier release (current revision {current}; "
        + "; ".join(skipped)
        + ")"
    )


def _choice(
    revision: int, rs: dict[str, Any], *, skipped: tuple[str, ...] = (), already: bool = False
) -> Choice:
    template = copy.deepcopy((rs.get("spec") or {}).get("template") or {})
    labels = (template.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH, None)
    annotations = (rs.get("metadata") or {}).get("annotations") or {}
    return Choice(revision, template, dict(annotations), skipped, already)


def rollback_annotations(deployment: dict[str, Any], replicaset: dict[str, str]) -> dict[str, str]:
    """The Deployment's annotations after a rollback, as kubectl computes them: its own
    values of ANNOTATIONS_TO_SKIP, and every other annotation from the ReplicaSet (so
    `kubernetes.io/change-cause` is the target revision's)."""
    own = (deployment.get("metadata") or {}).get("annotations") or {}
    kept = {k: v for k, v in own.items() if k in ANNOTATIONS_TO_SKIP}
    return kept | {k: v for k, v in replicaset.items() if k not in ANNOTATIONS_TO_SKIP}


def ref_group(ref: dict[str, Any]) -> str | None:
    """The API group of a scaleTargetRef: the part of `apiVersion` before "/" ("apps"
    for apps/v1), "" for the core group ("v1"), None when apiVersion is not given.

    The HPA controller resolves its target by group and kind, so an HPA of a custom
    resource also named Deployment (example.com/v1) does not own ours; a ref without
    apiVersion is taken as possibly ours (refusing to scale is the safe side).
    """
    api_version = ref.get("apiVersion")
    if not isinstance(api_version, str) or not api_version:
        return None
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def rfc3339_now() -> str:
    """The current time as kubectl writes restartedAt (RFC 3339, seconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- the executor


class KubernetesExecutor(Executor):
    """`restart`, `scale` and `rollback` Deployments and StatefulSets."""

    type = "kubernetes"
    actions = frozenset({"restart", "scale", "rollback"})
    #: Seconds between reads while waiting for a rollout (tests make it shorter).
    poll_interval = 1.0
    #: The restartedAt stamp for now (tests pin it to reach a same-second restart).
    clock: Callable[[], str] = staticmethod(rfc3339_now)

    def __init__(self, config: ExecutorConfig, root: Config) -> None:
        super().__init__(config, root)
        k8s = _import_client()
        self.request_timeout = float(self.settings.get("timeout", DEFAULT_REQUEST_TIMEOUT))
        configuration = k8s.client.Configuration()
        self.source = self._load_credentials(k8s, configuration)
        configuration.retries = False  # one attempt per call; the action's deadline rules
        self.api_client = k8s.client.ApiClient(configuration)
        self.apps = k8s.client.AppsV1Api(self.api_client)
        self._api_type_error = k8s.client.exceptions.ApiTypeError
        #: Whether this client takes `_content_type`: None until the first patch tells.
        self.sets_content_type: bool | None = None
        self.autoscaling = k8s.client.AutoscalingV2Api(self.api_client)
        self._api_exception = k8s.client.exceptions.ApiException

    @classmethod
    def preflight(cls, config: ExecutorConfig, root: Config) -> None:
        """At `check` (and before the build at start and reload): the client imports,
        and a configured kubeconfig is readable, parses and holds the context to use.

        Loading credentials is left to the build at start and reload: in-cluster ones
        exist only in a pod, and a kubeconfig's exec or auth plugin may run a command
        or call out to the network, which a check must never do.
        """
        _import_client()
        kubeconfig = config.settings.get("kubeconfig")
        if kubeconfig:
            check_kubeconfig(
                str(kubeconfig), resolve_path(root, str(kubeconfig)), config.settings.get("context")
            )

    def _load_credentials(self, k8s: Any, configuration: Any) -> str:
        """Fill configuration like the client does; returns where the credentials came from."""
        if self.settings.get("in_cluster"):
            try:
                k8s.config.load_incluster_config(client_configuration=configuration)
            except (k8s.config.ConfigException, OSError) as exc:
                raise ExecutorError(
                    f"in_cluster: no service account credentials here ({exc}); "
                    "run in a pod or set kubeconfig",
                    setting="in_cluster",
                ) from exc
            return "in-cluster service account"
        kubeconfig = self.settings.get("kubeconfig")
        path = str(self.resolve_path(kubeconfig)) if kubeconfig else None
        context = self.settings.get("context")
        shown = path or "the default kubeconfig ($KUBECONFIG or ~/.kube/config)"
        try:
            k8s.config.load_kube_config(
                config_file=path,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
        except Exception as exc:  # ConfigException, OSError, YAML and key errors alike
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            setting = "kubeconfig" if kubeconfig else ""
            raise ExecutorError(f"cannot load {shown}: {reason}", setting=setting) from exc
        return f"{shown}" + (f" (context {context})" if context else "")

    # ------------------------------------------------------------ public API

    def execute(self, request: ActionRequest) -> ExecutionResult:
        if request.action not in self.actions:
            return self.unsupported(request)
        try:
            target = parse_target(request.target)
        except ValueError as exc:
            return ExecutionResult(False, str(exc))
        timeout = effective_timeout(request.timeout, None)
        deadline = time.monotonic() + timeout
        try:
            if request.action == "restart":
                return self._restart(target, deadline, timeout)
            if request.action == "scale":
                return self._scale(target, request.replicas, deadline)
            return self._rollback(target, deadline, timeout)
        except KubeError as exc:
            return ExecutionResult(False, str(exc), exc.output, timed_out=exc.timed_out)

    def replicas(self, target: str) -> int:
        """spec.replicas of the target's scale subresource; ExecutorError if unreadable."""
        try:
            parsed = parse_target(target)
            scale = self._read_scale(parsed, time.monotonic() + self.request_timeout)
        except (ValueError, KubeError) as exc:
            raise ExecutorError(str(exc)) from exc
        return _int((scale.get("spec") or {}).get("replicas"))

    def close(self) -> None:
        self.api_client.close()

    # ------------------------------------------------------------ restart

    def _restart(self, target: Target, deadline: float, timeout: float) -> ExecutionResult:
        def attempt() -> tuple[dict[str, Any], str]:
            current = self._read(target, deadline)
            self._refuse_paused(target, current, "restart")
            if target.kind.name == "statefulset":
                self._refuse_restart_replacing_no_pod(target, current)
            metadata = ((current.get("spec") or {}).get("template") or {}).get("metadata")
            previous = ((metadata or {}).get("annotations") or {}).get(RESTARTED_AT)
            now = self._next_restart_stamp(target, previous, deadline)
            body: dict[str, Any] = {
                "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}
            }
            version = (current.get("metadata") or {}).get("resourceVersion")
            if version:
                # precondition: a restart by someone else since our read is a 409, and
                # the retry's fresh read sees its restartedAt (and waits for a new second)
                body["metadata"] = {"resourceVersion": version}
            patched = self._patch(target, body, STRATEGIC_MERGE, deadline)
            if version and (patched.get("metadata") or {}).get("resourceVersion") == version:
                # the API server answers a patch that changes nothing with the object
                # as it was (same resourceVersion): no rollout was started
                raise KubeError(
                    f"restart of {target} patched nothing: the API server answered the "
                    f"object unchanged (restartedAt {now})"
                )
            return patched, now

        (patched, now), retried = self._retrying_conflict(target, attempt, deadline)
        generation = _int((patched.get("metadata") or {}).get("generation"))
        progress = self._await_rollout(target, generation, deadline, timeout)
        return ExecutionResult(
            True,
            f"restarted {target} (restartedAt {now}{retried}); rollout complete: {progress}",
        )

    def _refuse_restart_replacing_no_pod(self, target: Target, statefulset: dict[str, Any]) -> None:
        """KubeError when a rollout restart of this StatefulSet would replace no pod, so it
        is never reported as a restart: with OnDelete, or with a RollingUpdate partition
        at or above its replicas (the controller only updates pods whose ordinal is >=
        partition, as the StatefulSet docs' "Partitioned rolling updates" say; kubectl's
        rollout status then calls the rollout complete at once, 0 pods updated)."""
        spec = statefulset.get("spec") or {}
        strategy = spec.get("updateStrategy") or {}
        if strategy.get("type") == "OnDelete":
            raise KubeError(
                f"cannot restart {target.described}: it uses the OnDelete update "
                "strategy, so a rollout restart replaces no pod"
            )
        partition = _int((strategy.get("rollingUpdate") or {}).get("partition"))
        replicas = _int(spec.get("replicas", 1))
        if partition > 0 and partition >= replicas:
            raise KubeError(
                f"cannot restart {target.described}: its rollingUpdate partition {partition} "
                f"is not below its {replicas} replicas, so a rollout restart replaces no pod "
                "(only pods with an ordinal >= the partition are updated)"
            )

    def _next_restart_stamp(self, target: Target, previous: str | None, deadline: float) -> str:
        """A restartedAt (`self.clock()`) other than `previous`, waiting for the next
        second if need be. kubectl writes seconds, so a second restart within the same
        second would patch nothing (kubectl refuses it: "if restart has already been
        triggered within the past second, please wait"); we wait instead, within the
        action's deadline, else raise KubeError."""
        while True:
            now = self.clock()
            if now != previous:
                return now
            wait = 1.0 - time.time() % 1.0 + 0.01  # just past the next whole second
            if time.monotonic() + wait >= deadline:
                raise KubeError(
                    f"cannot restart {target}: it was restarted within this second "
                    f"(restartedAt {previous}) and the action's time ran out before the "
                    "next second; a restart within the same second would change nothing"
                )
            time.sleep(wait)

    # ------------------------------------------------------------ scale

    def _scale(self, target: Target, replicas: int | None, deadline: float) -> ExecutionResult:
        if replicas is None or replicas < 0:
            return ExecutionResult(False, f"scale needs a desired replica count, got {replicas}")
        owner = self._owning_hpa(target, deadline)
        if owner:
            return ExecutionResult(
                False, f"refusing to scale {target}: HorizontalPodAutoscaler {owner} owns it"
            )

        def attempt() -> int:
            scale = self._read_scale(target, deadline)
            current = _int((scale.get("spec") or {}).get("replicas"))
            if current != replicas:
                version = (scale.get("metadata") or {}).get("resourceVersion")
                body: dict[str, Any] = {"spec": {"replicas": replicas}}
                if version:  # precondition: a concurrent change answers 409, not lost
                    body["metadata"] = {"resourceVersion": version}
                self._patch_scale(target, body, deadline)
            return current

        current, retried = self._retrying_conflict(target, attempt, deadline)
        if current == replicas:
            return ExecutionResult(True, f"{target} already has {replicas} replicas{retried}")
        return ExecutionResult(True, f"scaled {target} from {current} to {replicas}{retried}")

    def _owning_hpa(self, target: Target, deadline: float) -> str | None:
        call = Call(
            "list",
            "horizontalpodautoscalers",
            target.namespace,
            f"horizontalpodautoscalers (autoscaling/v2) in namespace {target.namespace}",
        )
        listed = self._request(
            call,
            self.autoscaling.list_namespaced_horizontal_pod_autoscaler,
            deadline,
            target.namespace,
        )
        for hpa in listed.get("items") or []:
            ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
            if (
                ref_group(ref) in ("apps", None)
                and ref.get("kind") == target.kind.kind
                and ref.get("name") == target.name
            ):
                return str((hpa.get("metadata") or {}).get("name"))
        return None

    # ------------------------------------------------------------ rollback

    def _rollback(self, target: Target, deadline: float, timeout: float) -> ExecutionResult:
        if target.kind.name != "deployment":
            return ExecutionResult(False, f"cannot roll back {target}: rollback needs a deployment")

        def attempt() -> tuple[dict[str, Any], int, Choice]:
            deployment = self._read(target, deadline)
            self._refuse_paused(target, deployment, "roll back")
            current = _revision(deployment)
            if current is None:
                raise KubeError(
                    f"cannot roll back {target.described}: it has no {REVISION} annotation "
                    "(has the deployment controller seen it yet?)"
                )
            replicasets = self._owned_replicasets(target, deployment, deadline)
            choice = choose_revision(target.described, deployment, current, replicasets)
            if choice.already:
                return deployment, current, choice
            # Read again just before the write: the precondition then only spans one
            # round trip, not three, and during a rollout the controller writes the
            # status (a new resourceVersion) several times a second. The choice stays
            # valid as long as the spec and the revision did not change meanwhile.
            fresh = self._read(target, deadline)
            if (fresh.get("spec") or {}) != (deployment.get("spec") or {}) or _revision(
                fresh
            ) != current:
                raise Conflict(
                    f"conflict: {target.described} changed while the rollback was chosen"
                )
            deployment = fresh
            # kubectl's rollback patch: replace the template and the annotations
            patch: list[dict[str, Any]] = [
                {"op": "replace", "path": "/spec/template", "value": choice.template},
                {
                    "op": "replace",
                    "path": "/metadata/annotations",
                    "value": rollback_annotations(deployment, choice.annotations),
                },
            ]
            version = (deployment.get("metadata") or {}).get("resourceVersion")
            if version:  # precondition: if it changed since the read, 409 (and a retry)
                patch.insert(
                    0, {"op": "replace", "path": "/metadata/resourceVersion", "value": version}
                )
            return self._patch(target, patch, JSON_PATCH, deadline), current, choice

        (patched, current, choice), retried = self._retrying_conflict(target, attempt, deadline)
        generation = _int((patched.get("metadata") or {}).get("generation"))
        progress = self._await_rollout(target, generation, deadline, timeout)
        if choice.already:
            # nothing patched; the rollout awaited is the one already under way (if any)
            return ExecutionResult(
                True,
                f"skipped, already at revision {choice.revision}: the template of {target} "
                f"already matches it, nothing patched{retried}; rollout complete: {progress}",
            )
        shown = images(choice.template)
        why = "".join(f"; {reason}" for reason in choice.skipped)
        return ExecutionResult(
            True,
            f"rolled back {target} from revision {current} to revision {choice.revision} "
            f"(image{'s' if len(shown) != 1 else ''} {', '.join(shown) or 'none'}{why})"
            f"{retried}; rollout complete: {progress}",
        )

    def _owned_replicasets(
        self, target: Target, deployment: dict[str, Any], deadline: float
    ) -> list[dict[str, Any]]:
        """The ReplicaSets matching the Deployment's selector that it owns (owner uid)."""
        spec = deployment.get("spec") or {}
        selector = label_selector(spec.get("selector") or {})
        uid = (deployment.get("metadata") or {}).get("uid")
        call = Call(
            "list", "replicasets", target.namespace, f"replicasets in namespace {target.namespace}"
        )
        listed = self._request(
            call,
            self.apps.list_namespaced_replica_set,
            deadline,
            target.namespace,
            label_selector=selector,
        )
        return [
            rs
            for rs in listed.get("items") or []
            if any(
                owner.get("uid") == uid
                for owner in (rs.get("metadata") or {}).get("ownerReferences") or []
            )
        ]

    # ------------------------------------------------------------ shared steps

    def _refuse_paused(self, target: Target, obj: dict[str, Any], verb: str) -> None:
        if (obj.get("spec") or {}).get("paused"):
            raise KubeError(
                f"cannot {verb} {target.described}: it is paused (resume the rollout first)"
            )

    def _retrying_conflict(
        self, target: Target, attempt: Callable[[], T], deadline: float
    ) -> tuple[T, str]:
        """Run read-then-write; on a 409, again from a fresh read, at most CONFLICT_ATTEMPTS
        times in all, after a jittered exponential delay (CONFLICT_BACKOFF) that must fit
        before `deadline` (time.monotonic() seconds). Returns (result, the note for the
        detail); raises KubeError when the attempts or the time run out."""
        first, factor, cap, jitter = CONFLICT_BACKOFF
        conflicts = 0
        while True:
            try:
                result = attempt()
            except Conflict as exc:
                conflicts += 1
                delay = min(cap, first * factor ** (conflicts - 1))
                delay *= 1 + jitter * random.random()  # spread retries of concurrent writers
                out_of_time = time.monotonic() + delay >= deadline
                if conflicts < CONFLICT_ATTEMPTS and not out_of_time:
                    time.sleep(delay)
                    continue
                why = (
                    "the action's time ran out before another retry"
                    if out_of_time and conflicts < CONFLICT_ATTEMPTS
                    else f"retried {conflicts - 1} times on a fresh read"
                )
                raise KubeError(
                    f"conflict: {target.described} kept changing while it was being updated "
                    f"(409 {conflicts} times, {why})",
                    output=exc.output,
                ) from exc
            if conflicts == 0:
                return result, ""
            if conflicts == 1:
                return result, " after retrying a 409 conflict"
            return result, f" after retrying {conflicts} 409 conflicts"

    def _await_rollout(
        self, target: Target, generation: int, deadline: float, timeout: float
    ) -> str:
        progress = "no status read yet"
        while True:
            if time.monotonic() >= deadline:
                raise KubeError(
                    f"rollout of {target} not complete within {seconds(timeout)}: {progress}",
                    timed_out=True,
                )
            try:
                obj = self._read(target, deadline)
            except KubeError as exc:
                # a status read cut short by the action's own deadline (its timeout is what
                # was left of it) means the rollout did not complete in time, not that the
                # API is unreachable
                if exc.timed_out and time.monotonic() >= deadline - DEADLINE_SLACK:
                    raise KubeError(
                        f"rollout of {target} not complete within {seconds(timeout)}: {progress}",
                        timed_out=True,
                    ) from exc
                raise
            state = rollout_status(target.kind.name, obj, generation)
            if state.failure:
                raise KubeError(f"rollout of {target} failed: {state.failure}")
            if state.done:
                return state.progress
            progress = state.progress
            time.sleep(min(self.poll_interval, max(deadline - time.monotonic(), 0.0)))

    # ------------------------------------------------------------ API calls

    def _read(self, target: Target, deadline: float) -> dict[str, Any]:
        call = Call("get", target.kind.resource, target.namespace, target.described)
        read = (
            self.apps.read_namespaced_deployment
            if target.kind.name == "deployment"
            else self.apps.read_namespaced_stateful_set
        )
        return self._request(call, read, deadline, target.name, target.namespace)

    def _patch(self, target: Target, body: Any, content_type: str, deadline: float) -> Any:
        call = Call("patch", target.kind.resource, target.namespace, target.described)
        patch = (
            self.apps.patch_namespaced_deployment
            if target.kind.name == "deployment"
            else self.apps.patch_namespaced_stateful_set
        )
        return self._send_patch(call, patch, deadline, target, body, content_type)

    def _read_scale(self, target: Target, deadline: float) -> dict[str, Any]:
        call = Call("get", f"{target.kind.resource}/scale", target.namespace, target.described)
        read = (
            self.apps.read_namespaced_deployment_scale
            if target.kind.name == "deployment"
            else self.apps.read_namespaced_stateful_set_scale
        )
        return self._request(call, read, deadline, target.name, target.namespace)

    def _patch_scale(self, target: Target, body: dict[str, Any], deadline: float) -> None:
        call = Call("patch", f"{target.kind.resource}/scale", target.namespace, target.described)
        patch = (
            self.apps.patch_namespaced_deployment_scale
            if target.kind.name == "deployment"
            else self.apps.patch_namespaced_stateful_set_scale
        )
        self._send_patch(call, patch, deadline, target, body, STRATEGIC_MERGE)

    def _send_patch(
        self,
        call: Call,
        patch: Callable[..., Any],
        deadline: float,
        target: Target,
        body: Any,
        content_type: str,
    ) -> Any:
        """PATCH with `content_type`: named to clients that take `_content_type` (from 36.0.0
        on), left to older ones, which choose it from the body's shape."""
        args = (target.name, target.namespace, body)
        if self.sets_content_type is not False:
            try:
                answer = self._request(call, patch, deadline, *args, _content_type=content_type)
            except self._api_type_error as exc:
                # raised while checking the arguments, before anything is sent
                if "_content_type" not in str(exc):
                    raise
                self.sets_content_type = False
            else:
                self.sets_content_type = True
                return answer
        implied = JSON_PATCH if isinstance(body, list) else STRATEGIC_MERGE
        if content_type != implied:  # never sent as another type than the one asked
            raise KubeError(
                f"cannot send a {content_type} patch with this kubernetes client (it sends "
                f"{implied} for this body); install one in {SUPPORTED_CLIENTS}"
            )
        return self._request(call, patch, deadline, *args)

    def _request(
        self, call: Call, method: Callable[..., Any], deadline: float, *args: Any, **kwargs: Any
    ) -> Any:
        """One API call, raw JSON back; every failure becomes a KubeError with its reason."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise KubeError(
                f"out of time before the request to {call.verb} {call.what}", timed_out=True
            )
        timeout = min(self.request_timeout, left)
        try:
            # a (connect, read) pair: clients before 36 take a lone number as a total only
            # when it is an int, and silently wait forever for a float
            limits = (timeout, timeout)
            response = method(*args, _preload_content=False, _request_timeout=limits, **kwargs)
            data = response.data
        except self._api_exception as exc:
            if not exc.status:  # the client's wrapper for TLS and similar failures
                raise KubeError(
                    f"Kubernetes API unreachable: {exc.reason}".strip(), output=str(exc)
                ) from exc
            raise api_error(exc.status, exc.body, call) from exc
        except Exception as exc:  # urllib3 and socket errors: refused, reset, timed out
            if not _is_transport_error(exc):
                raise
            reason, timed_out = _unreachable_reason(exc)
            if timed_out:
                reason = f"no answer within {seconds(timeout)} ({reason})"
            raise KubeError(f"Kubernetes API unreachable: {reason}", timed_out=timed_out) from exc
        try:
            return json.loads(data)
        except ValueError as exc:
            raise KubeError(
                f"bad answer from the Kubernetes API to {call.verb} {call.what}: not JSON"
            ) from exc


def _is_transport_error(exc: BaseException) -> bool:
    import urllib3.exceptions  # a dependency of the kubernetes client

    return isinstance(exc, urllib3.exceptions.HTTPError | OSError)
