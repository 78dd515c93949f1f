"""A running operator's metrics, probes, JSON logs and webhook downloadUrl, end to end.

One operator run on the real control plane (the fake kubelet runs the real worker)
with results in the real S3-compatible server: a Batch of one good and one broken
source, a webhook receiver on 127.0.0.1. Then the operator's own /metrics is scraped:
the counts match what happened, and every metric name the chart's alerts and
dashboard read is exported.
"""

import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from audioextract.webhooks.signing import generate_secret
from tests.envtest.operator_helpers import GROUP, VERSION, batch_manifest, get, make_video
from tests.envtest.operator_process import OperatorProcess
from tests.support import promql, s3
from tests.support.controlplane import ControlPlane
from tests.support.kubelet import FakeKubelet
from tests.support.wait import wait_for
from tests.support.webhook_receiver import Receiver, receiver

BUCKET = "audio"


SECRET = generate_secret()


@pytest.fixture
def hooks() -> Iterator[Receiver]:
    with receiver(SECRET) as rec:
        yield rec


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def total(values: dict[tuple[str, Any], float], name: str, **labels: str) -> float:
    return sum(
        v
        for (n, lab), v in values.items()
        if n == name and all(dict(lab).get(k) == want for k, want in labels.items())
    )


def test_running_operator_exports_what_happened_and_what_the_chart_reads(
    controller_manager: ControlPlane,
    crds: list[str],
    namespace: str,
    kubelet: FakeKubelet,
    api_client: kubernetes.client.ApiClient,
    hooks: Receiver,
) -> None:
    media = kubelet.volume_dir("media")
    make_video(media / "a.mp4", 1.5)
    (media / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 50)
    core = kubernetes.client.CoreV1Api(api_client)
    custom: Any = kubernetes.client.CustomObjectsApi(api_client)
    with s3.moto_server() as endpoint:
        s3.client(endpoint).create_bucket(Bucket=BUCKET)
        core.create_namespaced_secret(
            namespace, {"metadata": {"name": "hook"}, "stringData": {"secret": SECRET}}
        )
        core.create_namespaced_secret(
            namespace,
            {
                "metadata": {"name": "s3creds"},
                "stringData": {k: v for k, v in s3.S3_ENV.items() if k.startswith("AWS_")},
            },
        )
        env = {
            "AUDIOEXTRACT_DEFAULT_DESTINATION": json.dumps(
                {"s3": {"bucket": BUCKET, "prefix": "out/"}}
            ),
            "AUDIOEXTRACT_S3_ENDPOINT": endpoint,
            "AUDIOEXTRACT_S3_REGION": s3.S3_ENV["AWS_DEFAULT_REGION"],
            "AUDIOEXTRACT_S3_CREDENTIALS_SECRET": "s3creds",
            "AUDIOEXTRACT_ALLOW_NETWORKS": "127.0.0.0/8",
            "AUDIOEXTRACT_LOG_FORMAT": "json",
            "AUDIOEXTRACT_DOWNLOAD_URL_SECONDS": "600",
        }
        # The operator itself has no AWS credentials: it signs with the Secret's.
        with OperatorProcess(controller_manager, namespace, env) as op:
            vol = {"claimName": "media"}
            manifest = batch_manifest(
                "metered",
                [
                    {"name": "good", "source": {"volume": {**vol, "path": "a.mp4"}}},
                    {"name": "bad", "source": {"volume": {**vol, "path": "bad.mp4"}}, "retries": 0},
                ],
                webhook={"url": hooks.url, "secretRef": {"name": "hook"}},
            )
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "batches", manifest)

            def settled() -> dict[str, Any] | None:
                b = get(custom, namespace, "batches", "metered")
                st = b.get("status") or {}
                wh = st.get("webhook") or {}
                done = st.get("phase") == "PartiallySucceeded" and wh.get("delivered") == 3
                return b if done and wh.get("pending") == 0 else None

            wait_for(settled, timeout=120, interval=0.5, what="Batch final, 3 webhooks delivered")
            good = get(custom, namespace, "extractionjobs", "metered-good")
            status_code, text = op.http_get("/metrics")
            healthz, readyz = op.http_get("/healthz"), op.http_get("/readyz")
            op.assert_healthy()
            log = op.log()
        completed = next(h for h in hooks.hits if h.type == "job.completed")
        link = completed.body["data"]["downloadUrl"]
        # The link works with no credentials of its own, while the store runs.
        downloaded = fetch(link)

    # -- downloadUrl: in the job.completed webhook, valid, never stored ------------------
    assert link.startswith(f"{endpoint}/{BUCKET}/out/") and "X-Amz-Expires=600" in link
    assert downloaded[0] == 200
    assert "downloadUrl" not in json.dumps(good["status"])
    assert "X-Amz" not in json.dumps(good["status"])
    assert completed.body["data"]["result"]["sha256"] == good["status"]["result"]["sha256"]
    assert hashlib.sha256(downloaded[1]).hexdigest() == good["status"]["result"]["sha256"]
    failed = next(h for h in hooks.hits if h.type == "job.failed")
    assert "downloadUrl" not in failed.body["data"]

    # -- probes ----------------------------------------------------------------------------
    assert healthz[0] == 200, healthz
    assert readyz == (200, "[+]kopf ok\n[+]lease ok\nok\n")

    # -- the counts match what happened ------------------------------------------------------
    assert status_code == 200
    values = samples(text)
    assert total(values, "audioextract_jobs_finished_total", outcome="succeeded") == 1
    assert (
        total(
            values, "audioextract_jobs_finished_total", outcome="failed", error_code="DecodeFailed"
        )
        == 1
    )
    assert total(values, "audioextract_job_duration_seconds_count") == 2
    assert total(values, "audioextract_job_queue_wait_seconds_count") == 2
    assert 1.0 < total(values, "audioextract_media_seconds_total") < 2.0
    assert total(values, "audioextract_output_bytes_total") == good["status"]["result"]["sizeBytes"]
    assert total(values, "audioextract_webhook_deliveries_total", outcome="delivered") == 3
    assert total(values, "audioextract_webhook_delivery_duration_seconds_count") == 3
    assert total(values, "audioextract_batches", phase="PartiallySucceeded") == 1
    assert total(values, "audioextract_jobs", phase="Succeeded") == 1
    assert total(values, "audioextract_jobs", phase="Failed") == 1
    assert total(values, "audioextract_leader") == 1  # standalone: always acting
    # No label value is a name or a URL: only the bounded sets.
    assert "metered" not in text and "127.0.0.1" not in text

    # -- and everything the alerts and the dashboard read is there -------------------------
    assert promql.missing_from(text) == {}

    # -- JSON logs: one object per line, object lines name the object ------------------------
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    about = [line for line in lines if line.get("namespace") == namespace]
    assert any(line.get("kind") == "ExtractionJob" and line.get("name") for line in about), lines
