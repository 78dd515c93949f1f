"""Kubernetes Events a plan asks for: types and reasons as named constants (stable: people filter on them)."""

from dataclasses import dataclass

NORMAL = "Normal"
WARNING = "Warning"

CHILDREN_CREATED = "ChildrenCreated"
INVALID_SPEC = "InvalidSpec"
RETRY_REQUESTED = "RetryRequested"
CANCELLED = "JobsCancelled"
PHASE_CHANGED = "PhaseChanged"
JOB_STARTED = "JobStarted"
JOB_SUCCEEDED = "JobSucceeded"
JOB_FAILED = "JobFailed"
JOB_DELETED = "JobCleanedUp"
TTL_EXPIRED = "TTLExpired"
WEBHOOK_FAILED = "WebhookFailed"
TASK_SECRET_FORBIDDEN = "TaskSecretForbidden"  # noqa: S105 - an Event reason


@dataclass(frozen=True)
class EventSpec:
    """One Event to post about the reconciled object, once the write it describes succeeded."""

    type: str
    reason: str
    message: str
