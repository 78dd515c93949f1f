"""Webhooks from a local run: the operator's events, ids and Standard Webhooks signatures."""

import hashlib
import json
import urllib.request
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

from audioextract.webhooks.signing import generate_secret
from tests.local.conftest import RunCli, batch, http_job
from tests.support import http_server
from tests.support.s3 import client
from tests.support.webhook_receiver import receiver


def test_events_per_job_and_batch_verified_with_the_reference_library(
    run_cli: RunCli, source_server: http_server.MediaServer, s3_endpoint: str
) -> None:
    secret = generate_secret()
    client(s3_endpoint).create_bucket(Bucket="hooked")
    to_s3 = {"destination": {"s3": {"bucket": "hooked", "endpoint": s3_endpoint}}}
    with receiver(secret) as rec:
        jobs = [
            http_job(source_server, "good", output=to_s3),
            http_job(source_server, "missing", path="status/404"),
        ]
        obj = batch(
            "hooked",
            jobs,
            parallelism=2,
            webhook={"url": rec.url, "secretRef": {"name": "hook"}},
        )
        obj["metadata"]["uid"] = "uid-hooked"
        run = run_cli(
            obj,
            "--status",
            "status.yaml",
            "--metrics-file",
            "metrics/audioextract.prom",
            env={"AUDIOEXTRACT_WEBHOOK_SECRET": secret},
            mkdirs=("metrics",),
        )
    assert run.returncode == 1, run.stderr
    assert rec.unverified == []
    types = Counter(hit.type for hit in rec.hits)
    assert types == {"job.completed": 1, "job.failed": 1, "batch.completed": 1}
    assert len({hit.id for hit in rec.hits}) == 3
    by_type = {hit.type: hit.body["data"] for hit in rec.hits}
    assert by_type["job.completed"]["job"] == {"name": "good", "extractionJob": "hooked-good"}
    completed = by_type["job.completed"]
    assert completed["result"]["uri"] == "s3://hooked/hooked-good.mp3"
    # An S3 result comes with a presigned GET link, sent and never stored.
    with urllib.request.urlopen(completed["downloadUrl"]) as resp:
        assert hashlib.sha256(resp.read()).hexdigest() == completed["result"]["sha256"]
    assert "downloadUrl" not in json.dumps(run.status())
    assert by_type["job.failed"]["error"]["code"] == "SourceNotFound"
    assert by_type["batch.completed"]["phase"] == "PartiallySucceeded"
    assert by_type["batch.completed"]["summary"] == {"total": 2, "succeeded": 1, "failed": 1}
    assert by_type["batch.completed"]["batch"] == {"name": "hooked", "uid": "uid-hooked"}
    # The same domain metrics as the operator's, for node exporter's textfile collector.
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(
            (run.cwd / "metrics" / "audioextract.prom").read_text()
        )
        for s in family.samples
    }
    assert all(name.startswith("audioextract_") for name, _ in values)
    assert ("audioextract_leader", ()) not in values  # the operator's, not a run's
    finished = "audioextract_jobs_finished_total"
    assert values[(finished, (("error_code", ""), ("outcome", "succeeded")))] == 1
    assert values[(finished, (("error_code", "SourceNotFound"), ("outcome", "failed")))] == 1
    assert values[("audioextract_batches", (("phase", "PartiallySucceeded"),))] == 1
    assert values[("audioextract_media_seconds_total", (("format", "mp3"),))] > 1
    delivered = (("event", "batch.completed"), ("outcome", "delivered"))
    assert values[("audioextract_webhook_deliveries_total", delivered)] == 1
    assert values[("audioextract_job_queue_wait_seconds_count", ())] == 2
    webhook = run.status()["status"]["webhook"]
    assert (webhook["delivered"], webhook["failed"], webhook["pending"]) == (3, 0, 0)
    assert "Webhooks: 3 delivered, 0 failed, 0 pending" in run.stdout


def test_undeliverable_webhook_is_reported_and_does_not_change_the_outcome(
    run_cli: RunCli, source_server: http_server.MediaServer
) -> None:
    secret = generate_secret()
    obj = batch(
        "nohook",
        [http_job(source_server, "gone", path="status/404")],
        webhook={"url": source_server.url("status/500"), "secretRef": {"name": "hook"}},
    )
    run = run_cli(obj, "--status", "status.yaml", "--webhook-secret", secret)
    assert run.returncode == 1
    webhook = run.status()["status"]["webhook"]
    # Three attempts each (the first and two retries of the test schedule), then given up.
    assert (webhook["delivered"], webhook["failed"], webhook["pending"]) == (0, 2, 0)
    assert "Webhooks: 0 delivered, 2 failed, 0 pending" in run.stdout
    assert "not delivered: job.failed gone" in run.stdout
