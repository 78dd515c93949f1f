"""The fake kubelet with the real Job controller: what the operator will rely on."""

import json
from typing import Any

import kubernetes.client
import pytest

from tests.support.controlplane import ControlPlane
from tests.support.kubelet import FakeKubelet
from tests.support.wait import wait_for

RESTRICTED_CONTAINER_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
    "readOnlyRootFilesystem": True,
}


def job_manifest(
    name: str,
    script: str,
    *,
    backoff_limit: int = 0,
    security: dict[str, Any] | None = None,
    **job_spec: Any,
) -> dict[str, Any]:
    """A Job running ``sh -c script`` whose Pod template passes the restricted standard."""
    container = {
        "name": "main",
        "image": "debian:trixie-slim",
        "command": ["sh", "-c", script],
        "securityContext": RESTRICTED_CONTAINER_SECURITY if security is None else security,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "containers": [container],
                }
            },
            **job_spec,
        },
    }


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in obj.get("status", {}).get("conditions") or []:
        if c["type"] == ctype and c["status"] == "True":
            return dict(c)
    return None


class Jobs:
    def __init__(self, cp: ControlPlane, namespace: str) -> None:
        self.batch = kubernetes.client.BatchV1Api(cp.api_client)
        self.core = kubernetes.client.CoreV1Api(cp.api_client)
        self.namespace = namespace

    def create(self, manifest: dict[str, Any]) -> None:
        self.batch.create_namespaced_job(self.namespace, manifest)

    def get(self, name: str) -> dict[str, Any]:
        response = self.batch.read_namespaced_job(name, self.namespace, _preload_content=False)
        return dict(json.loads(response.data))

    def wait_condition(self, name: str, ctype: str, timeout: float = 30) -> dict[str, Any]:
        return wait_for(
            lambda: condition(self.get(name), ctype), timeout=timeout, what=f"Job {name} {ctype}"
        )

    def pods(self, name: str) -> list[dict[str, Any]]:
        response = self.core.list_namespaced_pod(
            self.namespace,
            label_selector=f"batch.kubernetes.io/job-name={name}",
            _preload_content=False,
        )
        return list(json.loads(response.data)["items"])


@pytest.fixture
def jobs(controller_manager: ControlPlane, namespace: str) -> Jobs:
    return Jobs(controller_manager, namespace)


def test_job_completes_and_termination_message_is_on_the_pod(
    jobs: Jobs, kubelet: FakeKubelet
) -> None:
    jobs.create(job_manifest("ok", """echo '{"ok":true}' > /dev/termination-log"""))

    jobs.wait_condition("ok", "Complete")

    (pod,) = jobs.pods("ok")
    assert pod["spec"]["nodeName"] == kubelet.node_name
    assert pod["status"]["phase"] == "Succeeded"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0
    assert terminated["reason"] == "Completed"
    assert json.loads(terminated["message"]) == {"ok": True}
    types = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert types["PodScheduled"] == "True"
    assert types["Initialized"] == "True"
    assert types["Ready"] == "False"
    assert types["ContainersReady"] == "False"
    assert jobs.get("ok")["status"]["succeeded"] == 1


def test_pod_failure_policy_fail_job_on_exit_code(jobs: Jobs, kubelet: FakeKubelet) -> None:
    manifest = job_manifest(
        "exit3",
        "echo permanent failure >&2; exit 3",
        backoff_limit=6,
        podFailurePolicy={
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {"containerName": "main", "operator": "In", "values": [3]},
                }
            ]
        },
    )
    manifest["spec"]["template"]["spec"]["containers"][0]["terminationMessagePolicy"] = (
        "FallbackToLogsOnError"
    )
    jobs.create(manifest)

    failed = jobs.wait_condition("exit3", "Failed")

    assert failed["reason"] == "PodFailurePolicy"
    job = jobs.get("exit3")
    assert job["status"]["failed"] == 1
    (pod,) = jobs.pods("exit3")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3
    assert terminated["reason"] == "Error"
    # Empty termination-log file + FallbackToLogsOnError: the tail of the output.
    assert terminated["message"] == "permanent failure\n"
    assert list(kubelet.runs) == [pod["metadata"]["name"]]


def test_non_compliant_pod_template_is_refused_in_restricted_namespace(
    jobs: Jobs, namespace: str
) -> None:
    # Nothing set: fine for baseline, not for restricted. (`privileged: true` would not
    # reach admission: without --allow-privileged the API server refuses it as invalid.)
    jobs.create(job_manifest("root", "true", security={}))

    def failed_create() -> list[Any]:
        events = jobs.core.list_namespaced_event(
            namespace, field_selector="involvedObject.kind=Job,involvedObject.name=root"
        ).items
        return [e for e in events if e.reason == "FailedCreate"]

    (event, *_) = wait_for(failed_create, what="FailedCreate event")
    assert 'violates PodSecurity "restricted:latest"' in event.message
    assert "allowPrivilegeEscalation" in event.message
    assert jobs.pods("root") == []


def test_active_deadline_kills_the_process(jobs: Jobs, kubelet: FakeKubelet) -> None:
    jobs.create(job_manifest("slow", "sleep 60", activeDeadlineSeconds=2))

    failed = jobs.wait_condition("slow", "Failed", timeout=30)

    assert failed["reason"] == "DeadlineExceeded"
    (run,) = kubelet.runs.values()
    assert run.finished.wait(timeout=10)
    assert run.killed
    assert run.exit_code == 137
    wait_for(lambda: jobs.pods("slow") == [], what="the Pod to be deleted")


def test_disruption_does_not_count_toward_backoff_limit(
    jobs: Jobs, kubelet: FakeKubelet, namespace: str
) -> None:
    # The first Pod marks the shared volume and sleeps until evicted; its replacement
    # finds the mark and succeeds.
    manifest = job_manifest(
        "evicted",
        "if [ -e /data/started ]; then exit 0; fi; touch /data/started; exec sleep 60",
        backoff_limit=0,
        podFailurePolicy={
            "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]
        },
    )
    pod_spec = manifest["spec"]["template"]["spec"]
    pod_spec["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "shared"}}]
    pod_spec["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    jobs.create(manifest)
    (first,) = wait_for(lambda: jobs.pods("evicted"), what="the first Pod")
    first_name = first["metadata"]["name"]
    wait_for(
        lambda: (kubelet.volume_dir("shared") / "started").exists(), what="the first run to start"
    )

    # What eviction does: the DisruptionTarget condition, then a graceful delete.
    jobs.core.patch_namespaced_pod_status(
        first_name,
        namespace,
        {
            "status": {
                "conditions": [
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "EvictionByEvictionAPI",
                        "message": "Eviction API: evicting",
                    }
                ]
            }
        },
    )
    jobs.core.delete_namespaced_pod(first_name, namespace)

    jobs.wait_condition("evicted", "Complete")

    job = jobs.get("evicted")
    assert job["status"].get("failed", 0) == 0
    assert job["status"]["succeeded"] == 1
    assert len(kubelet.runs) == 2
    first_run = kubelet.runs[first_name]
    assert first_run.killed
    assert first_run.exit_code == 137
    (second_name,) = set(kubelet.runs) - {first_name}
    assert kubelet.runs[second_name].exit_code == 0
