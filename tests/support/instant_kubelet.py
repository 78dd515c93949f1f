"""An instant fake kubelet: every worker Pod of a namespace succeeds at once with a valid result.

For tests of the operator's control loop at scale on the real control plane, where
running ffmpeg 1,000 times would only measure ffmpeg. Like the scheduler it binds each
new Pod to its own Node (registered Ready, so the Pod garbage collector does not take
the Pods of a Node that does not exist; ``pods/binding``), then, like a kubelet, reports it ``Succeeded``
with the worker container ``terminated`` (exit 0) and a result JSON in the termination
message, as the worker writes it. The real Job controller then completes the Job.

Pods are handled by a small thread pool, so the kubelet side keeps up with the API
server; every Pod it completed is recorded in :attr:`InstantKubelet.completed`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import kubernetes.client
import kubernetes.watch
from kubernetes.client.exceptions import ApiException


def result_for(job_name: str) -> dict[str, Any]:
    """The worker's result for the Job ``job_name``: deterministic, valid, small."""
    return {
        "uri": f"s3://audio/out/{job_name}.mp3",
        "sizeBytes": 1000 + len(job_name),
        "durationSeconds": 12.5,
        "format": "mp3",
        "codec": "mp3",
        "sampleRate": 44100,
        "channels": 2,
        "sha256": hashlib.sha256(job_name.encode()).hexdigest(),
        "streamCopied": False,
    }


class InstantKubelet:
    """Completes the Pods of ``namespace`` as soon as they appear."""

    def __init__(self, api_client: kubernetes.client.ApiClient, namespace: str, threads: int = 8):
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.namespace = namespace
        self.node = f"instant-{namespace}"[:63]
        self.completed: set[str] = set()
        self.errors: list[str] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="instant-kubelet")
        self._watch = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                for event in self._watch.stream(
                    self.core.list_namespaced_pod, self.namespace, timeout_seconds=60
                ):
                    pod = event["object"]
                    name = pod.metadata.name
                    if event["type"] == "DELETED" or pod.status.phase in ("Succeeded", "Failed"):
                        continue
                    with self._lock:
                        if name in self._seen:
                            continue
                        self._seen.add(name)
                    self._pool.submit(self._complete, pod)
            except Exception as exc:  # a dropped watch: list and watch again
                if not self._stopped.is_set():
                    self.errors.append(f"watch: {exc}")

    def _complete(self, pod: Any) -> None:
        name = pod.metadata.name
        job = (pod.metadata.labels or {}).get("batch.kubernetes.io/job-name", name)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            if not pod.spec.node_name:
                self.core.create_namespaced_binding(
                    self.namespace,
                    {
                        "metadata": {"name": name},
                        "target": {"apiVersion": "v1", "kind": "Node", "name": self.node},
                    },
                    _preload_content=False,
                )
            message = json.dumps({"result": result_for(job)}, separators=(",", ":"))
            container = pod.spec.containers[0].name
            self.core.patch_namespaced_pod_status(
                name,
                self.namespace,
                {
                    "status": {
                        "phase": "Succeeded",
                        "startTime": now,
                        "conditions": [
                            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                            {"type": "Ready", "status": "False", "lastTransitionTime": now,
                             "reason": "PodCompleted"},
                        ],
                        "containerStatuses": [
                            {
                                "name": container,
                                "image": pod.spec.containers[0].image,
                                "imageID": "",
                                "ready": False,
                                "restartCount": 0,
                                "started": False,
                                "state": {
                                    "terminated": {
                                        "exitCode": 0,
                                        "reason": "Completed",
                                        "message": message,
                                        "startedAt": now,
                                        "finishedAt": now,
                                    }
                                },
                            }
                        ],
                    }
                },
            )  # fmt: skip
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile (its Job was cleaned up): fine
                self.errors.append(f"{name}: {exc.status} {exc.reason}")
            return
        with self._lock:
            self.completed.add(name)

    def _register_node(self) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        capacity = {"cpu": "64", "memory": "256Gi", "pods": "5000"}
        self.core.create_node(
            {
                "metadata": {"name": self.node, "labels": {"kubernetes.io/hostname": self.node}},
                "status": {"capacity": capacity, "allocatable": capacity, "conditions": [ready]},
            }
        )

    def __enter__(self) -> InstantKubelet:
        self._register_node()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._watch.stop()  # type: ignore[no-untyped-call]
        self._thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            self.core.delete_node(self.node)
        except ApiException as exc:
            if exc.status != 404:
                raise
