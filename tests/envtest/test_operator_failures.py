"""Failure paths through the real Job controller, with the operator's own Job manifests.

The worker runs for real (fake kubelet); the Job controller applies the operator's
``backoffLimit`` and ``podFailurePolicy`` and writes Job status. Finished Jobs are kept
(``AUDIOEXTRACT_JOB_CLEANUP_DELAY_SECONDS``) so the tests can read what the Job
controller decided, not only what the operator recorded.
"""

import json
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest

from audioextract.api.constants import ErrorCode
from tests.envtest.operator_helpers import (
    GROUP,
    VERSION,
    make_video,
    make_video_only,
    phase_is,
)
from tests.envtest.operator_process import OperatorProcess
from tests.support.controlplane import ControlPlane
from tests.support.http_server import MediaServer, serve
from tests.support.kubelet import FakeKubelet
from tests.support.wait import wait_for

KEEP_JOBS_SECONDS = "600"


@pytest.fixture
def custom(api_client: kubernetes.client.ApiClient) -> Any:
    return kubernetes.client.CustomObjectsApi(api_client)


@pytest.fixture
def core(api_client: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(api_client)


@pytest.fixture
def server(kubelet: FakeKubelet) -> Iterator[MediaServer]:
    root = kubelet.volume_dir("web")
    make_video(root / "a.mp4", 1.0)
    make_video(root / "long.mp4", 10.0)  # ~130 KB: /slow/ needs ~13 s for it
    with serve(root) as srv:
        yield srv


@pytest.fixture
def op(
    controller_manager: ControlPlane, crds: list[str], namespace: str, kubelet: FakeKubelet
) -> Iterator[OperatorProcess]:
    kubelet.volume_dir("out")
    env = {
        "AUDIOEXTRACT_ALLOW_NETWORKS": "127.0.0.0/8",  # the test's HTTP server (docs/settings.md)
        "AUDIOEXTRACT_JOB_CLEANUP_DELAY_SECONDS": KEEP_JOBS_SECONDS,
    }
    with OperatorProcess(controller_manager, namespace, env) as proc:
        yield proc
        proc.assert_healthy()


def extraction_job(name: str, source: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ExtractionJob",
        "metadata": {"name": name},
        "spec": {
            "source": source,
            "output": {"format": "mp3", "destination": {"volume": {"claimName": "out"}}},
            **spec,
        },
    }


def read_job(api_client: kubernetes.client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    batch = kubernetes.client.BatchV1Api(api_client)
    data: dict[str, Any] = json.loads(
        batch.read_namespaced_job(name, namespace, _preload_content=False).data
    )
    return data


def job_condition(job: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in job.get("status", {}).get("conditions") or []:
        if c["type"] == ctype and c["status"] == "True":
            return dict(c)
    return None


def pods_of(core: kubernetes.client.CoreV1Api, namespace: str, job: str) -> list[dict[str, Any]]:
    response = core.list_namespaced_pod(
        namespace, label_selector=f"batch.kubernetes.io/job-name={job}", _preload_content=False
    )
    return list(json.loads(response.data)["items"])


def exit_code(pod: dict[str, Any]) -> int:
    return int(pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"])


@pytest.mark.parametrize(
    ("source", "code", "exit"),
    [
        ("video-only.mp4", ErrorCode.NO_AUDIO_STREAM, 13),
        ("corrupt.mp4", ErrorCode.DECODE_FAILED, 14),
    ],
)
def test_permanent_worker_error_fails_at_once_despite_retries(
    namespace: str,
    kubelet: FakeKubelet,
    op: OperatorProcess,
    custom: Any,
    core: kubernetes.client.CoreV1Api,
    api_client: kubernetes.client.ApiClient,
    source: str,
    code: str,
    exit: int,
) -> None:
    media = kubelet.volume_dir("media")
    make_video_only(media / "video-only.mp4")
    (media / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 50)
    body = extraction_job("perm", {"volume": {"claimName": "media", "path": source}}, retries=2)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "extractionjobs", body)

    ej = wait_for(
        phase_is(custom, namespace, "perm", "Failed", plural="extractionjobs"),
        timeout=60,
        interval=0.3,
        what="ExtractionJob Failed",
    )
    error = ej["status"]["error"]
    assert (error["code"], error["retryable"]) == (code, False), error
    assert ej["status"]["attempts"] == 1 and ej["status"]["jobName"] == "perm-1"
    # The Job controller failed the Job on the exit code (podFailurePolicy FailJob)
    # without using any of its backoffLimit of 2.
    job = read_job(api_client, namespace, "perm-1")
    assert job["spec"]["backoffLimit"] == 2
    failed = job_condition(job, "Failed")
    assert failed is not None and failed["reason"] == "PodFailurePolicy", job["status"]
    assert job["status"].get("failed") == 1 and not job["status"].get("succeeded")
    (pod,) = pods_of(core, namespace, "perm-1")
    assert exit_code(pod) == exit
    assert list(kubelet.runs) == [pod["metadata"]["name"]]  # exactly one Pod ever ran


def test_transient_source_error_is_retried_by_the_job(
    namespace: str,
    kubelet: FakeKubelet,
    server: MediaServer,
    op: OperatorProcess,
    custom: Any,
    core: kubernetes.client.CoreV1Api,
    api_client: kubernetes.client.ApiClient,
) -> None:
    url = server.url("flaky/1/a.mp4")  # 503 for the first GET, then the file
    body = extraction_job("flaky", {"url": url}, retries=2)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "extractionjobs", body)

    # The second Pod comes after the Job controller's failure backoff (~10 s).
    ej = wait_for(
        phase_is(custom, namespace, "flaky", "Succeeded", plural="extractionjobs"),
        timeout=60,
        interval=0.3,
        what="ExtractionJob Succeeded",
    )
    assert ej["status"]["result"]["format"] == "mp3"
    assert "error" not in ej["status"]
    # One run of the ExtractionJob; inside it the Job retried the Pod.
    assert ej["status"]["attempts"] == 1 and ej["status"]["jobName"] == "flaky-1"
    job = read_job(api_client, namespace, "flaky-1")
    assert job_condition(job, "Complete") is not None, job["status"]
    assert (job["status"].get("failed"), job["status"].get("succeeded")) == (1, 1)
    pods = sorted(pods_of(core, namespace, "flaky-1"), key=lambda p: p["metadata"]["name"])
    assert sorted(exit_code(p) for p in pods) == [0, 20]  # SourceUnreachable, then success
    assert len(kubelet.runs) == 2
    assert server.flaky_seen["/flaky/1/a.mp4"] >= 2


def test_timeout_seconds_gives_timeout_without_retries(
    namespace: str,
    kubelet: FakeKubelet,
    server: MediaServer,
    op: OperatorProcess,
    custom: Any,
    core: kubernetes.client.CoreV1Api,
    api_client: kubernetes.client.ApiClient,
) -> None:
    url = server.url("slow/long.mp4")  # trickles ~10 KB/s: needs far longer than 2 s
    body = extraction_job("slow", {"url": url}, retries=2, timeoutSeconds=2)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "extractionjobs", body)

    ej = wait_for(
        phase_is(custom, namespace, "slow", "Failed", plural="extractionjobs"),
        timeout=60,
        interval=0.3,
        what="ExtractionJob Failed",
    )
    error = ej["status"]["error"]
    assert (error["code"], error["retryable"]) == (ErrorCode.TIMEOUT, False), error
    # The worker's own path: it stopped ffmpeg at timeoutSeconds and exited 16, which the
    # podFailurePolicy treats as permanent. The Job's activeDeadlineSeconds backstop,
    # (retries + 1) x (timeoutSeconds + start grace), is minutes away and not involved.
    job = read_job(api_client, namespace, "slow-1")
    assert job["spec"]["activeDeadlineSeconds"] > 60
    failed = job_condition(job, "Failed")
    assert failed is not None and failed["reason"] == "PodFailurePolicy", job["status"]
    (pod,) = pods_of(core, namespace, "slow-1")
    assert exit_code(pod) == 16
    assert "timeoutSeconds" in error["message"]


def test_disrupted_pod_does_not_count_against_retries(
    namespace: str,
    kubelet: FakeKubelet,
    server: MediaServer,
    op: OperatorProcess,
    custom: Any,
    core: kubernetes.client.CoreV1Api,
    api_client: kubernetes.client.ApiClient,
) -> None:
    path = "/stall/1/a.mp4"  # the first GET never answers: the first worker is busy
    body = extraction_job("evicted", {"url": server.url(path)}, retries=0)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "extractionjobs", body)
    (first,) = wait_for(lambda: pods_of(core, namespace, "evicted-1"), what="the first Pod")
    first_name = first["metadata"]["name"]
    wait_for(lambda: server.flaky_seen.get(path), what="the first worker to request the source")
    # Running is recorded once the Job counts the worker's Pod ready (docs/operator.md).
    wait_for(
        phase_is(custom, namespace, "evicted", "Running", plural="extractionjobs"),
        timeout=30,
        interval=0.2,
        what="ExtractionJob Running",
    )

    # The Eviction API sets DisruptionTarget (with a lastTransitionTime) and deletes the
    # Pod; the fake kubelet kills the worker and reports Failed, exit code 137.
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": first_name, "namespace": namespace},
    }
    core.create_namespaced_pod_eviction(first_name, namespace, eviction, _preload_content=False)

    # With retries=0 a counted failure would fail the Job; the podFailurePolicy's Ignore
    # rule lets the replacement (after the ~10 s pod failure backoff) run instead.
    ej = wait_for(
        phase_is(custom, namespace, "evicted", "Succeeded", plural="extractionjobs"),
        timeout=60,
        interval=0.3,
        what="ExtractionJob Succeeded on the replacement Pod",
    )
    assert ej["status"]["attempts"] == 1 and ej["status"]["result"]["format"] == "mp3"
    job = read_job(api_client, namespace, "evicted-1")
    assert job["spec"]["backoffLimit"] == 0
    assert job_condition(job, "Complete") is not None, job["status"]
    assert job["status"].get("failed", 0) == 0 and job["status"]["succeeded"] == 1
    assert len(kubelet.runs) == 2
    assert kubelet.runs[first_name].killed and kubelet.runs[first_name].exit_code == 137
    (second,) = set(kubelet.runs) - {first_name}
    assert kubelet.runs[second].exit_code == 0
