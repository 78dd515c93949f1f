"""The metrics module: what each call site counts, the textfile export, the HTTP endpoint."""

import asyncio
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from audioextract import metrics
from audioextract.api.constants import ErrorCode, JobPhase
from audioextract.api.status import ExtractionJobStatus, JobError
from tests.support.builders import job_result

CREATED = "2026-01-01T10:00:00Z"
STARTED = "2026-01-01T10:00:30Z"
DONE = "2026-01-01T10:02:30Z"


@pytest.fixture
def reg() -> tuple[CollectorRegistry, metrics.Metrics]:
    registry = CollectorRegistry()
    return registry, metrics.register(registry)


def status(phase: JobPhase, **fields: object) -> ExtractionJobStatus:
    return ExtractionJobStatus.model_validate({"phase": phase, **fields})


def failure(code: ErrorCode, **fields: object) -> ExtractionJobStatus:
    error = JobError(code=code, message="it broke", retryable=False)
    return status(JobPhase.FAILED, completion_time=DONE, error=error, **fields)


def test_success_counts_job_runtime_wait_and_media(
    reg: tuple[CollectorRegistry, metrics.Metrics],
) -> None:
    registry, m = reg
    running = status(JobPhase.RUNNING, start_time=STARTED)
    metrics.job_status_written(JobPhase.QUEUED, running, CREATED, m)
    assert registry.get_sample_value("audioextract_job_queue_wait_seconds_sum") == 30
    assert registry.get_sample_value("audioextract_job_queue_wait_seconds_count") == 1
    done = running.model_copy(
        update={
            "phase": JobPhase.SUCCEEDED,
            "completion_time": DONE,
            "result": job_result(
                format="flac", size_bytes=5000, duration_seconds=12.5, stream_copied=True
            ),
        }
    )
    metrics.job_status_written(JobPhase.RUNNING, done, CREATED, m)
    # The same phase written again (a re-written status) counts nothing more.
    metrics.job_status_written(JobPhase.SUCCEEDED, done, CREATED, m)
    labels = {"outcome": "succeeded", "error_code": ""}
    assert registry.get_sample_value("audioextract_jobs_finished_total", labels) == 1
    assert (
        registry.get_sample_value("audioextract_job_duration_seconds_sum", {"outcome": "succeeded"})
        == 120
    )
    assert registry.get_sample_value("audioextract_media_seconds_total", {"format": "flac"}) == 12.5
    assert registry.get_sample_value("audioextract_output_bytes_total", {"format": "flac"}) == 5000
    assert registry.get_sample_value("audioextract_stream_copies_total", {"format": "flac"}) == 1
    # The wait was observed once, on entering Running, not again on Succeeded.
    assert registry.get_sample_value("audioextract_job_queue_wait_seconds_count") == 1


def test_failure_counts_by_error_code_and_a_job_first_seen_finished_waits_once(
    reg: tuple[CollectorRegistry, metrics.Metrics],
) -> None:
    registry, m = reg
    failed = failure(ErrorCode.DECODE_FAILED, start_time=STARTED)
    metrics.job_status_written(None, failed, CREATED, m)
    labels = {"outcome": "failed", "error_code": "DecodeFailed"}
    assert registry.get_sample_value("audioextract_jobs_finished_total", labels) == 1
    assert registry.get_sample_value("audioextract_job_queue_wait_seconds_count") == 1
    assert registry.get_sample_value("audioextract_media_seconds_total", {"format": "mp3"}) == 0


def test_a_rerun_waits_from_its_requeueing_not_from_creation(
    reg: tuple[CollectorRegistry, metrics.Metrics],
) -> None:
    registry, m = reg
    requeued = "2026-01-02T09:00:00Z"  # a day later, someone asked for retry-failed
    rerun = status(
        JobPhase.RUNNING,
        attempts=2,
        start_time="2026-01-02T09:00:05Z",
        conditions=[
            {
                "type": "Reconciling",
                "status": "True",
                "reason": "Running",
                "message": "job is running",
                "lastTransitionTime": requeued,
            }
        ],
    )
    metrics.job_status_written(JobPhase.QUEUED, rerun, CREATED, m)
    assert registry.get_sample_value("audioextract_job_queue_wait_seconds_sum") == 5


def test_invalid_spec_failure_without_start_has_no_runtime(
    reg: tuple[CollectorRegistry, metrics.Metrics],
) -> None:
    registry, m = reg
    failed = failure(ErrorCode.INVALID_SPEC)
    metrics.job_status_written(JobPhase.QUEUED, failed, CREATED, m)
    assert (
        registry.get_sample_value(
            "audioextract_jobs_finished_total", {"outcome": "failed", "error_code": "InvalidSpec"}
        )
        == 1
    )
    assert (
        registry.get_sample_value("audioextract_job_duration_seconds_count", {"outcome": "failed"})
        == 0
    )
    assert registry.get_sample_value("audioextract_job_queue_wait_seconds_count") == 0


def test_phase_gauges_fall_to_zero_when_objects_leave(
    reg: tuple[CollectorRegistry, metrics.Metrics],
) -> None:
    registry, m = reg
    metrics.phase_counts(["Running", "Running", None, "Failed"], ["Running"], m)
    assert registry.get_sample_value("audioextract_jobs", {"phase": "Running"}) == 2
    assert registry.get_sample_value("audioextract_jobs", {"phase": "Queued"}) == 1
    assert registry.get_sample_value("audioextract_batches", {"phase": "Running"}) == 1
    metrics.phase_counts([], [], m)
    assert registry.get_sample_value("audioextract_jobs", {"phase": "Running"}) == 0
    assert registry.get_sample_value("audioextract_batches", {"phase": "Suspended"}) == 0


def test_textfile_holds_only_the_domain_family_and_parses(
    reg: tuple[CollectorRegistry, metrics.Metrics], tmp_path: Path
) -> None:
    registry, m = reg
    metrics.leader_from(lambda: True, m)
    metrics.webhook_delivery("job.completed", "delivered", 0.2, m)
    path = tmp_path / "audioextract.prom"
    metrics.write_textfile(path, registry)
    families = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    assert "audioextract_webhook_deliveries" in families
    assert "audioextract_jobs" in families
    assert metrics.LEADER not in families  # a process gauge, not the batch's
    assert all(name.startswith("audioextract_") for name in families)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    assert path.stat().st_mode & 0o777 == 0o644


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_server_serves_metrics_and_probes_over_http(
    reg: tuple[CollectorRegistry, metrics.Metrics],
) -> None:
    registry, m = reg
    checks = {"kopf": False, "lease": True}

    async def scenario() -> dict[str, tuple[int, str]]:
        server = metrics.MetricsServer(
            "127.0.0.1",
            0,
            live=lambda: {"tasks": True},
            ready=lambda: dict(checks),
            registry=registry,
        )
        await server.start()
        base = f"http://127.0.0.1:{server.port}"
        try:
            seen = {}
            for path in ("/metrics", "/healthz", "/readyz"):
                seen[path] = await asyncio.to_thread(_get, base + path)
            checks["kopf"] = True
            seen["/readyz later"] = await asyncio.to_thread(_get, base + "/readyz")
            return seen
        finally:
            await server.stop()

    metrics.reconcile_error("Batch", m)
    seen = asyncio.run(scenario())
    code, body = seen["/metrics"]
    assert code == 200
    assert 'audioextract_reconcile_errors_total{kind="Batch"} 1.0' in body
    assert seen["/healthz"] == (200, "[+]tasks ok\nok\n")
    assert seen["/readyz"] == (503, "[-]kopf failed\n[+]lease ok\nnot ok\n")
    assert seen["/readyz later"][0] == 200


def test_delivery_outcome_labels_are_the_dispatchers_verdicts() -> None:
    from audioextract.webhooks.delivery import Verdict

    assert set(metrics.DELIVERY_OUTCOMES) == {str(v) for v in Verdict}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"AUDIOEXTRACT_METRICS_PORT": "taken"}, "AUDIOEXTRACT_METRICS_PORT: cannot listen on"),
        ({"AUDIOEXTRACT_LOG_FORMAT": "xml"}, "AUDIOEXTRACT_LOG_FORMAT: Input should be"),
        ({"AUDIOEXTRACT_METRICS_PORT": "70000"}, "AUDIOEXTRACT_METRICS_PORT: Input should be"),
        # A cross-field check names its own variables.
        (
            {"AUDIOEXTRACT_DEFAULT_LIMITS": '{"memory": "64Gi"}'},
            "audio-extract operator: AUDIOEXTRACT_DEFAULT_REQUESTS/LIMITS: ",
        ),
    ],
)
def test_operator_refuses_bad_metrics_and_log_settings_with_exit_2(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        'clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]\n'
        "users: [{name: u, user: {token: x}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        if env.get("AUDIOEXTRACT_METRICS_PORT") == "taken":
            env = {**env, "AUDIOEXTRACT_METRICS_PORT": str(taken.getsockname()[1])}
        run = subprocess.run(
            [sys.executable, "-m", "audioextract", "operator", "--standalone", "-n", "x"],
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("AUDIOEXTRACT_")},
                "KUBECONFIG": str(kubeconfig),
                "AUDIOEXTRACT_METRICS_ADDRESS": "127.0.0.1",
                **env,
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert run.returncode == 2, run.stderr
    assert expected in run.stderr
    assert "Traceback" not in run.stderr
