"""An instant kubelet for scale benchmarks: every Pod succeeds at once with a valid result.

Unlike ``tests/support/kubelet.py`` (which runs the real worker as a process), this one
runs nothing: it binds each new Pod of the watched namespaces to a fake Node and writes
a ``Succeeded`` status whose container terminated with exit code 0 and, as its
termination message, the JSON the worker writes (``audioextract.worker.main.result_json``)
for a plausible mp3. The real Job controller then completes the Job. Bind and status
writes run on a few threads so that the kubelet is never what limits a benchmark.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
import time
from datetime import UTC, datetime
from typing import Any

import kubernetes.client
from kubernetes.client.exceptions import ApiException

from audioextract.api.status import JobResult
from audioextract.worker.main import result_json

Pod = dict[str, Any]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fake_result(pod_name: str) -> str:
    """The termination message of a successful worker run for this Pod."""
    digest = hashlib.sha256(pod_name.encode()).hexdigest()
    result = JobResult(
        uri=f"s3://audio-out/bench/{pod_name}.mp3",
        size_bytes=4_718_592,
        duration_seconds=294.72,
        format="mp3",
        codec="mp3",
        bitrate=128_000,
        sample_rate=44_100,
        channels=2,
        sha256=digest,
        stream_copied=False,
    )
    return result_json(result)


class InstantKubelet:
    """Bind and complete the Pods of ``namespaces`` as soon as they appear."""

    def __init__(
        self, api_client: kubernetes.client.ApiClient, namespaces: list[str], threads: int = 8
    ) -> None:
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.namespaces = namespaces
        self.node_name = "instant-node"
        self.threads = threads
        self.completed = 0
        self.errors: list[str] = []
        self._queue: queue.Queue[Pod | None] = queue.Queue()
        self._stopping = threading.Event()
        self._done: set[str] = set()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._responses: list[Any] = []

    def start(self) -> InstantKubelet:
        """Register the Node, start one watch per namespace and the workers."""
        now = _now()
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node_name},
            "status": {
                "capacity": {"cpu": "1000", "memory": "1Ti", "pods": "100000"},
                "allocatable": {"cpu": "1000", "memory": "1Ti", "pods": "100000"},
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "instant kubelet",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ],
            },
        }
        with contextlib.suppress(ApiException):
            self.core.create_node(node)
        for ns in self.namespaces:
            self._spawn(self._watch, ns)
        for _ in range(self.threads):
            self._spawn(self._work)
        return self

    def stop(self) -> None:
        """Stop the threads (watches are closed) and delete the Node."""
        self._stopping.set()
        for _ in self._workers:
            self._queue.put(None)
        for response in self._responses:
            with contextlib.suppress(Exception):
                response.shutdown()
        for thread in self._workers:
            thread.join(timeout=5)
        with contextlib.suppress(ApiException):
            self.core.delete_node(self.node_name)

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._workers.append(thread)

    def _watch(self, namespace: str) -> None:
        version = ""
        while not self._stopping.is_set():
            try:
                if not version:
                    listed = self.core.list_namespaced_pod(namespace, _preload_content=False)
                    body = _json(listed)
                    version = body["metadata"]["resourceVersion"]
                    for pod in body["items"]:
                        self._offer(pod)
                response = self.core.list_namespaced_pod(
                    namespace,
                    watch=True,
                    resource_version=version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=300,
                    _preload_content=False,
                )
                self._responses.append(response)
                for line in response:
                    event = _loads(line)
                    if event["type"] == "ERROR":
                        version = ""
                        break
                    obj = event["object"]
                    version = obj["metadata"].get("resourceVersion", version)
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._offer(obj)
            except Exception as e:  # a closed or expired watch: list again
                if self._stopping.is_set():
                    return
                self.errors.append(f"watch {namespace}: {e}")
                version = ""
                time.sleep(0.5)

    def _offer(self, pod: Pod) -> None:
        meta, status = pod["metadata"], pod.get("status") or {}
        if meta.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
            return
        with self._lock:
            if meta["uid"] in self._done:
                return
            self._done.add(meta["uid"])
        self._queue.put(pod)

    def _work(self) -> None:
        while True:
            pod = self._queue.get()
            if pod is None:
                return
            try:
                self._complete(pod)
                with self._lock:
                    self.completed += 1
            except ApiException as e:
                if e.status != 404:  # deleted meanwhile: nothing to do
                    self.errors.append(f"{pod['metadata']['name']}: {e.status} {e.reason}")

    def _complete(self, pod: Pod) -> None:
        meta = pod["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        if not pod["spec"].get("nodeName"):
            binding = {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": name, "uid": meta["uid"]},
                "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
            }
            self.core.create_namespaced_pod_binding(
                name, namespace, binding, _preload_content=False
            )
        now = _now()
        container = pod["spec"]["containers"][0]
        conditions = [
            {"type": t, "status": s, "lastTransitionTime": now}
            for t, s in (
                ("PodScheduled", "True"),
                ("Initialized", "True"),
                ("PodReadyToStartContainers", "False"),
                ("ContainersReady", "False"),
                ("Ready", "False"),
            )
        ]
        status = {
            "phase": "Succeeded",
            "startTime": now,
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "conditions": conditions,
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container.get("image", ""),
                    "imageID": container.get("image", ""),
                    "containerID": f"instant://{meta['uid']}",
                    "ready": False,
                    "started": False,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": 0,
                            "reason": "Completed",
                            "message": fake_result(name),
                            "startedAt": now,
                            "finishedAt": now,
                        }
                    },
                }
            ],
        }
        self.core.patch_namespaced_pod_status(
            name, namespace, {"status": status}, _preload_content=False
        )


def _json(response: Any) -> Any:
    import json

    return json.loads(response.data)


def _loads(line: Any) -> Any:
    import json

    return json.loads(line)
