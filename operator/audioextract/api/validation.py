"""Validation shared by the operator, the local runner and the worker (docs/api.md).

- :func:`parse_input` reads user input as the API server does: camelCase field names only
  (the models also accept snake_case names for Python callers; input never may).
- :func:`output_conflicts` refuses a Batch whose jobs would write the same object.
"""

import json
import posixpath
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from audioextract.api.constants import Format
from audioextract.api.defaults import job_key, resolve_batch_job
from audioextract.api.spec import BatchSpec, Destination, Output

FORMAT_EXTENSIONS: dict[Format, str] = {
    Format.MP3: ".mp3",
    # Raw ADTS; m4a and alac are MP4 (iPod) files.
    Format.AAC: ".aac",
    Format.M4A: ".m4a",
    Format.FLAC: ".flac",
    Format.WAV: ".wav",
    Format.OPUS: ".opus",
    Format.OGG: ".ogg",
    Format.ALAC: ".m4a",
}


def parse_input[M: BaseModel](model: type[M], obj: Any) -> M:
    """Validate user input with camelCase names only, exactly what the CRD accepts.

    Strict JSON semantics, as the API server's: no "2" for 2 or "yes" for true (the
    models' lax Python mode would coerce them). YAML timestamps become strings, as
    kubectl sends them.
    """
    return parse_input_json(model, json.dumps(obj, default=str))


def parse_input_json[M: BaseModel](model: type[M], text: str | bytes) -> M:
    """:func:`parse_input` for JSON text."""
    return model.model_validate_json(text, strict=True, by_alias=True, by_name=False)


def output_filename(output: Output, job_name: str) -> str:
    """output.filename or the job's name, with the format's extension added when missing."""
    extension = FORMAT_EXTENSIONS[Format(output.format or Format.MP3)]
    name = output.filename or job_name
    return name if name.lower().endswith(extension) else name + extension


def output_object(
    output: Output, job_name: str, default_destination: Destination | None
) -> tuple[str, ...]:
    """Which object a job writes: kind, place and name, normalised for comparison."""
    filename = output_filename(output, job_name)
    dest = output.destination or default_destination
    if dest is None:
        return ("default", filename)
    if dest.volume is not None:
        path = posixpath.normpath(posixpath.join(dest.volume.path or "", filename))
        return ("volume", dest.volume.claim_name, path)
    if dest.s3 is not None:
        return ("s3", dest.s3.endpoint or "", dest.s3.bucket, (dest.s3.prefix or "") + filename)
    parts = urlsplit(dest.url or "")
    # A presigned URL's query is its signature; the object is the path.
    return ("url", parts.scheme, parts.netloc.lower(), parts.path)


def _shown(obj: tuple[str, ...]) -> str:
    kind, *rest = obj
    if kind == "s3":
        endpoint, bucket, key = rest
        return f"s3://{bucket}/{key}" + (f" at {endpoint}" if endpoint else "")
    if kind == "url":
        scheme, host, path = rest
        return f"{scheme}://{host}{path}"
    if kind == "volume":
        return f"volume {rest[0]}: {rest[1]}"
    return f"the default destination: {rest[0]}"


def output_conflicts(
    jobs: Sequence[tuple[str, str, Output]], default_destination: Destination | None
) -> list[str]:
    """One message per job that writes an object an earlier job writes too.

    ``jobs``: (how the job is named in messages, its ExtractionJob name, its resolved output).
    """
    seen: dict[tuple[str, ...], str] = {}
    messages = []
    for label, name, output in jobs:
        obj = output_object(output, name, default_destination)
        if obj in seen:
            messages.append(
                f"{label} and {seen[obj]} both write {_shown(obj)}: one output, one job "
                "(set output.filename or output.destination)"
            )
        else:
            seen[obj] = label
    return messages


def batch_output_conflicts(
    batch_name: str,
    spec: BatchSpec,
    default_destination: Destination | None,
    child_name: Callable[[str, str], str],
) -> list[str]:
    """:func:`output_conflicts` for a Batch's jobs, with its defaults merged in."""
    jobs = []
    for index, job in enumerate(spec.jobs):
        key = job_key(job, index)
        resolved = resolve_batch_job(spec, job)
        output = resolved.output or Output()
        jobs.append((f"spec.jobs[{index}] ({key})", child_name(batch_name, key), output))
    return output_conflicts(jobs, default_destination)
