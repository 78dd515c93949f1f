"""The operator's side of hostile input and secrets, on a real control plane: the task
reaches the worker in a Secret (never in the Job's environment), and a job asking for
resources outside the operator's bounds fails with InvalidSpec before any Job exists."""

import base64
import json
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest

from tests.envtest.operator_helpers import DEST, GROUP, VERSION, get, make_video
from tests.envtest.operator_process import OperatorProcess
from tests.support.controlplane import ControlPlane
from tests.support.kubelet import FakeKubelet
from tests.support.wait import wait_for

SIGNED = "X-Amz-Signature=topsecret"


@pytest.fixture
def operator(
    controller_manager: ControlPlane, crds: list[str], namespace: str
) -> Iterator[OperatorProcess]:
    env = {
        "AUDIOEXTRACT_DEFAULT_DESTINATION": DEST,
        # Keep finished Jobs a while so their spec can be read.
        "AUDIOEXTRACT_JOB_CLEANUP_DELAY_SECONDS": "30",
        "AUDIOEXTRACT_MAX_LIMITS": '{"memory": "2Gi"}',
    }
    with OperatorProcess(controller_manager, namespace, env) as op:
        yield op
        op.assert_healthy()


def _ej(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ExtractionJob",
        "metadata": {"name": name},
        "spec": spec,
    }


def test_task_travels_in_a_secret(
    namespace: str,
    kubelet: FakeKubelet,
    operator: OperatorProcess,
    api_client: kubernetes.client.ApiClient,
) -> None:
    make_video(kubelet.volume_dir("media") / "a.mp4", 1.0)
    kubelet.volume_dir("out")
    custom: Any = kubernetes.client.CustomObjectsApi(api_client)
    core = kubernetes.client.CoreV1Api(api_client)
    batch_api = kubernetes.client.BatchV1Api(api_client)
    # A tag carries the "credential" here: the source is a volume, so the job runs.
    spec = {
        "source": {"volume": {"claimName": "media", "path": "a.mp4"}},
        "output": {"format": "mp3", "tags": {"comment": SIGNED}},
    }
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "extractionjobs", _ej("secret-task", spec)
    )
    wait_for(
        lambda: (
            (get(custom, namespace, "extractionjobs", "secret-task").get("status") or {}).get(
                "phase"
            )
            == "Succeeded"
        ),
        timeout=120,
        what="ExtractionJob Succeeded with its task from a Secret",
    )
    jobs = batch_api.list_namespaced_job(namespace).items
    assert jobs, "the Job is kept for the cleanup delay"
    job = api_client.sanitize_for_serialization(jobs[0])
    assert "topsecret" not in json.dumps(job)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert "AUDIOEXTRACT_TASK" not in {e["name"] for e in container.get("env", [])}
    secret = core.read_namespaced_secret(job["metadata"]["name"], namespace)
    assert secret.immutable is True
    assert [o.kind for o in secret.metadata.owner_references] == ["ExtractionJob"]
    assert SIGNED in base64.b64decode(secret.data["task.json"]).decode()
    # Deleting the ExtractionJob takes the Secret with it (garbage collector).
    custom.delete_namespaced_custom_object(
        GROUP, VERSION, namespace, "extractionjobs", "secret-task"
    )

    def secret_gone() -> bool:
        try:
            core.read_namespaced_secret(job["metadata"]["name"], namespace)
        except kubernetes.client.ApiException as exc:
            return exc.status == 404
        return False

    wait_for(secret_gone, timeout=60, what="task Secret garbage-collected")


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        ({"limits": {}}, "resources.limits.memory: a limit is required"),
        ({"limits": {"memory": "8Gi"}}, "resources.limits.memory: 8Gi is above"),
    ],
)
def test_resources_out_of_bounds_are_invalid_spec(
    namespace: str,
    operator: OperatorProcess,
    api_client: kubernetes.client.ApiClient,
    resources: dict[str, Any],
    field: str,
) -> None:
    custom: Any = kubernetes.client.CustomObjectsApi(api_client)
    spec = {"source": {"url": "https://cdn.example.com/a.mp4"}, "resources": resources}
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "extractionjobs", _ej("greedy", spec)
    )

    def failed() -> dict[str, Any] | None:
        status = get(custom, namespace, "extractionjobs", "greedy").get("status") or {}
        return status if status.get("phase") == "Failed" else None

    status = wait_for(failed, timeout=60, what="ExtractionJob Failed with InvalidSpec")
    assert status["error"]["code"] == "InvalidSpec"
    assert field in status["error"]["message"]
    assert status["error"]["retryable"] is False
    batch_api = kubernetes.client.BatchV1Api(api_client)
    assert batch_api.list_namespaced_job(namespace).items == [], "no Job may be created"
