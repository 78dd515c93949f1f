"""The operator against a real control plane, with the real worker run by the fake kubelet."""

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml

from audioextract.api.constants import ErrorCode
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


@pytest.fixture
def custom(api_client: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(api_client)


@pytest.fixture
def media(kubelet: FakeKubelet) -> Path:
    root = kubelet.volume_dir("media")
    make_video(root / "a.mp4", 1.0)
    make_video(root / "b.mp4", 1.5)
    (root / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 50)
    kubelet.volume_dir("out")
    return root


@pytest.fixture
def operator(
    controller_manager: ControlPlane, crds: list[str], namespace: str
) -> Iterator[OperatorProcess]:
    env = {"AUDIOEXTRACT_DEFAULT_DESTINATION": DEST, "AUDIOEXTRACT_MAX_JOBS_PER_BATCH": "10"}
    with OperatorProcess(controller_manager, namespace, env) as op:
        yield op
        op.assert_healthy()


def test_batch_of_three_partially_succeeds_then_retry_and_delete(
    controller_manager: ControlPlane,
    namespace: str,
    kubelet: FakeKubelet,
    media: Path,
    operator: OperatorProcess,
    custom: Any,
    api_client: kubernetes.client.ApiClient,
    tmp_path: Path,
) -> None:
    cp = controller_manager
    batch_api = kubernetes.client.BatchV1Api(api_client)
    vol = {"claimName": "media"}
    manifest = batch_manifest(
        "episode",
        [
            {"name": "good1", "source": {"volume": {**vol, "path": "a.mp4"}}},
            {"name": "good2", "source": {"volume": {**vol, "path": "b.mp4"}}},
            {"name": "bad", "source": {"volume": {**vol, "path": "bad.mp4"}}, "retries": 0},
        ],
        parallelism=2,
        defaults={"output": {"format": "mp3"}},
    )
    path = tmp_path / "batch.yaml"
    path.write_text(yaml.safe_dump(manifest))

    with JobWatcher(batch_api, namespace) as watcher:
        cp.kubectl("apply", "-n", namespace, "-f", str(path))

        def finished() -> dict[str, Any] | None:
            b = get(custom, namespace, "batches", "episode")
            return b if (b.get("status") or {}).get("phase") == "PartiallySucceeded" else None

        batch = wait_for(finished, timeout=120, interval=0.5, what="Batch PartiallySucceeded")
        st = batch["status"]
        assert (st["succeeded"], st["failed"], st["total"], st["queued"], st["running"]) == (
            2,
            1,
            3,
            0,
            0,
        )
        assert st["observedGeneration"] == batch["metadata"]["generation"]
        conds = {c["type"]: c for c in st["conditions"]}
        assert conds["Stalled"]["status"] == "True" and "'bad'" in conds["Stalled"]["message"]
        assert conds["Complete"]["status"] == "True" and conds["Ready"]["status"] == "False"
        assert conds["Reconciling"]["status"] == "False"
        assert all(
            c["observedGeneration"] == batch["metadata"]["generation"] for c in st["conditions"]
        )
        entries = {e["name"]: e for e in st["jobs"]}
        assert entries["bad"]["phase"] == "Failed"
        # No kopf state on the objects: no last-handled-configuration, no finalizer.
        assert not [a for a in batch["metadata"].get("annotations", {}) if a.startswith("kopf.")]
        assert not batch["metadata"].get("finalizers")

        bad = get(custom, namespace, "extractionjobs", "episode-bad")
        # The worker's own diagnosis, carried through podFailurePolicy and the termination message.
        assert bad["status"]["error"]["code"] == ErrorCode.DECODE_FAILED
        assert bad["status"]["error"]["retryable"] is False
        assert entries["bad"]["error"]["code"] == bad["status"]["error"]["code"]
        for key in ("good1", "good2"):
            ej = get(custom, namespace, "extractionjobs", f"episode-{key}")
            result = ej["status"]["result"]
            assert result["uri"].startswith("volume://out/audio/")
            written = kubelet.volume_dir("out") / result["uri"].removeprefix("volume://out/")
            assert hashlib.sha256(written.read_bytes()).hexdigest() == result["sha256"]
            assert result["format"] == "mp3" and ej["status"]["attempts"] == 1
            assert entries[key]["result"] == {
                k: result[k] for k in ("uri", "sizeBytes", "durationSeconds", "sha256")
            }
            ej_conds = {c["type"]: c["status"] for c in ej["status"]["conditions"]}
            assert (
                ej_conds["Ready"] == "True"
                and ej["status"]["observedGeneration"] == ej["metadata"]["generation"]
            )

        # Finished Jobs are kept for Kubernetes' TTL controller (kubectl logs works
        # meanwhile); the operator deletes none of them.
        finished = batch_api.list_namespaced_job(namespace, label_selector=JOB_SELECTOR).items
        assert sorted(j.metadata.name for j in finished) == [
            "episode-bad-1",
            "episode-good1-1",
            "episode-good2-1",
        ]
        assert {j.spec.ttl_seconds_after_finished for j in finished} == {3600}
        assert watcher.max_active <= 2, watcher.max_active
        assert len(watcher.names) == 3

        # Re-applying the unchanged Batch (a GitOps sync) runs nothing again.
        cp.kubectl("apply", "-n", namespace, "-f", str(path))
        time.sleep(4)
        assert len(watcher.names) == 3
        assert (
            get(custom, namespace, "batches", "episode")["status"]["phase"] == "PartiallySucceeded"
        )

        # Retry only what failed: one new run of the failed child, none of the others.
        cp.kubectl("annotate", "-n", namespace, "batch/episode", "audioextract.dev/retry-failed=1")

        def retried() -> dict[str, Any] | None:
            b = get(custom, namespace, "batches", "episode")
            ej = get(custom, namespace, "extractionjobs", "episode-bad")
            done = (b.get("status") or {}).get("phase") == "PartiallySucceeded"
            return (
                b
                if done
                and ej["status"].get("attempts") == 2
                and b["status"].get("retryToken") == "1"
                else None
            )

        wait_for(retried, timeout=60, interval=0.5, what="failed child re-run once")
        time.sleep(3)  # a second pass must not re-run it again for the same value
        assert watcher.names == {
            "episode-good1-1",
            "episode-good2-1",
            "episode-bad-1",
            "episode-bad-2",
        }
        for key in ("good1", "good2"):
            assert (
                get(custom, namespace, "extractionjobs", f"episode-{key}")["status"]["attempts"]
                == 1
            )

    # Deleting the Batch removes its children through the garbage collector.
    cp.kubectl("delete", "-n", namespace, "batch/episode", "--wait=false")
    wait_for(
        lambda: (
            not custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "extractionjobs")[
                "items"
            ]
        ),
        timeout=60,
        what="children garbage-collected",
    )
    # ... and, below them, the finished Jobs kept for their TTL.
    wait_for(
        lambda: not batch_api.list_namespaced_job(namespace, label_selector=JOB_SELECTOR).items,
        timeout=60,
        what="Jobs garbage-collected with their ExtractionJobs",
    )


def _create_and_wait_failed(
    custom: Any, namespace: str, name: str, jobs: list[dict[str, Any]]
) -> dict[str, Any]:
    """Create a Batch and wait until the operator has set it Failed."""
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "batches", batch_manifest(name, jobs)
    )

    def failed() -> dict[str, Any] | None:
        b = get(custom, namespace, "batches", name)
        return b if (b.get("status") or {}).get("phase") == "Failed" else None

    batch: dict[str, Any] = wait_for(failed, timeout=30, interval=0.3, what="Batch Failed")
    return batch


def test_two_jobs_writing_one_object_fail_naming_both(
    namespace: str, operator: OperatorProcess, custom: Any
) -> None:
    jobs = [
        {"name": n, "source": {"url": f"https://example.com/{n}.mp4"}, "output": {"filename": "x"}}
        for n in ("a", "b")
    ]
    batch = _create_and_wait_failed(custom, namespace, "same-output", jobs)
    stalled = {c["type"]: c for c in batch["status"]["conditions"]}["Stalled"]
    assert stalled["reason"] == "InvalidSpec"
    assert "spec.jobs[1] (b) and spec.jobs[0] (a) both write" in stalled["message"]
    assert not custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "extractionjobs")[
        "items"
    ]


def test_invalid_batch_fails_with_a_condition_naming_the_field(
    namespace: str, operator: OperatorProcess, custom: Any
) -> None:
    jobs = [{"name": f"j{i}", "source": {"url": f"https://example.com/{i}.mp4"}} for i in range(11)]
    batch = _create_and_wait_failed(custom, namespace, "too-big", jobs)
    conds = {c["type"]: c for c in batch["status"]["conditions"]}
    assert (
        conds["Stalled"]["reason"] == "InvalidSpec" and "spec.jobs" in conds["Stalled"]["message"]
    )
    assert batch["status"]["observedGeneration"] == batch["metadata"]["generation"]
    assert not custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "extractionjobs")[
        "items"
    ]
