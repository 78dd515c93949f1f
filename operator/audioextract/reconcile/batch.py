"""One Batch, observed -> planned (DESIGN §3, steps 1 and 4): a pure function, no I/O.

:func:`plan_batch` takes the Batch as the cache shows it and its children (the
ExtractionJobs it owns) and returns a :class:`BatchPlan`: the children to create, the
children whose status a retry-failed request or the failure budget changes, the
Batch's own status (the rollup), the Events to post once that status is written, the
webhook events owed, and whether the Batch's TTL has passed.
"""

from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from audioextract.api.constants import ANNOTATION_RETRY_FAILED, BATCH_KIND, ErrorCode, JobPhase
from audioextract.api.defaults import job_key
from audioextract.api.spec import BatchSpec, Webhook
from audioextract.api.status import BatchStatus, ExtractionJobStatus, WebhookStatus
from audioextract.api.validation import batch_output_conflicts
from audioextract.reconcile import events
from audioextract.reconcile.budget import bytes_without_status, fit_status, json_bytes
from audioextract.reconcile.children import BatchRef, child_manifest, is_owned_by
from audioextract.reconcile.events import EventSpec
from audioextract.reconcile.extractionjob import (
    failed,
    read_status,
    requeued,
    seconds_between,
    validation_message,
    with_conditions,
)
from audioextract.reconcile.names import child_name
from audioextract.reconcile.observe import make_error
from audioextract.reconcile.rollup import (
    FINAL_PHASES,
    ChildSnapshot,
    invalid_spec_status,
    rollup,
    to_cancel,
)
from audioextract.webhooks import state as webhook_state
from audioextract.webhooks.events import Child, Event, Owner, Snapshot, owed_events

Obj = Mapping[str, Any]

CANCEL_MESSAGE = "not started: the Batch's failurePolicy.maxFailedJobs was exceeded"


def read_batch_status(obj: Obj) -> BatchStatus:
    """The Batch's status as the model; an unreadable status counts as empty."""
    try:
        return BatchStatus.model_validate(obj.get("status") or {})
    except ValidationError:
        return BatchStatus()


def parse_batch_spec(batch: Obj, max_jobs: int) -> BatchSpec | str:
    """The Batch's spec, or the message naming what is wrong with it."""
    try:
        spec = BatchSpec.model_validate(batch.get("spec") or {})
    except ValidationError as exc:
        return validation_message(exc)
    if len(spec.jobs) > max_jobs:
        return (
            f"spec.jobs: {len(spec.jobs)} jobs exceed the operator's maxJobsPerBatch ({max_jobs})"
        )
    # One output, one job; jobs without a destination share the default one.
    conflicts = batch_output_conflicts(batch["metadata"]["name"], spec, None, child_name)
    if conflicts:
        return "; ".join(conflicts)
    return spec


@dataclass(frozen=True)
class BatchSnapshot:
    """What the Batch's reconcile observed: the Batch and the ExtractionJobs it owns."""

    batch: Obj
    spec: BatchSpec | str
    children: Mapping[str, Obj] = field(default_factory=dict)  # by ExtractionJob name
    now: str = ""
    unsaved_webhook: WebhookStatus | None = None
    # Names of ExtractionJobs that exist but are not this Batch's: never created again.
    taken: Container[str] = frozenset()
    # Bytes of the stored Batch without its status (managedFields included), as last
    # observed; None: estimated from the projection (see other_bytes).
    stored_bytes: int | None = None

    def other_bytes(self) -> int:
        """Bytes of the stored Batch besides its status, for the status budget.

        Without an observed size, the projection (no managedFields) plus the spec's size
        once more stands in: a field manager's managedFields entry lists the spec's
        fields without their values, so it is smaller than the spec.
        """
        if self.stored_bytes is not None:
            return self.stored_bytes
        return bytes_without_status(self.batch) + json_bytes(self.batch.get("spec") or {})


@dataclass(frozen=True)
class ChildWrite:
    """A child's new status, written only onto the version the plan saw."""

    name: str
    status: ExtractionJobStatus
    resource_version: str | None


@dataclass(frozen=True)
class BatchPlan:
    """What to do for one Batch, in order: children, child statuses, own status, Events."""

    status: BatchStatus
    create_children: tuple[dict[str, Any], ...] = ()
    child_writes: tuple[ChildWrite, ...] = ()
    events: tuple[EventSpec, ...] = ()
    webhook_owed: tuple[Event, ...] = ()
    webhook_owner: Owner | None = None
    webhook: Webhook | None = None  # the spec's webhook, for the notifier
    delete_batch: bool = False
    requeue_after: float | None = None


def _children(
    batch: Obj, spec: BatchSpec, children: Mapping[str, Obj]
) -> list[tuple[str, str, Obj | None]]:
    """(job key, child name, owned child or None) per job, in spec order."""
    uid = batch["metadata"]["uid"]
    out: list[tuple[str, str, Obj | None]] = []
    for index, job in enumerate(spec.jobs):
        key = job_key(job, index)
        name = child_name(batch["metadata"]["name"], key)
        child = children.get(name)
        out.append((key, name, child if child is not None and is_owned_by(child, uid) else None))
    return out


def _snapshot(key: str, name: str, st: ExtractionJobStatus | None) -> ChildSnapshot:
    if st is None:
        return ChildSnapshot(key=key, name=name)
    return ChildSnapshot(
        key=key,
        name=name,
        phase=JobPhase(st.phase) if st.phase else None,
        result=st.result,
        error=st.error,
        start_time=st.start_time,
        completion_time=st.completion_time,
    )


def _invalid(snap: BatchSnapshot, message: str) -> BatchPlan:
    meta = snap.batch["metadata"]
    previous = read_batch_status(snap.batch)
    new = invalid_spec_status(previous, message, generation=meta.get("generation"), now=snap.now)
    evs: tuple[EventSpec, ...] = ()
    if previous.phase != new.phase:
        evs = (EventSpec(events.WARNING, events.INVALID_SPEC, message),)
    return BatchPlan(status=new, events=evs)


def plan_batch(snap: BatchSnapshot, *, previous: BatchStatus | None = None) -> BatchPlan:
    """Observe -> decide for one Batch; see the module docstring.

    ``previous`` overrides the status the rollup starts from (after a 409 the handler
    re-reads the Batch and plans again from the fresh one, keeping its retry token).
    """
    if isinstance(snap.spec, str):
        return _invalid(snap, snap.spec)
    spec = snap.spec
    batch = snap.batch
    meta = batch["metadata"]
    generation = meta.get("generation")
    observed = read_batch_status(batch)  # 1,000 entries: read once
    status = previous or observed
    ref = BatchRef(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])
    rows = _children(batch, spec, snap.children)
    # Manifests only for the missing: resolving 1,000 specs on every rollup would cost.
    creates = tuple(
        child_manifest(ref, spec, index)
        for index, (_k, name, _c) in enumerate(rows)
        if name not in snap.children and name not in snap.taken
    )
    statuses: dict[str, ExtractionJobStatus | None] = {
        name: read_status(child) if child is not None else None for _k, name, child in rows
    }
    writes: dict[str, ChildWrite] = {}
    pre_events: list[EventSpec] = []
    if creates:
        pre_events.append(
            EventSpec(
                events.NORMAL, events.CHILDREN_CREATED, f"created {len(creates)} ExtractionJobs"
            )
        )

    def write(name: str, child: Obj, new: ExtractionJobStatus) -> None:
        new = with_conditions(new, child["metadata"].get("generation"), snap.now)
        writes[name] = ChildWrite(name, new, child["metadata"].get("resourceVersion"))
        statuses[name] = new

    token = (meta.get("annotations") or {}).get(ANNOTATION_RETRY_FAILED)
    if token and token != status.retry_token:
        count = 0
        for _key, name, child in rows:
            st = statuses[name]
            if child is None or st is None:
                continue
            if st.phase != JobPhase.FAILED or st.retry_token == token:
                continue
            write(name, child, requeued(st, token))
            count += 1
        pre_events.append(
            EventSpec(
                events.NORMAL, events.RETRY_REQUESTED, f"re-queued {count} failed jobs ({token})"
            )
        )
        status = status.model_copy(update={"retry_token": token})

    cancel = {c.name for c in to_cancel(spec, [_snapshot(k, n, statuses[n]) for k, n, _c in rows])}
    if cancel:
        error = make_error(ErrorCode.CANCELLED, CANCEL_MESSAGE)
        for _key, name, child in rows:
            st = statuses[name]
            if child is None or st is None or name not in cancel or st.job_name:
                continue
            write(name, child, failed(st, error, snap.now))
        pre_events.append(
            EventSpec(events.WARNING, events.CANCELLED, f"cancelled {len(cancel)} queued jobs")
        )

    new = rollup(
        spec,
        [_snapshot(k, n, statuses[n]) for k, n, _c in rows],
        previous=status,
        generation=generation,
        now=snap.now,
    )
    owner: Owner | None = None
    owed: list[Event] = []
    if spec.webhook is not None:
        owner = Owner(
            kind=BATCH_KIND, namespace=meta["namespace"], name=meta["name"], uid=meta["uid"]
        )
        kids = [
            Child.from_status(
                key,
                statuses[name],
                extraction_job=name,
                uid=child["metadata"].get("uid") if child is not None else None,
            )
            for key, name, child in rows
        ]
        owed = owed_events(
            Snapshot(owner, kids, phase=new.phase, completion_time=new.completion_time),
            spec.webhook.events,
        )
        merged = webhook_state.merge(webhook_state.load(status.webhook), snap.unsaved_webhook)
        new = new.model_copy(update={"webhook": webhook_state.summarize(merged, owed)})

    # The status must fit in etcd with the spec: cut entries (and say so) if it would not.
    new = fit_status(
        new, snap.other_bytes(), namespace=meta["namespace"], batch_name=meta["name"], now=snap.now
    )

    post = list(pre_events)
    old_phase = observed.phase
    if new.phase != old_phase:
        kind = events.WARNING if new.phase in ("Failed", "PartiallySucceeded") else events.NORMAL
        post.append(
            EventSpec(
                kind,
                events.PHASE_CHANGED,
                f"{new.phase}: {new.succeeded} succeeded, {new.failed} failed of {new.total}",
            )
        )
    delete = False
    wait: float | None = None
    ttl = spec.ttl_seconds_after_finished
    if new.phase in FINAL_PHASES and ttl is not None and new.completion_time:
        left = ttl - seconds_between(new.completion_time, snap.now)
        if left <= 0:
            delete = True
            post.append(
                EventSpec(events.NORMAL, events.TTL_EXPIRED, "ttlSecondsAfterFinished passed")
            )
        else:
            wait = left
    return BatchPlan(
        status=new,
        create_children=creates,
        child_writes=tuple(writes.values()),
        events=tuple(post),
        webhook_owed=tuple(owed),
        webhook_owner=owner,
        webhook=spec.webhook if owner is not None else None,
        delete_batch=delete,
        requeue_after=wait,
    )
