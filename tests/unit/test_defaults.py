"""Defaults resolution: the job's values win field by field, with the pairing rules."""

import pytest

from audioextract.api import BatchSpec, ExtractionJobSpec
from audioextract.api.defaults import (
    effective_priority,
    effective_retries,
    effective_timeout,
    job_key,
    merge_output,
    resolve_batch_job,
    resolve_standalone,
)
from audioextract.api.spec import Output
from audioextract.api.task import NoDestinationError, build_task
from tests.support.builders import batch_job


def _spec(defaults: dict, *jobs: dict, **extra: object) -> BatchSpec:
    return BatchSpec.model_validate({"defaults": defaults, "jobs": list(jobs), **extra})


def test_job_values_win_and_defaults_fill_in() -> None:
    spec = _spec(
        {
            "output": {"format": "mp3", "quality": "high", "channels": 2},
            "retries": 5,
            "timeoutSeconds": 60,
        },
        batch_job("a", output={"format": "opus"}, retries=0),
    )
    resolved = resolve_batch_job(spec, spec.jobs[0])
    assert resolved.output is not None
    assert (resolved.output.format, resolved.output.quality, resolved.output.channels) == (
        "opus",
        "high",
        2,
    )
    assert resolved.retries == 0  # an explicit 0 is a value, not "unset"
    assert resolved.timeout_seconds == 60


def test_quality_and_bitrate_are_one_choice() -> None:
    spec = _spec({"output": {"quality": "high"}}, batch_job("a", output={"bitrate": "320k"}))
    out = resolve_batch_job(spec, spec.jobs[0]).output
    assert out is not None and (out.quality, out.bitrate) == (None, "320k")


def test_inherited_quality_is_dropped_for_lossless_formats() -> None:
    spec = _spec(
        {"output": {"format": "mp3", "bitrate": "192k"}}, batch_job("a", output={"format": "flac"})
    )
    out = resolve_batch_job(spec, spec.jobs[0]).output
    assert out is not None and (out.format, out.quality, out.bitrate) == ("flac", None, None)


def test_destination_is_taken_whole() -> None:
    spec = _spec(
        {"output": {"destination": {"s3": {"bucket": "bucket-1", "prefix": "p/"}}}},
        batch_job("a", output={"destination": {"volume": {"claimName": "out"}}}),
        batch_job("b"),
    )
    a, b = (resolve_batch_job(spec, j).output for j in spec.jobs)
    assert a is not None and a.destination is not None and a.destination.s3 is None
    assert b is not None and b.destination is not None and b.destination.s3 is not None
    assert b.destination.s3.prefix == "p/"


def test_loudness_and_tags_merge_per_key() -> None:
    merged = merge_output(
        Output.model_validate(
            {"loudness": {"integratedLufs": -16, "lra": 11}, "tags": {"artist": "A", "album": "B"}}
        ),
        Output.model_validate({"loudness": {"lra": 7}, "tags": {"title": "T", "album": "C"}}),
    )
    assert merged.loudness is not None
    assert (merged.loudness.integrated_lufs, merged.loudness.lra) == (-16, 7)
    assert merged.tags == {"artist": "A", "album": "C", "title": "T"}


def test_batch_priority_and_queue_reach_children() -> None:
    spec = _spec(
        {}, batch_job("a"), batch_job("b", priority="high"), priority="low", queueName="team-a"
    )
    a, b = (resolve_batch_job(spec, j) for j in spec.jobs)
    assert (effective_priority(a), effective_priority(b)) == ("low", "high")
    assert a.queue_name == b.queue_name == "team-a"


def test_effective_defaults_of_an_empty_spec() -> None:
    spec = resolve_standalone(
        ExtractionJobSpec.model_validate({"source": {"url": "https://x.example/v.mp4"}})
    )
    assert spec.output is not None and spec.output.format == "mp3"
    assert (effective_priority(spec), effective_timeout(spec), effective_retries(spec)) == (
        "normal",
        3600,
        2,
    )


def test_job_key_is_the_name() -> None:
    spec = _spec({}, batch_job("first"), batch_job("named"))
    assert [job_key(j, i) for i, j in enumerate(spec.jobs)] == ["first", "named"]


def test_task_needs_a_destination() -> None:
    spec = ExtractionJobSpec.model_validate({"source": {"url": "https://x.example/v.mp4"}})
    with pytest.raises(NoDestinationError, match=r"output\.destination"):
        build_task("j", spec, None)
    from audioextract.api import Destination

    task = build_task("j", spec, Destination.model_validate({"volume": {"claimName": "out"}}))
    assert task.output.format == "mp3" and task.timeout_seconds == 3600
    assert task.output.destination is not None and task.output.destination.volume is not None
