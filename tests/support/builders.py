"""Fixture builders: valid API objects by default, overridden per test."""

import copy
from typing import Any

Obj = dict[str, Any]


def source(url: str = "https://media.example.com/video.mp4", **extra: Any) -> Obj:
    """A source with an HTTPS URL unless told otherwise."""
    return {"url": url, **extra}


def batch_job(name: str | None = "intro", **fields: Any) -> Obj:
    """One job of a Batch."""
    job: Obj = {"source": source()}
    if name is not None:
        job["name"] = name
    job.update(fields)
    return job


def batch(name: str = "episode-42", jobs: list[Obj] | None = None, **spec: Any) -> Obj:
    """A Batch object as kubectl would send it."""
    return {
        "apiVersion": "audioextract.dev/v1alpha1",
        "kind": "Batch",
        "metadata": {"name": name},
        "spec": {"jobs": jobs if jobs is not None else [batch_job()], **spec},
    }


def extraction_job(name: str = "lecture-01", **spec: Any) -> Obj:
    """A standalone ExtractionJob object."""
    body: Obj = {"source": source(), **spec}
    return {
        "apiVersion": "audioextract.dev/v1alpha1",
        "kind": "ExtractionJob",
        "metadata": {"name": name},
        "spec": body,
    }


def with_output(obj: Obj, **output: Any) -> Obj:
    """A copy of a Batch whose first job has this output."""
    obj = copy.deepcopy(obj)
    obj["spec"]["jobs"][0]["output"] = output
    return obj
