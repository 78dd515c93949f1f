"""The fake kubelet with the real Job controller: what the operator will rely on."""

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
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


def disrupt_by_hand(jobs: Jobs, name: str) -> None:
    """What eviction does: a DisruptionTarget condition, then a graceful delete.

    lastTransitionTime matters: without it the disruption controller treats the
    condition as stale at once and flips it to False before the Job controller sees it.
    """
    condition = {
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "EvictionByEvictionAPI",
        "message": "Eviction API: evicting",
        "lastTransitionTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    jobs.core.patch_namespaced_pod_status(
        name, jobs.namespace, {"status": {"conditions": [condition]}}
    )
    jobs.core.delete_namespaced_pod(name, jobs.namespace)


def disrupt_by_eviction_api(jobs: Jobs, name: str) -> None:
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": jobs.namespace},
    }
    # The response is a Status, which the generated client cannot read as an Eviction.
    jobs.core.create_namespaced_pod_eviction(name, jobs.namespace, eviction, _preload_content=False)


@pytest.mark.parametrize(
    "disrupt", [disrupt_by_hand, disrupt_by_eviction_api], ids=["by-hand", "eviction-api"]
)
def test_disruption_does_not_count_toward_backoff_limit(
    jobs: Jobs, kubelet: FakeKubelet, disrupt: Callable[[Jobs, str], None]
) -> None:
    # The first Pod marks the shared volume and sleeps until disrupted; its replacement
    # finds the mark and succeeds. backoffLimit 0: a counted failure would fail the Job.
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

    disrupt(jobs, first_name)

    # The replacement comes after the Job controller's failure backoff (10 s), although
    # the failure is ignored.
    jobs.wait_condition("evicted", "Complete", timeout=40)

    job = jobs.get("evicted")
    assert job["status"].get("failed", 0) == 0
    assert job["status"]["succeeded"] == 1
    assert len(kubelet.runs) == 2
    first_run = kubelet.runs[first_name]
    assert first_run.killed
    assert first_run.exit_code == 137
    (second_name,) = set(kubelet.runs) - {first_name}
    assert kubelet.runs[second_name].exit_code == 0
    assert first_name not in {p["metadata"]["name"] for p in jobs.pods("evicted")}


# -- the fake kubelet on its own (bare Pods: no controller manager needed) -------------


def pod_manifest(name: str, command: list[str], **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "main",
                    "image": "debian:trixie-slim",
                    "command": command,
                    "securityContext": RESTRICTED_CONTAINER_SECURITY,
                    **container,
                }
            ],
        },
    }


def read_pod(core: kubernetes.client.CoreV1Api, name: str, namespace: str) -> dict[str, Any]:
    response = core.read_namespaced_pod(name, namespace, _preload_content=False)
    return dict(json.loads(response.data))


def wait_phase(
    core: kubernetes.client.CoreV1Api, name: str, namespace: str, *phases: str
) -> dict[str, Any]:
    return wait_for(
        lambda: (pod := read_pod(core, name, namespace))["status"].get("phase") in phases and pod,
        what=f"Pod {name} in phase {'/'.join(phases)}",
    )


def test_env_secret_volumes_and_path_rewriting(
    api_client: kubernetes.client.ApiClient, namespace: str, kubelet: FakeKubelet
) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "creds"}, "stringData": {"token": "s3cr3t"}}
    )
    (kubelet.volume_dir("media") / "in.txt").write_text("hello")
    script = (
        'cp "$SOURCE" /scratch/copy && '
        'echo "$TOKEN $GREETING $(cat /scratch/copy)" > /dev/termination-log && '
        "cp /scratch/copy /media/out/result.txt"
    )
    pod = pod_manifest(
        "env",
        ["sh", "-c", script],
        env=[
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "NAME", "value": "world"},
            {"name": "GREETING", "value": "hi-$(NAME)"},
            {"name": "SOURCE", "value": "/media/in.txt"},
        ],
        volumeMounts=[
            {"name": "media", "mountPath": "/media"},
            {"name": "media", "mountPath": "/media/out", "subPath": "results"},
            {"name": "scratch", "mountPath": "/scratch"},
        ],
    )
    pod["spec"]["volumes"] = [
        {"name": "media", "persistentVolumeClaim": {"claimName": "media"}},
        {"name": "scratch", "emptyDir": {}},
    ]
    core.create_namespaced_pod(namespace, pod)

    done = wait_phase(core, "env", namespace, "Succeeded", "Failed")

    terminated = done["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0, kubelet.runs["env"].output
    assert terminated["message"] == "s3cr3t hi-world hello\n"
    assert (kubelet.volume_dir("media") / "results" / "result.txt").read_text() == "hello"
    run = kubelet.runs["env"]
    assert run.env["SOURCE"] == str(kubelet.volume_dir("media") / "in.txt")
    assert run.env["TOKEN"] == "s3cr3t"


def test_audio_extract_command_runs_the_console_script(
    api_client: kubernetes.client.ApiClient, namespace: str, kubelet: FakeKubelet
) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    pod = pod_manifest(
        "cli",
        ["audio-extract"],
        args=["crds", "--write", "/out"],
        volumeMounts=[{"name": "out", "mountPath": "/out"}],
    )
    pod["spec"]["volumes"] = [{"name": "out", "persistentVolumeClaim": {"claimName": "out"}}]
    core.create_namespaced_pod(namespace, pod)

    done = wait_phase(core, "cli", namespace, "Succeeded", "Failed")

    run = kubelet.runs["cli"]
    assert done["status"]["phase"] == "Succeeded", run.output
    assert run.argv[:3] == [sys.executable, "-m", "audioextract"]
    written = sorted(p.name for p in kubelet.volume_dir("out").iterdir())
    assert written == ["batches.audioextract.dev.yaml", "extractionjobs.audioextract.dev.yaml"]


def test_deleted_pod_is_killed_and_removed(
    api_client: kubernetes.client.ApiClient, namespace: str, kubelet: FakeKubelet
) -> None:
    core = kubernetes.client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, pod_manifest("sleeper", ["sleep", "60"]))
    running = wait_phase(core, "sleeper", namespace, "Running")
    conditions = {c["type"]: c["status"] for c in running["status"]["conditions"]}
    assert conditions == {
        "PodScheduled": "True",
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "ContainersReady": "True",
        "Ready": "True",
    }
    assert "running" in running["status"]["containerStatuses"][0]["state"]

    core.delete_namespaced_pod("sleeper", namespace)  # default grace period: 30 s

    def gone() -> bool:
        try:
            core.read_namespaced_pod("sleeper", namespace)
        except kubernetes.client.ApiException as e:
            return e.status == 404
        return False

    wait_for(gone, timeout=10, what="the Pod to be removed before its grace period ends")
    run = kubelet.runs["sleeper"]
    assert run.killed
    assert run.exit_code == 137
