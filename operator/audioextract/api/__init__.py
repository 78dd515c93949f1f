"""The API: pydantic models for Batch and ExtractionJob, the single source of the CRDs."""

from audioextract.api.constants import (
    API_VERSION,
    GROUP,
    VERSION,
    BatchPhase,
    ErrorCode,
    Format,
    JobPhase,
    Priority,
    Quality,
    WebhookEvent,
)
from audioextract.api.resources import Batch, ExtractionJob
from audioextract.api.spec import (
    BatchJob,
    BatchSpec,
    Destination,
    ExtractionJobSpec,
    JobDefaults,
    Output,
    Source,
    Webhook,
)
from audioextract.api.status import (
    BatchStatus,
    Condition,
    ExtractionJobStatus,
    JobEntry,
    JobError,
    JobResult,
    WebhookStatus,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "Batch",
    "BatchJob",
    "BatchPhase",
    "BatchSpec",
    "BatchStatus",
    "Condition",
    "Destination",
    "ErrorCode",
    "ExtractionJob",
    "ExtractionJobSpec",
    "ExtractionJobStatus",
    "Format",
    "JobDefaults",
    "JobEntry",
    "JobError",
    "JobPhase",
    "JobResult",
    "Output",
    "Priority",
    "Quality",
    "Source",
    "Webhook",
    "WebhookEvent",
    "WebhookStatus",
]
