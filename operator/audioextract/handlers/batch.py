"""Batch: observe from the cache, plan (:mod:`audioextract.reconcile.batch`), act.

Acting, in order: create the missing children concurrently (bounded by the API
facade; a 409 means the child exists: adopt it), write the children's statuses a
retry or the failure budget changed, write the Batch's status if it changed, post
the Events, hand owed webhook events to the notifier, delete the Batch once its TTL
has passed.

The Batch's status write carries the resourceVersion the plan saw, so it fails with
409 when anyone wrote the Batch since (another client's status update, a spec or
metadata edit). Unguarded, a merge patch computed from a stale read would put back
stale values: it replaces lists such as ``conditions`` whole, other writers'
conditions included. On 409 the plan is recomputed from the newer version, as the
watch brings it into the cache.
"""

import asyncio
import logging
import time

from audioextract.api.constants import BATCH_KIND, BATCH_PLURAL, JOB_KIND, JOB_PLURAL
from audioextract.api.spec import BatchSpec
from audioextract.api.status import BatchStatus
from audioextract.handlers import events
from audioextract.handlers.cache import key_of
from audioextract.handlers.context import Context, Obj
from audioextract.handlers.kube import is_conflict, is_not_found
from audioextract.handlers.queue import Result
from audioextract.reconcile.batch import BatchPlan, BatchSnapshot, plan_batch, read_batch_status

log = logging.getLogger(__name__)

# Status writes that meet a 409 are recomputed from a fresher version this many times.
CONFLICT_RETRIES = 3
# How long a 409 waits for the other writer's version to arrive through the watch.
CONFLICT_WAIT_SECONDS = 2.0


def batch_key(obj: Obj) -> str:
    """The Batch as "<namespace>/<name>", for logs."""
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


async def _create_children(ctx: Context, plan: BatchPlan) -> None:
    """Create the missing children at the API server's pace; adopt any that exist."""

    async def create(manifest: Obj) -> None:
        try:
            created = await ctx.kube.create_custom(JOB_PLURAL, manifest)
        except Exception as exc:
            if not is_conflict(exc):
                raise
            return
        if created:
            ctx.cache.put(JOB_KIND, created)

    outcomes = await asyncio.gather(
        *(create(m) for m in plan.create_children), return_exceptions=True
    )
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    if errors:
        # The ones created are in the cache; the next reconcile creates only the rest.
        raise errors[0]


async def _write_children(ctx: Context, batch: Obj, plan: BatchPlan) -> None:
    ns = batch["metadata"]["namespace"]
    for write in plan.child_writes:
        child = ctx.cache.extraction_jobs.get((ns, write.name))
        if child is None or child["metadata"].get("resourceVersion") != write.resource_version:
            continue  # changed since the plan saw it: its event reconciles the Batch again
        await ctx.write_status(JOB_KIND, JOB_PLURAL, child, write.status)


async def _fresher(ctx: Context, batch: Obj) -> Obj | None:
    """The Batch as the watch delivers it after someone else's write, or None if it is late.

    After a 409 the newer version is on its way through the watch; reading it from the
    cache (rather than a GET) keeps the operator to the calls it is allowed and to one
    source of truth. None (deleted, or slower than ``CONFLICT_WAIT_SECONDS``) leaves
    the retry to the work queue.
    """
    meta = batch["metadata"]
    key = (meta["namespace"], meta["name"])
    written = batch_version(batch)
    deadline = time.monotonic() + CONFLICT_WAIT_SECONDS
    while time.monotonic() < deadline:
        # The index, not the packed Batch: decoding a 1,000-job Batch every 20 ms
        # would cost more than the wait.
        held = ctx.cache.batch_version(key)
        if held is None or held.uid != meta.get("uid"):
            return None
        if _number(held.resource_version) > written:
            return ctx.cache.batches.get(key)
        await asyncio.sleep(0.02)
    return None


def batch_version(obj: Obj) -> int:
    """The object's resourceVersion as a number (-1 when it is not one: then never newer)."""
    return _number(obj["metadata"].get("resourceVersion"))


def _number(resource_version: str | None) -> int:
    try:
        return int(resource_version)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return -1


class ConflictPendingError(RuntimeError):
    """A 409 whose newer version has not reached the cache yet: the queue retries."""


def exc_conflict(batch: Obj) -> ConflictPendingError:
    """The error that sends the Batch back to the queue after an unresolved 409."""
    return ConflictPendingError(f"Batch {batch_key(batch)}: status conflict (409); retrying")


class _Taken:
    """Whether an ExtractionJob of that name exists in the namespace (from the cache)."""

    def __init__(self, ctx: Context, namespace: str) -> None:
        self.ctx, self.namespace = ctx, namespace

    def __contains__(self, name: object) -> bool:
        return (self.namespace, name) in self.ctx.cache.extraction_jobs


def _plan(
    ctx: Context, batch: Obj, spec: BatchSpec | str, previous: BatchStatus | None
) -> BatchPlan:
    return plan_batch(
        BatchSnapshot(
            batch=batch,
            spec=spec,
            children=ctx.cache.children(batch),
            taken=_Taken(ctx, batch["metadata"]["namespace"]),
            now=ctx.now,
            unsaved_webhook=ctx.notifier.unsaved(batch["metadata"]["uid"]),
            stored_bytes=ctx.cache.batch_bytes.get(key_of(batch)),
        ),
        previous=previous,
    )


async def reconcile_batch(ctx: Context, batch: Obj) -> Result:
    """Observe -> plan -> act for one Batch; see the module docstring."""
    meta = batch["metadata"]
    spec = ctx.cache.batch_spec(batch, ctx.settings.max_jobs_per_batch)
    plan = _plan(ctx, batch, spec, None)
    if plan.create_children:
        await _create_children(ctx, plan)
    if plan.child_writes:
        await _write_children(ctx, batch, plan)
    retry_token = plan.status.retry_token
    first = plan
    for attempt in range(CONFLICT_RETRIES):
        try:
            batch = await ctx.write_status(BATCH_KIND, BATCH_PLURAL, batch, plan.status)
            break
        except Exception as exc:
            if is_not_found(exc):
                return Result()
            if not is_conflict(exc) or attempt == CONFLICT_RETRIES - 1:
                if is_conflict(exc):
                    log.warning(
                        "Batch %s: status still conflicting after %d attempts; retrying later",
                        batch_key(batch),
                        CONFLICT_RETRIES,
                    )
                raise
        fresh = await _fresher(ctx, batch)
        if fresh is None:
            raise exc_conflict(batch)
        fmeta = fresh["metadata"]
        if fmeta.get("generation") != meta.get("generation"):
            log.info("Batch %s: spec changed meanwhile; reconciling the new one", batch_key(batch))
            return Result(requeue_after=0.0)
        log.info(
            "Batch %s: status conflict (409): written by someone else since resourceVersion "
            "%s; recomputing from %s",
            batch_key(batch),
            batch["metadata"].get("resourceVersion"),
            fmeta.get("resourceVersion"),
        )
        batch = fresh
        # retryToken is this operator's alone: keep the one this reconcile acted on.
        previous = read_batch_status(fresh).model_copy(update={"retry_token": retry_token})
        plan = _plan(ctx, batch, spec, previous)
    # Events of what was done before a 409 (children created, a retry) still go out once.
    done = [e for e in first.events if e not in plan.events and e.reason != events.PHASE_CHANGED]
    for ev in (*done, *plan.events):
        await events.post(ctx.kube, batch, ev.type, ev.reason, ev.message)
    if plan.webhook is not None and plan.webhook_owner is not None and plan.status.webhook:
        ctx.notifier.saved(meta["uid"], plan.status.webhook)
        ctx.notifier.schedule(
            plan.webhook_owner, batch, plan.webhook, plan.webhook_owed, plan.status.webhook
        )
    if plan.delete_batch:
        log.info("deleting Batch %s: ttlSecondsAfterFinished passed", batch_key(batch))
        try:
            await ctx.kube.delete_custom(BATCH_PLURAL, meta["namespace"], meta["name"])
        except Exception as exc:
            if not is_not_found(exc):
                raise
    return Result(requeue_after=plan.requeue_after)
