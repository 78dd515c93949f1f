"""Admission: start the queued ExtractionJobs that fit, as batch/v1 Jobs.

This is the only place that creates Jobs, and it runs once per pass of the single
reconcile loop, so decisions are serialised. Slots in use are counted from the API
(unfinished Jobs owned by an ExtractionJob, and ExtractionJobs in Running), so the
limits hold across restarts and leader changes.
"""

import logging
from collections.abc import Mapping

from pydantic import ValidationError

from audioextract.api.constants import LABEL_BATCH, LABEL_JOB, ErrorCode, JobPhase
from audioextract.api.defaults import effective_priority
from audioextract.api.spec import ExtractionJobSpec
from audioextract.api.task import NoDestinationError, Task, build_task
from audioextract.handlers import events
from audioextract.handlers.context import Context, Obj, World, batch_id, is_finished
from audioextract.handlers.extractionjob import failed, read_status, with_conditions, write_status
from audioextract.handlers.kube import is_conflict, is_forbidden
from audioextract.reconcile.admission import Active, BatchLimit, Candidate, admit
from audioextract.reconcile.manifest import check_resources, job_manifest, task_secret_manifest
from audioextract.reconcile.names import job_name
from audioextract.reconcile.observe import make_error
from audioextract.reconcile.resources import ResourceBoundsError

log = logging.getLogger(__name__)


def _spec(ej: Obj) -> ExtractionJobSpec | None:
    try:
        return ExtractionJobSpec.model_validate(ej.get("spec") or {})
    except ValidationError:
        return None


def slots_in_use(world: World) -> list[Active]:
    """One entry per ExtractionJob holding a slot: an unfinished Job or phase Running."""
    active: list[Active] = []
    for ej in world.extraction_jobs.values():
        status = read_status(ej)
        uid = ej["metadata"].get("uid", "")
        running_job = any(
            not is_finished(j) and not j["metadata"].get("deletionTimestamp")
            for j in world.jobs_by_owner.get(uid, [])
        )
        if running_job or status.phase == JobPhase.RUNNING:
            spec = _spec(ej)
            active.append(Active(batch=batch_id(ej), kueue=bool(spec and spec.queue_name)))
    return active


def candidates(world: World) -> dict[tuple[str, str], Candidate]:
    """Queued ExtractionJobs without a Job, keyed by (namespace, name)."""
    out: dict[tuple[str, str], Candidate] = {}
    for (ns, name), ej in world.extraction_jobs.items():
        status = read_status(ej)
        if status.phase not in (None, JobPhase.QUEUED) or status.job_name:
            continue
        if ej["metadata"].get("deletionTimestamp"):
            continue
        spec = _spec(ej)
        if spec is None:
            continue
        out[(ns, name)] = Candidate(
            namespace=ns,
            name=name,
            priority=effective_priority(spec),
            created=ej["metadata"].get("creationTimestamp") or "",
            batch=batch_id(ej),
            kueue=bool(spec.queue_name),
        )
    return out


async def admit_jobs(ctx: Context, world: World, limits: Mapping[str, BatchLimit]) -> None:
    """Start every queued ExtractionJob that admission allows now."""
    queued = candidates(world)
    chosen = admit(queued.values(), slots_in_use(world), limits, ctx.settings.max_concurrent_jobs)
    for candidate in chosen:
        ej = world.extraction_jobs[(candidate.namespace, candidate.name)]
        await start(ctx, world, ej)


async def start(ctx: Context, world: World, ej: Obj) -> None:
    """Create the next run's Job for ``ej`` and record it in the status (Running)."""
    meta = ej["metadata"]
    spec = _spec(ej)
    if spec is None:
        return
    status = read_status(ej)
    try:
        task = build_task(meta["name"], spec, ctx.settings.default_destination)
        check_resources(spec, ctx.worker)
    except (NoDestinationError, ResourceBoundsError) as exc:
        error = make_error(ErrorCode.INVALID_SPEC, str(exc))
        await write_status(
            ctx,
            world,
            ej,
            with_conditions(failed(status, error, ctx.now), meta.get("generation"), ctx.now),
        )
        await events.post(ctx.kube, ej, events.WARNING, events.INVALID_SPEC, error.message)
        return
    run = (status.attempts or 0) + 1
    name = job_name(meta["name"], run)
    labels = meta.get("labels") or {}
    task_secret = await create_task_secret(ctx, ej, name, task)
    manifest = job_manifest(
        name=name,
        namespace=meta["namespace"],
        extraction_job=meta["name"],
        extraction_job_uid=meta["uid"],
        spec=spec,
        task=task,
        config=ctx.worker,
        batch_label=labels.get(LABEL_BATCH),
        job_key=labels.get(LABEL_JOB),
        task_secret=task_secret,
    )
    try:
        await ctx.kube.create_job(manifest)
    except Exception as exc:
        # Same run, same name: the Job was created before a restart lost the status
        # write. Adopt it rather than create a second one.
        if not is_conflict(exc):
            raise
        log.info("Job %s/%s exists already; adopting it", meta["namespace"], name)
    new = status.model_copy(
        update={
            "phase": JobPhase.QUEUED if spec.queue_name else JobPhase.RUNNING,
            "job_name": name,
            "attempts": run,
            "start_time": None if spec.queue_name else ctx.now,
            "completion_time": None,
            "result": None,
            "error": None,
        }
    )
    await write_status(ctx, world, ej, with_conditions(new, meta.get("generation"), ctx.now))
    await events.post(
        ctx.kube, ej, events.NORMAL, events.JOB_STARTED, f"created Job {name} (run {run})"
    )


async def create_task_secret(ctx: Context, ej: Obj, name: str, task: Task) -> str | None:
    """Create the run's task Secret (docs/install.md); its name, or None to use the env.

    Without RBAC to create Secrets the task goes into the Job's environment as
    before, with a Warning Event saying so: the job still runs.
    """
    meta = ej["metadata"]
    body = task_secret_manifest(
        name=name,
        namespace=meta["namespace"],
        task=task,
        extraction_job=meta["name"],
        extraction_job_uid=meta["uid"],
    )
    try:
        await ctx.kube.create_secret(body)
    except Exception as exc:
        if is_conflict(exc):  # the same run after a restart: the Secret is already there
            return name
        if not is_forbidden(exc):
            raise
        log.warning("no RBAC to create Secrets: the task of %s goes into the env", name)
        await events.post(
            ctx.kube,
            ej,
            events.WARNING,
            events.TASK_SECRET_FORBIDDEN,
            "the operator may not create Secrets; the task is in the Job's environment",
        )
        return None
    return name
