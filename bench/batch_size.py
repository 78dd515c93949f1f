"""How big a Batch gets: spec and status bytes per job, and a whole 1,000-job Batch.

    .venv/bin/python -m bench.batch_size              # computed from the models' JSON
    .venv/bin/python -m bench.batch_size --apiserver  # and stored on a real API server

etcd refuses a value over 1.5 MiB (its default ``--max-request-bytes``) and the API
server a request body over 3 MiB; a Batch is stored as JSON (custom resources have no
protobuf encoding), with its ``metadata.managedFields`` and, after a client-side
``kubectl apply``, a copy of the whole object in an annotation. Each case builds a
Batch of N jobs and a finished status with one entry per job — ``name``,
``extractionJob``, ``phase`` and a compact ``result`` (``uri``, ``sizeBytes``,
``durationSeconds``, ``sha256``) — and measures it; with ``--apiserver`` each is also
created (server-side apply), its status written and the stored object read back.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audioextract.api.constants import MAX_BATCH_LOCATION_CHARS, MAX_JOBS_PER_BATCH
from audioextract.reconcile.names import child_name

ROOT = Path(__file__).resolve().parent.parent
ETCD_LIMIT = 1_572_864  # etcd's default --max-request-bytes (1.5 MiB)
REQUEST_LIMIT = 3 * 1024 * 1024  # kube-apiserver's request body limit
Obj = dict[str, Any]


@dataclass(frozen=True)
class Case:
    """One Batch shape."""

    label: str
    batch_name: str
    job_name_len: int
    source_len: int
    result_uri_len: int
    failed_every: int = 0  # every n-th job failed with a message of the longest kind
    dest_len: int = 0  # each job's own destination URL (the result URI is that URL)
    webhook: bool = False  # a webhook summary settling one event per job and the Batch's
    tags: int = 0  # 110-character tag values per job: spec bytes the location rule ignores


# The worst Batch the location rule admits: 1,000 jobs, the longest names, every
# character of the rule's total in a short source plus a destination URL, which each
# status entry repeats as its result URI (so each character is stored twice).
_SHARE = MAX_BATCH_LOCATION_CHARS // MAX_JOBS_PER_BATCH
_SOURCE = 40


CASES = [
    Case("typical (short names, 60-character URLs)", "episode-42", 10, 60, 70),
    Case("long names, 250-character URLs", "b" * 63, 63, 250, 250, failed_every=10),
    Case(
        "near the new maximum: longest names, 262,000 characters of URLs (40 + 222 per job, "
        "destination in every entry), webhook summary",
        "b" * 63,
        63,
        _SOURCE,
        _SHARE - _SOURCE,
        dest_len=_SHARE - _SOURCE,
        webhook=True,
    ),
    Case("long names, 500-character URLs", "b" * 63, 63, 500, 500),
    # Passes the rule (35-character sources, no destination in the spec), but each
    # result URI sits under the operator's default destination with a 760-character
    # prefix and each job carries three 110-character tags: the operator must cut.
    Case(
        "rule passes, but 3 x 110-character tags per job and 800-character result URIs "
        "(the operator's default destination)",
        "b" * 63,
        63,
        35,
        800,
        tags=3,
    ),
    Case("maximum lengths (names 63, URLs 4,096)", "b" * 63, 63, 4096, 4096),
]


def _pad(prefix: str, length: int, suffix: str = "") -> str:
    return prefix + "x" * max(0, length - len(prefix) - len(suffix)) + suffix


def job_name(i: int, length: int) -> str:
    return _pad(f"j{i:04d}-", length) if length > 6 else f"j{i:04d}"[:length]


def dest_url(i: int, length: int) -> str:
    """A job's destination URL (a presigned PUT without its query: the result URI)."""
    return _pad(f"https://audio-out.example.com/{i}/", length, ".mp3")


def batch(case: Case, jobs: int) -> Obj:
    """The Batch as a user applies it."""
    items: list[Obj] = [
        {
            "name": job_name(i, case.job_name_len),
            "source": {"url": _pad(f"https://cdn.example.com/{i}/", case.source_len, ".mp4")},
        }
        for i in range(jobs)
    ]
    if case.dest_len:
        for i, item in enumerate(items):
            item["output"] = {"destination": {"url": dest_url(i, case.dest_len)}}
    if case.tags:
        for item in items:
            item["output"] = {"tags": {f"t{t}": "v" * 110 for t in range(case.tags)}}
    return {
        "apiVersion": "audioextract.dev/v1alpha1",
        "kind": "Batch",
        "metadata": {"name": case.batch_name},
        "spec": {"defaults": {"output": {"format": "mp3", "quality": "high"}}, "jobs": items},
    }


def entry(case: Case, i: int) -> Obj:
    """One status.jobs[] entry: a compact result, or the error."""
    name = job_name(i, case.job_name_len)
    out: Obj = {
        "name": name,
        "extractionJob": child_name(case.batch_name, name),
        "phase": "Succeeded",
    }
    if case.failed_every and i % case.failed_every == 0:
        out["phase"] = "Failed"
        out["error"] = {
            "code": "SourceUnreachable",
            "message": _pad("connection to cdn.example.com:443 failed: ", 200),
            "retryable": True,
        }
    else:
        uri = dest_url(i, case.dest_len) if case.dest_len else ""
        out["result"] = {
            "uri": uri or _pad(f"s3://audio-out/bench/{i}/", case.result_uri_len, ".mp3"),
            "sizeBytes": 73_400_320,
            "durationSeconds": 4587.52,
            "sha256": hashlib.sha256(name.encode()).hexdigest(),
        }
    return out


def status(case: Case, jobs: int) -> Obj:
    """A finished Batch's status."""
    stamp = "2026-12-02T03:04:05Z"
    entries = [entry(case, i) for i in range(jobs)]
    failed = sum(1 for e in entries if e["phase"] == "Failed")
    conditions = [
        {"type": t, "status": s, "reason": r, "message": m, "lastTransitionTime": stamp,
         "observedGeneration": 1}
        for t, s, r, m in (
            ("Ready", "True" if not failed else "False", "Succeeded", f"{jobs} of {jobs} succeeded"),
            ("Reconciling", "False", "Finished", ""),
            ("Stalled", "False", "Finished", ""),
            ("Complete", "True", "Finished", "all jobs finished"),
        )
    ]  # fmt: skip
    out: Obj = {
        "phase": "PartiallySucceeded" if failed else "Succeeded",
        "total": jobs, "queued": 0, "running": 0, "succeeded": jobs - failed, "failed": failed,
        "startTime": stamp, "completionTime": stamp, "observedGeneration": 1,
        "jobs": entries, "conditions": conditions,
    }  # fmt: skip
    if case.webhook:
        ids = [f"msg_{hashlib.sha256(str(i).encode()).hexdigest()[:32]}" for i in range(jobs + 1)]
        out["webhook"] = {"delivered": jobs + 1, "pending": 0, "failed": 0, "settled": ids}
    return out


def size(obj: Any) -> int:
    """Bytes of compact JSON, as the API server stores a custom resource."""
    return len(json.dumps(obj, separators=(",", ":")).encode())


def measure(case: Case, jobs: int) -> Obj:
    """Sizes computed without an API server."""
    body, st = batch(case, jobs), status(case, jobs)
    spec_bytes, status_bytes = size(body["spec"]), size(st)
    return {
        "case": case.label,
        "jobs": jobs,
        "spec_bytes_per_job": size(body["spec"]["jobs"][1]),
        "status_entry_bytes": size(entry(case, 1)),
        "spec_bytes": spec_bytes,
        "status_bytes": status_bytes,
        "object_bytes": size({**body, "status": st}),
    }


def on_apiserver(cases: list[Case], jobs: int) -> list[Obj]:
    """Create each Batch server-side, write its status and read back the stored size."""
    import kubernetes.client
    from tests.support.controlplane import ControlPlane

    from audioextract.api.crd import batch_crd
    from audioextract.api.status import BatchStatus
    from audioextract.reconcile.budget import (
        OBJECT_BUDGET,
        budgeted_bytes,
        bytes_without_status,
        fit_status,
    )

    rows = []
    assets = os.environ.get("KUBEBUILDER_ASSETS") or str(ROOT / ".cache" / "k8s")
    with ControlPlane(Path(assets), Path(tempfile.mkdtemp(prefix="batch-size-"))) as cp:
        cp.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(batch_crd()))
        cp.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        custom: Any = kubernetes.client.CustomObjectsApi(cp.api_client)
        for n, case in enumerate(cases):
            body = batch(case, jobs)
            body["metadata"]["name"] = f"{n}-{case.batch_name}"[:63]
            row: Obj = {"case": case.label, "jobs": jobs}
            created = cp.kubectl(
                "apply", "--server-side", "--field-manager=user", "-n", "default", "-f", "-",
                input=json.dumps(body), check=False, timeout=300,
            )  # fmt: skip
            row["server_side_apply"] = (created.stdout + created.stderr).strip()[-300:]
            if created.returncode == 0:
                name = body["metadata"]["name"]

                def read(name: str = name) -> Obj:
                    out = cp.kubectl(
                        "get", "batch", "-n", "default", name, "-o", "json",
                        "--show-managed-fields", timeout=120,
                    ).stdout  # fmt: skip
                    result: Obj = json.loads(out)
                    return result

                def write(st: Obj, name: str = name) -> str:
                    try:
                        custom.patch_namespaced_custom_object_status(
                            "audioextract.dev", "v1alpha1", "default", "batches", name,
                            {"status": st},
                        )  # fmt: skip
                    except kubernetes.client.ApiException as e:
                        return f"{e.status}: {str(e.body)[:300]}"
                    return "ok"

                whole = status(case, jobs)
                before = read()
                row["status_write"] = write(whole)
                # What the operator's status budget makes of it (reconcile/budget.py).
                other = bytes_without_status(before)
                model = BatchStatus.model_validate(whole)
                budgeted = budgeted_bytes(model, other)
                fitted = fit_status(
                    model, other, namespace="default",
                    batch_name=name, now="2026-12-02T03:04:05Z",
                ).dump()  # fmt: skip
                row["operator_budget"] = f"{budgeted} of {OBJECT_BUDGET} bytes: " + (
                    "written whole" if fitted == whole else "status.jobs cut"
                )
                if fitted != whole:
                    cut = next(c for c in fitted["conditions"] if c["type"] == "StatusTruncated")
                    row["operator_status_write"] = write(fitted)
                    row["operator_condition"] = cut["message"]
                obj = read()
                row["stored_bytes"] = size(obj)
                row["stored_share_of_etcd_limit"] = f"{size(obj) / ETCD_LIMIT:.0%}"
            # Client-side apply keeps a copy of the object in an annotation (256 KiB cap).
            body["metadata"]["name"] = f"csa-{n}"
            applied = cp.kubectl(
                "apply", "-n", "default", "-f", "-", input=json.dumps(body), check=False,
                timeout=300,
            )  # fmt: skip
            row["client_side_apply"] = (applied.stdout + applied.stderr).strip()[-300:]
            rows.append(row)
    return rows


def main() -> None:
    """Print the table (and the API server's view with --apiserver)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=MAX_JOBS_PER_BATCH)
    parser.add_argument("--apiserver", action="store_true")
    args = parser.parse_args()
    print(f"etcd limit {ETCD_LIMIT} bytes, API request limit {REQUEST_LIMIT} bytes\n")
    print("| Batch of", args.jobs, "jobs | spec bytes/job | status entry bytes | spec | status | "
          "spec + status | share of etcd's limit |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for case in CASES:
        m = measure(case, args.jobs)
        print(
            f"| {m['case']} | {m['spec_bytes_per_job']} | {m['status_entry_bytes']} | "
            f"{m['spec_bytes'] / 1024:.0f} KiB | {m['status_bytes'] / 1024:.0f} KiB | "
            f"{m['object_bytes'] / 1024:.0f} KiB | {m['object_bytes'] / ETCD_LIMIT:.0%} |"
        )
    if args.apiserver:
        for row in on_apiserver(CASES, args.jobs):
            print(json.dumps(row))


if __name__ == "__main__":
    main()
