"""Defaults resolution: one function shared by the operator and the local runner.

A Batch's ``defaults`` are merged under each job, the job's own values winning field
by field, with three rules that keep the result valid:

- ``quality`` and ``bitrate`` are one choice: when a job sets either, both come from
  the job.
- ``destination`` is one choice: the job's, whole, when it sets one.
- A quality or bitrate inherited from the defaults is dropped when the job's resolved
  format is lossless (flac, wav, alac), where it has no meaning.
"""

from audioextract.api.constants import Format, Priority, Quality
from audioextract.api.spec import (
    LOSSLESS,
    BatchJob,
    BatchSpec,
    ExtractionJobSpec,
    JobDefaults,
    Loudness,
    Output,
)

DEFAULT_FORMAT = Format.MP3
DEFAULT_QUALITY = Quality.MEDIUM
DEFAULT_PRIORITY = Priority.NORMAL
DEFAULT_TIMEOUT_SECONDS = 3600
DEFAULT_RETRIES = 2
DEFAULT_LOUDNESS = Loudness(integrated_lufs=-23.0, true_peak_db=-1.0, lra=7.0)


def merge_output(base: Output | None, own: Output | None) -> Output:
    """``own`` over ``base``, field by field, with the pairing rules above; format always set."""
    base = base or Output()
    own = own or Output()
    fields = base.model_dump(exclude_none=True)
    fields.update(own.model_dump(exclude_none=True))
    if own.quality is not None or own.bitrate is not None:
        fields["quality"], fields["bitrate"] = own.quality, own.bitrate
    if own.destination is not None:
        fields["destination"] = own.destination.model_dump(exclude_none=True)
    if base.loudness is not None and own.loudness is not None:
        fields["loudness"] = {
            **base.loudness.model_dump(exclude_none=True),
            **own.loudness.model_dump(exclude_none=True),
        }
    if base.tags and own.tags:
        fields["tags"] = {**base.tags, **own.tags}
    fields.setdefault("format", DEFAULT_FORMAT)
    inherited = own.quality is None and own.bitrate is None
    if inherited and fields["format"] in LOSSLESS:
        fields.pop("quality", None)
        fields.pop("bitrate", None)
    fields = {k: v for k, v in fields.items() if v is not None}
    return Output.model_validate(fields)


def job_key(job: BatchJob, index: int) -> str:
    """A job's key within its Batch: its name (required, the key of the jobs list-map).

    ``index`` is kept for callers that still pass the list position; names are
    required since the list became a map, so it no longer decides anything.
    """
    del index
    return job.name


def resolve_batch_job(spec: BatchSpec, job: BatchJob) -> ExtractionJobSpec:
    """The ExtractionJob spec for one job of a Batch, with the Batch's defaults merged in."""
    defaults = spec.defaults or JobDefaults()
    return ExtractionJobSpec(
        source=job.source,
        output=merge_output(defaults.output, job.output),
        priority=job.priority or spec.priority,
        timeout_seconds=job.timeout_seconds or defaults.timeout_seconds,
        retries=job.retries if job.retries is not None else defaults.retries,
        resources=job.resources or defaults.resources,
        queue_name=spec.queue_name,
    )


def resolve_standalone(spec: ExtractionJobSpec) -> ExtractionJobSpec:
    """A standalone ExtractionJob's spec with its output's format made explicit."""
    return spec.model_copy(update={"output": merge_output(None, spec.output)})


def effective_priority(spec: ExtractionJobSpec) -> Priority:
    """The admission priority of a resolved spec."""
    return Priority(spec.priority) if spec.priority else DEFAULT_PRIORITY


def effective_timeout(spec: ExtractionJobSpec) -> int:
    """Seconds one attempt may take."""
    return spec.timeout_seconds or DEFAULT_TIMEOUT_SECONDS


def effective_retries(spec: ExtractionJobSpec) -> int:
    """Retries after transient failures."""
    return spec.retries if spec.retries is not None else DEFAULT_RETRIES
