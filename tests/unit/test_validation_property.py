"""The models and the generated CRD accept and refuse the same specs (property-based).

Hypothesis draws outputs, sources and job fields from values on both sides of every
rule (ranges, patterns, cross-field CEL rules, snake_case names, wrong JSON types);
the pydantic models (as the local runner and the worker read input) and the CRD's
schema plus CEL rules (as the API server does) must agree on every one.
"""

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audioextract.api.crd import batch_crd, extraction_job_crd
from tests.support.builders import batch, batch_job, extraction_job
from tests.support.schema import validate
from tests.support.validation import pydantic_errors

CRDS = {"Batch": batch_crd(), "ExtractionJob": extraction_job_crd()}

FORMATS = st.sampled_from(["mp3", "aac", "m4a", "flac", "wav", "opus", "ogg", "alac", "MP3", "wma"])
QUALITY = st.sampled_from(["low", "medium", "high", "best"])
BITRATE = st.sampled_from(["192k", "64k", "9999k", "0k", "192", "192K", "10000k"])
RATES = st.sampled_from([8000, 44100, 48000, 96000, 44099, 0, "48000", 48000.5])
CHANNELS = st.sampled_from([1, 2, 6, 8, 0, 9, -1, "2", 2.5])
BOOLS = st.sampled_from([True, False, "true", 1])
SECONDS = st.sampled_from([0, 0.5, 3, -1, 1e9, "3"])
LOUDNESS = st.fixed_dictionaries(
    {},
    optional={
        "integratedLufs": st.sampled_from([-23, -16.5, -70, -71, -5, -4.9, "x"]),
        "truePeakDb": st.sampled_from([-1, 0, 0.1, -9, -9.5]),
        "lra": st.sampled_from([1, 7, 50, 0.5, 51]),
        "integrated_lufs": st.just(-23),
    },
)
TAG_KEYS = st.sampled_from(
    ["title", "artist", "language", "mykey", "Title", "9x", "a" * 65, "isrc"]
)
TAGS = st.dictionaries(TAG_KEYS, st.sampled_from(["v", "x" * 1025, "Épisode"]), max_size=3)
FILENAMES = st.sampled_from(["out", "a.mp3", "-bad", "a/b", "x" * 201, "ok_name.v2"])
DESTINATIONS = st.sampled_from(
    [
        {"volume": {"claimName": "out"}},
        {"volume": {"claimName": "out", "path": "../up"}},
        {"s3": {"bucket": "my-bucket", "prefix": "a/"}},
        {"s3": {"bucket": "B"}},
        {"url": "https://h.example/put?sig=1"},
        {"url": "ftp://h.example/put"},
        {"volume": {"claimName": "out"}, "url": "https://h.example/x"},
        {},
    ]
)

OUTPUT = st.fixed_dictionaries(
    {},
    optional={
        "format": FORMATS,
        "quality": QUALITY,
        "bitrate": BITRATE,
        "sampleRate": RATES,
        "channels": CHANNELS,
        "normalize": BOOLS,
        "loudness": LOUDNESS,
        "startSeconds": SECONDS,
        "durationSeconds": SECONDS,
        "filename": FILENAMES,
        "tags": TAGS,
        "destination": DESTINATIONS,
        "sample_rate": st.just(48000),
        "start_seconds": st.just(1),
    },
)
SOURCES = st.sampled_from(
    [
        {"url": "https://cdn.example/a.mp4"},
        {"url": "s3://media/raw/a.mov"},
        {"url": "file:///etc/passwd"},
        {"volume": {"claimName": "uploads", "path": "in/a.mp4"}},
        {"volume": {"claimName": "uploads", "path": "/abs"}},
        {"url": "https://cdn.example/a.mp4", "audioTrack": 64},
        {"url": "https://cdn.example/a.mp4", "audio_track": 1},
        {"url": "https://cdn.example/a.mp4", "s3": {"region": "x"}},
        {},
    ]
)
JOB_FIELDS = st.fixed_dictionaries(
    {"source": SOURCES},
    optional={
        "output": OUTPUT,
        "priority": st.sampled_from(["high", "normal", "low", "urgent"]),
        "retries": st.sampled_from([0, 2, 10, 11, -1]),
        "timeoutSeconds": st.sampled_from([1, 3600, 0, 604801]),
        "timeout_seconds": st.just(60),
    },
)


def _agree(obj: dict[str, Any]) -> None:
    models = pydantic_errors(obj)
    schema = validate(CRDS[obj["kind"]], obj)
    assert bool(models) == bool(schema), f"models: {models}\nCRD: {schema}\n{obj}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JOB_FIELDS)
def test_extraction_job_specs(fields: dict[str, Any]) -> None:
    obj = extraction_job()
    obj["spec"] = fields
    _agree(obj)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(JOB_FIELDS, min_size=1, max_size=3), st.one_of(st.none(), OUTPUT))
def test_batch_specs(jobs: list[dict[str, Any]], defaults: dict[str, Any] | None) -> None:
    named = [{**batch_job(f"j{i}"), **job} for i, job in enumerate(jobs)]
    obj = (
        batch(jobs=named) if defaults is None else batch(jobs=named, defaults={"output": defaults})
    )
    _agree(obj)
