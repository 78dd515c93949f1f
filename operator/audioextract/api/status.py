"""Status models for ExtractionJob and Batch (DESIGN §2).

Every field the operator writes is declared here: a structural schema silently prunes
undeclared status fields.
"""

from typing import Annotated

from pydantic import Field
from pydantic.config import JsonDict

from audioextract.api.base import Model
from audioextract.api.constants import BatchPhase, ErrorCode, JobPhase

RFC3339: JsonDict = {"format": "date-time"}


class Condition(Model):
    """A status condition with Kubernetes (metav1.Condition) semantics."""

    type: str = Field(
        max_length=316, description="Condition type: Ready, Reconciling, Stalled, Complete, ..."
    )
    status: str = Field(
        json_schema_extra={"enum": ["True", "False", "Unknown"]},
        description="True, False or Unknown.",
    )
    reason: str = Field(max_length=1024, description="CamelCase reason for the last transition.")
    message: str = Field(default="", max_length=32768, description="Human-readable detail.")
    last_transition_time: str = Field(
        json_schema_extra=RFC3339, description="When status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation this condition was computed from."
    )


class LoudnessResult(Model):
    """How loudness normalisation went (docs/worker.md, "Loudness")."""

    method: str = Field(
        max_length=32,
        description="linear (one gain), linear+limiter (gain and a true-peak limiter) "
        "or none (nothing applied; see reason).",
    )
    target_met: bool = Field(
        description="True when the output is within 0.5 LU of the integrated target "
        "and at or under the true-peak target."
    )
    reason: str | None = Field(
        default=None, max_length=512, description="Why the target was not met, or a note."
    )
    gain_db: float | None = Field(default=None, description="The linear gain applied, in dB.")
    input_integrated_lufs: float | None = Field(
        default=None, description="Integrated loudness of the source (after trim and downmix)."
    )
    input_true_peak_db: float | None = Field(
        default=None, description="True peak of the source in dBTP."
    )
    input_lra: float | None = Field(default=None, description="Loudness range of the source in LU.")
    integrated_lufs: float | None = Field(
        default=None, description="Integrated loudness of the output in LUFS."
    )
    true_peak_db: float | None = Field(default=None, description="True peak of the output in dBTP.")


class JobResult(Model):
    """What the worker produced."""

    uri: str = Field(
        max_length=4096,
        description="Location of the audio file (s3://, volume path or URL without query).",
    )
    size_bytes: int = Field(ge=0, description="Size of the file in bytes.")
    duration_seconds: float = Field(
        ge=0,
        description="Duration of the audio in seconds (measured by decoding where the "
        "container only estimates it).",
    )
    format: str = Field(max_length=16, description="Output format.")
    codec: str = Field(max_length=64, description="Audio codec as ffprobe names it.")
    bitrate: int | None = Field(
        default=None,
        ge=0,
        description="Average bitrate in bits per second: the file's size x 8 / its duration.",
    )
    sample_rate: int = Field(
        ge=0, description="Sample rate the audio was encoded at, in Hz (opus: the input rate)."
    )
    channels: int = Field(ge=0, description="Channel count.")
    channel_layout: str | None = Field(
        default=None, max_length=32, description="Channel layout as ffmpeg names it (5.1, stereo)."
    )
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the file, hex.")
    loudness_lufs: float | None = Field(
        default=None,
        description="Measured integrated loudness of the output in LUFS, when normalised.",
    )
    loudness: LoudnessResult | None = Field(
        default=None, description="Normalisation figures and method, when normalize is true."
    )
    stream_copied: bool = Field(description="True when the audio was copied without re-encoding.")
    replaced: bool | None = Field(
        default=None,
        description="True when an object of the same name existed and was replaced "
        "(an earlier attempt or run of this job; docs/worker.md, Overwrites).",
    )


class JobError(Model):
    """Why a job failed."""

    code: ErrorCode = Field(description="Stable error code (docs/errors.md).")
    message: str = Field(max_length=2048, description="What went wrong, for a person.")
    retryable: bool = Field(description="Whether retrying the same job can help.")


class ExtractionJobStatus(Model):
    """Observed state of an ExtractionJob."""

    phase: JobPhase | None = Field(
        default=None, description="Queued, Running, Succeeded or Failed."
    )
    job_name: str | None = Field(
        default=None, max_length=63, description="Name of the current batch/v1 Job."
    )
    attempts: int | None = Field(
        default=None, ge=0, description="Attempts started, retries included."
    )
    start_time: str | None = Field(
        default=None, json_schema_extra=RFC3339, description="When the job was admitted."
    )
    completion_time: str | None = Field(
        default=None,
        json_schema_extra=RFC3339,
        description="When the job reached Succeeded or Failed.",
    )
    result: JobResult | None = Field(default=None, description="The produced file, on success.")
    error: JobError | None = Field(default=None, description="The failure, on failure.")
    conditions: list[Condition] | None = Field(
        default=None,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description="Ready, Reconciling, Stalled, Complete, Failed.",
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation this status was computed from."
    )
    retry_token: str | None = Field(
        default=None,
        max_length=256,
        description="The Batch retry-failed value this job was last re-queued for.",
    )
    webhook: "WebhookStatus | None" = Field(
        default=None, description="Delivery summary of this standalone job's webhook events."
    )


class EntryResult(Model):
    """The compact result of one job in the Batch's status: where the file is, and what it is.

    The full result (codec, bitrate, loudness, ...) stays in the ExtractionJob's status;
    these four fields make the Batch a results listing while keeping it small.
    """

    uri: str = Field(
        max_length=4096,
        description="Location of the audio file (s3://, volume path or URL without query).",
    )
    size_bytes: int = Field(ge=0, description="Size of the file in bytes.")
    duration_seconds: float = Field(ge=0, description="Duration of the audio in seconds.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the file, hex.")

    @classmethod
    def of(cls, result: JobResult) -> "EntryResult":
        """The compact form of a worker result."""
        return cls(
            uri=result.uri,
            size_bytes=result.size_bytes,
            duration_seconds=result.duration_seconds,
            sha256=result.sha256,
        )


class JobEntry(Model):
    """One short line per child in the Batch's status."""

    name: str = Field(max_length=63, description="The job's name in the Batch.")
    extraction_job: str = Field(max_length=253, description="Name of the ExtractionJob object.")
    phase: JobPhase | None = Field(default=None, description="The child's phase.")
    result: EntryResult | None = Field(
        default=None, description="The produced file (uri, size, duration, sha256), on success."
    )
    error: JobError | None = Field(default=None, description="The failure, on failure.")


class WebhookStatus(Model):
    """Delivery bookkeeping: which owed events are settled, and a summary for people."""

    delivered: int = Field(default=0, ge=0, description="Events the receiver acknowledged (2xx).")
    pending: int = Field(default=0, ge=0, description="Events owed and not yet settled.")
    failed: int = Field(
        default=0, ge=0, description="Events given up on after the retry schedule or a 410."
    )
    last_error: str | None = Field(
        default=None, max_length=1024, description="The most recent delivery error."
    )
    settled: (
        list[Annotated[str, Field(max_length=64, description="An event id (webhook-id).")]] | None
    ) = Field(
        default=None,
        max_length=2048,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Ids of events that need no further delivery (acknowledged or given up).",
    )
    gone_url: str | None = Field(
        default=None,
        max_length=2048,
        description="Receiver URL (redacted: no user-info or query) that answered 410 Gone; "
        "no further events are sent to it.",
    )


class BatchStatus(Model):
    """Observed state of a Batch, rolled up from its ExtractionJobs."""

    phase: BatchPhase | None = Field(
        default=None,
        description="Queued, Running, Succeeded, PartiallySucceeded, Failed or Suspended.",
    )
    total: int | None = Field(default=None, ge=0, description="Number of jobs.")
    queued: int | None = Field(default=None, ge=0, description="Jobs waiting for a slot.")
    running: int | None = Field(default=None, ge=0, description="Jobs running.")
    succeeded: int | None = Field(default=None, ge=0, description="Jobs that succeeded.")
    failed: int | None = Field(default=None, ge=0, description="Jobs that failed.")
    start_time: str | None = Field(
        default=None, json_schema_extra=RFC3339, description="When the first job was admitted."
    )
    completion_time: str | None = Field(
        default=None, json_schema_extra=RFC3339, description="When the Batch reached a final phase."
    )
    jobs: list[JobEntry] | None = Field(default=None, description="One short entry per job.")
    webhook: WebhookStatus | None = Field(default=None, description="Webhook delivery summary.")
    conditions: list[Condition] | None = Field(
        default=None,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description="Ready, Reconciling, Stalled, Complete, Failed, Suspended.",
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation this status was computed from."
    )
    retry_token: str | None = Field(
        default=None,
        max_length=256,
        description="The value of the audioextract.dev/retry-failed annotation last acted on.",
    )


ExtractionJobStatus.model_rebuild()
