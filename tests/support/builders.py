"""Fixture builders: valid API objects by default, overridden per test."""

import base64
import copy
from typing import Any

from audioextract.api.status import JobResult

Obj = dict[str, Any]


def source(url: str = "https://media.example.com/video.mp4", **extra: Any) -> Obj:
    """A source with an HTTPS URL unless told otherwise."""
    return {"url": url, **extra}


def batch_job(name: str | None = "intro", **fields: Any) -> Obj:
    """One job of a Batch."""
    job: Obj = {"source": source()}
    if name is not None:
        job["name"] = name
    job.update(fields)
    return job


def batch(name: str = "episode-42", jobs: list[Obj] | None = None, **spec: Any) -> Obj:
    """A Batch object as kubectl would send it."""
    return {
        "apiVersion": "audioextract.dev/v1alpha1",
        "kind": "Batch",
        "metadata": {"name": name},
        "spec": {"jobs": jobs if jobs is not None else [batch_job()], **spec},
    }


def extraction_job(name: str = "lecture-01", **spec: Any) -> Obj:
    """A standalone ExtractionJob object."""
    body: Obj = {"source": source(), **spec}
    return {
        "apiVersion": "audioextract.dev/v1alpha1",
        "kind": "ExtractionJob",
        "metadata": {"name": name},
        "spec": body,
    }


def with_output(obj: Obj, **output: Any) -> Obj:
    """A copy of a Batch whose first job has this output."""
    obj = copy.deepcopy(obj)
    obj["spec"]["jobs"][0]["output"] = output
    return obj


def worker_task(name: str = "job", **fields: Any) -> Obj:
    """A worker task JSON object: a volume source into a volume destination, as mp3."""
    task: Obj = {
        "name": name,
        "source": {"volume": {"claimName": "media", "path": "av.mp4"}},
        "output": {"format": "mp3", "destination": {"volume": {"claimName": "out"}}},
        "timeoutSeconds": 60,
    }
    task.update(fields)
    return task


# -- core objects for tests on a real cluster (tests/e2e) ------------------------------

MEDIA_PORT = 8080


def restricted_security_context() -> tuple[Obj, Obj]:
    """Pod and container securityContexts that meet the restricted Pod Security Standard."""
    pod = {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    return pod, container


def media_files_config_map(name: str, files: dict[str, bytes]) -> Obj:
    """A ConfigMap holding small binary files (``binaryData``; the API caps it at 1 MiB)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "binaryData": {k: base64.b64encode(v).decode() for k, v in files.items()},
    }


def media_server_pod(
    name: str, image: str, *, claim: str | None = None, port: int = MEDIA_PORT
) -> Obj:
    """A Pod that serves the files of ConfigMap ``name`` (``media_files_config_map``) over HTTP.

    Runs ``image`` (the worker image: it has python3) with its own command,
    ``python3 -m http.server`` on ``port`` for the ConfigMap mounted at /srv; the
    Pod is Ready once ``/clip.mp4`` is served. The media are made by the test (host
    ffmpeg), not in the Pod: the worker image's ffmpeg is built without lavfi sources
    or video encoders (docs/images.md). With ``claim``, that PVC is mounted read-only
    at ``/out`` so tests can inspect what workers wrote there (``kubectl exec``).
    """
    pod_sc, container_sc = restricted_security_context()
    mounts: list[Obj] = [{"name": "srv", "mountPath": "/srv"}]
    volumes: list[Obj] = [{"name": "srv", "configMap": {"name": name}}]
    if claim is not None:
        mounts.append({"name": "out", "mountPath": "/out", "readOnly": True})
        volumes.append(
            {"name": "out", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": name}},
        "spec": {
            "securityContext": pod_sc,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "containers": [
                {
                    "name": "server",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": [
                        "python3",
                        "-m",
                        "http.server",
                        str(port),
                        "--directory",
                        "/srv",
                    ],
                    "ports": [{"name": "http", "containerPort": port}],
                    "readinessProbe": {
                        "httpGet": {"path": "/clip.mp4", "port": "http"},
                        "periodSeconds": 1,
                    },
                    "resources": {
                        "requests": {"cpu": "50m", "memory": "64Mi"},
                        "limits": {"memory": "256Mi"},
                    },
                    "securityContext": container_sc,
                    "volumeMounts": mounts,
                }
            ],
            "volumes": volumes,
        },
    }


def service_for(pod: Obj, port: int = 80) -> Obj:
    """A ClusterIP Service named like ``pod``, forwarding ``port`` to its ``http`` port."""
    name = pod["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": dict(pod["metadata"]["labels"]),
            "ports": [{"name": "http", "port": port, "targetPort": "http"}],
        },
    }


def pvc(name: str, size: str = "1Gi", storage_class: str | None = None) -> Obj:
    """A ReadWriteOnce PersistentVolumeClaim (the default StorageClass unless told)."""
    spec: Obj = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": spec,
    }


def job_result(**fields: Any) -> JobResult:
    """A worker result for a stereo 44.1 kHz mp3; tests override what they look at."""
    values: dict[str, Any] = {
        "uri": "s3://media/out/intro.mp3",
        "size_bytes": 1234,
        "duration_seconds": 61.5,
        "format": "mp3",
        "codec": "mp3",
        "sample_rate": 44100,
        "channels": 2,
        "sha256": "a" * 64,
        "stream_copied": False,
        **fields,
    }
    return JobResult(**values)


# -- objects as the operator's cache holds them (tests of the reconcile plans) ----------


def cached(obj: Obj, *, uid: str, namespace: str = "ns", rv: str = "1", **meta: Any) -> Obj:
    """``obj`` as read from the API server: namespace, uid, generation, resourceVersion."""
    out = copy.deepcopy(obj)
    out["metadata"].update(
        {
            "namespace": namespace,
            "uid": uid,
            "generation": 1,
            "resourceVersion": rv,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            **meta,
        }
    )
    out.setdefault("status", {})
    return out


def owner_ref(kind: str, name: str, uid: str) -> Obj:
    """A controller owner reference."""
    return {
        "apiVersion": "audioextract.dev/v1alpha1" if kind != "Job" else "batch/v1",
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def worker_job(name: str, owner: Obj, condition: str | None = None, **status: Any) -> Obj:
    """A batch/v1 Job owned by the ExtractionJob ``owner``; ``condition`` Complete or Failed."""
    st: Obj = dict(status)
    if condition is not None:
        st["conditions"] = [
            {
                "type": condition,
                "status": "True",
                "reason": "BackoffLimitExceeded" if condition == "Failed" else None,
                "lastTransitionTime": "2026-01-01T00:01:00Z",
            }
        ]
    meta = owner["metadata"]
    return {
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "uid": f"job-{name}",
            "ownerReferences": [owner_ref("ExtractionJob", meta["name"], meta["uid"])],
        },
        "spec": {"suspend": None},
        "status": st,
    }


def terminated_pod(message: str, exit_code: int = 0) -> Obj:
    """A worker Pod whose container ended with ``message`` as its termination message."""
    return {
        "metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:30Z"},
        "status": {
            "containerStatuses": [
                {
                    "name": "worker",
                    "state": {"terminated": {"exitCode": exit_code, "message": message}},
                }
            ]
        },
    }
