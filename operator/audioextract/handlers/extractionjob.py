"""ExtractionJob: observe from the cache, plan (:mod:`audioextract.reconcile.extractionjob`), act.

Acting, in order: create the run's Job (a 409 means it exists: adopt it), write the
status if it changed (guarded by the resourceVersion the plan saw; a 409 retries the
reconcile from the fresher cache), post the Events, hand owed webhook events to the
notifier, delete the Jobs whose outcome is recorded.
"""

import logging

from audioextract import logs
from audioextract.api.constants import JOB_KIND, JOB_PLURAL
from audioextract.handlers import events
from audioextract.handlers.cache import JOB_NAME_LABEL
from audioextract.handlers.context import Context, Obj
from audioextract.handlers.kube import is_conflict, is_forbidden, is_not_found
from audioextract.handlers.queue import Result
from audioextract.reconcile.extractionjob import (
    JobSnapshot,
    Start,
    plan_extraction_job,
    pods_needed,
)

log = logging.getLogger(__name__)


async def _create_task_secret(ctx: Context, ej: Obj, start: Start) -> bool:
    """Create the run's task Secret; False when RBAC refuses Secrets (the env fallback)."""
    try:
        await ctx.kube.create_secret(start.secret)
    except Exception as exc:
        if is_conflict(exc):  # the same run after a restart: the Secret is already there
            return True
        if not is_forbidden(exc):
            raise
        log.warning(
            "no RBAC to create Secrets: the task of %s goes into the env",
            start.job["metadata"]["name"],
        )
        await events.post(
            ctx.kube,
            ej,
            events.WARNING,
            events.TASK_SECRET_FORBIDDEN,
            "the operator may not create Secrets; the task is in the Job's environment",
        )
        return False
    return True


async def _create_run(ctx: Context, ej: Obj, start: Start) -> bool:
    """The run's task Secret, then its Job; a Job that exists already is adopted (409).

    True when the Job is in the cache afterwards. It holds the admission slot from
    then on (an unfinished Job counts), since the run is not in the status yet.
    """
    manifest = start.job if await _create_task_secret(ctx, ej, start) else start.job_with_env
    try:
        created = await ctx.kube.create_job(manifest)
    except Exception as exc:
        # Same run, same name: the Job exists from before a restart. Adopt it.
        if not is_conflict(exc):
            raise
        log.info(
            "Job %s/%s exists already; adopting it",
            manifest["metadata"]["namespace"],
            manifest["metadata"]["name"],
        )
    else:
        if created:
            ctx.cache.put("Job", created)
    name = manifest["metadata"]["name"]
    return any(j["metadata"]["name"] == name for j in ctx.cache.owned_jobs(ej))


async def reconcile_extraction_job(ctx: Context, ej: Obj) -> Result:
    """Observe -> plan -> act for one ExtractionJob."""
    meta = ej["metadata"]
    key = (meta["namespace"], meta["name"])
    jobs = ctx.cache.owned_jobs(ej)
    pods: list[Obj] = []
    finished = pods_needed(ej, jobs)
    if finished is not None:
        job = next(j for j in jobs if j["metadata"]["name"] == finished)
        cached = ctx.cache.finished_pods(job)
        if cached is not None:
            pods = cached
        else:  # the Pod watch is behind the Job watch: read them once
            pods = await ctx.kube.list_pods(meta["namespace"], f"{JOB_NAME_LABEL}={finished}")
    plan = plan_extraction_job(
        JobSnapshot(
            ej=ej,
            jobs=jobs,
            pods=pods,
            admitted=key in ctx.cache.expected,
            now=ctx.now,
            unsaved_webhook=ctx.notifier.unsaved(meta["uid"]),
        ),
        ctx.job_config(),
    )
    settled = plan.slot_settled
    if plan.create_job is not None and not await _create_run(ctx, ej, plan.create_job):
        # Adopted on 409 but not in the cache yet: the expectation keeps the slot until
        # the Job's watch event arrives (and wakes this ExtractionJob again).
        settled = False
    before = (ej.get("status") or {}).get("phase")
    try:
        ej = await ctx.write_status(JOB_KIND, JOB_PLURAL, ej, plan.status)
    except Exception as exc:
        if is_not_found(exc):
            ctx.cache.expected.pop(key, None)
            return Result()
        raise
    if plan.status.phase is not None and plan.status.phase != before:
        # One line per phase change: a Batch's children post no Events (write budget),
        # so the log is where each child's progress shows.
        error = plan.status.error
        log.info(
            "ExtractionJob %s/%s: %s%s",
            meta["namespace"],
            meta["name"],
            plan.status.phase,
            f" ({error.code}: {error.message})" if error is not None else "",
            extra=logs.about(ej, JOB_KIND),
        )
    if settled:
        ctx.cache.expected.pop(key, None)
    for ev in plan.events:
        await events.post(ctx.kube, ej, ev.type, ev.reason, ev.message)
    if plan.webhook is not None and plan.webhook_owner is not None and plan.status.webhook:
        ctx.notifier.saved(meta["uid"], plan.status.webhook)
        ctx.notifier.schedule(
            plan.webhook_owner, ej, plan.webhook, plan.webhook_owed, plan.status.webhook
        )
    for name in plan.delete_jobs:
        try:
            await ctx.kube.delete_job(meta["namespace"], name)
        except Exception as exc:
            if not is_not_found(exc):
                raise
        else:
            log.info(
                "stopped Job %s/%s: its run was cancelled before it was recorded",
                meta["namespace"],
                name,
                extra=logs.about(ej, JOB_KIND),
            )
        # Gone for this operator now; the watch's DELETED event may come later.
        ctx.cache.job_deleted((meta["namespace"], name))
    return Result(requeue_after=plan.requeue_after)
