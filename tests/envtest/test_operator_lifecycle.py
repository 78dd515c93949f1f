"""Suspend, Kueue, failurePolicy and ttlSecondsAfterFinished against a real control plane."""

import time
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest

from tests.envtest.operator_helpers import (
    DEST,
    GROUP,
    JOB_SELECTOR,
    VERSION,
    batch_manifest,
    get,
    make_video,
    phase_is,
)
from tests.envtest.operator_process import OperatorProcess
from tests.support.controlplane import ControlPlane
from tests.support.kubelet import FakeKubelet
from tests.support.wait import wait_for


@pytest.fixture
def op(
    controller_manager: ControlPlane, crds: list[str], namespace: str
) -> Iterator[OperatorProcess]:
    with OperatorProcess(
        controller_manager, namespace, {"AUDIOEXTRACT_DEFAULT_DESTINATION": DEST}
    ) as proc:
        yield proc
        proc.assert_healthy()


@pytest.fixture
def custom(api_client: kubernetes.client.ApiClient) -> Any:
    return kubernetes.client.CustomObjectsApi(api_client)


def test_suspend_admits_nothing_until_resumed(
    namespace: str, kubelet: FakeKubelet, op: OperatorProcess, custom: Any, api_client: Any
) -> None:
    make_video(kubelet.volume_dir("media") / "a.mp4")
    kubelet.volume_dir("out")
    jobs = [{"name": "a", "source": {"volume": {"claimName": "media", "path": "a.mp4"}}}]
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "batches", batch_manifest("paused", jobs, suspend=True)
    )
    batch = wait_for(
        phase_is(custom, namespace, "paused", "Suspended"), timeout=30, what="Suspended"
    )
    conds = {c["type"]: c["status"] for c in batch["status"]["conditions"]}
    assert conds["Suspended"] == "True" and conds["Reconciling"] == "False"
    time.sleep(3)
    batch_api = kubernetes.client.BatchV1Api(api_client)
    assert not batch_api.list_namespaced_job(namespace, label_selector=JOB_SELECTOR).items
    assert get(custom, namespace, "extractionjobs", "paused-a")["status"]["phase"] == "Queued"
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "batches", "paused", {"spec": {"suspend": False}}
    )
    batch = wait_for(
        phase_is(custom, namespace, "paused", "Succeeded"), timeout=60, what="Succeeded"
    )
    assert batch["status"]["observedGeneration"] == 2


def test_kueue_jobs_are_created_suspended_and_shown_queued(
    namespace: str, op: OperatorProcess, custom: Any, api_client: Any
) -> None:
    jobs = [{"name": "a", "source": {"url": "https://example.com/a.mp4"}}]
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "batches", batch_manifest("queued", jobs, queueName="team-a")
    )
    batch_api = kubernetes.client.BatchV1Api(api_client)
    (job,) = wait_for(
        lambda: batch_api.list_namespaced_job(namespace, label_selector=JOB_SELECTOR).items,
        timeout=30,
        what="the Job",
    )
    assert job.spec.suspend is True
    assert job.metadata.labels["kueue.x-k8s.io/queue-name"] == "team-a"
    assert job.spec.template.spec.containers[0].resources.requests
    time.sleep(3)  # no Kueue here: the Job stays suspended, and nobody unsuspends it
    ej = get(custom, namespace, "extractionjobs", "queued-a")
    assert ej["status"]["phase"] == "Queued" and ej["status"]["jobName"] == job.metadata.name
    assert batch_api.read_namespaced_job(job.metadata.name, namespace).spec.suspend is True
    assert get(custom, namespace, "batches", "queued")["status"]["phase"] == "Queued"


def test_failure_policy_cancels_the_rest_and_ttl_deletes_the_batch(
    namespace: str, kubelet: FakeKubelet, op: OperatorProcess, custom: Any
) -> None:
    kubelet.volume_dir("media")
    kubelet.volume_dir("out")
    jobs = [
        {"name": f"j{i}", "source": {"volume": {"claimName": "media", "path": f"missing{i}.mp4"}}}
        for i in range(3)
    ]
    manifest = batch_manifest(
        "doomed", jobs, parallelism=1, failurePolicy={"maxFailedJobs": 0}, ttlSecondsAfterFinished=4
    )
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "batches", manifest)
    batch = wait_for(phase_is(custom, namespace, "doomed", "Failed"), timeout=60, what="Failed")
    st = batch["status"]
    assert (st["failed"], st["total"]) == (3, 3)
    codes = sorted(e["error"]["code"] for e in st["jobs"])
    assert codes == ["Cancelled", "Cancelled", "SourceNotFound"], codes
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Failed"]["reason"] == "MaxFailedJobsExceeded"
    assert len(kubelet.runs) == 1  # the cancelled jobs never ran

    def gone() -> bool:
        try:
            get(custom, namespace, "batches", "doomed")
        except kubernetes.client.exceptions.ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, timeout=30, what="Batch deleted by its TTL")


def test_standalone_extraction_job_runs_and_its_job_is_cleaned_up(
    namespace: str, kubelet: FakeKubelet, op: OperatorProcess, custom: Any, api_client: Any
) -> None:
    make_video(kubelet.volume_dir("media") / "solo.mp4")
    kubelet.volume_dir("out")
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ExtractionJob",
        "metadata": {"name": "solo"},
        "spec": {
            "source": {"volume": {"claimName": "media", "path": "solo.mp4"}},
            "output": {"format": "flac", "destination": {"volume": {"claimName": "out"}}},
        },
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "extractionjobs", body)

    def succeeded() -> dict[str, Any] | None:
        ej = get(custom, namespace, "extractionjobs", "solo")
        return ej if (ej.get("status") or {}).get("phase") == "Succeeded" else None

    ej = wait_for(succeeded, timeout=60, interval=0.3, what="ExtractionJob Succeeded")
    result = ej["status"]["result"]
    assert result["format"] == "flac" and result["uri"] == "volume://out/solo.flac"
    assert ej["status"]["jobName"] == "solo-1" and ej["status"]["attempts"] == 1
    batch_api = kubernetes.client.BatchV1Api(api_client)
    # The finished Job is kept for Kubernetes' TTL controller, not deleted by the operator.
    (job,) = batch_api.list_namespaced_job(namespace, label_selector=JOB_SELECTOR).items
    assert job.metadata.name == "solo-1" and job.status.succeeded == 1
    assert job.spec.ttl_seconds_after_finished == 3600
