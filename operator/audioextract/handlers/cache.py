"""The operator's view of the cluster: slim projections fed by kopf's watches.

The controller lists Batches, ExtractionJobs, the operator's Jobs and their Pods once
before its first decision; kopf watches them (re-listing on start and after a watch
expires) and its event handlers put each object here (:meth:`Cache.put`) and take
deleted ones out. Reconciles read
only from here, never by listing. Each object is kept as a small projection (no
``managedFields``, no foreign annotations, only the Job fields the status needs), and
the operator's own writes go in at once (write-through), so the next reconcile of
the same object never starts from a version older than its own last write.

Every object is kept packed (:class:`PackedStore`), with a small index beside it for
the lookups that must not decode: an idle operator with 10,000 finished ExtractionJobs
would otherwise hold ~95 MB of parsed JSON for them alone, and each finished 1,000-job
Batch (its status lists every job's result) ~1.3 MB.

Nothing here is the only copy of anything that matters: it is rebuilt from the API
server on every start.
"""

import json
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

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


class Version(NamedTuple):
    """Which version of an object the cache holds: enough to order two of them."""

    uid: str | None
    resource_version: str | None


def version_of(obj: Mapping[str, Any]) -> Version:
    """The uid and resourceVersion of an object."""
    meta = obj["metadata"]
    return Version(meta.get("uid"), meta.get("resourceVersion"))


def _rv(version: Version) -> int | None:
    try:
        return int(version.resource_version)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def newer_or_same(new: Mapping[str, Any], old: Mapping[str, Any] | Version | None) -> bool:
    """Whether ``new`` is not older than ``old`` (by resourceVersion, when both are numbers).

    resourceVersions are opaque by contract; etcd's are integers, and a watch event
    that arrives after the operator's own write-through must not put an older version
    back. When either is not a number the newcomer wins.
    """
    if old is None:
        return True
    had = old if isinstance(old, Version) else version_of(old)
    has = version_of(new)
    if had.uid != has.uid:
        return True
    a, b = _rv(has), _rv(had)
    return a is None or b is None or a >= b


def _already(held: "_Indexed | None", new: Mapping[str, Any]) -> bool:
    """Whether the cache holds exactly this version of the object.

    A resourceVersion names one content: the watch event of the operator's own write,
    or kopf's list at start replaying the controller's, need not be packed again.
    """
    if held is None or held.version.resource_version is None:
        return False
    return held.version == version_of(new)


class _Indexed(NamedTuple):
    """What the cache keeps beside a packed object, so that no lookup decodes it."""

    version: Version
    phase: str | None
    owner_uid: str | None  # an ExtractionJob's Batch's (None for a Batch)


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


class PackedStore(MutableMapping[Key, Obj]):
    """Objects by key, each kept as zlib-compressed compact JSON and decoded on every read.

    Why: CPython holds a parsed ExtractionJob in ~9.5 KB of dicts and strings (each of
    its six conditions is a dict, its result URI is repeated in all of them); packed it
    takes ~0.8 KB, and reading one back costs tens of microseconds. Every read returns
    a fresh object, so a caller may change what it got without changing the cache.
    """

    def __init__(self) -> None:
        """An empty store."""
        self._packed: dict[Key, bytes] = {}

    def __getitem__(self, key: Key) -> Obj:
        """The object stored under ``key``, decoded anew."""
        return self.decode(self._packed[key])

    def packed(self, key: Key) -> bytes | None:
        """The stored form of ``key`` (None: absent); a new object after every store."""
        return self._packed.get(key)

    @staticmethod
    def decode(packed: bytes) -> Obj:
        """An object from its stored form."""
        decoded: Obj = json.loads(zlib.decompress(packed))
        return decoded

    def __setitem__(self, key: Key, obj: Obj) -> None:
        """Store ``obj`` (packed now: later changes to ``obj`` are not seen)."""
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
        self._packed[key] = zlib.compress(text.encode(), 1)

    def rekey(self, copy: Callable[[Key], Key]) -> None:
        """Replace every key with an equal ``copy(key)`` (see :meth:`Cache.compact`)."""
        self._packed = {copy(key): packed for key, packed in self._packed.items()}

    def __delitem__(self, key: Key) -> None:
        """Forget ``key``."""
        del self._packed[key]

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is stored, without decoding it."""
        return key in self._packed

    def __iter__(self) -> Iterator[Key]:
        """The keys, without decoding anything."""
        return iter(self._packed)

    def __len__(self) -> int:
        """How many objects are stored."""
        return len(self._packed)


def _fresh(value: Any, strings: dict[str, str]) -> Any:
    """A deep copy of JSON-like ``value`` made of new objects, equal strings made one."""
    if isinstance(value, str):
        got = strings.get(value)
        if got is None:
            got = strings[value] = value.encode().decode()
        return got
    if isinstance(value, dict):
        return {_fresh(k, strings): _fresh(v, strings) for k, v in value.items()}
    if isinstance(value, list):
        return [_fresh(v, strings) for v in value]
    if isinstance(value, set):
        return {_fresh(v, strings) for v in value}
    if isinstance(value, tuple):
        items = [_fresh(v, strings) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if type(value) is float or type(value) is int:
        return value + 0  # a new object (small ints are shared singletons anyway)
    return value  # bytes (not in the small-object arenas), None, booleans


@dataclass
class Cache:
    """Batches, ExtractionJobs and Jobs by (namespace, name), with the lookups reconciles use."""

    batches: PackedStore = field(default_factory=PackedStore)
    # Batch -> its version and phase (the status-conflict wait and the phase gauges).
    batch_index: dict[Key, _Indexed] = field(default_factory=dict)
    extraction_jobs: PackedStore = field(default_factory=PackedStore)
    # ExtractionJob -> its version, phase and Batch (lookups without decoding it).
    ej_index: dict[Key, _Indexed] = field(default_factory=dict)
    jobs: PackedStore = field(default_factory=PackedStore)
    pods: PackedStore = field(default_factory=PackedStore)
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
    # Decoded children of running Batches, with the packed form each was decoded from.
    # A rollup reads every child of its Batch: decoding 1,000 on every pass cost ~60 ms
    # of the event loop; now only those stored since the last pass are decoded.
    _decoded: dict[Key, tuple[bytes, Obj]] = field(default_factory=dict)

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
            held = self.batch_index.get(key)
            if not newer_or_same(new, held.version if held is not None else None):
                return None
            if _already(held, new):
                self.touched[(kind, key)] = time.monotonic()
                return new
            self.batches[key] = new
            self.batch_index[key] = _Indexed(version_of(new), new["status"].get("phase"), None)
            self.batch_bytes[key] = bytes_without_status(obj)
        else:
            new = project_custom(obj)
            held = self.ej_index.get(key)
            if not newer_or_same(new, held.version if held is not None else None):
                return None
            if _already(held, new):
                self.touched[(kind, key)] = time.monotonic()
                return new
            self._drop_ej(key)
            self.extraction_jobs[key] = new
            owner = controller_owner(new, BATCH_KIND)
            self.ej_index[key] = _Indexed(
                version_of(new), new["status"].get("phase"), owner["uid"] if owner else None
            )
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
            self.batch_index.pop(key, None)
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
        self._decoded.pop(key, None)
        held = self.ej_index.pop(key, None)
        owner_uid = held.owner_uid if held is not None else None
        if owner_uid is None:
            return
        for index in (self.children_by_owner, self.failed_by_owner):
            names = index.get(owner_uid)
            if names is not None:
                names.discard(key[1])
                if not names:
                    del index[owner_uid]

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

    def holds_extraction_job(self, obj: Mapping[str, Any]) -> bool:
        """Whether the cache holds exactly this version of this ExtractionJob."""
        held = self.ej_index.get(key_of(obj))
        version = version_of(obj)
        return held is not None and version.resource_version is not None and held.version == version

    def extraction_job_phases(self) -> Iterator[str | None]:
        """Every cached ExtractionJob's phase (None: not recorded yet)."""
        return (held.phase for held in self.ej_index.values())

    def batch_phases(self) -> Iterator[str | None]:
        """Every cached Batch's phase (None: not recorded yet)."""
        return (held.phase for held in self.batch_index.values())

    def batch_version(self, key: Key) -> Version | None:
        """The version of the Batch the cache holds, without decoding it."""
        held = self.batch_index.get(key)
        return held.version if held is not None else None

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
        """The ExtractionJobs a Batch owns, by name: shared objects, for reading only.

        A running Batch's children are kept decoded between passes (dropped by
        :meth:`forget_decoded`); a finished Batch's are decoded for this call alone, so
        that reading 10,000 finished children at start does not keep them all parsed.
        """
        ns = batch["metadata"].get("namespace") or ""
        uid = batch["metadata"].get("uid") or ""
        keep = self.has_open_children(ns, uid)
        out: dict[str, Obj] = {}
        for name in self.children_by_owner.get(uid, ()):
            key = (ns, name)
            packed = self.extraction_jobs.packed(key)
            if packed is None:
                continue
            hit = self._decoded.get(key)
            if hit is None or hit[0] is not packed:
                hit = (packed, PackedStore.decode(packed))
                if keep:
                    self._decoded[key] = hit
            out[name] = hit[1]
        return out

    def forget_decoded(self) -> None:
        """Drop the decoded children (an idle operator need not hold them)."""
        self._decoded.clear()

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

    def compact(self) -> None:
        """Re-create the long-lived entries, densely, after a burst of work.

        Entries made during a burst (the start-up list of 10,000 objects) hold their own
        copy of every repeated string and lie scattered among the burst's garbage. The
        copies made here share equal strings and fill the holes of partly used pools:
        measured with 10,000 finished ExtractionJobs, 80 → 72 MB live and 88 → 36 MB of
        free blocks in used pools. Whole arenas are seldom freed by it (223 → 214: the
        allocator fills existing pools first). Equal keys and values replace equal ones,
        so nothing a reader sees changes.
        """
        strings: dict[str, str] = {}

        def fresh[T](value: T) -> T:
            copied: T = _fresh(value, strings)
            return copied

        self.batch_index = fresh(self.batch_index)
        self.pods_by_job = fresh(self.pods_by_job)
        self.jobs_by_owner = fresh(self.jobs_by_owner)
        self.children_by_owner = fresh(self.children_by_owner)
        self.failed_by_owner = fresh(self.failed_by_owner)
        self.unfinished_owners = fresh(self.unfinished_owners)
        self.ej_index = fresh(self.ej_index)
        self.touched = fresh(self.touched)
        self.deleted_jobs = fresh(self.deleted_jobs)
        self.batch_bytes = fresh(self.batch_bytes)
        for store in (self.batches, self.extraction_jobs, self.jobs, self.pods):
            store.rekey(fresh)

    def forget_parsed_specs(self) -> None:
        """Drop the parsed Batch specs (an idle operator need not hold them)."""
        self._specs.clear()

    def batch_limits(self, max_jobs: int) -> dict[str, BatchLimit]:
        """Admission limits of every Batch with a valid spec, by "<namespace>/<name>"."""
        out: dict[str, BatchLimit] = {}
        # Only Batches with an open child can limit a decision; a finished Batch's
        # 1,000-job spec need not be parsed again after an idle operator forgot it.
        wanted = {view.batch for view in self.open_views.values() if view.batch}
        for ns, name in self.batches:
            if f"{ns}/{name}" not in wanted:
                continue
            batch = self.batches[(ns, name)]
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
