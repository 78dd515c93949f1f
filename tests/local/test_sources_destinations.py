"""Every source and destination kind, Batch and ExtractionJob files, YAML, JSON and stdin."""

import json
from pathlib import Path

from tests.local.conftest import MEDIA, RunCli, batch, http_job
from tests.support import http_server, media
from tests.support.s3 import client


def test_batch_with_every_source_and_destination_kind(
    run_cli: RunCli,
    tmp_path: Path,
    local_media: Path,
    source_server: http_server.MediaServer,
    s3_endpoint: str,
) -> None:
    s3 = client(s3_endpoint)
    s3.create_bucket(Bucket="raw")
    s3.create_bucket(Bucket="audio")
    s3.upload_file(str(local_media / MEDIA), "raw", "in/video.mp4")
    library = tmp_path / "library"
    library.mkdir()
    obj = batch(
        "kinds",
        [
            http_job(source_server, "from-http"),
            {
                "name": "s3-to-s3",
                "source": {"url": "s3://raw/in/video.mp4", "s3": {"endpoint": s3_endpoint}},
                "output": {
                    "format": "m4a",
                    "destination": {
                        "s3": {"bucket": "audio", "prefix": "out/", "endpoint": s3_endpoint}
                    },
                },
            },
            {
                "name": "volume-to-volume",
                "source": {"volume": {"claimName": "uploads", "path": MEDIA}},
                "output": {
                    "format": "flac",
                    "destination": {"volume": {"claimName": "library", "path": "flac"}},
                },
            },
            http_job(
                source_server,
                "to-put-url",
                output={
                    "format": "wav",
                    "destination": {"url": source_server.url("upload/put.wav?X-Amz-Signature=s")},
                },
            ),
        ],
        defaults={"output": {"format": "mp3", "quality": "low"}},
        parallelism=2,
    )
    run = run_cli(
        obj,
        "--status",
        "status.yaml",
        "--volume",
        f"uploads={local_media}",
        "--volume",
        f"library={library}",
    )
    assert run.returncode == 0, run.stderr + run.stdout
    status = run.status()["status"]
    assert status["phase"] == "Succeeded"
    assert (status["succeeded"], status["failed"], status["total"]) == (4, 0, 4)
    jobs = run.jobs()
    assert (
        jobs["from-http"]["result"]["uri"] == "volume://audioextract-local-out/kinds-from-http.mp3"
    )
    assert jobs["s3-to-s3"]["result"]["uri"] == "s3://audio/out/kinds-s3-to-s3.m4a"
    assert (
        jobs["volume-to-volume"]["result"]["uri"]
        == "volume://library/flac/kinds-volume-to-volume.flac"
    )
    assert jobs["to-put-url"]["result"]["uri"].endswith(
        "/upload/put.wav"
    )  # no query (the signature)
    # Each entry is a compact result listing: size, duration and checksum too.
    for entry in jobs.values():
        assert set(entry["result"]) == {"uri", "sizeBytes", "durationSeconds", "sha256"}
        assert entry["result"]["sizeBytes"] > 0 and len(entry["result"]["sha256"]) == 64

    out = tmp_path / "out" / "kinds-from-http.mp3"
    assert media.probe(out).codec == "mp3"
    assert media.probe(library / "flac" / "kinds-volume-to-volume.flac").codec == "flac"
    body = s3.get_object(Bucket="audio", Key="out/kinds-s3-to-s3.m4a")["Body"].read()
    assert len(body) > 1000
    assert source_server.uploads["put.wav"][:4] == b"RIFF"
    # The results table names every job with its local file or URI.
    assert "out/kinds-from-http.mp3" in run.stdout
    assert "library/flac/kinds-volume-to-volume.flac" in run.stdout
    assert "Batch kinds: Succeeded - 4 succeeded, 0 failed of 4" in run.stdout


def test_extraction_job_as_json_on_stdin(
    run_cli: RunCli, source_server: http_server.MediaServer, tmp_path: Path
) -> None:
    obj = {
        "apiVersion": "audioextract.dev/v1alpha1",
        "kind": "ExtractionJob",
        "metadata": {"name": "lecture"},
        "spec": {
            "source": {"url": source_server.url(f"range/{MEDIA}")},
            "output": {"format": "opus", "durationSeconds": 2},
        },
    }
    run = run_cli(None, "--status", "status.json", "--out", "audio", stdin=json.dumps(obj))
    assert run.returncode == 0, run.stderr + run.stdout
    doc = run.status("status.json")
    assert doc["kind"] == "ExtractionJob"
    status = doc["status"]
    assert status["phase"] == "Succeeded"
    assert status["attempts"] == 1
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    probe = media.probe(tmp_path / "audio" / "lecture.opus")
    assert probe.codec == "opus"
    assert 1.8 < probe.duration < 2.3


def test_extraction_job_as_json_file(
    run_cli: RunCli, source_server: http_server.MediaServer, tmp_path: Path
) -> None:
    obj = {
        "apiVersion": "audioextract.dev/v1alpha1",
        "kind": "ExtractionJob",
        "metadata": {"name": "missing"},
        "spec": {"source": {"url": source_server.url("range/nothing-here.mp4")}, "retries": 3},
    }
    run = run_cli(obj, "--status", "status.yaml", file="job.json")
    assert run.returncode == 1
    status = run.status()["status"]
    assert status["phase"] == "Failed"
    # A 404 is permanent: not retried, whatever `retries` says.
    assert status["attempts"] == 1
    assert status["error"]["code"] == "SourceNotFound"
    assert status["error"]["retryable"] is False
