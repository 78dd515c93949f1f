"""One ExtractionJob, observed -> planned (DESIGN §3, steps 3-4): a pure function, no I/O.

:func:`plan_extraction_job` takes what the cache shows of the ExtractionJob, the Jobs
it owns, the Pods of its finished Job and whether admission has just given it a slot,
and returns a :class:`JobPlan`: the Job to create (if any), the status to write, the
cancelled unrecorded Jobs to stop, the Events to post once the status is written and the
webhook events owed. The handler executes it; the local runner builds the same
status with :func:`with_conditions`.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from audioextract.api.constants import (
    BATCH_KIND,
    JOB_KIND,
    LABEL_BATCH,
    LABEL_JOB,
    ErrorCode,
    JobPhase,
)
from audioextract.api.spec import Destination, ExtractionJobSpec, Webhook
from audioextract.api.status import ExtractionJobStatus, JobError, WebhookStatus
from audioextract.api.task import NoDestinationError, build_task
from audioextract.reconcile import events
from audioextract.reconcile.conditions import Lifecycle, lifecycle_conditions
from audioextract.reconcile.events import EventSpec
from audioextract.reconcile.manifest import (
    WorkerConfig,
    check_resources,
    job_manifest,
    task_secret_manifest,
)
from audioextract.reconcile.names import job_name
from audioextract.reconcile.observe import make_error, observe_job
from audioextract.reconcile.resources import ResourceBoundsError
from audioextract.webhooks import state as webhook_state
from audioextract.webhooks.events import Child, Event, Owner, Snapshot, owed_events

Obj = Mapping[str, Any]

TERMINAL = (JobPhase.SUCCEEDED, JobPhase.FAILED)
_LIFECYCLE = {
    JobPhase.QUEUED: Lifecycle.PROGRESSING,
    JobPhase.RUNNING: Lifecycle.PROGRESSING,
    JobPhase.SUCCEEDED: Lifecycle.SUCCEEDED,
    JobPhase.FAILED: Lifecycle.FAILED,
}
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# A Batch's child not admitted this long after its creation has its Queued status
# written; admitted sooner, it never writes Queued (docs/operator.md, "Write budget").
QUEUED_STATUS_AFTER_SECONDS = 2.0


def validation_message(exc: ValidationError, prefix: str = "spec") -> str:
    """The first validation error as ``spec.<field>: <message>``, naming the field."""
    err = exc.errors()[0]
    loc = ".".join(str(part) for part in err.get("loc", ()))
    where = f"{prefix}.{loc}" if loc else prefix
    return f"{where}: {err.get('msg', 'invalid')}"


# Parsed statuses, by their JSON text: content-addressed, so a hit is always right,
# whatever object or version the status came from. A Batch's rollup reads every child's
# status on every pass, and serialising one costs a fraction of validating it:
# validating 1,000 statuses per rollup was its main cost. The operator empties this
# when it goes idle (forget_parsed_statuses): kept, it would hold thousands of models.
_STATUS_MEMO: dict[str, ExtractionJobStatus] = {}
_STATUS_MEMO_SIZE = 4096  # a whole 1,000-job Batch, and what admission reads


def read_status(obj: Obj) -> ExtractionJobStatus:
    """The object's status as the model; an unreadable status counts as empty.

    The model may be shared with other callers (memoised by content): derive new
    statuses with ``model_copy``, never by assigning to it.
    """
    raw = obj.get("status") or {}
    if not raw:
        return ExtractionJobStatus()
    text = json.dumps(raw, separators=(",", ":"), default=str)
    hit = _STATUS_MEMO.get(text)
    if hit is not None:
        return hit
    try:
        status = ExtractionJobStatus.model_validate(raw)
    except ValidationError:
        status = ExtractionJobStatus()
    if len(_STATUS_MEMO) >= _STATUS_MEMO_SIZE:
        _STATUS_MEMO.clear()
    _STATUS_MEMO[text] = status
    return status


def forget_parsed_statuses() -> None:
    """Drop the memoised statuses (the operator is idle: they would only hold memory)."""
    _STATUS_MEMO.clear()


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


def requeued(status: ExtractionJobStatus, token: str) -> ExtractionJobStatus:
    """``status`` back in Queued for a new run, after a retry-failed request ``token``."""
    return status.model_copy(
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


def seconds_between(earlier: str | None, later: str) -> float:
    """Seconds from ``earlier`` to ``later`` (RFC 3339); infinite when unknown."""
    if not earlier:
        return float("inf")
    try:
        delta = datetime.strptime(later, _TIME_FORMAT) - datetime.strptime(earlier, _TIME_FORMAT)
    except ValueError:
        return float("inf")
    return delta.total_seconds()


def is_finished(job: Obj) -> bool:
    """Whether a batch/v1 Job has reached Complete or Failed."""
    for cond in (job.get("status") or {}).get("conditions") or ():
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return True
    return False


def controller_owner(obj: Obj, kind: str | None = None) -> dict[str, Any] | None:
    """The controller owner reference of ``obj`` (optionally only of the given kind)."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller") and (kind is None or ref.get("kind") == kind):
            return dict(ref)
    return None


def parse_spec(ej: Obj) -> ExtractionJobSpec | str:
    """The ExtractionJob's spec, or the message naming the first invalid field."""
    try:
        return ExtractionJobSpec.model_validate(ej.get("spec") or {})
    except ValidationError as exc:
        return validation_message(exc)


def pods_needed(ej: Obj, jobs: Sequence[Obj]) -> str | None:
    """The Job whose Pods the plan needs (its current Job, once finished), else None.

    Only a finished Job's Pods carry the worker's termination message; reading them
    is the one observation the cache does not hold.
    """
    status = read_status(ej)
    if status.phase in TERMINAL:
        return None
    # An unrecorded run (its Job created, the status not yet written) counts as current.
    name = status.job_name or job_name(ej["metadata"]["name"], (status.attempts or 0) + 1)
    current = next((j for j in jobs if j["metadata"]["name"] == name), None)
    return name if current is not None and is_finished(current) else None


def worker_started(job: Obj) -> bool:
    """Whether a Job's worker has been seen running (a ready Pod) or the Job has finished.

    Until then the run is not recorded in the ExtractionJob's status: a Job that is
    finished by the time it is first looked at costs one status write, not two.
    """
    return is_finished(job) or int((job.get("status") or {}).get("ready") or 0) > 0


def wants_slot(ej: Obj, jobs: Sequence[Obj]) -> bool:
    """Whether the ExtractionJob waits for admission: queued, no run recorded, none found."""
    status = read_status(ej)
    if status.phase not in (None, JobPhase.QUEUED) or status.job_name:
        return False
    if (ej.get("metadata") or {}).get("deletionTimestamp"):
        return False
    # A Job of the next run exists: a restart lost the status write; the plan adopts it.
    name = job_name(ej["metadata"]["name"], (status.attempts or 0) + 1)
    return not any(j["metadata"]["name"] == name for j in jobs)


@dataclass(frozen=True)
class JobConfig:
    """The operator settings a plan depends on."""

    worker: WorkerConfig
    default_destination: Destination | None = None


@dataclass(frozen=True)
class JobSnapshot:
    """What the ExtractionJob's reconcile observed: the object, its Jobs, their Pods."""

    ej: Obj
    jobs: Sequence[Obj] = ()
    pods: Sequence[Obj] = ()
    admitted: bool = False
    now: str = ""
    # The in-memory outcome of webhook deliveries not yet written into status.
    unsaved_webhook: WebhookStatus | None = None


@dataclass(frozen=True)
class Start:
    """The objects of a new run: its task Secret, then its Job (and the Job without the Secret)."""

    secret: dict[str, Any]
    job: dict[str, Any]
    job_with_env: dict[str, Any]


@dataclass(frozen=True)
class JobPlan:
    """What to do for one ExtractionJob, in order: create, write status, post, delete."""

    status: ExtractionJobStatus
    create_job: "Start | None" = None
    delete_jobs: tuple[str, ...] = ()
    events: tuple[EventSpec, ...] = ()
    webhook_owed: tuple[Event, ...] = ()
    webhook_owner: Owner | None = None
    webhook: Webhook | None = None  # the spec's webhook, for the notifier
    # The reconcile must run again after this many seconds (a new child's Queued wait).
    requeue_after: float | None = None
    # Admission's slot was used (a Job was created or adopted) or given back (failed).
    slot_settled: bool = False


def _start(
    snap: JobSnapshot, spec: ExtractionJobSpec, status: ExtractionJobStatus, cfg: JobConfig
) -> tuple[ExtractionJobStatus, "Start | None", list[EventSpec]]:
    """The next run: its Job manifest and the status recording it (Running, or Queued for Kueue)."""
    meta = snap.ej["metadata"]
    run = (status.attempts or 0) + 1
    name = job_name(meta["name"], run)
    adopted = any(j["metadata"]["name"] == name for j in snap.jobs)
    manifest: Start | None = None
    if not adopted:
        try:
            task = build_task(meta["name"], spec, cfg.default_destination)
            check_resources(spec, cfg.worker)
        except (NoDestinationError, ResourceBoundsError) as exc:
            error = make_error(ErrorCode.INVALID_SPEC, str(exc))
            return (
                failed(status, error, snap.now),
                None,
                [EventSpec(events.WARNING, events.INVALID_SPEC, error.message)],
            )
        labels = meta.get("labels") or {}

        def job(task_secret: str | None) -> dict[str, Any]:
            return job_manifest(
                name=name,
                namespace=meta["namespace"],
                extraction_job=meta["name"],
                extraction_job_uid=meta["uid"],
                spec=spec,
                task=task,
                config=cfg.worker,
                batch_label=labels.get(LABEL_BATCH),
                job_key=labels.get(LABEL_JOB),
                task_secret=task_secret,
            )

        # The task travels in a Secret of the run's name (docs/install.md); the Job
        # with the task in its environment is the fallback when Secrets are refused.
        secret = task_secret_manifest(
            name=name,
            namespace=meta["namespace"],
            task=task,
            extraction_job=meta["name"],
            extraction_job_uid=meta["uid"],
        )
        manifest = Start(secret=secret, job=job(name), job_with_env=job(None))
    new = status.model_copy(
        update={
            "phase": JobPhase.QUEUED if spec.queue_name else JobPhase.RUNNING,
            "job_name": name,
            "attempts": run,
            "start_time": None if spec.queue_name else snap.now,
            "completion_time": None,
            "result": None,
            "error": None,
        }
    )
    return new, manifest, []


def _observe(snap: JobSnapshot, status: ExtractionJobStatus) -> ExtractionJobStatus:
    """The status after looking at the current Job (and its Pods, once it finished)."""
    current = next((j for j in snap.jobs if j["metadata"]["name"] == status.job_name), None)
    if current is None:
        error = make_error(
            ErrorCode.WORKER_CRASHED, f"Job {status.job_name} disappeared before it finished"
        )
        return failed(status, error, snap.now)
    obs = observe_job(current, snap.pods if is_finished(current) else ())
    update: dict[str, Any] = {"phase": obs.phase}
    if obs.start_time:
        update["start_time"] = status.start_time or obs.start_time
    if obs.phase in TERMINAL:
        update.update(
            result=obs.result, error=obs.error, completion_time=obs.completion_time or snap.now
        )
    return status.model_copy(update=update)


def _cleanup(snap: JobSnapshot, status: ExtractionJobStatus) -> tuple[str, ...]:
    """Unfinished Jobs nobody will record: a final status that does not name them.

    That is a run the Batch cancelled (failure budget spent) before it was recorded;
    stopping it is the only delete the operator makes. Finished Jobs are left to their
    ``ttlSecondsAfterFinished`` (the Kubernetes TTL controller), and every Job goes
    with its ExtractionJob through the garbage collector.
    """
    if status.phase not in TERMINAL:
        return ()
    return tuple(
        job["metadata"]["name"]
        for job in snap.jobs
        if not job["metadata"].get("deletionTimestamp")
        and not is_finished(job)
        and job["metadata"]["name"] != status.job_name
    )


def _lifecycle_events(
    before: ExtractionJobStatus, new: ExtractionJobStatus, in_batch: bool
) -> list[EventSpec]:
    """A standalone ExtractionJob's JobStarted / JobSucceeded / JobFailed Events.

    A Batch's child posts none: its Batch's status, conditions and Events carry the
    same facts, and an Event per child is an API write per child (docs/operator.md,
    "Write budget").
    """
    if in_batch:
        return []
    evs: list[EventSpec] = []
    if new.job_name and new.job_name != before.job_name:
        run = f"Job {new.job_name} (run {new.attempts})"
        evs.append(EventSpec(events.NORMAL, events.JOB_STARTED, f"started {run}"))
    if new.phase == before.phase or new.phase not in TERMINAL:
        return evs
    if new.phase == JobPhase.SUCCEEDED:
        uri = new.result.uri if new.result else ""
        return [*evs, EventSpec(events.NORMAL, events.JOB_SUCCEEDED, uri)]
    msg = f"{new.error.code}: {new.error.message}" if new.error else "failed"
    return [*evs, EventSpec(events.WARNING, events.JOB_FAILED, msg)]


def plan_extraction_job(snap: JobSnapshot, cfg: JobConfig) -> JobPlan:
    """Observe -> decide for one ExtractionJob; see the module docstring."""
    meta = snap.ej["metadata"]
    generation = meta.get("generation")
    status = read_status(snap.ej)
    spec = parse_spec(snap.ej)
    if isinstance(spec, str):
        if status.phase in TERMINAL:
            return JobPlan(status=status, slot_settled=True)
        error = make_error(ErrorCode.INVALID_SPEC, spec)
        return JobPlan(
            status=with_conditions(failed(status, error, snap.now), generation, snap.now),
            events=(EventSpec(events.WARNING, events.INVALID_SPEC, error.message),),
            slot_settled=True,
        )
    new = status
    evs: list[EventSpec] = []
    create: Start | None = None
    settled = False
    hold = False
    if not status.job_name and status.phase in (None, JobPhase.QUEUED):
        name = job_name(meta["name"], (status.attempts or 0) + 1)
        current = next((j for j in snap.jobs if j["metadata"]["name"] == name), None)
        if snap.admitted or current is not None:
            new, create, evs = _start(snap, spec, status, cfg)
            settled = True
            if new.job_name and not spec.queue_name:
                # The run is recorded once its Job shows a running worker or an outcome:
                # the Job (deterministic name, in the cache) is the record until then.
                if current is None or not worker_started(current):
                    hold = True
                else:  # the Job's own startTime, not the time it was first looked at
                    new = _observe(snap, new.model_copy(update={"start_time": None}))
                    new = new.model_copy(update={"start_time": new.start_time or snap.now})
    elif status.job_name and status.phase not in TERMINAL:
        new = _observe(snap, status)
    in_batch = controller_owner(snap.ej, BATCH_KIND) is not None
    queued_wait: float | None = None
    if in_batch and status.phase is None and new.phase is None:
        # A new child of a Batch is normally admitted within moments; writing Queued
        # first would cost one write per child. Only a child still waiting after a
        # moment (suspended Batch, cap, parallelism) gets its Queued status written.
        left = QUEUED_STATUS_AFTER_SECONDS - seconds_between(
            meta.get("creationTimestamp"), snap.now
        )
        if left > 0:
            hold, queued_wait = True, left
    new = status if hold else with_conditions(new, generation, snap.now)

    owner: Owner | None = None
    owed: list[Event] = []
    if spec.webhook is not None and controller_owner(snap.ej, BATCH_KIND) is None:
        owner = Owner(
            kind=JOB_KIND, namespace=meta["namespace"], name=meta["name"], uid=meta["uid"]
        )
        me = Child.from_status(meta["name"], new, extraction_job=meta["name"], uid=meta["uid"])
        owed = owed_events(Snapshot(owner, [me]), spec.webhook.events)
        merged = webhook_state.merge(webhook_state.load(status.webhook), snap.unsaved_webhook)
        new = new.model_copy(update={"webhook": webhook_state.summarize(merged, owed)})
    evs += _lifecycle_events(status, new, in_batch)
    return JobPlan(
        status=new,
        create_job=create,
        delete_jobs=_cleanup(snap, new),
        events=tuple(evs),
        webhook_owed=tuple(owed),
        webhook_owner=owner,
        webhook=spec.webhook if owner is not None else None,
        requeue_after=queued_wait,
        slot_settled=settled or (snap.admitted and new.phase in TERMINAL),
    )
