"""An instant fake kubelet: every Pod of the watched namespaces succeeds at once with a result.

For the operator's control loop at scale on the real control plane (the scale tests and
``bench/operator.py``), where running ffmpeg 1,000 times would only measure ffmpeg.
Unlike ``tests/support/kubelet.py`` (which runs the real worker) it runs nothing. Like
the scheduler it binds each new Pod to its own Node (registered Ready, so the Pod
garbage collector does not take the Pods of a Node that does not exist;
``pods/binding``), then, like a kubelet, reports it ``Succeeded`` with the container
``terminated`` (exit 0) and a result JSON as its termination message. The real Job
controller then completes the Job.

Pods come from one raw list + watch per namespace (no client models: at a thousand Pods
their decoding would make the kubelet what limits a benchmark) and are handled by a
small thread pool; every Pod it completed is recorded in :attr:`InstantKubelet.completed`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import kubernetes.client
from kubernetes.client.exceptions import ApiException

Pod = dict[str, Any]
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# A Pod's conditions as (type, status, extra fields), as a kubelet reports them while its
# one container runs and is ready, and once that container has exited 0.
_Conditions = tuple[tuple[str, str, dict[str, str]], ...]
_RUNNING_CONDITIONS: _Conditions = tuple(
    (t, "True", {})
    for t in (
        "PodScheduled",
        "Initialized",
        "PodReadyToStartContainers",
        "ContainersReady",
        "Ready",
    )
)
_SUCCEEDED_CONDITIONS: _Conditions = (
    ("PodScheduled", "True", {}),
    ("Initialized", "True", {}),
    ("PodReadyToStartContainers", "False", {}),
    ("ContainersReady", "False", {"reason": "PodCompleted"}),
    ("Ready", "False", {"reason": "PodCompleted"}),
)


def _pod_status(
    pod: Pod, now: str, phase: str, conditions: _Conditions, ready: bool, state: dict[str, Any]
) -> dict[str, Any]:
    """The status a kubelet reports for a Pod of one container in ``phase``.

    ``ready`` is the container's ready and started flags, ``state`` its state (``running``
    or ``terminated``); ``now`` stamps the start and the conditions' transitions.
    """
    meta, container = pod["metadata"], pod["spec"]["containers"][0]
    return {
        "phase": phase,
        "startTime": now,
        "hostIP": "127.0.0.1",
        "podIP": "127.0.0.1",
        "conditions": [
            {"type": t, "status": s, "lastTransitionTime": now, **extra}
            for t, s, extra in conditions
        ],
        "containerStatuses": [
            {
                "name": container["name"],
                "image": container.get("image", ""),
                "imageID": container.get("image", ""),
                "containerID": f"instant://{meta['uid']}",
                "ready": ready,
                "started": ready,
                "restartCount": 0,
                "state": state,
            }
        ],
    }


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


def job_result_message(pod: Pod) -> str:
    """The termination message ``{"result": result_for(job)}`` for the Pod's Job."""
    meta = pod["metadata"]
    job = (meta.get("labels") or {}).get(JOB_NAME_LABEL, meta["name"])
    return json.dumps({"result": result_for(job)}, separators=(",", ":"))


class InstantKubelet:
    """Binds and completes the Pods of ``namespaces`` as soon as they appear.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. ``message``
    makes each Pod's termination message (by default :func:`job_result_message`);
    with ``run_until``, each Pod runs (ready) until ``run_until(pod)`` is true.
    """

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        namespaces: str | list[str],
        threads: int = 8,
        node: str | None = None,
        message: Callable[[Pod], str] = job_result_message,
        run_until: Callable[[Pod], bool] | None = None,
    ) -> None:
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.namespaces = [namespaces] if isinstance(namespaces, str) else list(namespaces)
        self.node = node or f"instant-{self.namespaces[0]}"[:63]
        self.message = message
        # Given: each Pod is first reported running and ready, as a real worker would
        # be, and succeeds once run_until(pod) is true (polled; 60 s at most).
        self.run_until = run_until
        self.completed: set[str] = set()
        self.errors: list[str] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="instant-kubelet")
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._responses: list[Any] = []

    def start(self) -> InstantKubelet:
        """Register the Node and start one list + watch per namespace."""
        now = _now()
        capacity = {"cpu": "1000", "memory": "1Ti", "pods": "100000"}
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "instant kubelet",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node, "labels": {"kubernetes.io/hostname": self.node}},
            "status": {"capacity": capacity, "allocatable": capacity, "conditions": [ready]},
        }
        try:
            self.core.create_node(node)
        except ApiException as exc:
            if exc.status != 409:  # left by an earlier run: reuse it
                raise
        for ns in self.namespaces:
            thread = threading.Thread(target=self._watch, args=(ns,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Close the watches, finish the Pods in hand and delete the Node."""
        self._stopped.set()
        for response in self._responses:
            with contextlib.suppress(Exception):
                response.shutdown()
        for thread in self._threads:
            thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            self.core.delete_node(self.node)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def __enter__(self) -> InstantKubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _watch(self, namespace: str) -> None:
        version = ""
        while not self._stopped.is_set():
            try:
                if not version:
                    listed = self.core.list_namespaced_pod(namespace, _preload_content=False)
                    body = json.loads(listed.data)
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
                    event = json.loads(line)
                    if event["type"] == "ERROR":  # the version expired: list again
                        version = ""
                        break
                    obj = event["object"]
                    version = obj["metadata"].get("resourceVersion", version)
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._offer(obj)
            except Exception as exc:  # a closed or dropped watch: list and watch again
                if self._stopped.is_set():
                    return
                self.errors.append(f"watch {namespace}: {exc}")
                version = ""
                time.sleep(0.5)

    def _offer(self, pod: Pod) -> None:
        meta, status = pod["metadata"], pod.get("status") or {}
        if meta.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
            return
        with self._lock:
            if meta["uid"] in self._seen:
                return
            self._seen.add(meta["uid"])
        with contextlib.suppress(RuntimeError):  # the pool is shut down: stopping
            self._pool.submit(self._complete, pod)

    def _complete(self, pod: Pod) -> None:
        meta = pod["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        try:
            if not pod["spec"].get("nodeName"):
                binding = {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": name, "uid": meta["uid"]},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": self.node},
                }
                self.core.create_namespaced_pod_binding(
                    name, namespace, binding, _preload_content=False
                )
            if self.run_until is not None:
                now = _now()
                running = _pod_status(
                    pod, now, "Running", _RUNNING_CONDITIONS, True, {"running": {"startedAt": now}}
                )
                self.core.patch_namespaced_pod_status(
                    name, namespace, {"status": running}, _preload_content=False
                )
                deadline = time.monotonic() + 60
                while not self.run_until(pod) and time.monotonic() < deadline:
                    time.sleep(0.2)
            now = _now()
            terminated = {
                "exitCode": 0,
                "reason": "Completed",
                "message": self.message(pod),
                "startedAt": now,
                "finishedAt": now,
            }
            succeeded = _pod_status(
                pod, now, "Succeeded", _SUCCEEDED_CONDITIONS, False, {"terminated": terminated}
            )
            self.core.patch_namespaced_pod_status(
                name, namespace, {"status": succeeded}, _preload_content=False
            )
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile (its Job was cleaned up): fine
                self.errors.append(f"{name}: {exc.status} {exc.reason}")
            return
        except Exception as exc:  # anything else must show in the errors, not vanish
            self.errors.append(f"{name}: {exc!r}")
            return
        with self._lock:
            self.completed.add(name)
