"""ExtractionJob: observe its current Job, write its status once if changed, clean up."""

import logging
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from audioextract import logs, metrics
from audioextract.api.constants import BATCH_KIND, JOB_KIND, ErrorCode, JobPhase
from audioextract.api.constants import JOB_PLURAL as PLURAL
from audioextract.api.spec import ExtractionJobSpec
from audioextract.api.status import ExtractionJobStatus, JobError
from audioextract.handlers import events
from audioextract.handlers.context import Context, Obj, World, controller_owner, is_finished
from audioextract.handlers.kube import is_not_found
from audioextract.reconcile.conditions import Lifecycle, lifecycle_conditions
from audioextract.reconcile.observe import make_error, observe_job
from audioextract.reconcile.patch import merge_patch
from audioextract.webhooks import Event
from audioextract.webhooks.events import Child, Owner, Snapshot

log = logging.getLogger(__name__)

TERMINAL = (JobPhase.SUCCEEDED, JobPhase.FAILED)
_LIFECYCLE = {
    JobPhase.QUEUED: Lifecycle.PROGRESSING,
    JobPhase.RUNNING: Lifecycle.PROGRESSING,
    JobPhase.SUCCEEDED: Lifecycle.SUCCEEDED,
    JobPhase.FAILED: Lifecycle.FAILED,
}


def validation_message(exc: ValidationError, prefix: str = "spec") -> str:
    """The first validation error as ``spec.<field>: <message>``, naming the field."""
    err = exc.errors()[0]
    loc = ".".join(str(part) for part in err.get("loc", ()))
    where = f"{prefix}.{loc}" if loc else prefix
    return f"{where}: {err.get('msg', 'invalid')}"


def read_status(obj: Obj) -> ExtractionJobStatus:
    """The object's status as the model; an unreadable status counts as empty."""
    try:
        return ExtractionJobStatus.model_validate(obj.get("status") or {})
    except ValidationError:
        return ExtractionJobStatus()


def with_conditions(
    status: ExtractionJobStatus, generation: int | None, now: str
) -> ExtractionJobStatus:
    """``status`` with kstatus conditions and observedGeneration matching its phase."""
    phase = JobPhase(status.phase or JobPhase.QUEUED)
    if phase == JobPhase.FAILED and status.error is not None:
        reason, message = str(status.error.code), status.error.message
    elif phase == JobPhase.SUCCEEDED and status.result is not None:
        reason, message = "Succeeded", status.result.uri
    else:
        reason, message = str(phase), f"job is {str(phase).lower()}"
    return status.model_copy(
        update={
            "phase": phase,
            "observed_generation": generation,
            "conditions": lifecycle_conditions(
                status.conditions,
                _LIFECYCLE[phase],
                reason,
                message,
                now=now,
                observed_generation=generation,
            ),
        }
    )


async def write_status(ctx: Context, world: World, ej: Obj, new: ExtractionJobStatus) -> Obj:
    """Patch the status only when it differs; keep the pass's copy current."""
    old = ej.get("status") or {}
    body = new.dump()
    patch = merge_patch(old, body)
    if not patch:
        return ej
    meta = ej["metadata"]
    updated = await ctx.kube.patch_status(PLURAL, meta["namespace"], meta["name"], patch)
    world.extraction_jobs[(meta["namespace"], meta["name"])] = updated
    metrics.job_status_written(old.get("phase"), new, meta.get("creationTimestamp"))
    return updated


def failed(status: ExtractionJobStatus, error: JobError, now: str) -> ExtractionJobStatus:
    """``status`` moved to Failed with ``error``."""
    return status.model_copy(
        update={
            "phase": JobPhase.FAILED,
            "error": error,
            "result": None,
            "completion_time": status.completion_time or now,
        }
    )


def _seconds_since(ts: str | None, now: str) -> float:
    if not ts:
        return float("inf")
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    try:
        return (datetime.strptime(now, fmt) - datetime.strptime(ts, fmt)).total_seconds()
    except ValueError:
        return float("inf")


async def reconcile_extraction_job(ctx: Context, world: World, ej: Obj) -> None:
    """Observe → decide → act for one ExtractionJob.

    Records the outcome of its current Job in its status, then deletes finished Jobs
    whose result is recorded (after the configured delay).
    """
    meta = ej["metadata"]
    generation = meta.get("generation")
    status = read_status(ej)
    try:
        ExtractionJobSpec.model_validate(ej.get("spec") or {})
    except ValidationError as exc:
        if status.phase not in TERMINAL:
            error = make_error(ErrorCode.INVALID_SPEC, validation_message(exc))
            await write_status(
                ctx, world, ej, with_conditions(failed(status, error, ctx.now), generation, ctx.now)
            )
            await events.post(ctx.kube, ej, events.WARNING, events.INVALID_SPEC, error.message)
        return
    new = status
    owned = world.jobs_by_owner.get(meta.get("uid", ""), [])
    current = next((j for j in owned if j["metadata"]["name"] == status.job_name), None)
    if status.job_name and status.phase not in TERMINAL:
        if current is None:
            new = failed(
                status,
                make_error(
                    ErrorCode.WORKER_CRASHED,
                    f"Job {status.job_name} disappeared before it finished",
                ),
                ctx.now,
            )
        else:
            pods: list[Obj] = []
            if is_finished(current):
                pods = await ctx.kube.list_pods(
                    meta["namespace"], f"batch.kubernetes.io/job-name={status.job_name}"
                )
            obs = observe_job(current, pods)
            update: dict[str, Any] = {"phase": obs.phase}
            if obs.start_time:
                update["start_time"] = status.start_time or obs.start_time
            if obs.phase in TERMINAL:
                update.update(
                    result=obs.result,
                    error=obs.error,
                    completion_time=obs.completion_time or ctx.now,
                )
            new = status.model_copy(update=update)
    new = with_conditions(new, generation, ctx.now)
    webhook = ExtractionJobSpec.model_validate(ej.get("spec") or {}).webhook
    owner: Owner | None = None
    owed: list[Event] = []
    if (
        webhook is not None
        and ctx.notifier is not None
        and controller_owner(ej, BATCH_KIND) is None
    ):
        owner = Owner(
            kind=JOB_KIND, namespace=meta["namespace"], name=meta["name"], uid=meta["uid"]
        )
        me = Child.from_status(meta["name"], new, extraction_job=meta["name"], uid=meta["uid"])
        owed = ctx.notifier.owed(Snapshot(owner, [me]), webhook)
        new = new.model_copy(
            update={"webhook": ctx.notifier.status(owner.uid, status.webhook, owed)}
        )
    before = status.phase
    ej = await write_status(ctx, world, ej, new)
    if (
        owner is not None
        and webhook is not None
        and ctx.notifier is not None
        and new.webhook is not None
    ):
        ctx.notifier.saved(owner.uid, new.webhook)
        ctx.notifier.schedule(owner, ej, webhook, owed, new.webhook)
    if new.phase != before and new.phase in TERMINAL:
        if new.phase == JobPhase.SUCCEEDED:
            await events.post(
                ctx.kube,
                ej,
                events.NORMAL,
                events.JOB_SUCCEEDED,
                new.result.uri if new.result else "",
            )
        else:
            msg = f"{new.error.code}: {new.error.message}" if new.error else "failed"
            await events.post(ctx.kube, ej, events.WARNING, events.JOB_FAILED, msg)
    await _cleanup(ctx, ej, owned, new)


async def _cleanup(ctx: Context, ej: Obj, owned: list[Obj], status: ExtractionJobStatus) -> None:
    """Delete finished Jobs that are no longer needed: the result is in the status."""
    for job in owned:
        name = job["metadata"]["name"]
        if not is_finished(job) or job["metadata"].get("deletionTimestamp"):
            continue
        if name == status.job_name and status.phase not in TERMINAL:
            continue  # not recorded yet
        if (
            name == status.job_name
            and _seconds_since(status.completion_time, ctx.now)
            < ctx.settings.job_cleanup_delay_seconds
        ):
            continue
        try:
            await ctx.kube.delete_job(job["metadata"]["namespace"], name)
        except Exception as exc:
            if not is_not_found(exc):
                raise
        log.info(
            "deleted finished Job %s/%s",
            job["metadata"]["namespace"],
            name,
            extra=logs.about(ej, JOB_KIND),
        )
