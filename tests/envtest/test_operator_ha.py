"""Two operator instances: only the Lease holder acts; caps hold across a leader change."""

from typing import Any

import kubernetes.client

from tests.envtest.operator_helpers import (
    DEST,
    GROUP,
    JOB_SELECTOR,
    VERSION,
    JobWatcher,
    batch_manifest,
    get,
    make_video,
)
from tests.envtest.operator_process import OperatorProcess
from tests.support.controlplane import ControlPlane
from tests.support.kubelet import FakeKubelet
from tests.support.wait import wait_for

LEASE = "audio-extract-operator"


def test_lease_leader_acts_alone_and_hands_over(
    controller_manager: ControlPlane,
    crds: list[str],
    namespace: str,
    kubelet: FakeKubelet,
    api_client: kubernetes.client.ApiClient,
) -> None:
    media = kubelet.volume_dir("media")
    for i in range(4):
        make_video(media / f"v{i}.mp4", 2.0)
    kubelet.volume_dir("out")
    custom: Any = kubernetes.client.CustomObjectsApi(api_client)
    coordination = kubernetes.client.CoordinationV1Api(api_client)
    batch_api = kubernetes.client.BatchV1Api(api_client)
    env = {
        "AUDIOEXTRACT_DEFAULT_DESTINATION": DEST,
        "AUDIOEXTRACT_MAX_CONCURRENT_JOBS": "1",
        "AUDIOEXTRACT_LEASE_DURATION_SECONDS": "5",
    }
    a = OperatorProcess(
        controller_manager, namespace, {**env, "AUDIOEXTRACT_POD_NAME": "op-a"}, standalone=False
    )
    b = OperatorProcess(
        controller_manager, namespace, {**env, "AUDIOEXTRACT_POD_NAME": "op-b"}, standalone=False
    )
    with a, b, JobWatcher(batch_api, namespace) as watcher:
        holder = wait_for(
            lambda: _holder(coordination, namespace), timeout=30, what="a Lease holder"
        )
        assert holder in ("op-a", "op-b")
        leader, follower = (a, b) if holder == "op-a" else (b, a)
        # Both are ready (a standby is ready, docs/metrics.md); only the holder says it leads.
        wait_for(lambda: leader.metric("audioextract_leader") == 1, what="leader gauge 1")
        assert follower.metric("audioextract_leader") == 0
        assert follower.http_get("/readyz")[0] == 200
        assert leader.http_get("/readyz")[0] == 200
        jobs = [
            {"name": f"v{i}", "source": {"volume": {"claimName": "media", "path": f"v{i}.mp4"}}}
            for i in range(4)
        ]
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "batches", batch_manifest("ha", jobs)
        )
        # Let the leader start work, then stop it: the other instance must take over.
        wait_for(lambda: watcher.names, timeout=30, what="a first Job")
        leader.stop()
        wait_for(
            lambda: _holder(coordination, namespace) == ("op-b" if holder == "op-a" else "op-a"),
            timeout=30,
            what="the other instance takes the Lease",
        )

        def done() -> dict[str, Any] | None:
            obj = get(custom, namespace, "batches", "ha")
            return obj if (obj.get("status") or {}).get("phase") == "Succeeded" else None

        batch = wait_for(done, timeout=120, interval=0.5, what="Batch Succeeded after hand-over")
        assert batch["status"]["succeeded"] == 4
        assert watcher.max_active <= 1, watcher.max_active
        assert len(watcher.names) == 4, watcher.names  # no duplicate runs across the hand-over
        assert follower.alive()
        # The new leader says so, and counts what it observes (the standby counted nothing).
        assert follower.metric("audioextract_leader") == 1
        wait_for(
            lambda: follower.metric("audioextract_jobs", phase="Succeeded") == 4,
            what="the new leader's phase gauge",
        )
        # One Job per job, each finished and left to its TTL: no run was duplicated or
        # lost across the hand-over.
        finished = batch_api.list_namespaced_job(namespace, label_selector=JOB_SELECTOR).items
        assert len(finished) == 4
        assert all(j.status.succeeded == 1 for j in finished), [j.status for j in finished]


def _holder(api: kubernetes.client.CoordinationV1Api, namespace: str) -> str | None:
    try:
        lease = api.read_namespaced_lease(LEASE, namespace)
    except kubernetes.client.exceptions.ApiException:
        return None
    return lease.spec.holder_identity
