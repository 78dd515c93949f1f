"""Operator settings: one pydantic-settings model, environment prefix ``AUDIOEXTRACT_``.

Every field is documented in docs/settings.md; nested values (the default destination,
resources, the webhook retry schedule) are JSON in the environment.
"""

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from audioextract.api.constants import MAX_JOBS_PER_BATCH
from audioextract.api.spec import Destination
from audioextract.reconcile.manifest import WorkerConfig
from audioextract.reconcile.resources import ResourceBounds


class Settings(BaseSettings):
    """Everything the operator reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="AUDIOEXTRACT_", extra="ignore")

    worker_image: str = Field(
        default="audio-extract-worker:0.1.0", description="Image of the worker Jobs."
    )
    worker_pull_policy: str = Field(
        default="IfNotPresent", description="imagePullPolicy of the worker."
    )
    worker_service_account: str | None = Field(
        default=None,
        description="ServiceAccount of the worker Pods (must exist in each namespace); default: the namespace's default.",
    )
    default_destination: Destination | None = Field(
        default=None, description="Destination of jobs that name none (JSON)."
    )
    max_concurrent_jobs: int | None = Field(
        default=20,
        ge=1,
        description="Most worker Jobs running at once, operator-wide (Kueue jobs excluded).",
    )
    max_jobs_per_batch: int = Field(
        default=MAX_JOBS_PER_BATCH, ge=1, description="Largest Batch the operator accepts."
    )
    default_requests: dict[str, str] = Field(
        default_factory=lambda: {"cpu": "500m", "memory": "256Mi"},
        description="Worker resource requests when a job sets none (JSON).",
    )
    default_limits: dict[str, str] = Field(
        default_factory=lambda: {"memory": "1Gi"},
        description="Worker resource limits when a job sets none (JSON).",
    )
    min_requests: dict[str, str] = Field(
        default_factory=dict,
        description="Smallest worker requests a job may ask for (JSON); none by default.",
    )
    max_requests: dict[str, str] = Field(
        default_factory=lambda: {"cpu": "8", "memory": "16Gi"},
        description="Largest worker requests a job may ask for (JSON).",
    )
    max_limits: dict[str, str] = Field(
        default_factory=lambda: {"cpu": "16", "memory": "32Gi"},
        description="Largest worker limits a job may ask for (JSON).",
    )
    required_limits: list[str] = Field(
        default_factory=lambda: ["memory"],
        description="Resources every worker must have a limit for (JSON list).",
    )
    temp_size_limit: str | None = Field(
        default="2Gi", description="sizeLimit of the worker's /tmp emptyDir."
    )
    start_grace_seconds: int = Field(
        default=300,
        ge=0,
        description="Per-attempt allowance for image pull and start in the Job deadline.",
    )
    job_cleanup_delay_seconds: int = Field(
        default=3600,
        ge=0,
        description="How long a finished worker Job (and its Pod, with its logs) is kept: "
        "the Job's ttlSecondsAfterFinished, carried out by Kubernetes' TTL controller. "
        "It must outlast any operator outage: a Job removed before the operator recorded "
        "its outcome ends its run as WorkerCrashed.",
    )
    resync_seconds: float = Field(
        default=600,
        gt=0,
        description="Interval of the safety-net resync (re-list everything, requeue every object); "
        "watch events drive the work, this only catches what they might have missed.",
    )
    workers: int = Field(
        default=16,
        ge=1,
        description="ExtractionJobs reconciled at the same time (one worker per object); "
        "Batches get a quarter as many.",
    )
    max_concurrent_writes: int = Field(
        default=20,
        ge=1,
        description="Most API writes (creates, status patches, deletes, Events) in flight at once.",
    )
    status_coalesce_seconds: float = Field(
        default=0.25,
        ge=0,
        le=5,
        description="How long a Batch gathers its children's changes before one status write.",
    )
    api_timeout_seconds: float = Field(
        default=30,
        gt=0,
        description="Client timeout of each Kubernetes API call (connect and each read).",
    )
    allow_networks: str | None = Field(
        default=None,
        description="CIDRs allowed although loopback/private, for sources and webhooks; passed to the worker.",
    )
    source_private_networks: Literal["allow", "deny"] = Field(
        default="allow",
        description="Whether workers may connect to private ranges (sources, S3, PUT URLs); passed to the worker.",
    )
    deny_private_networks: bool = Field(
        default=False,
        description="Older switch: true refuses private ranges for workers and webhooks alike.",
    )
    webhook_private_networks: Literal["allow", "deny"] = Field(
        default="deny",
        description="Whether webhook delivery from the operator may connect to private ranges.",
    )
    s3_credentials_secret: str | None = Field(
        default=None,
        description="Secret with AWS_* keys used when an S3 source or destination names none.",
    )
    s3_endpoint: str | None = Field(
        default=None, description="Default S3 endpoint URL for workers."
    )
    s3_region: str | None = Field(default=None, description="Default S3 region for workers.")
    lease_name: str = Field(
        default="audio-extract-operator", description="Name of the leader Lease."
    )
    lease_namespace: str | None = Field(
        default=None,
        description="Namespace of the leader Lease. Default: the Pod's namespace, else the first watched one.",
    )
    lease_duration_seconds: int = Field(default=15, ge=5, description="Lease duration.")
    pod_name: str | None = Field(
        default=None, description="This instance's identity in the Lease (set from the Pod name)."
    )
    metrics_port: int = Field(
        default=8080,
        ge=0,
        le=65535,
        description="Port of /metrics, /healthz and /readyz (0: any free port, for tests).",
    )
    metrics_address: str = Field(
        default="0.0.0.0",  # noqa: S104 - Prometheus and the kubelet reach it from outside the Pod
        description="Address /metrics, /healthz and /readyz listen on.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Log format: text lines, or one JSON object per line with the object's namespace and name.",
    )
    download_url_seconds: int = Field(
        default=3600,
        ge=1,
        le=604800,
        description="Validity of the presigned downloadUrl in job.completed webhooks (S3 results).",
    )

    @model_validator(mode="after")
    def _defaults_within_bounds(self) -> "Settings":
        # Otherwise every job that sets no resources would fail with InvalidSpec.
        try:
            self.worker_config().bounds.check(self.default_requests, self.default_limits)
        except ValueError as exc:
            raise ValueError(f"AUDIOEXTRACT_DEFAULT_REQUESTS/LIMITS: {exc}") from exc
        return self

    def worker_config(self) -> WorkerConfig:
        """The part of the settings that shapes worker Jobs."""
        return WorkerConfig(
            image=self.worker_image,
            pull_policy=self.worker_pull_policy,
            default_requests=dict(self.default_requests),
            default_limits=dict(self.default_limits),
            temp_size_limit=self.temp_size_limit,
            start_grace_seconds=self.start_grace_seconds,
            ttl_seconds_after_finished=self.job_cleanup_delay_seconds,
            allow_networks=self.allow_networks,
            source_private_networks=(
                "deny" if self.deny_private_networks else self.source_private_networks
            ),
            s3_credentials_secret=self.s3_credentials_secret,
            s3_endpoint=self.s3_endpoint,
            s3_region=self.s3_region,
            service_account=self.worker_service_account,
            bounds=ResourceBounds(
                min_requests=dict(self.min_requests),
                max_requests=dict(self.max_requests),
                max_limits=dict(self.max_limits),
                required_limits=tuple(self.required_limits),
            ),
        )
