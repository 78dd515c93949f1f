"""Operator scale benchmark on a real control plane (KUBEBUILDER_ASSETS), with its floor.

    make bench-operator                       # 1 Batch x 1,000 jobs (3 runs), idle with 10,000
    make bench-operator BENCH_ARGS=--quick    # the same at 50 jobs / 500 idle, a minute or two
    .venv/bin/python -m bench.operator --jobs 500 --runs 3 --idle-objects 5000

(Run it as a module: as a script, its own directory would come first on sys.path and
this file would shadow the standard library's ``operator``.)

One control plane (etcd, kube-apiserver, kube-controller-manager: the real Job
controller and garbage collector) and an instant kubelet (tests/support/instant_kubelet.py)
that completes every Pod at once with a valid worker result. The API server writes an
audit log of two users only: the operator (its own token) and the floor client, so
API requests are counted at the API server, per user, verb and resource.

1. **Floor**: a plain threaded client (16 threads, the ``kubernetes`` client) does the
   API work of a fan-out in another namespace: N ExtractionJobs and N batch/v1 Jobs
   created (time until all Jobs exist), then 2 status patches per ExtractionJob
   (Running, then Succeeded with a result).
2. **Fan-out** (``--runs`` times): ``audio-extract operator`` with a high global cap;
   one Batch of N jobs is created; watches record when each Job appears and completes,
   when each ExtractionJob ends and every Batch status version. Figures: time until all
   Jobs exist (vs the floor), last Job complete -> Batch final, the largest lag of the
   Batch's finished count behind its children's, and the operator's API writes per job
   (audit log; Events included).
3. **Idle**: the operator is stopped, the last finished Batch and its children are
   cloned (same shapes as the operator wrote them) until ``--idle-objects`` finished
   ExtractionJobs exist; the operator is started again and, once it has settled, watched
   for ``--idle-seconds``: API requests other than watches, CPU and RSS of its process.
   Then a 1-job Batch's latency (create -> Job exists, Job complete -> Batch final) is
   compared with the same measured on the empty namespace before the clones.

Raw figures go to ``bench/results/operator-<mode>-<time>.json``; the Markdown section
between ``<!-- bench-operator:start -->`` and ``<!-- bench-operator:end -->`` in
docs/performance.md is rewritten (``--no-docs`` leaves it alone).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import copy
import hashlib
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes.client
from tests.support.controlplane import ControlPlane
from tests.support.instant_kubelet import InstantKubelet

from audioextract.api.status import JobResult
from audioextract.worker.main import result_json
from bench import report

ROOT = Path(__file__).resolve().parent.parent
GROUP, VERSION = "audioextract.dev", "v1alpha1"
OP_NS, FLOOR_NS = "bench", "bench-floor"
OP_USER, FLOOR_USER = "audio-extract-operator", "bench-floor"
TOKENS = {OP_USER: "bench-operator-token", FLOOR_USER: "bench-floor-token"}
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
FINAL = {"Succeeded", "PartiallySucceeded", "Failed"}
THREADS = 16
# The docs section, made at the end of docs/performance.md if its markers are missing.
HEADING = "Operator at scale (`make bench-operator`)"
Obj = dict[str, Any]

AUDIT_POLICY = f"""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    users: ["{OP_USER}", "{FLOOR_USER}"]
  - level: None
"""


# -- the control plane, with an audit log and two more users -----------------------------


class AuditedControlPlane(ControlPlane):
    """The test control plane plus an audit log of the operator's and the floor's requests."""

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    def _spawn(self, name: str, argv: list[str]) -> None:
        if name == "kube-apiserver":
            with (self.workdir / "tokens.csv").open("a") as tokens:
                for user, token in TOKENS.items():
                    tokens.write(f"{token},{user},{user},system:masters\n")
            policy = self.workdir / "audit-policy.yaml"
            policy.write_text(AUDIT_POLICY)
            argv = [
                *argv,
                "--audit-policy-file", str(policy),
                "--audit-log-path", str(self.audit_log),
                "--audit-log-maxsize", "0",
                "--audit-log-mode", "batch",
                "--audit-log-batch-max-wait", "1s",
            ]  # fmt: skip
        super()._spawn(name, argv)

    def client_for(self, user: str) -> kubernetes.client.ApiClient:
        config = self.configuration()
        config.api_key = {"authorization": TOKENS[user]}
        config.connection_pool_maxsize = THREADS * 2
        return kubernetes.client.ApiClient(config)

    def kubeconfig_for(self, user: str) -> Path:
        text = self.kubeconfig.read_text().replace(self.token, TOKENS[user])
        path = self.workdir / f"kubeconfig-{user}"
        path.write_text(text)
        path.chmod(0o600)
        return path


def audit_events(cp: AuditedControlPlane, user: str, since: float, until: float) -> list[Obj]:
    """Completed requests of ``user`` received in [since, until] (epoch seconds)."""
    time.sleep(2.5)  # the batch backend flushes at least every second
    events = []
    with cp.audit_log.open() as f:
        for line in f:
            event = json.loads(line)
            if event["user"]["username"] != user or event["stage"] not in (
                "ResponseComplete",
                "Panic",
            ):
                continue
            received = _epoch(event["requestReceivedTimestamp"])
            if since <= received <= until:
                events.append(event)
    return events


def _epoch(stamp: str) -> float:
    return (
        datetime.strptime(stamp[:26].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f")
        .replace(tzinfo=UTC)
        .timestamp()
    )


def _resource(event: Obj) -> str:
    ref = event.get("objectRef") or {}
    name = ref.get("resource", "?")
    return f"{name}/{ref['subresource']}" if ref.get("subresource") else name


def fake_result(pod_name: str) -> str:
    """The termination message of a successful worker run for this Pod: a plausible mp3."""
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


def count_writes(events: list[Obj]) -> Counter[str]:
    """Writes by ``verb resource[/subresource]``."""
    return Counter(f"{e['verb']} {_resource(e)}" for e in events if e["verb"] in WRITE_VERBS)


# -- objects -----------------------------------------------------------------------------


def batch_body(name: str, jobs: int) -> Obj:
    """A Batch of ``jobs`` realistic jobs (S3 and HTTPS sources, a few output settings)."""
    items = []
    for i in range(jobs):
        source = (
            f"s3://media-archive/raw/2026/season-3/episode-{i:04d}.mov"
            if i % 2
            else f"https://cdn.example.com/video/lectures/{i:04d}/master.mp4"
        )
        job: Obj = {"name": f"ep-{i:04d}", "source": {"url": source}}
        if i % 5 == 0:
            job["output"] = {"format": "flac", "normalize": True}
        items.append(job)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Batch",
        "metadata": {"name": name},
        "spec": {"defaults": {"output": {"format": "mp3", "quality": "high"}}, "jobs": items},
    }


def floor_job(name: str) -> Obj:
    """A batch/v1 Job of the shape the operator creates (one worker container)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "audio-extract"}},
        "spec": {
            "backoffLimit": 2,
            "activeDeadlineSeconds": 3900,
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "audio-extract"}},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "worker",
                            "image": "audio-extract-worker:bench",
                            "command": ["audio-extract", "worker", "--task", "/task/task.json"],
                            "env": [{"name": "AUDIOEXTRACT_TASK", "value": "{}" * 200}],
                            "resources": {
                                "requests": {"cpu": "500m", "memory": "256Mi"},
                                "limits": {"memory": "1Gi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }


# -- the floor ---------------------------------------------------------------------------


def run_floor(cp: AuditedControlPlane, jobs: int) -> Obj:
    """The same creates and status patches from a plain 16-thread client."""
    client = cp.client_for(FLOOR_USER)
    custom: Any = kubernetes.client.CustomObjectsApi(client)
    batch_api: Any = kubernetes.client.BatchV1Api(client)
    core_api: Any = kubernetes.client.CoreV1Api(client)
    body = batch_body("floor", jobs)
    spec_jobs = body["spec"]["jobs"]
    custom.create_namespaced_custom_object(GROUP, VERSION, FLOOR_NS, "batches", body)

    def create(i: int) -> None:
        job = spec_jobs[i]
        name = f"floor-{job['name']}"
        ej = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ExtractionJob",
            "metadata": {"name": name, "labels": {f"{GROUP}/batch": "floor"}},
            "spec": {"source": job["source"], "output": {"format": "mp3"}},
        }
        custom.create_namespaced_custom_object(GROUP, VERSION, FLOOR_NS, "extractionjobs", ej)
        # The operator hands each run its task in a Secret: the floor creates one too.
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{name}-1-task"},
            "stringData": {"task.json": json.dumps({"name": name, "source": job["source"]})},
        }
        core_api.create_namespaced_secret(FLOOR_NS, secret, _preload_content=False)
        batch_api.create_namespaced_job(FLOOR_NS, floor_job(f"{name}-1"), _preload_content=False)

    def patch(i: int) -> None:
        name = f"floor-{spec_jobs[i]['name']}"
        for status in (
            {"phase": "Running", "jobName": f"{name}-1", "attempts": 1},
            {"phase": "Succeeded", "result": json.loads(fake_result(name))},
        ):
            custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, FLOOR_NS, "extractionjobs", name, {"status": status}
            )

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        started = time.monotonic()
        list(pool.map(create, range(jobs)))
        creates = time.monotonic() - started
        started = time.monotonic()
        list(pool.map(patch, range(jobs)))
        patches = time.monotonic() - started
    # The Job controller and the kubelet finish the floor's Jobs before anything else is
    # measured, so that their backlog never delays the operator's first Jobs.
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        listed = batch_api.list_namespaced_job(FLOOR_NS, _preload_content=False)
        done = sum(
            1
            for job in json.loads(listed.data)["items"]
            if any(
                c["type"] == "Complete" and c["status"] == "True"
                for c in (job.get("status") or {}).get("conditions") or []
            )
        )
        if done >= jobs:
            break
        time.sleep(2)
    client.close()
    return {
        "jobs": jobs,
        "creates_seconds": creates,
        "creates_per_second": 3 * jobs / creates,
        "status_patches_seconds": patches,
        "status_patches_per_second": 2 * jobs / patches,
    }


# -- watching one Batch ------------------------------------------------------------------


class BatchWatch:
    """Timestamps of Jobs, ExtractionJobs and Batch status versions of one Batch, by watch."""

    def __init__(self, cp: AuditedControlPlane, batch: str) -> None:
        self.cp, self.batch = cp, batch
        self.job_seen: dict[str, float] = {}
        self.job_done: dict[str, float] = {}
        self.child_done: dict[str, float] = {}
        self.statuses: list[tuple[float, int, str]] = []  # (time, finished count, phase)
        self.final_at: float | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._responses: list[Any] = []
        self._clients: list[kubernetes.client.ApiClient] = []

    def start(self) -> BatchWatch:
        selector = f"{GROUP}/batch={self.batch}"
        self._spawn("jobs", selector, self._on_job)
        self._spawn("extractionjobs", selector, self._on_child)
        self._spawn("batches", f"metadata.name={self.batch}", self._on_batch)
        return self

    def stop(self) -> None:
        self._stop.set()
        for response in self._responses:
            with contextlib.suppress(Exception):
                response.shutdown()
        for client in self._clients:
            client.close()

    def _spawn(self, kind: str, selector: str, handle: Any) -> None:
        thread = threading.Thread(target=self._watch, args=(kind, selector, handle), daemon=True)
        thread.start()
        self._threads.append(thread)

    def _list_call(self, client: Any, kind: str, selector: str) -> Any:
        if kind == "jobs":
            api: Any = kubernetes.client.BatchV1Api(client)
            return lambda **kw: api.list_namespaced_job(OP_NS, label_selector=selector, **kw)
        custom: Any = kubernetes.client.CustomObjectsApi(client)
        key = "field_selector" if kind == "batches" else "label_selector"
        return lambda **kw: custom.list_namespaced_custom_object(
            GROUP, VERSION, OP_NS, kind, **{key: selector}, **kw
        )

    def _watch(self, kind: str, selector: str, handle: Any) -> None:
        client = self.cp.new_api_client()
        self._clients.append(client)
        call = self._list_call(client, kind, selector)
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    listed = json.loads(call(_preload_content=False).data)
                    now = time.time()
                    for item in listed["items"]:
                        handle(item, now)
                    version = listed["metadata"]["resourceVersion"]
                response = call(
                    watch=True, resource_version=version, timeout_seconds=600,
                    allow_watch_bookmarks=True, _preload_content=False,
                )  # fmt: skip
                self._responses.append(response)
                for line in response:
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        version = ""
                        break
                    version = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        handle(event["object"], time.time())
            except Exception:
                if self._stop.is_set():
                    return
                version = ""
                time.sleep(0.2)

    def _on_job(self, job: Obj, now: float) -> None:
        name = job["metadata"]["name"]
        self.job_seen.setdefault(name, now)
        for cond in (job.get("status") or {}).get("conditions") or []:
            if cond["type"] == "Complete" and cond["status"] == "True":
                self.job_done.setdefault(name, now)

    def _on_child(self, child: Obj, now: float) -> None:
        if (child.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            self.child_done.setdefault(child["metadata"]["name"], now)

    def _on_batch(self, batch: Obj, now: float) -> None:
        status = batch.get("status") or {}
        finished = int(status.get("succeeded") or 0) + int(status.get("failed") or 0)
        phase = str(status.get("phase") or "")
        self.statuses.append((now, finished, phase))
        if phase in FINAL and self.final_at is None:
            self.final_at = now

    def max_lag(self, until: float) -> float:
        """The longest time a child's end waited to be counted in the Batch's status."""
        ends = sorted(self.child_done.values())
        worst = 0.0
        for k, ended in enumerate(ends, start=1):
            shown = next((t for t, n, _ in self.statuses if n >= k and t >= ended), until)
            worst = max(worst, shown - ended)
        return worst


# -- the operator process ----------------------------------------------------------------


class Operator:
    """``audio-extract operator`` as deployed: own user, default settings but a high cap."""

    def __init__(self, cp: AuditedControlPlane, log_dir: Path) -> None:
        self.cp, self.log_dir = cp, log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        env = {
            **os.environ,
            "KUBECONFIG": str(self.cp.kubeconfig_for(OP_USER)),
            "AUDIOEXTRACT_WORKER_IMAGE": "audio-extract-worker:bench",
            "AUDIOEXTRACT_MAX_CONCURRENT_JOBS": "100000",
            "AUDIOEXTRACT_DEFAULT_DESTINATION": json.dumps(
                {"s3": {"bucket": "audio-out", "prefix": "bench/"}}
            ),
        }
        argv = [sys.executable, "-m", "audioextract", "operator", "--namespace", OP_NS]
        argv.append("--standalone")
        log = (self.log_dir / f"operator-{self.starts}.log").open("wb")
        with log:
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> tuple[float, float]:
        """Resident memory now and at its peak, MiB."""
        assert self.proc is not None
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        values = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.M))
        return int(values["VmRSS"]) / 1024, int(values["VmHWM"]) / 1024


# -- scenarios ---------------------------------------------------------------------------


def fan_out(cp: AuditedControlPlane, name: str, jobs: int, timeout: float) -> Obj:
    """One Batch of ``jobs`` from creation to final, with the figures of one run."""
    custom: Any = kubernetes.client.CustomObjectsApi(cp.api_client)
    watch = BatchWatch(cp, name).start()
    time.sleep(1)  # the watches are open before the Batch exists
    started_wall, started = time.time(), time.monotonic()
    custom.create_namespaced_custom_object(GROUP, VERSION, OP_NS, "batches", batch_body(name, jobs))
    deadline = started + timeout
    while watch.final_at is None and time.monotonic() < deadline:
        time.sleep(0.2)
    ended_wall = time.time()
    time.sleep(1)
    watch.stop()
    if watch.final_at is None:
        return {"batch": name, "jobs": jobs, "timed_out_after": timeout,
                "jobs_seen": len(watch.job_seen), "children_done": len(watch.child_done)}  # fmt: skip
    all_jobs = max(watch.job_seen.values()) - started_wall if len(watch.job_seen) >= jobs else None
    last_done = max(watch.job_done.values()) if watch.job_done else None
    events = audit_events(cp, OP_USER, started_wall - 0.5, ended_wall + 1)
    writes = count_writes(events)
    return {
        "batch": name,
        "jobs": jobs,
        "jobs_seen": len(watch.job_seen),
        "all_jobs_exist_seconds": all_jobs,
        "batch_final_seconds": watch.final_at - started_wall,
        "last_job_complete_to_final_seconds": (
            watch.final_at - last_done if last_done is not None else None
        ),
        "max_status_lag_seconds": watch.max_lag(watch.final_at),
        "batch_status_versions": len(watch.statuses),
        "writes_total": sum(writes.values()),
        "writes_per_job": sum(writes.values()) / jobs,
        "writes_by_kind": dict(writes.most_common()),
        "requests_total": len(events),
    }


def delete_batch(cp: AuditedControlPlane, name: str) -> None:
    """Delete a Batch and wait until the garbage collector has removed its children."""
    custom: Any = kubernetes.client.CustomObjectsApi(cp.api_client)
    custom.delete_namespaced_custom_object(
        GROUP, VERSION, OP_NS, "batches", name, propagation_policy="Background"
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        left = custom.list_namespaced_custom_object(
            GROUP, VERSION, OP_NS, "extractionjobs", label_selector=f"{GROUP}/batch={name}",
            limit=1,
        )["items"]  # fmt: skip
        if not left:
            return
        time.sleep(1)


def single_job_latency(cp: AuditedControlPlane, name: str) -> Obj:
    """Create -> Job exists and Job complete -> Batch final for a 1-job Batch."""
    custom: Any = kubernetes.client.CustomObjectsApi(cp.api_client)
    watch = BatchWatch(cp, name).start()
    time.sleep(1)
    started = time.time()
    custom.create_namespaced_custom_object(GROUP, VERSION, OP_NS, "batches", batch_body(name, 1))
    deadline = time.monotonic() + 300
    while watch.final_at is None and time.monotonic() < deadline:
        time.sleep(0.05)
    watch.stop()
    if watch.final_at is None or not watch.job_seen or not watch.job_done:
        return {"batch": name, "timed_out": True}
    return {
        "batch": name,
        "create_to_job_seconds": min(watch.job_seen.values()) - started,
        "job_complete_to_final_seconds": watch.final_at - max(watch.job_done.values()),
    }


def _rename(obj: Any, old: str, new: str) -> Any:
    return json.loads(json.dumps(obj).replace(f'"{old}', f'"{new}').replace(f"{old}-", f"{new}-"))


def clone_finished(cp: AuditedControlPlane, source: str, copies: int, prefix: str) -> int:
    """Clone a finished Batch and its children ``copies`` times; the number of children made."""
    client = cp.client_for(FLOOR_USER)
    custom: Any = kubernetes.client.CustomObjectsApi(client)
    batch = custom.get_namespaced_custom_object(GROUP, VERSION, OP_NS, "batches", source)
    children = custom.list_namespaced_custom_object(
        GROUP, VERSION, OP_NS, "extractionjobs", label_selector=f"{GROUP}/batch={source}"
    )["items"]
    made = 0
    for n in range(copies):
        new = f"{prefix}-{n:02d}"
        body = {
            "apiVersion": batch["apiVersion"],
            "kind": "Batch",
            "metadata": {"name": new, "labels": batch["metadata"].get("labels") or {}},
            "spec": batch["spec"],
        }
        created = custom.create_namespaced_custom_object(GROUP, VERSION, OP_NS, "batches", body)
        status = _rename(batch.get("status") or {}, source, new)
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, OP_NS, "batches", new, {"status": status}
        )
        owner = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Batch",
            "name": new,
            "uid": created["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }

        def clone(child: Obj, new: str = new, owner: Obj = owner) -> None:
            meta = child["metadata"]
            name = _rename(meta["name"], source, new)
            body = {
                "apiVersion": child["apiVersion"],
                "kind": child["kind"],
                "metadata": {
                    "name": name,
                    "labels": _rename(meta.get("labels") or {}, source, new),
                    "ownerReferences": [owner],
                },
                "spec": child["spec"],
            }
            custom.create_namespaced_custom_object(GROUP, VERSION, OP_NS, "extractionjobs", body)
            custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, OP_NS, "extractionjobs", name,
                {"status": _rename(child.get("status") or {}, source, new)},
            )  # fmt: skip

        with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(clone, copy.deepcopy(children)))
        made += len(children)
    client.close()
    return made


def settle(cp: AuditedControlPlane, quiet: float, limit: float) -> float:
    """Seconds until the operator made no write for ``quiet`` seconds (start-up done).

    Writes, not all requests: an operator that re-lists periodically would otherwise
    never count as settled; its periodic reads are what the idle window then counts.
    """
    started = time.time()
    last_busy = started
    while time.time() - started < limit:
        time.sleep(quiet / 2)
        now = time.time()
        recent = [
            e for e in audit_events(cp, OP_USER, now - quiet, now) if e["verb"] in WRITE_VERBS
        ]
        if recent:
            last_busy = max(_epoch(e["requestReceivedTimestamp"]) for e in recent)
        elif now - last_busy >= quiet:
            return now - started
    return limit


def idle(cp: AuditedControlPlane, op: Operator, seconds: float) -> Obj:
    """Requests other than watches, CPU and RSS of the operator over ``seconds`` of idling."""
    cpu0, start = op.cpu_seconds(), time.time()
    time.sleep(seconds)
    cpu1, end = op.cpu_seconds(), time.time()
    rss, peak = op.rss_mib()
    events = [e for e in audit_events(cp, OP_USER, start, end) if e["verb"] != "watch"]
    return {
        "seconds": end - start,
        "requests_not_watch": len(events),
        "requests_by_kind": dict(Counter(f"{e['verb']} {_resource(e)}" for e in events)),
        "cpu_percent_of_a_core": 100 * (cpu1 - cpu0) / (end - start),
        "rss_mib": rss,
        "peak_rss_mib": peak,
    }


# -- report ------------------------------------------------------------------------------


def machine() -> Obj:
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "cpu_model": report.cpu_model("unknown"),
        "python": platform.python_version(),
        "kube_apiserver": _version(),
        "loadavg_start": os.getloadavg(),
    }


def _version() -> str:
    assets = os.environ.get("KUBEBUILDER_ASSETS") or str(ROOT / ".cache" / "k8s")
    try:
        out = subprocess.run(
            [str(Path(assets) / "kube-apiserver"), "--version"],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
    except OSError:
        return "unknown"
    return out.stdout.strip()


def _med(values: list[float | None]) -> float | None:
    real = [v for v in values if v is not None]
    return statistics.median(real) if real else None


def _fmt(value: float | None, unit: str = "s", digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f} {unit}".strip()


def markdown(results: Obj) -> str:
    m, f, runs = results["machine"], results["floor"], results["fan_out"]
    n = results["args"]["jobs"]
    ok = [r for r in runs if "timed_out_after" not in r]
    all_jobs = _med([r["all_jobs_exist_seconds"] for r in ok])
    lines = [
        "`bench/operator.py` on the real control plane (etcd, kube-apiserver, "
        "kube-controller-manager with the real Job controller and garbage collector) and an "
        "instant kubelet that completes every Pod at once with a valid worker result. API "
        "requests are counted at the API server from its audit log, per user: the operator "
        "and the floor client have their own tokens. The floor is a plain `kubernetes` "
        "client on 16 threads doing, in another namespace of the same run, the creates "
        "(one ExtractionJob, one task Secret and one Job per job) and status patches (two "
        "per ExtractionJob) "
        "of a fan-out. Lag = the longest time between a child's end (seen by a watch) and "
        "the first Batch status counting it.",
        "",
        *([f"**{results['note']}**", ""] if results.get("note") else []),
        f"Measured {results['started']} ({results['mode']} mode) on {m['cpu_model']}, "
        f"{m['cpus']} CPUs, {m['kube_apiserver']}, Python {m['python']}; load average "
        f"{m['loadavg_start'][0]:.1f} at the start and {results['loadavg_end'][0]:.1f} at the "
        f"end (the machine is shared: other test suites ran at the same time). Controller: "
        f"`{results['commit']}`. Raw figures: `{results['raw']}`.",
        "",
        f"**Fan-out: 1 Batch x {n} jobs**, global cap 100,000, {len(runs)} runs "
        f"({len(ok)} finished within the time limit); medians.",
        "",
        "| figure | operator | floor (16 threads, plain client) | target |",
        "|---|---:|---:|---|",
        f"| all {n} Jobs exist | {_fmt(all_jobs)} | {_fmt(f['creates_seconds'])} "
        f"({f['creates_per_second']:.0f} creates/s: {n} ExtractionJobs, task Secrets and Jobs) | ≤ 1.5x floor |",
        f"| ratio to floor | {_fmt(all_jobs / f['creates_seconds'] if all_jobs else None, 'x')} | 1 | ≤ 1.5 |",
        f"| last Job complete → Batch final | "
        f"{_fmt(_med([r['last_job_complete_to_final_seconds'] for r in ok]))} | — | ≤ 1 s |",
        f"| largest lag of Batch status behind children | "
        f"{_fmt(_med([r['max_status_lag_seconds'] for r in ok]))} | — | ≤ 2 s |",
        f"| Batch status versions seen during a run | "
        f"{_fmt(_med([float(r['batch_status_versions']) for r in ok]), '', 0)} | — | — |",
        f"| API writes per job (audit log, Events included) | "
        f"{_fmt(_med([r['writes_per_job'] for r in ok]), '')} | "
        f"{(3 * n + 2 * n) / n:.0f} (3 creates + 2 status patches) | ≤ 5 |",
        f"| Batch created → final | {_fmt(_med([r['batch_final_seconds'] for r in ok]))} | — | — |",
        "",
    ]
    if ok:
        kinds = ok[-1]["writes_by_kind"]
        lines += [
            "Writes of the last run by verb and resource: "
            + ", ".join(f"`{k}` {v}" for k, v in kinds.items())
            + ".",
            "",
        ]
    if len(ok) < len(runs):
        lines += [
            "Runs that did not finish: "
            + "; ".join(
                f"{r['batch']}: {r['jobs_seen']} Jobs seen, {r['children_done']} children "
                f"done after {r['timed_out_after']:.0f} s"
                for r in runs
                if "timed_out_after" in r
            ),
            "",
        ]
    i = results.get("idle")
    if i:
        empty, full = results["single_empty"], results["single_idle"]

        def versus(empty: list[Obj], full: list[Obj], key: str) -> str:
            # Medians of three, to the millisecond, and their ratio: rounded to
            # hundredths, 0.074 s and 0.105 s would read as 0.07 s and 0.11 s (1.6x).
            a, b = _med([r.get(key) for r in empty]), _med([r.get(key) for r in full])
            ratio = f" ({b / a:.2f}x)" if a and b is not None else ""
            return f"{_fmt(a, digits=3)} / {_fmt(b, digits=3)}{ratio}"

        lines += [
            f"**Idle with {i['finished_objects']} finished ExtractionJobs** (clones of the "
            f"operator's own output), operator restarted; the idle window began "
            + (
                f"{i['settle_seconds']:.0f} s after its start, once it had made no write for "
                f"{i['quiet_seconds']:.0f} s,"
                if i["settle_seconds"] >= i["quiet_seconds"]
                # Results written before settle_seconds counted from the start: 0 = no write.
                else f"over {i['quiet_seconds']:.0f} s after its start (it made no write),"
            )
            + f" and lasted {i['seconds']:.0f} s.",
            "",
            "| figure | measured | target |",
            "|---|---:|---|",
            f"| API requests other than watches while idle | {i['requests_not_watch']} "
            f"({', '.join(f'`{k}` {v}' for k, v in i['requests_by_kind'].items()) or 'none'}) | 0 |",
            f"| operator CPU while idle | {i['cpu_percent_of_a_core']:.1f} % of a core | ≤ 2 % |",
            f"| operator RSS (peak) | {i['rss_mib']:.0f} MiB ({i['peak_rss_mib']:.0f} MiB) | ≤ 200 MiB |",
            f"| 1-job Batch: create → Job exists, empty / with {i['finished_objects']} | "
            f"{versus(empty, full, 'create_to_job_seconds')} | ≤ 1.5x empty |",
            f"| 1-job Batch: Job complete → Batch final, empty / with {i['finished_objects']} | "
            f"{versus(empty, full, 'job_complete_to_final_seconds')} | ≤ 1.5x empty |",
            "",
        ]
    return "\n".join(lines)


def _commit() -> str:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return out.stdout.strip()[:80] or "unknown"


def main() -> None:
    """Run the scenarios, print the Markdown, write the raw JSON and the docs section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 jobs, 500 idle, a minute or two")
    parser.add_argument("--jobs", type=int, default=None, help="jobs in the Batch (1000)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle-objects", type=int, default=None, help="finished EJs (10000)")
    parser.add_argument("--idle-seconds", type=float, default=None, help="idle window (60)")
    parser.add_argument("--run-timeout", type=float, default=900)
    parser.add_argument("--no-docs", action="store_true", help="leave docs/performance.md alone")
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="only rewrite the docs from a raw result"
    )
    parser.add_argument("--note", default="", help="a line saying what was measured")
    args = parser.parse_args()
    if args.render:
        raw = json.loads(args.render.read_text())
        raw["note"] = args.note or raw.get("note", "")
        text = markdown(raw)
        print(text)
        report.write_section("operator", text, heading=HEADING)
        return
    quick = args.quick
    args.jobs = args.jobs or (50 if quick else 1000)
    args.idle_objects = args.idle_objects or (10 * args.jobs)
    args.idle_seconds = args.idle_seconds or (10.0 if quick else 60.0)
    results: Obj = {
        "mode": "quick" if quick else "full",
        "args": vars(args),
        "started": report.now(),
        "machine": machine(),
        "commit": _commit(),
        "note": args.note,
    }
    assets = os.environ.get("KUBEBUILDER_ASSETS") or str(ROOT / ".cache" / "k8s")
    workdir = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    with AuditedControlPlane(Path(assets), workdir) as cp:
        cp.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        for ns in (OP_NS, FLOOR_NS):
            cp.kubectl("create", "namespace", ns)
        # The default ServiceAccount must exist before the Job controller can create Pods.
        for ns in (OP_NS, FLOOR_NS):
            cp.kubectl("create", "serviceaccount", "default", "-n", ns, check=False)
        kubelet = InstantKubelet(
            cp.new_api_client(),
            [OP_NS, FLOOR_NS],
            node="instant-node",
            message=lambda pod: fake_result(pod["metadata"]["name"]),
        ).start()
        op = Operator(cp, workdir)
        try:
            print(f"floor: {args.jobs} jobs ...", flush=True)
            results["floor"] = run_floor(cp, args.jobs)
            print(json.dumps(results["floor"]), flush=True)
            op.start()
            time.sleep(5)
            # The empty-cluster reference first, before any Batch has left objects behind.
            results["single_empty"] = [single_job_latency(cp, f"one-empty-{n}") for n in range(3)]
            print(json.dumps(results["single_empty"]), flush=True)
            results["fan_out"] = []
            for run in range(args.runs):
                name = f"fan-{run}"
                print(f"fan-out run {run + 1}/{args.runs} ...", flush=True)
                row = fan_out(cp, name, args.jobs, args.run_timeout)
                print(json.dumps({k: v for k, v in row.items() if k != "writes_by_kind"}),
                      flush=True)  # fmt: skip
                results["fan_out"].append(row)
                if run < args.runs - 1:
                    delete_batch(cp, name)
            last = f"fan-{args.runs - 1}"
            finished = "timed_out_after" not in results["fan_out"][-1]
            if finished:
                op.stop()
                copies = max(0, args.idle_objects // args.jobs - 1)
                print(f"cloning {copies} x {args.jobs} finished children ...", flush=True)
                made = clone_finished(cp, last, copies, "idle") + args.jobs
                op.start()
                quiet = 5.0 if quick else 20.0
                settled = settle(cp, quiet, 300)
                row = idle(cp, op, args.idle_seconds)
                row.update(finished_objects=made, settle_seconds=settled, quiet_seconds=quiet)
                results["idle"] = row
                print(json.dumps(row), flush=True)
                results["single_idle"] = [single_job_latency(cp, f"one-idle-{n}") for n in range(3)]
                print(json.dumps(results["single_idle"]), flush=True)
        finally:
            op.stop()
            kubelet.stop()
        results["kubelet"] = {"completed": len(kubelet.completed), "errors": kubelet.errors[:20]}
    results["loadavg_end"] = os.getloadavg()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"operator-{results['mode']}-{stamp}"
    results["raw"] = str((report.RESULTS / f"{name}.json").relative_to(ROOT))
    report.save(name, results)
    text = markdown(results)
    print("\n" + text)
    if not args.no_docs:
        report.write_section("operator", text, heading=HEADING)


if __name__ == "__main__":
    main()
