"""The bad-input table: one table, every engine (pydantic, schema+CEL, the API server).

Each case names the field the rejection must point at; ``message`` is a fragment that
every engine's message must contain where the rule is ours (CEL and validators), and
empty where each engine words a built-in check its own way.
"""

import copy
from dataclasses import dataclass
from typing import Any

from audioextract.api.constants import MAX_BATCH_LOCATION_CHARS, MAX_JOBS_PER_BATCH
from tests.support.builders import batch, batch_job, extraction_job, source, with_output

Obj = dict[str, Any]


@dataclass(frozen=True)
class BadInput:
    """One object that must be rejected, and where."""

    id: str
    obj: Obj
    field: str
    message: str = ""


def _set(obj: Obj, path: list[Any], value: Any) -> Obj:
    obj = copy.deepcopy(obj)
    node = obj
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return obj


def _drop(obj: Obj, path: list[Any]) -> Obj:
    obj = copy.deepcopy(obj)
    node = obj
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return obj


def url_of(length: int, i: int = 0) -> str:
    """An HTTPS URL of exactly ``length`` characters."""
    head = f"https://media.example.com/{i}/"
    return head + "x" * (length - len(head) - 4) + ".mp4"


# Just over the total of locations, at the most jobs (each URL one character longer than
# an even share) and with few jobs inheriting a long default destination.
_SHARE = MAX_BATCH_LOCATION_CHARS // MAX_JOBS_PER_BATCH + 1
TOO_LONG_LOCATIONS = batch(
    jobs=[batch_job(f"j{i}", source=source(url_of(_SHARE, i))) for i in range(MAX_JOBS_PER_BATCH)]
)
TOO_LONG_DEFAULT = batch(
    jobs=[batch_job(f"j{i}", source=source(url_of(40, i))) for i in range(70)],
    defaults={"output": {"destination": {"url": url_of(3800)}}},
)
LOCATIONS_MESSAGE = "split the jobs over several Batches"

HOOK = {"url": "https://hooks.example.com/a", "secretRef": {"name": "hook", "key": "secret"}}
J0 = ["spec", "jobs", 0]

BAD_INPUTS: list[BadInput] = [
    BadInput("wrong-format", with_output(batch(), format="mp4"), "spec.jobs[0].output.format"),
    BadInput(
        "quality-and-bitrate",
        with_output(batch(), format="mp3", quality="high", bitrate="192k"),
        "spec.jobs[0].output",
        "quality or bitrate",
    ),
    BadInput(
        "bitrate-pattern", with_output(batch(), bitrate="192kbps"), "spec.jobs[0].output.bitrate"
    ),
    BadInput(
        "bitrate-lossless",
        with_output(batch(), format="flac", bitrate="192k"),
        "spec.jobs[0].output",
        "lossless",
    ),
    BadInput(
        "mp3-surround",
        with_output(batch(), format="mp3", channels=6),
        "spec.jobs[0].output",
        "at most 2 channels",
    ),
    BadInput(
        "wav-custom-tag",
        with_output(batch(), format="wav", tags={"title": "t", "mykey": "v"}),
        "spec.jobs[0].output",
        "wav (RIFF INFO) holds only",
    ),
    BadInput(
        "snake-case-field",
        with_output(batch(), sample_rate=44100),
        "spec.jobs[0].output.sample_rate",
    ),
    BadInput(
        "sample-rate", with_output(batch(), sampleRate=12345), "spec.jobs[0].output.sampleRate"
    ),
    BadInput(
        "url-scheme",
        _set(batch(), [*J0, "source", "url"], "ftp://host/v.mp4"),
        "spec.jobs[0].source.url",
    ),
    BadInput(
        "url-and-volume",
        _set(batch(), [*J0, "source", "volume"], {"claimName": "uploads", "path": "a.mp4"}),
        "spec.jobs[0].source",
        "exactly one of url or volume",
    ),
    BadInput(
        "no-source-kind",
        _set(batch(), [*J0, "source"], {"audioTrack": 1}),
        "spec.jobs[0].source",
        "exactly one of url or volume",
    ),
    BadInput(
        "s3-options-on-https",
        _set(batch(), [*J0, "source"], source(s3={"region": "eu-west-1"})),
        "spec.jobs[0].source",
        "s3:// URLs",
    ),
    BadInput(
        "volume-path-escapes",
        _set(
            batch(),
            [*J0, "source"],
            {"volume": {"claimName": "uploads", "path": "a/../../etc/passwd"}},
        ),
        "spec.jobs[0].source.volume.path",
        "'..'",
    ),
    BadInput(
        "volume-path-nul",
        _set(batch(), [*J0, "source"], {"volume": {"claimName": "uploads", "path": "a\x00.mp4"}}),
        "spec.jobs[0].source.volume.path",
    ),
    BadInput(
        "volume-path-long-component",
        _set(
            batch(),
            [*J0, "source"],
            {"volume": {"claimName": "uploads", "path": "d/" + "x" * 300 + ".mp4"}},
        ),
        "spec.jobs[0].source.volume.path",
        "at most 255 bytes",
    ),
    BadInput(
        "destination-path-nul",
        with_output(batch(), destination={"volume": {"claimName": "out", "path": "a\x00b"}}),
        "spec.jobs[0].output.destination.volume.path",
    ),
    BadInput(
        "url-control-character",
        _set(batch(), [*J0, "source", "url"], "https://cdn.example.com/a\x00b.mp4"),
        "spec.jobs[0].source.url",
    ),
    BadInput(
        "tag-nul", with_output(batch(), tags={"title": "a\x00b"}), "spec.jobs[0].output.tags.title"
    ),
    BadInput(
        "region-pattern",
        with_output(batch(), destination={"s3": {"bucket": "media", "region": "evil.com#"}}),
        "spec.jobs[0].output.destination.s3.region",
    ),
    BadInput(
        "volume-path-absolute",
        _set(batch(), [*J0, "source"], {"volume": {"claimName": "uploads", "path": "/etc/passwd"}}),
        "spec.jobs[0].source.volume.path",
        "relative",
    ),
    BadInput(
        "two-destinations",
        with_output(
            batch(),
            destination={"url": "https://put.example.com/x", "volume": {"claimName": "out"}},
        ),
        "spec.jobs[0].output.destination",
        "exactly one of s3, volume or url",
    ),
    # The jobs list is a list-map keyed by name: the API server itself refuses a repeated
    # key ("spec.jobs[2]: Duplicate value: ..."), pointing at the second occurrence.
    BadInput(
        "duplicate-job-names",
        batch(jobs=[batch_job("intro"), batch_job("outro"), batch_job("intro")]),
        "spec.jobs",
        "Duplicate value",
    ),
    BadInput("job-without-name", batch(jobs=[batch_job(None)]), "spec.jobs[0].name"),
    BadInput(
        "too-many-jobs",
        batch(jobs=[batch_job(f"j{i}") for i in range(MAX_JOBS_PER_BATCH + 1)]),
        "spec.jobs",
    ),
    BadInput("empty-jobs", batch(jobs=[]), "spec.jobs"),
    BadInput(
        "negative-timeout",
        _set(batch(), [*J0, "timeoutSeconds"], -5),
        "spec.jobs[0].timeoutSeconds",
    ),
    BadInput("too-many-retries", _set(batch(), [*J0, "retries"], 11), "spec.jobs[0].retries"),
    BadInput("unknown-field", with_output(batch(), fmt="mp3"), "spec.jobs[0].output.fmt"),
    BadInput("job-name-invalid", batch(jobs=[batch_job("Intro_1")]), "spec.jobs[0].name"),
    BadInput(
        "priority-unknown", _set(batch(), [*J0, "priority"], "urgent"), "spec.jobs[0].priority"
    ),
    BadInput("parallelism-zero", batch(parallelism=0), "spec.parallelism"),
    BadInput(
        "webhook-scheme",
        batch(webhook={**HOOK, "url": "ftp://hooks.example.com/a"}),
        "spec.webhook.url",
    ),
    BadInput(
        "webhook-no-secret",
        batch(webhook={"url": "https://hooks.example.com/a"}),
        "spec.webhook.secretRef",
    ),
    BadInput(
        "webhook-event-unknown",
        batch(webhook={**HOOK, "events": ["job.done"]}),
        "spec.webhook.events[0]",
    ),
    BadInput("tag-key", with_output(batch(), tags={"Title!": "x"}), "spec.jobs[0].output.tags"),
    BadInput(
        "loudness-target",
        with_output(batch(), normalize=True, loudness={"integratedLufs": 3}),
        "spec.jobs[0].output.loudness.integratedLufs",
    ),
    BadInput(
        "zero-duration",
        with_output(batch(), durationSeconds=0),
        "spec.jobs[0].output.durationSeconds",
    ),
    BadInput(
        "negative-start", with_output(batch(), startSeconds=-1), "spec.jobs[0].output.startSeconds"
    ),
    BadInput(
        "filename-with-directory",
        with_output(batch(), filename="a/b.mp3"),
        "spec.jobs[0].output.filename",
    ),
    BadInput(
        "s3-bucket-name",
        with_output(batch(), destination={"s3": {"bucket": "A_B"}}),
        "spec.jobs[0].output.destination.s3.bucket",
    ),
    BadInput(
        "quantity",
        _set(batch(), [*J0, "resources"], {"limits": {"cpu": "lots"}}),
        "spec.jobs[0].resources.limits.cpu",
    ),
    BadInput("ej-no-source", _drop(extraction_job(), ["spec", "source"]), "spec.source"),
    BadInput("webhook-in-batch-job", _set(batch(), [*J0, "webhook"], HOOK), "spec.jobs[0].webhook"),
    BadInput("ej-queue-name", extraction_job(queueName="Team A"), "spec.queueName"),
    BadInput("locations-too-long", TOO_LONG_LOCATIONS, "spec.jobs", LOCATIONS_MESSAGE),
    BadInput("default-destination-counts", TOO_LONG_DEFAULT, "spec.jobs", LOCATIONS_MESSAGE),
]
