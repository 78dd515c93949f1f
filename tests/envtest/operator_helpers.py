"""Helpers shared by the operator tests of the envtest tier (tests/envtest/test_operator*.py)."""

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes.client

GROUP, VERSION = "audioextract.dev", "v1alpha1"
JOB_SELECTOR = "app.kubernetes.io/managed-by=audio-extract-operator"
DEST = '{"volume": {"claimName": "out", "path": "audio"}}'


def make_video(path: Path, seconds: float = 1.0) -> None:
    """A tiny MP4 (64x48 test pattern, 440 Hz AAC tone)."""
    subprocess.run(
        [
            "ffmpeg", "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc=duration={seconds}:size=64x48:rate=10",
            "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
            "-shortest", "-c:v", "mpeg4", "-c:a", "aac", str(path),
        ],
        check=True,
    )  # fmt: skip


def make_video_only(path: Path, seconds: float = 1.0) -> None:
    """A tiny MP4 without any audio stream."""
    subprocess.run(
        [
            "ffmpeg", "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc=duration={seconds}:size=64x48:rate=10",
            "-c:v", "mpeg4", str(path),
        ],
        check=True,
    )  # fmt: skip


def is_finished(job: Any) -> bool:
    """Whether a Job (client model) has a Complete or Failed condition."""
    return any(
        c.type in ("Complete", "Failed") and c.status == "True" for c in job.status.conditions or []
    )


class JobWatcher:
    """Polls the namespace's Jobs: the most unfinished at once, and every name ever seen.

    ``owners`` maps each Job name to the ExtractionJob that owns it (controller
    reference); ``active_per_owner`` is the most unfinished Jobs one ExtractionJob had
    at the same time.
    """

    def __init__(self, batch_api: kubernetes.client.BatchV1Api, namespace: str) -> None:
        self.api, self.namespace = batch_api, namespace
        self.max_active = 0
        self.names: set[str] = set()
        self.owners: dict[str, str] = {}
        self.active_per_owner: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            jobs = self.api.list_namespaced_job(self.namespace, label_selector=JOB_SELECTOR).items
            active = 0
            per_owner: dict[str, int] = {}
            for job in jobs:
                name = job.metadata.name
                self.names.add(name)
                owner = next(
                    (r.name for r in job.metadata.owner_references or [] if r.controller), ""
                )
                self.owners[name] = owner
                if not is_finished(job) and not job.metadata.deletion_timestamp:
                    active += 1
                    per_owner[owner] = per_owner.get(owner, 0) + 1
            self.max_active = max(self.max_active, active)
            for owner, count in per_owner.items():
                self.active_per_owner[owner] = max(self.active_per_owner.get(owner, 0), count)
            time.sleep(0.05)

    def jobs_of(self, extraction_job: str) -> set[str]:
        """Names of every Job seen that belongs to ``extraction_job``."""
        return {n for n, o in self.owners.items() if o == extraction_job}

    def __enter__(self) -> "JobWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def get(custom: Any, namespace: str, plural: str, name: str) -> dict[str, Any]:
    """A custom object of the audioextract.dev group as a dict."""
    obj: dict[str, Any] = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, name
    )
    return obj


def batch_manifest(name: str, jobs: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    """A Batch with these jobs and further spec fields (camelCase keywords)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Batch",
        "metadata": {"name": name},
        "spec": {"jobs": jobs, **spec},
    }


def phase_is(
    custom: Any, namespace: str, name: str, phase: str, plural: str = "batches"
) -> Callable[[], dict[str, Any] | None]:
    """A probe for wait_for: the object once its status.phase is ``phase``."""

    def probe() -> dict[str, Any] | None:
        obj = get(custom, namespace, plural, name)
        return obj if (obj.get("status") or {}).get("phase") == phase else None

    return probe


def failed_create_events(core: kubernetes.client.CoreV1Api, namespace: str) -> list[str]:
    """Messages of the Job controller's FailedCreate Events in ``namespace``.

    In a namespace enforcing the restricted Pod Security Standard, a Pod template that
    violates it does not fail the Job: the Job controller reports FailedCreate and keeps
    trying. Tests assert there is none.
    """
    events = core.list_namespaced_event(namespace, field_selector="reason=FailedCreate").items
    return [f"{e.involved_object.kind}/{e.involved_object.name}: {e.message}" for e in events]
