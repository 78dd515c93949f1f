"""Spec models for ExtractionJob and Batch (DESIGN §2).

Fields carry no defaults in the schema on purpose: a Batch's ``defaults`` are merged
under each job by the operator, and a default filled in by the API server would always
win over them. Effective defaults live in :mod:`audioextract.api.defaults` and each
field's description states its default.
"""

import re
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from audioextract.api.base import CONTROL, DNS_LABEL, DNS_SUBDOMAIN, HTTP_URL, Model, cel, rules
from audioextract.api.constants import (
    MAX_BATCH_LOCATION_CHARS,
    MAX_JOBS_PER_BATCH,
    Format,
    Priority,
    Quality,
    WebhookEvent,
)

LOSSLESS = (Format.FLAC, Format.WAV, Format.ALAC)
SampleRate = Literal[8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000]
SAMPLE_RATES: tuple[int, ...] = SampleRate.__args__  # type: ignore[attr-defined]
TAG_KEY = r"^[a-z][a-z0-9_]{0,63}$"
# The keys ffmpeg maps to RIFF INFO chunks: all a WAV file can hold.
WAV_TAGS = (
    "album",
    "artist",
    "comment",
    "copyright",
    "date",
    "encoded_by",
    "genre",
    "language",
    "title",
    "track",
)
WAV_TAGS_MESSAGE = "output.tags: wav (RIFF INFO) holds only " + ", ".join(WAV_TAGS)
JOB_NAME = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
QUANTITY = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"

ResourceName = Annotated[str, StringConstraints(min_length=1, max_length=253)]


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, str) and not re.match(QUANTITY, value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as 500m or 1Gi")
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY,
            "x-kubernetes-int-or-string": True,
            "description": "A Kubernetes quantity such as 500m, 2 or 1Gi.",
        }
    ),
]


# The longest file or directory name Linux file systems take (NAME_MAX).
MAX_COMPONENT = 255
NO_CONTROL = rf"^[^{CONTROL}]*$"


def _check_relative(path: str) -> str:
    if path.startswith("/"):
        raise ValueError("must be a relative path (no leading '/')")
    if ".." in path.split("/"):
        raise ValueError("must not contain '..' segments")
    if re.search(f"[{CONTROL}]", path):
        raise ValueError("must not contain control characters (NUL, newline, ...)")
    if any(len(part.encode()) > MAX_COMPONENT for part in path.split("/")):
        raise ValueError(f"each path component must be at most {MAX_COMPONENT} bytes")
    return path


def _check_url(url: str | None) -> str | None:
    """A URL whose host and port parse (the pattern cannot check a port's range)."""
    if url is None:
        return url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if not parts.hostname:
        raise ValueError("not a valid URL: no host")
    if port == 0:
        raise ValueError("not a valid URL: port 0")
    return url


RELATIVE_PATH_RULES = {
    "pattern": NO_CONTROL,
    **rules(
        cel("!self.startsWith('/')", "must be a relative path (no leading '/')"),
        cel("!self.matches('(^|/)[.][.](/|$)')", "must not contain '..' segments"),
        cel(
            f"!self.matches('[^/]{{{MAX_COMPONENT + 1}}}')",
            f"each path component must be at most {MAX_COMPONENT} bytes",
        ),
    ),
}


class SecretKeyRef(Model):
    """A key in a Kubernetes Secret in the object's namespace."""

    name: str = Field(max_length=253, pattern=DNS_SUBDOMAIN, description="Name of the Secret.")
    key: str | None = Field(
        default=None,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key in the Secret. Default: secret.",
    )


class SecretRef(Model):
    """A Kubernetes Secret in the object's namespace."""

    name: str = Field(max_length=253, pattern=DNS_SUBDOMAIN, description="Name of the Secret.")


class VolumeFile(Model):
    """A file on a PersistentVolumeClaim in the object's namespace."""

    claim_name: str = Field(
        max_length=253, pattern=DNS_SUBDOMAIN, description="Name of the PersistentVolumeClaim."
    )
    path: Annotated[
        str,
        WithJsonSchema(
            {"type": "string", "minLength": 1, "maxLength": 1024, **RELATIVE_PATH_RULES}
        ),
    ] = Field(description="Path of the file inside the volume, relative to its root.")

    @field_validator("path")
    @classmethod
    def _check_path(cls, path: str) -> str:
        return _check_relative(path)


class S3Options(Model):
    """How to reach an S3-compatible object store; a source's and a destination's alike."""

    endpoint: str | None = Field(
        default=None,
        max_length=2048,
        pattern=HTTP_URL,
        description="Endpoint URL of an S3-compatible store. Default: the operator's setting, else AWS.",
    )
    region: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Region. Default: the operator's setting.",
    )
    credentials_secret: SecretRef | None = Field(
        default=None,
        description="Secret with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
        "(and optionally AWS_SESSION_TOKEN). Default: the operator's configured Secret.",
    )

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, endpoint: str | None) -> str | None:
        return _check_url(endpoint)


class Source(Model):
    """The source video: exactly one of url or volume."""

    model_config = {
        "json_schema_extra": rules(
            cel(
                "has(self.url) != has(self.volume)",
                "source: exactly one of url or volume must be set",
            ),
            cel(
                "!has(self.s3) || (has(self.url) && self.url.startsWith('s3://'))",
                "source.s3 applies only to s3:// URLs",
            ),
        )
    }

    url: str | None = Field(
        default=None,
        max_length=4096,
        pattern=rf"^(https?://|s3://[a-z0-9][a-z0-9.-]{{1,61}}[a-z0-9]/)[^\s{CONTROL}]+$",
        description="http://, https:// or s3://bucket/key URL of the source video.",
    )
    volume: VolumeFile | None = Field(
        default=None, description="A file on a PersistentVolumeClaim (the upload case)."
    )
    s3: S3Options | None = Field(
        default=None, description="Endpoint, region and credentials for an s3:// URL."
    )
    audio_track: int | None = Field(
        default=None, ge=0, le=63, description="Index among the source's audio streams. Default: 0."
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str | None) -> str | None:
        return _check_url(url)

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.url is None) == (self.volume is None):
            raise ValueError("source: exactly one of url or volume must be set")
        if self.s3 is not None and not (self.url or "").startswith("s3://"):
            raise ValueError("source.s3 applies only to s3:// URLs")
        return self


class S3Destination(S3Options):
    """An S3-compatible bucket."""

    bucket: str = Field(
        min_length=3,
        max_length=63,
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="Bucket name.",
    )
    prefix: str | None = Field(
        default=None,
        # An S3 key has at most 1024 bytes; the file name appended takes up to 255.
        max_length=768,
        pattern=rf"^[^/\s{CONTROL}][^\s{CONTROL}]*$",
        description="Key prefix; the output's filename is appended. Default: none.",
    )


class VolumeDirectory(Model):
    """A directory on a PersistentVolumeClaim in the object's namespace."""

    claim_name: str = Field(
        max_length=253, pattern=DNS_SUBDOMAIN, description="Name of the PersistentVolumeClaim."
    )
    path: Annotated[
        str | None, WithJsonSchema({"type": "string", "maxLength": 1024, **RELATIVE_PATH_RULES})
    ] = Field(
        default=None,
        description="Directory inside the volume, relative to its root. Default: the root.",
    )

    @field_validator("path")
    @classmethod
    def _check_path(cls, path: str | None) -> str | None:
        return _check_relative(path) if path else path


class Destination(Model):
    """Where the audio file goes: exactly one of s3, volume or url."""

    model_config = {
        "json_schema_extra": rules(
            cel(
                "(has(self.s3) ? 1 : 0) + (has(self.volume) ? 1 : 0) + (has(self.url) ? 1 : 0) == 1",
                "destination: exactly one of s3, volume or url must be set",
            )
        )
    }

    s3: S3Destination | None = Field(default=None, description="An S3-compatible bucket.")
    volume: VolumeDirectory | None = Field(
        default=None, description="A directory on a PersistentVolumeClaim."
    )
    url: str | None = Field(
        default=None,
        max_length=4096,
        pattern=HTTP_URL,
        description="A presigned HTTP PUT URL; the file is uploaded with one PUT.",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str | None) -> str | None:
        return _check_url(url)

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if sum(x is not None for x in (self.s3, self.volume, self.url)) != 1:
            raise ValueError("destination: exactly one of s3, volume or url must be set")
        return self


class Loudness(Model):
    """EBU R128 loudness targets for normalisation."""

    integrated_lufs: float | None = Field(
        default=None,
        ge=-70,
        le=-5,
        description="Integrated loudness target in LUFS. Default: -23 (EBU R128).",
    )
    true_peak_db: float | None = Field(
        default=None, ge=-9, le=0, description="Maximum true peak in dBTP. Default: -1."
    )
    lra: float | None = Field(
        default=None,
        ge=1,
        le=50,
        description="Loudness range target in LU, reported against: the range is never "
        "compressed. Default: 7.",
    )


TagKey = Annotated[str, StringConstraints(pattern=TAG_KEY)]
# Newlines are fine in a comment or lyrics; NUL cannot reach ffmpeg's command line.
TagValue = Annotated[
    str, StringConstraints(max_length=1024, pattern=r"^[^\x00]*$"), Field(description="Tag value.")
]


class Output(Model):
    """The audio file to produce."""

    model_config = {
        "json_schema_extra": rules(
            cel(
                "!(has(self.quality) && has(self.bitrate))",
                "output: set quality or bitrate, not both",
            ),
            cel(
                "!has(self.bitrate) || !has(self.format) || !(self.format in ['flac', 'wav', 'alac'])",
                "output.bitrate does not apply to lossless formats (flac, wav, alac)",
            ),
            cel(
                "!has(self.channels) || !has(self.format) || self.format != 'mp3' || self.channels <= 2",
                "output.channels: mp3 supports at most 2 channels",
            ),
            cel(
                "!has(self.tags) || !has(self.format) || self.format != 'wav' || "
                "self.tags.all(k, k in [" + ", ".join(f"'{k}'" for k in WAV_TAGS) + "])",
                WAV_TAGS_MESSAGE,
            ),
        )
    }

    format: Format | None = Field(default=None, description="Audio format. Default: mp3.")
    quality: Quality | None = Field(
        default=None,
        description="Codec-appropriate VBR preset (low, medium, high); not with bitrate. "
        "Default: medium. Ignored for lossless formats.",
    )
    bitrate: str | None = Field(
        default=None,
        pattern=r"^[1-9][0-9]{0,3}k$",
        description='Constant target bitrate such as "192k"; not with quality.',
    )
    sample_rate: SampleRate | None = Field(
        default=None,
        description="Sample rate in Hz. Default: the source's (opus: 48000).",
    )
    channels: int | None = Field(
        default=None, ge=1, le=8, description="Channel count. Default: the source's."
    )
    normalize: bool | None = Field(
        default=None,
        description="EBU R128 loudness normalisation: measured linear gain, a true-peak limiter "
        "only where needed, verified on the output (within 0.5 LU, true peak at or under the "
        "target). Default: false.",
    )
    loudness: Loudness | None = Field(
        default=None, description="Loudness targets used when normalize is true."
    )
    start_seconds: float | None = Field(
        default=None, ge=0, description="Trim: start this many seconds into the source. Default: 0."
    )
    duration_seconds: float | None = Field(
        default=None, gt=0, description="Trim: keep at most this many seconds. Default: to the end."
    )
    filename: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]*$",
        description="Output file name without directory; the format's extension is added when missing. "
        "Default: the ExtractionJob's name.",
    )
    tags: dict[TagKey, TagValue] | None = Field(
        default=None,
        max_length=32,
        json_schema_extra=rules(
            cel(
                "self.all(k, k.matches('^[a-z][a-z0-9_]{0,63}$'))",
                "output.tags: keys must match ^[a-z][a-z0-9_]{0,63}$",
            )
        ),
        description="Metadata tags written into the file (title, artist, album, date, genre, "
        "comment, language, any other lower-case key; wav holds only its RIFF INFO keys). "
        "The source's own metadata is never copied.",
    )
    destination: Destination | None = Field(
        default=None,
        description="Where the file goes. Default: the operator's default destination.",
    )

    @model_validator(mode="after")
    def _cross_field(self) -> Self:
        if self.quality is not None and self.bitrate is not None:
            raise ValueError("output: set quality or bitrate, not both")
        if self.bitrate is not None and self.format in LOSSLESS:
            raise ValueError("output.bitrate does not apply to lossless formats (flac, wav, alac)")
        if self.channels is not None and self.format == Format.MP3 and self.channels > 2:
            raise ValueError("output.channels: mp3 supports at most 2 channels")
        if self.tags and self.format == Format.WAV and not set(self.tags) <= set(WAV_TAGS):
            raise ValueError(WAV_TAGS_MESSAGE)
        return self


class Resources(Model):
    """Compute resources of the worker container, as in a Pod's container spec."""

    requests: dict[ResourceName, Quantity] | None = Field(
        default=None, description="Minimum resources, for example cpu: 500m, memory: 256Mi."
    )
    limits: dict[ResourceName, Quantity] | None = Field(
        default=None, description="Maximum resources, for example cpu: 1, memory: 1Gi."
    )


class Webhook(Model):
    """Where to post signed Standard Webhooks events."""

    url: str = Field(max_length=2048, pattern=HTTP_URL, description="Receiver URL (http or https).")
    secret_ref: SecretKeyRef = Field(
        description="Secret key holding the signing secret(s): whsec_... values, space-separated to rotate."
    )
    events: list[WebhookEvent] | None = Field(
        default=None,
        max_length=4,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Event types to send. Default: job.completed, job.failed and batch.completed.",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        _check_url(url)
        return url

    @model_validator(mode="after")
    def _unique_events(self) -> Self:
        if self.events is not None and len(set(self.events)) != len(self.events):
            raise ValueError("webhook.events: each event type may appear only once")
        return self


class JobTemplate(Model):
    """What is common to a standalone ExtractionJob and an item of a Batch."""

    source: Source = Field(description="The source video.")
    output: Output | None = Field(default=None, description="The audio file to produce.")
    priority: Priority | None = Field(
        default=None,
        description="Admission priority (high, normal, low). Default: the Batch's, else normal.",
    )
    timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        le=604800,
        description="Time limit of one attempt, in seconds. Default: 3600.",
    )
    retries: int | None = Field(
        default=None, ge=0, le=10, description="Retries after a transient failure. Default: 2."
    )
    resources: Resources | None = Field(
        default=None, description="Worker container resources. Default: the operator's setting."
    )


class BatchJob(JobTemplate):
    """One job of a Batch."""

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=JOB_NAME,
        description="Name of the job, unique in the Batch (the API server refuses a duplicate); "
        "the ExtractionJob is named <batch>-<name>. Required: it is the key of the jobs list.",
    )


class ExtractionJobSpec(JobTemplate):
    """Desired state of an ExtractionJob."""

    webhook: Webhook | None = Field(
        default=None,
        description="Webhook for a standalone job; a Batch's children use the Batch's.",
    )
    queue_name: str | None = Field(
        default=None,
        max_length=63,
        pattern=DNS_LABEL,
        description="Kueue LocalQueue; when set, Kueue decides when the job runs.",
    )


class JobDefaults(Model):
    """Values merged under every job of a Batch; a job's own values win."""

    output: Output | None = Field(
        default=None, description="Output settings merged under each job's."
    )
    timeout_seconds: int | None = Field(
        default=None, ge=1, le=604800, description="Time limit of one attempt, in seconds."
    )
    retries: int | None = Field(
        default=None, ge=0, le=10, description="Retries after a transient failure."
    )
    resources: Resources | None = Field(default=None, description="Worker container resources.")


class FailurePolicy(Model):
    """When a Batch gives up."""

    max_failed_jobs: int | None = Field(
        default=None,
        ge=0,
        description="Once more jobs than this have failed, no further job is started, queued jobs end "
        "as Cancelled, and the Batch fails. Default: unlimited.",
    )


def _opt(path: str, field: str) -> str:
    return f"(has({path}.{field}) ? size({path}.{field}) : 0)"


def _location_cel(path: str, bucket: bool = True) -> str:
    """CEL: characters of the source or destination at ``path`` (url, or its parts)."""
    s3 = f"has({path}.s3) ? size({path}.s3.bucket) + {_opt(path + '.s3', 'prefix')} : "
    return (
        f"(has({path}.url) ? size({path}.url) : "
        + (s3 if bucket else "")
        + f"has({path}.volume) ? size({path}.volume.claimName) + {_opt(path + '.volume', 'path')} "
        ": 0)"
    )


_DEFAULT_DESTINATION = "self.defaults.output.destination"
# One pass over the jobs (linear: the sum of per-job sizes), so its CEL cost grows with
# maxItems like the per-job rules' (docs/api.md, "How big a Batch gets").
LOCATION_RULE = (
    "self.jobs.map(j, "
    + _location_cel("j.source", bucket=False)
    + " + (has(j.output) && has(j.output.filename) ? size(j.output.filename) : 0)"
    + " + (has(j.output) && has(j.output.destination) ? "
    + _location_cel("j.output.destination")
    + " : has(self.defaults) && has(self.defaults.output) && "
    + f"has({_DEFAULT_DESTINATION}) ? {_location_cel(_DEFAULT_DESTINATION)} : 0)"
    + f").sum() <= {MAX_BATCH_LOCATION_CHARS}"
)
LOCATION_MESSAGE = (
    f"the jobs' sources, destinations and file names together exceed {MAX_BATCH_LOCATION_CHARS} "
    "characters (a job without a destination counts the defaults' one), which would make the "
    "Batch with its status too large for etcd; split the jobs over several Batches"
)


def _location_chars(location: "Source | Destination | None") -> int:
    """Python twin of :func:`_location_cel` (kept in step by the bad-input table)."""
    if location is None:
        return 0
    if location.url is not None:
        return len(location.url)
    # A source's s3 holds connection options only; a destination's names the bucket.
    if isinstance(location, Destination) and location.s3 is not None:
        return len(location.s3.bucket) + len(location.s3.prefix or "")
    if location.volume is not None:
        return len(location.volume.claim_name) + len(location.volume.path or "")
    return 0


def batch_location_chars(jobs: "list[BatchJob]", defaults: "JobDefaults | None") -> int:
    """What :data:`LOCATION_RULE` adds up, for the same check in pydantic."""
    default_dest = defaults.output.destination if defaults and defaults.output else None
    total = 0
    for job in jobs:
        own = job.output.destination if job.output else None
        total += _location_chars(job.source) + _location_chars(own or default_dest)
        total += len(job.output.filename or "") if job.output else 0
    return total


class BatchSpec(Model):
    """Desired state of a Batch."""

    model_config = {
        "json_schema_extra": rules(cel(LOCATION_RULE, LOCATION_MESSAGE, field_path=".jobs"))
    }

    jobs: list[BatchJob] = Field(
        min_length=1,
        max_length=MAX_JOBS_PER_BATCH,
        # A list-map keyed by name: the API server refuses duplicate names itself, in
        # linear time, where a CEL rule would be quadratic (docs/api.md).
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        description="The extraction jobs of this batch, keyed by name.",
    )
    defaults: JobDefaults | None = Field(default=None, description="Values merged under every job.")
    parallelism: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Most jobs of this batch running at once. Default: no batch limit.",
    )
    webhook: Webhook | None = Field(
        default=None, description="Where to post events about this batch."
    )
    failure_policy: FailurePolicy | None = Field(
        default=None, description="When the batch gives up."
    )
    suspend: bool | None = Field(
        default=None,
        description="While true, no new job starts; running ones finish. Default: false.",
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None,
        ge=0,
        description="Delete the finished Batch after this many seconds. Default: never.",
    )
    priority: Priority | None = Field(
        default=None, description="Admission priority of jobs that set none. Default: normal."
    )
    queue_name: str | None = Field(
        default=None,
        max_length=63,
        pattern=DNS_LABEL,
        description="Kueue LocalQueue; when set, Kueue decides when the jobs run.",
    )

    @field_validator("jobs")
    @classmethod
    def _unique_names(cls, jobs: list[BatchJob]) -> list[BatchJob]:
        # Worded like the API server's own refusal of a duplicate list-map key.
        seen: set[str] = set()
        for index, job in enumerate(jobs):
            if job.name in seen:
                raise ValueError(
                    f"jobs[{index}]: Duplicate value: name {job.name!r}; "
                    "job names must be unique within the batch"
                )
            seen.add(job.name)
        return jobs

    @model_validator(mode="after")
    def _locations_fit(self) -> Self:
        if batch_location_chars(self.jobs, self.defaults) > MAX_BATCH_LOCATION_CHARS:
            # Raised as a ValidationError so that it names spec.jobs, as the CRD rule does.
            error = InitErrorDetails(
                type=PydanticCustomError("value_error", LOCATION_MESSAGE),
                loc=("jobs",),
                input=[],
            )
            raise ValidationError.from_exception_data("BatchSpec", [error])
        return self
