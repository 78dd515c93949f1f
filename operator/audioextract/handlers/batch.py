"""Batch: validate, create missing children, retry/cancel children, roll status up, TTL.

The reconcile loop calls :func:`prepare_batch` before admission and
:func:`finish_batch` after it; together they are the single writer of the Batch's
status.
"""

import logging
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from audioextract.api.constants import (
    ANNOTATION_RETRY_FAILED,
    BATCH_KIND,
    BATCH_PLURAL,
    JOB_PLURAL,
    ErrorCode,
    JobPhase,
)
from audioextract.api.defaults import job_key
from audioextract.api.spec import BatchSpec
from audioextract.api.status import BatchStatus
from audioextract.api.validation import check_batch_outputs
from audioextract.handlers import events
from audioextract.handlers.context import Context, Obj, World
from audioextract.handlers.extractionjob import (
    failed,
    read_status,
    validation_message,
    with_conditions,
    write_status,
)
from audioextract.handlers.kube import is_conflict, is_not_found
from audioextract.reconcile.admission import BatchLimit
from audioextract.reconcile.children import BatchRef, desired_children, is_owned_by
from audioextract.reconcile.names import child_name
from audioextract.reconcile.observe import make_error
from audioextract.reconcile.patch import merge_patch
from audioextract.reconcile.rollup import (
    FINAL_PHASES,
    ChildSnapshot,
    invalid_spec_status,
    rollup,
    to_cancel,
)
from audioextract.webhooks.events import Child, Owner, Snapshot

log = logging.getLogger(__name__)

# Status writes that meet a 409 are recomputed from a fresh read this many times per pass.
CONFLICT_RETRIES = 3


@dataclass
class Prepared:
    """A Batch after preparation: its parsed spec and admission limits, or None when invalid."""

    batch: Obj
    spec: BatchSpec | None
    status: BatchStatus
    limit: BatchLimit | None


def read_batch_status(obj: Obj) -> BatchStatus:
    """The Batch's status as the model; an unreadable status counts as empty."""
    try:
        return BatchStatus.model_validate(obj.get("status") or {})
    except ValidationError:
        return BatchStatus()


def batch_key(obj: Obj) -> str:
    """The admission key of a Batch: "<namespace>/<name>"."""
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


def children_of(world: World, batch: Obj, spec: BatchSpec) -> list[tuple[str, str, Obj | None]]:
    """(job key, child name, child or None) per job in spec order, children filtered by owner."""
    ns, uid = batch["metadata"]["namespace"], batch["metadata"]["uid"]
    out: list[tuple[str, str, Obj | None]] = []
    for index, job in enumerate(spec.jobs):
        key = job_key(job, index)
        name = child_name(batch["metadata"]["name"], key)
        child = world.extraction_jobs.get((ns, name))
        out.append((key, name, child if child is not None and is_owned_by(child, uid) else None))
    return out


def snapshots(world: World, batch: Obj, spec: BatchSpec) -> list[ChildSnapshot]:
    """The rollup's view of the Batch's children."""
    out: list[ChildSnapshot] = []
    for key, name, child in children_of(world, batch, spec):
        if child is None:
            out.append(ChildSnapshot(key=key, name=name))
            continue
        st = read_status(child)
        out.append(
            ChildSnapshot(
                key=key,
                name=name,
                phase=JobPhase(st.phase) if st.phase else None,
                result=st.result,
                error=st.error,
                start_time=st.start_time,
                completion_time=st.completion_time,
            )
        )
    return out


async def write_batch_status(ctx: Context, batch: Obj, new: BatchStatus) -> Obj:
    """Patch the Batch's status only when it differs, and only onto the version it was read at.

    The patch carries the read ``resourceVersion``, so it fails with 409 when anyone
    wrote the Batch since (another client's status update, a spec or metadata edit).
    Unguarded, a merge patch computed from a stale read would put back stale values: it
    replaces lists such as ``conditions`` whole, other writers' conditions included.
    """
    patch = merge_patch(batch.get("status") or {}, new.dump())
    if not patch:
        return batch
    meta = batch["metadata"]
    updated: Obj = await ctx.kube.patch_status(
        BATCH_PLURAL,
        meta["namespace"],
        meta["name"],
        patch,
        resource_version=meta.get("resourceVersion"),
    )
    return updated


async def prepare_batch(ctx: Context, world: World, batch: Obj) -> Prepared:
    """Validate the spec, create missing children, act on retry and failure budget."""
    meta = batch["metadata"]
    generation = meta.get("generation")
    status = read_batch_status(batch)
    try:
        spec = BatchSpec.model_validate(batch.get("spec") or {})
        if len(spec.jobs) > ctx.settings.max_jobs_per_batch:
            raise ValueError(
                f"spec.jobs: {len(spec.jobs)} jobs exceed the operator's maxJobsPerBatch "
                f"({ctx.settings.max_jobs_per_batch})"
            )
        check_batch_outputs(meta["name"], spec, ctx.settings.default_destination, child_name)
    except (ValidationError, ValueError) as exc:
        message = validation_message(exc) if isinstance(exc, ValidationError) else str(exc)
        new = invalid_spec_status(status, message, generation=generation, now=ctx.now)
        if read_batch_status(batch).phase != new.phase:
            await events.post(ctx.kube, batch, events.WARNING, events.INVALID_SPEC, message)
        try:
            await write_batch_status(ctx, batch, new)
        except Exception as exc:
            if not is_conflict(exc):
                raise
            log.info("Batch %s: changed since it was read (409); next pass", batch_key(batch))
        return Prepared(batch, None, status, None)

    ref = BatchRef(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])
    created = 0
    for manifest in desired_children(ref, spec):
        key = (meta["namespace"], manifest["metadata"]["name"])
        if key in world.extraction_jobs:
            continue
        try:
            obj = await ctx.kube.create_custom(JOB_PLURAL, manifest)
        except Exception as exc:
            if not is_conflict(exc):
                raise
            continue
        world.extraction_jobs[key] = obj
        created += 1
    if created:
        await events.post(
            ctx.kube,
            batch,
            events.NORMAL,
            events.CHILDREN_CREATED,
            f"created {created} ExtractionJobs",
        )

    token = (meta.get("annotations") or {}).get(ANNOTATION_RETRY_FAILED)
    if token and token != status.retry_token:
        await _retry_failed(ctx, world, batch, spec, token)
        status = status.model_copy(update={"retry_token": token})

    snaps = snapshots(world, batch, spec)
    cancel = to_cancel(spec, snaps)
    if cancel:
        names = {c.name for c in cancel}
        for _key, name, child in children_of(world, batch, spec):
            if child is None or name not in names or read_status(child).job_name:
                continue
            error = make_error(
                ErrorCode.CANCELLED,
                "not started: the Batch's failurePolicy.maxFailedJobs was exceeded",
            )
            st = read_status(child)
            await write_status(
                ctx,
                world,
                child,
                with_conditions(
                    failed(st, error, ctx.now), child["metadata"].get("generation"), ctx.now
                ),
            )
        await events.post(
            ctx.kube,
            batch,
            events.WARNING,
            events.CANCELLED,
            f"cancelled {len(cancel)} queued jobs",
        )
    limit = BatchLimit(parallelism=spec.parallelism, suspended=bool(spec.suspend))
    return Prepared(batch, spec, status, limit)


async def _retry_failed(
    ctx: Context, world: World, batch: Obj, spec: BatchSpec, token: str
) -> None:
    """Re-queue the failed children as new runs, once per distinct annotation value."""
    count = 0
    for _key, _name, child in children_of(world, batch, spec):
        if child is None:
            continue
        st = read_status(child)
        if st.phase != JobPhase.FAILED or st.retry_token == token:
            continue
        requeued = st.model_copy(
            update={
                "phase": JobPhase.QUEUED,
                "job_name": None,
                "error": None,
                "result": None,
                "start_time": None,
                "completion_time": None,
                "retry_token": token,
            }
        )
        await write_status(
            ctx,
            world,
            child,
            with_conditions(requeued, child["metadata"].get("generation"), ctx.now),
        )
        count += 1
    await events.post(
        ctx.kube,
        batch,
        events.NORMAL,
        events.RETRY_REQUESTED,
        f"re-queued {count} failed jobs ({token})",
    )


def _expired(completion: str | None, ttl: int | None, now: str) -> bool:
    if ttl is None or not completion:
        return False
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    try:
        return (
            datetime.strptime(now, fmt) - datetime.strptime(completion, fmt)
        ).total_seconds() >= ttl
    except ValueError:
        return False


async def finish_batch(ctx: Context, world: World, prepared: Prepared) -> None:
    """Roll the children up into the Batch's status; delete it when its TTL has passed.

    When the status write meets a 409 (the Batch changed since the pass listed it), the
    Batch is read again and the status recomputed from that version, up to
    ``CONFLICT_RETRIES`` times; the children's snapshot stays the pass's. A changed
    spec (new generation) is left to the next pass, which the change itself triggers.
    """
    if prepared.spec is None:
        return
    batch, status = prepared.batch, prepared.status
    for _ in range(CONFLICT_RETRIES):
        try:
            await _roll_up(ctx, world, batch, prepared.spec, status)
            return
        except Exception as exc:
            if not is_conflict(exc):
                raise
        meta = batch["metadata"]
        try:
            fresh = await ctx.kube.get_custom(BATCH_PLURAL, meta["namespace"], meta["name"])
        except Exception as exc:
            if not is_not_found(exc):
                raise
            return
        fmeta = fresh["metadata"]
        if (fmeta.get("uid"), fmeta.get("generation")) != (meta.get("uid"), meta.get("generation")):
            log.info(
                "Batch %s: spec changed during the pass; the next pass rolls up", batch_key(batch)
            )
            return
        log.info(
            "Batch %s: status conflict (409): written by someone else since resourceVersion "
            "%s; recomputing from %s",
            batch_key(batch),
            meta.get("resourceVersion"),
            fmeta.get("resourceVersion"),
        )
        batch = fresh
        # retryToken is this operator's alone: keep the one prepare_batch acted on.
        status = read_batch_status(fresh).model_copy(
            update={"retry_token": prepared.status.retry_token}
        )
    log.warning(
        "Batch %s: status still conflicting after %d attempts; the next pass retries",
        batch_key(batch),
        CONFLICT_RETRIES,
    )


async def _roll_up(
    ctx: Context, world: World, batch: Obj, spec: BatchSpec, status: BatchStatus
) -> None:
    """One rollup and status write of ``batch`` as read, with ``status`` as the previous one."""
    meta = batch["metadata"]
    old_phase = read_batch_status(batch).phase
    new = rollup(
        spec,
        snapshots(world, batch, spec),
        previous=status,
        generation=meta.get("generation"),
        now=ctx.now,
    )
    webhook = spec.webhook
    if webhook is not None and ctx.notifier is not None:
        owner = Owner(
            kind=BATCH_KIND, namespace=meta["namespace"], name=meta["name"], uid=meta["uid"]
        )
        children = [
            Child.from_status(
                key,
                read_status(child) if child is not None else None,
                extraction_job=name,
                uid=child["metadata"].get("uid") if child is not None else None,
            )
            for key, name, child in children_of(world, batch, spec)
        ]
        snapshot = Snapshot(owner, children, phase=new.phase, completion_time=new.completion_time)
        owed = ctx.notifier.owed(snapshot, webhook)
        new = new.model_copy(
            update={"webhook": ctx.notifier.status(owner.uid, status.webhook, owed)}
        )
    batch = await write_batch_status(ctx, batch, new)
    if webhook is not None and ctx.notifier is not None and new.webhook is not None:
        ctx.notifier.saved(owner.uid, new.webhook)
        ctx.notifier.schedule(owner, batch, webhook, owed, new.webhook)
    if new.phase != old_phase:
        kind = events.WARNING if new.phase in ("Failed", "PartiallySucceeded") else events.NORMAL
        await events.post(
            ctx.kube,
            batch,
            kind,
            events.PHASE_CHANGED,
            f"{new.phase}: {new.succeeded} succeeded, {new.failed} failed of {new.total}",
        )
    if new.phase in FINAL_PHASES and _expired(
        new.completion_time, spec.ttl_seconds_after_finished, ctx.now
    ):
        log.info("deleting Batch %s: ttlSecondsAfterFinished passed", batch_key(batch))
        await events.post(
            ctx.kube, batch, events.NORMAL, events.TTL_EXPIRED, "ttlSecondsAfterFinished passed"
        )
        try:
            await ctx.kube.delete_custom(BATCH_PLURAL, meta["namespace"], meta["name"])
        except Exception as exc:
            if not is_not_found(exc):
                raise
