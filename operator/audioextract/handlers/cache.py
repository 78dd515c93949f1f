"""The operator's view of the cluster: slim projections fed by kopf's watches.

The controller lists Batches, ExtractionJobs, the operator's Jobs and their Pods once
before its first decision; kopf watches them (re-listing on start and after a watch
expires) and its event handlers put each object here (:meth:`Cache.put`) and take
deleted ones out. Reconciles read
only from here, never by listing. Each object is kept as a small projection (no
``managedFields``, no foreign annotations, only the Job fields the status needs), and
the operator's own writes go in at once (write-through), so the next reconcile of
the same object never starts from a version older than its own last write.

Nothing here is the only copy of anything that matters: it is rebuilt from the API
server on every start.
"""

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from audioextract.api.constants import (
    ANNOTATION_RETRY_FAILED,
    BATCH_KIND,
    JOB_KIND,
    Priority,
)
from audioextract.api.defaults import effective_priority
from audioextract.api.spec import BatchSpec
from audioextract.reconcile.admission import BatchLimit, SlotView, batch_limit
from audioextract.reconcile.batch import parse_batch_spec
from audioextract.reconcile.budget import bytes_without_status
from audioextract.reconcile.extractionjob import controller_owner, is_finished, parse_spec
from audioextract.reconcile.names import job_name

Obj = dict[str, Any]
Key = tuple[str, str]

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
_META_KEYS = (
    "name",
    "namespace",
    "uid",
    "generation",
    "resourceVersion",
    "labels",
    "ownerReferences",
    "creationTimestamp",
    "deletionTimestamp",
)


def key_of(obj: Mapping[str, Any]) -> Key:
    """(namespace, name) of an object."""
    meta = obj["metadata"]
    return meta.get("namespace") or "", meta["name"]


def _meta(obj: Mapping[str, Any]) -> Obj:
    meta = obj.get("metadata") or {}
    out = {k: meta[k] for k in _META_KEYS if k in meta}
    token = (meta.get("annotations") or {}).get(ANNOTATION_RETRY_FAILED)
    if token is not None:
        out["annotations"] = {ANNOTATION_RETRY_FAILED: token}
    return out


def project_custom(obj: Mapping[str, Any]) -> Obj:
    """A Batch or ExtractionJob as the reconciles need it: metadata essentials, spec, status."""
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": _meta(obj),
        "spec": obj.get("spec") or {},
        "status": obj.get("status") or {},
    }


def project_job(obj: Mapping[str, Any]) -> Obj:
    """A batch/v1 Job reduced to ownership, ``suspend`` and its status (no Pod template)."""
    status = obj.get("status") or {}
    return {
        "metadata": _meta(obj),
        "spec": {"suspend": (obj.get("spec") or {}).get("suspend")},
        "status": {
            k: status[k]
            for k in (
                "conditions",
                "startTime",
                "completionTime",
                "active",
                "ready",  # a ready worker Pod records the run as Running
                "succeeded",
                "failed",
            )
            if k in status
        },
    }


def project_pod(obj: Mapping[str, Any]) -> Obj:
    """A worker Pod reduced to its Job and its containers' terminated states."""
    statuses = [
        {"name": cs.get("name"), "state": {"terminated": (cs.get("state") or {}).get("terminated")}}
        for cs in (obj.get("status") or {}).get("containerStatuses") or ()
        if (cs.get("state") or {}).get("terminated")
    ]
    return {"metadata": _meta(obj), "status": {"containerStatuses": statuses}}


def _job_of(pod: Mapping[str, Any]) -> str:
    return str((pod["metadata"].get("labels") or {}).get(JOB_NAME_LABEL) or "")


def _rv(obj: Mapping[str, Any]) -> int | None:
    try:
        return int(obj["metadata"].get("resourceVersion"))
    except (TypeError, ValueError):
        return None


def newer_or_same(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
    """Whether ``new`` is not older than ``old`` (by resourceVersion, when both are numbers).

    resourceVersions are opaque by contract; etcd's are integers, and a watch event
    that arrives after the operator's own write-through must not put an older version
    back. When either is not a number the newcomer wins.
    """
    if old is None or old["metadata"].get("uid") != new["metadata"].get("uid"):
        return True
    a, b = _rv(new), _rv(old)
    return a is None or b is None or a >= b


def slot_view(ej: Obj) -> SlotView:
    """What admission needs of one ExtractionJob (spec parsed once, here)."""
    meta = ej["metadata"]
    spec = parse_spec(ej)
    status = ej.get("status") or {}
    owner = controller_owner(ej, BATCH_KIND)
    valid = not isinstance(spec, str)
    return SlotView(
        namespace=meta.get("namespace") or "",
        name=meta["name"],
        uid=meta.get("uid") or "",
        batch=f"{meta.get('namespace') or ''}/{owner['name']}" if owner else None,
        priority=effective_priority(spec) if valid else Priority.NORMAL,  # type: ignore[arg-type]
        kueue=bool(spec.queue_name) if not isinstance(spec, str) else False,
        valid=valid,
        phase=status.get("phase"),
        job_name=status.get("jobName"),
        next_job=job_name(meta["name"], int(status.get("attempts") or 0) + 1),
        created=meta.get("creationTimestamp") or "",
        deleting=bool(meta.get("deletionTimestamp")),
    )


@dataclass
class Cache:
    """Batches, ExtractionJobs and Jobs by (namespace, name), with the lookups reconciles use."""

    batches: dict[Key, Obj] = field(default_factory=dict)
    extraction_jobs: dict[Key, Obj] = field(default_factory=dict)
    jobs: dict[Key, Obj] = field(default_factory=dict)
    pods: dict[Key, Obj] = field(default_factory=dict)
    pods_by_job: dict[Key, set[str]] = field(default_factory=dict)  # (ns, Job) -> Pod names
    # ExtractionJob uid -> names of the Jobs it owns; Batch uid -> names of its children.
    jobs_by_owner: dict[str, set[str]] = field(default_factory=dict)
    children_by_owner: dict[str, set[str]] = field(default_factory=dict)
    # Batch uid -> names of its Failed children (its failure budget, for admission).
    failed_by_owner: dict[str, set[str]] = field(default_factory=dict)
    # Open (not Succeeded/Failed) ExtractionJobs' admission views; owners of unfinished Jobs.
    open_views: dict[Key, SlotView] = field(default_factory=dict)
    unfinished_owners: dict[str, int] = field(default_factory=dict)
    # Admission's expectations: admitted, not yet seen started (key -> monotonic deadline).
    expected: dict[Key, float] = field(default_factory=dict)
    # When each entry was last put, for the safety-net resync's pruning.
    touched: dict[tuple[str, Key], float] = field(default_factory=dict)
    # Jobs this operator deleted (key -> uid) until their DELETED event: a watch event
    # of an older version still in flight must not bring one back to be deleted again.
    deleted_jobs: dict[Key, str] = field(default_factory=dict)
    _specs: dict[tuple[str, int | None], BatchSpec | str] = field(default_factory=dict)
    # Batch -> bytes of the stored object without its status (managedFields included,
    # which the projection leaves out): the status budget (reconcile/budget.py).
    batch_bytes: dict[Key, int] = field(default_factory=dict)

    # -- feeding ----------------------------------------------------------------------

    def put(self, kind: str, obj: Mapping[str, Any]) -> Obj | None:
        """Take an object in (from a watch event or the operator's own write).

        Returns the projection stored, or None when the cache holds a newer version.
        """
        key = key_of(obj)
        if kind == "Pod":
            new = project_pod(obj)
            if not newer_or_same(new, self.pods.get(key)):
                return None
            self.pods[key] = new
            job = _job_of(new)
            if job:
                self.pods_by_job.setdefault((key[0], job), set()).add(key[1])
            return new
        if kind == "Job":
            new = project_job(obj)
            if self.deleted_jobs.get(key) == new["metadata"].get("uid"):
                return None
            if not newer_or_same(new, self.jobs.get(key)):
                return None
            self._drop_job(key)
            self.jobs[key] = new
            owner = controller_owner(new, JOB_KIND)
            if owner is not None:
                self.jobs_by_owner.setdefault(owner["uid"], set()).add(key[1])
                if not is_finished(new) and not new["metadata"].get("deletionTimestamp"):
                    self.unfinished_owners[owner["uid"]] = (
                        self.unfinished_owners.get(owner["uid"], 0) + 1
                    )
        elif kind == BATCH_KIND:
            new = project_custom(obj)
            if not newer_or_same(new, self.batches.get(key)):
                return None
            self.batches[key] = new
            self.batch_bytes[key] = bytes_without_status(obj)
        else:
            new = project_custom(obj)
            if not newer_or_same(new, self.extraction_jobs.get(key)):
                return None
            self._drop_ej(key)
            self.extraction_jobs[key] = new
            owner = controller_owner(new, BATCH_KIND)
            if owner is not None:
                self.children_by_owner.setdefault(owner["uid"], set()).add(key[1])
                if new["status"].get("phase") == "Failed":
                    self.failed_by_owner.setdefault(owner["uid"], set()).add(key[1])
            view = slot_view(new)
            if view.open:
                self.open_views[key] = view
            if view.job_name or not view.open:
                # Admission's create is now visible: the slot is counted from the object.
                self.expected.pop(key, None)
        self.touched[(kind, key)] = time.monotonic()
        return new

    def remove(self, kind: str, key: Key) -> None:
        """Forget an object (deleted, or absent from a resync's list)."""
        self.touched.pop((kind, key), None)
        if kind == "Pod":
            old = self.pods.pop(key, None)
            job_key = (key[0], _job_of(old) if old is not None else "")
            names = self.pods_by_job.get(job_key)
            if names is not None:
                names.discard(key[1])
                if not names:
                    del self.pods_by_job[job_key]
        elif kind == "Job":
            self._drop_job(key)
            self.jobs.pop(key, None)
            self.deleted_jobs.pop(key, None)
        elif kind == BATCH_KIND:
            self.batches.pop(key, None)
            self.batch_bytes.pop(key, None)
        else:
            self._drop_ej(key)
            self.extraction_jobs.pop(key, None)
            self.expected.pop(key, None)

    def job_deleted(self, key: Key) -> None:
        """Forget a Job the operator deleted, and ignore its late watch events."""
        old = self.jobs.get(key)
        if old is not None and old["metadata"].get("uid"):
            self.remove("Job", key)
            self.deleted_jobs[key] = old["metadata"]["uid"]

    def _drop_job(self, key: Key) -> None:
        old = self.jobs.get(key)
        if old is None:
            return
        owner = controller_owner(old, JOB_KIND)
        if owner is None:
            return
        names = self.jobs_by_owner.get(owner["uid"])
        if names is not None:
            names.discard(key[1])
            if not names:
                del self.jobs_by_owner[owner["uid"]]
        if not is_finished(old) and not old["metadata"].get("deletionTimestamp"):
            left = self.unfinished_owners.get(owner["uid"], 0) - 1
            if left > 0:
                self.unfinished_owners[owner["uid"]] = left
            else:
                self.unfinished_owners.pop(owner["uid"], None)

    def _drop_ej(self, key: Key) -> None:
        self.open_views.pop(key, None)
        old = self.extraction_jobs.get(key)
        if old is None:
            return
        owner = controller_owner(old, BATCH_KIND)
        if owner is not None:
            for index in (self.children_by_owner, self.failed_by_owner):
                names = index.get(owner["uid"])
                if names is not None:
                    names.discard(key[1])
                    if not names:
                        del index[owner["uid"]]

    def prune(self, kind: str, present: Iterable[Key], since: float) -> list[Key]:
        """Remove entries of ``kind`` absent from a full list started at ``since``.

        An entry put after the list started is kept: it is newer than the list.
        Returns the keys removed.
        """
        keep = set(present)
        store: Mapping[Key, Obj] = {
            "Job": self.jobs,
            BATCH_KIND: self.batches,
        }.get(kind, self.extraction_jobs)
        gone = [
            k for k in list(store) if k not in keep and self.touched.get((kind, k), 0.0) < since
        ]
        for k in gone:
            self.remove(kind, k)
        return gone

    def prune_pods(self) -> int:
        """Forget Pods whose Job is gone (their deletion may have been missed); returns how many."""
        gone = [k for k, p in self.pods.items() if (k[0], _job_of(p)) not in self.jobs]
        for key in gone:
            self.remove("Pod", key)
        return len(gone)

    # -- reading ----------------------------------------------------------------------

    def has_open_children(self, namespace: str, batch_uid: str) -> bool:
        """Whether any child of the Batch is neither Succeeded nor Failed."""
        names = self.children_by_owner.get(batch_uid, ())
        return any((namespace, name) in self.open_views for name in names)

    def owned_jobs(self, ej: Obj) -> list[Obj]:
        """The Jobs an ExtractionJob owns (controller reference, by uid)."""
        ns = ej["metadata"].get("namespace") or ""
        names = self.jobs_by_owner.get(ej["metadata"].get("uid") or "", ())
        return [self.jobs[(ns, n)] for n in sorted(names) if (ns, n) in self.jobs]

    def finished_pods(self, job: Obj) -> list[Obj] | None:
        """The Job's Pods once the cache holds every one the Job counts as ended, else None.

        The Pod watch and the Job watch are separate streams: a Job can be seen
        complete before its last Pod's terminated state arrives. Only when the cache
        holds at least as many ended Pods as the Job counts (``succeeded + failed``)
        is it sure to hold the one whose termination message decides the outcome.
        """
        meta = job["metadata"]
        ns, name = meta.get("namespace") or "", meta["name"]
        names = self.pods_by_job.get((ns, name), ())
        pods = [self.pods[(ns, n)] for n in names if (ns, n) in self.pods]
        status = job.get("status") or {}
        counted = int(status.get("succeeded") or 0) + int(status.get("failed") or 0)
        ended = sum(1 for p in pods if p["status"]["containerStatuses"])
        return pods if counted and ended >= counted else None

    def children(self, batch: Obj) -> dict[str, Obj]:
        """The ExtractionJobs a Batch owns, by name."""
        ns = batch["metadata"].get("namespace") or ""
        names = self.children_by_owner.get(batch["metadata"].get("uid") or "", ())
        return {n: self.extraction_jobs[(ns, n)] for n in names if (ns, n) in self.extraction_jobs}

    def batch_spec(self, batch: Obj, max_jobs: int) -> BatchSpec | str:
        """The Batch's parsed spec (or why it is invalid), parsed once per generation."""
        meta = batch["metadata"]
        memo = (meta.get("uid") or "", meta.get("generation"))
        spec = self._specs.get(memo)
        if spec is None:
            spec = parse_batch_spec(batch, max_jobs)
            if len(self._specs) > 4 * len(self.batches) + 64:
                self._specs.clear()  # old generations and deleted Batches
            self._specs[memo] = spec
        return spec

    def batch_limits(self, max_jobs: int) -> dict[str, BatchLimit]:
        """Admission limits of every Batch with a valid spec, by "<namespace>/<name>"."""
        out: dict[str, BatchLimit] = {}
        for (ns, name), batch in self.batches.items():
            if batch["metadata"].get("deletionTimestamp"):
                continue
            spec = self.batch_spec(batch, max_jobs)
            if isinstance(spec, str):
                continue
            failed = len(self.failed_by_owner.get(batch["metadata"].get("uid") or "", ()))
            out[f"{ns}/{name}"] = batch_limit(spec, failed)
        return out

    def expectations(self, now: float) -> list[Key]:
        """Admitted ExtractionJobs not yet seen started; expired ones are dropped."""
        for key, deadline in list(self.expected.items()):
            if deadline < now:
                del self.expected[key]
        return list(self.expected)
