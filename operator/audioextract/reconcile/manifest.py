"""The batch/v1 Job that runs one ExtractionJob on the worker image (DESIGN §3, step 3).

Decisions, documented in docs/operator.md:

- The worker enforces the per-attempt timeout itself (it knows when ffmpeg started).
  ``activeDeadlineSeconds`` is only a backstop for a hung worker and covers every
  attempt: ``(retries + 1) * (timeoutSeconds + startGraceSeconds)``.
- ``backoffLimit`` is the job's ``retries``; ``podFailurePolicy`` fails the Job at once
  on the worker's permanent exit codes and ignores disruptions (``DisruptionTarget``:
  eviction, preemption), which therefore do not count against ``retries``.
- Restricted Pod Security: non-root (65532), read-only root filesystem, no
  capabilities, no privilege escalation, RuntimeDefault seccomp, no service account
  token. The only writable path is an emptyDir at /tmp.
- With a Kueue ``queueName`` the Job carries the queue label and resource requests and
  is created suspended; Kueue unsuspends it. The operator never flips ``suspend``.
"""

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from audioextract.api.constants import (
    API_VERSION,
    JOB_KIND,
    KUEUE_QUEUE_LABEL,
    LABEL_BATCH,
    LABEL_JOB,
)
from audioextract.api.defaults import effective_retries, effective_timeout
from audioextract.api.errors import PERMANENT_EXIT_CODES
from audioextract.api.spec import ExtractionJobSpec, SecretRef
from audioextract.api.task import Task
from audioextract.reconcile.children import owner_reference
from audioextract.reconcile.names import (
    APP_NAME,
    LABEL_APP_COMPONENT,
    LABEL_APP_INSTANCE,
    LABEL_APP_MANAGED_BY,
    LABEL_APP_NAME,
    LABEL_EXTRACTION_JOB,
    MANAGED_BY,
    short_hash,
)
from audioextract.reconcile.resources import ResourceBounds, parse_quantity

CONTAINER = "worker"
WORKER_UID = 65532
TEMP_DIR = "/tmp"  # noqa: S108 - an emptyDir in the Pod, not the host's /tmp
VOLUMES_ROOT = "/volumes"
TERMINATION_LOG = "/dev/termination-log"
ENV_TASK = "AUDIOEXTRACT_TASK"
TASK_DIR = "/etc/audioextract/task"
TASK_KEY = "task.json"
ENV_TEMP_DIR = "AUDIOEXTRACT_TEMP_DIR"
ENV_ALLOW_NETWORKS = "AUDIOEXTRACT_ALLOW_NETWORKS"
ENV_SOURCE_PRIVATE_NETWORKS = "AUDIOEXTRACT_SOURCE_PRIVATE_NETWORKS"
ENV_MAX_OUTPUT_BYTES = "AUDIOEXTRACT_MAX_OUTPUT_BYTES"
# Share of the temp emptyDir the output may take; the rest is for a downloaded source.
TEMP_OUTPUT_SHARE = "0.5"
S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
OPTIONAL_S3_KEYS = frozenset({"AWS_SESSION_TOKEN"})


@dataclass(frozen=True)
class WorkerConfig:
    """Operator settings that shape every worker Job (see audioextract.settings)."""

    image: str
    pull_policy: str = "IfNotPresent"
    command: tuple[str, ...] = ("audio-extract", "worker", "--result", TERMINATION_LOG)
    default_requests: dict[str, str] = field(
        default_factory=lambda: {"cpu": "500m", "memory": "256Mi"}
    )
    default_limits: dict[str, str] = field(default_factory=lambda: {"memory": "1Gi"})
    temp_size_limit: str | None = "2Gi"
    start_grace_seconds: int = 300
    # Finished Jobs are left to Kubernetes' TTL controller: deleting each one itself
    # would cost the operator an API write per job (docs/operator.md, "Write budget").
    ttl_seconds_after_finished: int = 3600
    allow_networks: str | None = None
    source_private_networks: str = "allow"
    s3_credentials_secret: str | None = None
    s3_endpoint: str | None = None
    s3_region: str | None = None
    # The worker Pods' ServiceAccount (one without a token, created by the chart);
    # None: the namespace's default. The Pod never mounts a token either way.
    service_account: str | None = None
    bounds: ResourceBounds = field(default_factory=ResourceBounds)


def active_deadline_seconds(spec: ExtractionJobSpec, grace: int) -> int:
    """The Job-wide backstop: every attempt's timeout plus start-up grace."""
    return (effective_retries(spec) + 1) * (effective_timeout(spec) + grace)


def job_labels(
    extraction_job: str, batch_label: str | None, job_key: str | None, queue_name: str | None
) -> dict[str, str]:
    """Labels of the Job and its Pods: ours for selection, app.kubernetes.io/* for tooling."""
    labels = {
        LABEL_APP_NAME: APP_NAME,
        LABEL_APP_INSTANCE: batch_label or extraction_job,
        LABEL_APP_COMPONENT: "worker",
        LABEL_APP_MANAGED_BY: MANAGED_BY,
        LABEL_EXTRACTION_JOB: extraction_job,
    }
    if batch_label is not None:
        labels[LABEL_BATCH] = batch_label
    if job_key is not None:
        labels[LABEL_JOB] = job_key
    if queue_name:
        labels[KUEUE_QUEUE_LABEL] = queue_name
    return labels


def _secret_env(prefix: str, secret: str) -> list[dict[str, Any]]:
    return [
        {
            "name": f"{prefix}{key}",
            "valueFrom": {
                "secretKeyRef": {"name": secret, "key": key, "optional": key in OPTIONAL_S3_KEYS}
            },
        }
        for key in S3_KEYS
    ]


def _secret_name(ref: SecretRef | None, default: str | None) -> str | None:
    return ref.name if ref is not None else default


def task_json(task: Task) -> str:
    """The task as the worker reads it."""
    return json.dumps(task.dump(), separators=(",", ":"), sort_keys=True)


def task_secret_manifest(
    *, name: str, namespace: str, task: Task, extraction_job: str, extraction_job_uid: str
) -> dict[str, Any]:
    """The Secret that carries one run's task to its worker (mounted, never in env).

    The task can hold credentials (a presigned source or destination URL): in a
    Secret, only who may read Secrets can read it, not everyone who may read Jobs
    and Pods. Owned by the ExtractionJob (not as controller), deleted with it.
    """
    owner = owner_reference(API_VERSION, JOB_KIND, extraction_job, extraction_job_uid)
    owner.update(controller=False, blockOwnerDeletion=False)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {LABEL_EXTRACTION_JOB: extraction_job, LABEL_APP_MANAGED_BY: MANAGED_BY},
            "ownerReferences": [owner],
        },
        "type": "Opaque",
        "immutable": True,
        "stringData": {TASK_KEY: task_json(task)},
    }


def _env(task: Task, config: WorkerConfig, task_in_env: bool) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": ENV_TEMP_DIR, "value": TEMP_DIR}]
    if task_in_env:
        env.insert(0, {"name": ENV_TASK, "value": task_json(task)})
    if config.allow_networks:
        env.append({"name": ENV_ALLOW_NETWORKS, "value": config.allow_networks})
    if config.temp_size_limit:
        # The output must fit the temp emptyDir with room to spare: over its sizeLimit
        # the kubelet evicts the Pod, and an eviction is retried without counting.
        limit = int(parse_quantity(config.temp_size_limit) * Decimal(TEMP_OUTPUT_SHARE))
        env.append({"name": ENV_MAX_OUTPUT_BYTES, "value": str(limit)})
    env.append({"name": ENV_SOURCE_PRIVATE_NETWORKS, "value": config.source_private_networks})
    if config.s3_endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": config.s3_endpoint})
    if config.s3_region:
        env.append({"name": "AWS_DEFAULT_REGION", "value": config.s3_region})
    source_secret = None
    if (task.source.url or "").startswith("s3://"):
        s3 = task.source.s3
        source_secret = _secret_name(
            s3.credentials_secret if s3 else None, config.s3_credentials_secret
        )
    dest = task.output.destination
    dest_secret = None
    if dest is not None and dest.s3 is not None:
        dest_secret = _secret_name(dest.s3.credentials_secret, config.s3_credentials_secret)
    # Each side's credentials under its own prefix only: the worker gives each S3
    # client exactly its side's keys, and a tenant-chosen source endpoint never sees
    # the destination's (no plain AWS_* names, which any AWS client would pick up).
    if source_secret:
        env += _secret_env("AUDIOEXTRACT_SOURCE_", source_secret)
    if dest_secret:
        env += _secret_env("AUDIOEXTRACT_DESTINATION_", dest_secret)
    # No instance-metadata credentials either, even if the node would hand them out.
    env.append({"name": "AWS_EC2_METADATA_DISABLED", "value": "true"})
    return env


def _claims(task: Task) -> dict[str, bool]:
    """PVC name -> read-only; a claim the worker writes to is mounted read-write."""
    claims: dict[str, bool] = {}
    if task.source.volume is not None:
        claims[task.source.volume.claim_name] = True
    dest = task.output.destination
    if dest is not None and dest.volume is not None:
        claims[dest.volume.claim_name] = False
    return claims


def check_resources(spec: ExtractionJobSpec, config: WorkerConfig) -> None:
    """Raise ResourceBoundsError when the job's effective resources are out of bounds."""
    resources = _resources(spec, config)
    config.bounds.check(resources.get("requests", {}), resources.get("limits", {}))


def _resources(spec: ExtractionJobSpec, config: WorkerConfig) -> dict[str, Any]:
    own = spec.resources
    requests = (
        dict(own.requests) if own and own.requests is not None else dict(config.default_requests)
    )
    limits = dict(own.limits) if own and own.limits is not None else dict(config.default_limits)
    if spec.queue_name and not requests:
        # Kueue admits by requests; a Job without them would use no quota at all.
        requests = dict(config.default_requests)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def job_manifest(
    *,
    name: str,
    namespace: str,
    extraction_job: str,
    extraction_job_uid: str,
    spec: ExtractionJobSpec,
    task: Task,
    config: WorkerConfig,
    batch_label: str | None = None,
    job_key: str | None = None,
    task_secret: str | None = None,
) -> dict[str, Any]:
    """The batch/v1 Job for one run of an ExtractionJob, owned by it (controller=true).

    With ``task_secret`` (the name of :func:`task_secret_manifest`'s Secret) the task
    is a file mounted from that Secret; without, it is in the environment.
    """
    labels = job_labels(extraction_job, batch_label, job_key, spec.queue_name)
    claims = _claims(task)
    volumes: list[dict[str, Any]] = [
        {
            "name": "tmp",
            "emptyDir": {"sizeLimit": config.temp_size_limit} if config.temp_size_limit else {},
        }
    ]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": TEMP_DIR}]
    task_args: list[str] = []
    if task_secret is not None:
        volumes.append(
            {"name": "task", "secret": {"secretName": task_secret, "defaultMode": 0o444}}
        )
        mounts.append({"name": "task", "mountPath": TASK_DIR, "readOnly": True})
        task_args = [f"--task={TASK_DIR}/{TASK_KEY}"]
    for claim, read_only in sorted(claims.items()):
        volume = f"pvc-{short_hash(claim, 12)}"
        volumes.append(
            {"name": volume, "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}}
        )
        mounts.append(
            {"name": volume, "mountPath": f"{VOLUMES_ROOT}/{claim}", "readOnly": read_only}
        )
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": config.image,
        "imagePullPolicy": config.pull_policy,
        "command": list(config.command),
        # Each claim's mount point named explicitly (the worker's default is the same
        # path), so the mapping is visible in the Pod spec.
        "args": task_args
        + [f"--volume={claim}={VOLUMES_ROOT}/{claim}" for claim in sorted(claims)],
        "env": _env(task, config, task_in_env=task_secret is None),
        "resources": _resources(spec, config),
        "volumeMounts": mounts,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": WORKER_UID,
            "runAsGroup": WORKER_UID,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    job_spec: dict[str, Any] = {
        "backoffLimit": effective_retries(spec),
        "ttlSecondsAfterFinished": config.ttl_seconds_after_finished,
        "activeDeadlineSeconds": active_deadline_seconds(spec, config.start_grace_seconds),
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER,
                        "operator": "In",
                        "values": list(PERMANENT_EXIT_CODES),
                    },
                },
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]
        },
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "restartPolicy": "Never",
                **(
                    {"serviceAccountName": config.service_account} if config.service_account else {}
                ),
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": WORKER_UID,
                    "runAsGroup": WORKER_UID,
                    "fsGroup": WORKER_UID,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [container],
                "volumes": volumes,
            },
        },
    }
    if spec.queue_name:
        job_spec["suspend"] = True
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [
                owner_reference(API_VERSION, JOB_KIND, extraction_job, extraction_job_uid)
            ],
        },
        "spec": job_spec,
    }
