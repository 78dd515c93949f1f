"""Names that are part of the API contract: group, version, labels, phases, error codes."""

from enum import StrEnum

GROUP = "audioextract.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

BATCH_KIND = "Batch"
BATCH_PLURAL = "batches"
JOB_KIND = "ExtractionJob"
JOB_PLURAL = "extractionjobs"
CATEGORY = "audioextract"

LABEL_BATCH = f"{GROUP}/batch"
LABEL_JOB = f"{GROUP}/job"
ANNOTATION_RETRY_FAILED = f"{GROUP}/retry-failed"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"

# The largest Batch the CRD admits (its maxItems). Job names are unique because the jobs
# list is a list-map keyed by name, which the API server checks natively in linear time;
# the remaining CEL rules are per job and fit the cost budget at this size (docs/api.md).
MAX_JOBS_PER_BATCH = 1000
# The most characters of locations a Batch may hold, all jobs together: source URLs and
# volume paths, destination URLs, buckets, prefixes and volume paths (a job without a
# destination counts the defaults' one), output file names. A status entry repeats its
# job's destination, so this bounds what makes a Batch with its full status large; at
# this total and 1,000 jobs with the longest names it stays under 1.2 MiB of etcd's
# 1.5 MiB (docs/api.md, "How big a Batch gets").
MAX_BATCH_LOCATION_CHARS = 262_144


class JobPhase(StrEnum):
    """Phase of an ExtractionJob."""

    QUEUED = "Queued"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class BatchPhase(StrEnum):
    """Phase of a Batch."""

    QUEUED = "Queued"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    PARTIALLY_SUCCEEDED = "PartiallySucceeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


class ErrorCode(StrEnum):
    """Stable error codes reported in ``status.error.code`` (documented in docs/api.md, "Error codes")."""

    INVALID_SPEC = "InvalidSpec"
    SOURCE_NOT_FOUND = "SourceNotFound"
    SOURCE_UNREACHABLE = "SourceUnreachable"
    SOURCE_FORBIDDEN = "SourceForbidden"
    NO_AUDIO_STREAM = "NoAudioStream"
    DECODE_FAILED = "DecodeFailed"
    ENCODE_FAILED = "EncodeFailed"
    OUTPUT_WRITE_FAILED = "OutputWriteFailed"
    TIMEOUT = "Timeout"
    INPUT_TOO_LARGE = "InputTooLarge"
    WORKER_CRASHED = "WorkerCrashed"
    CANCELLED = "Cancelled"


class Format(StrEnum):
    """Output formats."""

    MP3 = "mp3"
    AAC = "aac"
    M4A = "m4a"
    FLAC = "flac"
    WAV = "wav"
    OPUS = "opus"
    OGG = "ogg"
    ALAC = "alac"


class Quality(StrEnum):
    """Codec-appropriate quality presets."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Priority(StrEnum):
    """Admission priority of an ExtractionJob."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class WebhookEvent(StrEnum):
    """Webhook event types."""

    JOB_STARTED = "job.started"
    JOB_COMPLETED = "job.completed"
    JOB_FAILED = "job.failed"
    BATCH_COMPLETED = "batch.completed"
