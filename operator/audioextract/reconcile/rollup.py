"""A Batch's status from a snapshot of its children (DESIGN §3, step 4).

Shared by the operator and the local runner: the inputs are plain values
(:class:`ChildSnapshot`, the Batch's spec and its previous status), never
Kubernetes objects, and the output is a :class:`BatchStatus`.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from audioextract.api.constants import BatchPhase, ErrorCode, JobPhase
from audioextract.api.spec import BatchSpec
from audioextract.api.status import (
    BatchStatus,
    Condition,
    EntryResult,
    JobEntry,
    JobError,
    JobResult,
)
from audioextract.reconcile.conditions import Lifecycle, lifecycle_conditions

# A job's error message is cut in the Batch's status: 500 entries must stay compact.
ENTRY_MESSAGE_MAX = 256

FINAL_PHASES = frozenset({BatchPhase.SUCCEEDED, BatchPhase.PARTIALLY_SUCCEEDED, BatchPhase.FAILED})

# Condition reasons (CamelCase, stable).
REASON_QUEUED = "JobsQueued"
REASON_RUNNING = "JobsRunning"
REASON_SUCCEEDED = "AllJobsSucceeded"
REASON_PARTIAL = "SomeJobsFailed"
REASON_FAILED = "AllJobsFailed"
REASON_TOO_MANY_FAILED = "MaxFailedJobsExceeded"
REASON_SUSPENDED = "BatchSuspended"
REASON_INVALID = "InvalidSpec"
# The StatusTruncated condition (reconcile/budget.py): cut to fit, or whole again.
REASON_STATUS_TRUNCATED = "ObjectSizeLimit"
REASON_STATUS_FITS = "StatusFits"


@dataclass(frozen=True)
class ChildSnapshot:
    """What the rollup needs to know about one job of the Batch.

    ``phase`` is None when the child does not exist yet (it counts as queued).
    """

    key: str
    name: str
    phase: JobPhase | None = None
    result: JobResult | None = None
    error: JobError | None = None
    start_time: str | None = None
    completion_time: str | None = None

    @cached_property
    def entry(self) -> JobEntry:
        """The job's entry in the Batch's status, built once per snapshot.

        A caller that keeps a snapshot while its job does not change (the local
        runner does) gets the same entry from every rollup instead of building all of
        them again at every status change.
        """
        return _entry(self)


def _entry(child: ChildSnapshot) -> JobEntry:
    error = child.error
    if error is not None and len(error.message) > ENTRY_MESSAGE_MAX:
        error = error.model_copy(update={"message": error.message[: ENTRY_MESSAGE_MAX - 3] + "..."})
    return JobEntry(
        name=child.key,
        extraction_job=child.name,
        phase=child.phase or JobPhase.QUEUED,
        result=EntryResult.of(child.result)
        if child.result is not None and child.phase == JobPhase.SUCCEEDED
        else None,
        error=error if child.phase == JobPhase.FAILED else None,
    )


def failure_budget_exceeded(spec: BatchSpec, failed: int) -> bool:
    """Whether more jobs failed than ``failurePolicy.maxFailedJobs`` allows."""
    limit = spec.failure_policy.max_failed_jobs if spec.failure_policy else None
    return limit is not None and failed > limit


def first_failed(children: Sequence[ChildSnapshot]) -> ChildSnapshot | None:
    """The first failed child in spec order (the one the conditions name)."""
    return next((c for c in children if c.phase == JobPhase.FAILED), None)


def _failure_message(child: ChildSnapshot | None, failed: int, total: int) -> str:
    if child is None:
        return f"{failed} of {total} jobs failed"
    code = child.error.code if child.error else ErrorCode.WORKER_CRASHED
    detail = f": {child.error.message}" if child.error and child.error.message else ""
    return (
        f"{failed} of {total} jobs failed; first: job {child.key!r} ({child.name}) {code}{detail}"[
            :1024
        ]
    )


def _earliest(values: Sequence[str | None]) -> str | None:
    present = [v for v in values if v]
    return min(present) if present else None


def _latest(values: Sequence[str | None]) -> str | None:
    present = [v for v in values if v]
    return max(present) if present else None


def rollup(
    spec: BatchSpec,
    children: Sequence[ChildSnapshot],
    *,
    previous: BatchStatus | None,
    generation: int | None,
    now: str,
) -> BatchStatus:
    """The Batch's status from its children.

    ``children`` holds one snapshot per job of ``spec`` in spec order (a job whose
    child does not exist yet has ``phase=None``). Counts always add up to ``total``.
    Phase rules, first match wins:

    - more than ``failurePolicy.maxFailedJobs`` failed and none running: Failed (the
      operator cancels the queued ones);
    - every job finished: Succeeded (all succeeded), Failed (none succeeded) or
      PartiallySucceeded;
    - ``spec.suspend``: Suspended;
    - nothing started yet: Queued; otherwise Running.

    Times: ``startTime`` is kept once set (else the earliest child start);
    ``completionTime`` is set when the phase becomes final and cleared when a retry
    re-opens the Batch. ``retryToken`` and ``webhook`` are carried over from
    ``previous``; this function never decides them.
    """
    previous = previous or BatchStatus()
    total = len(spec.jobs)
    phases = [c.phase or JobPhase.QUEUED for c in children]
    running = phases.count(JobPhase.RUNNING)
    succeeded = phases.count(JobPhase.SUCCEEDED)
    failed = phases.count(JobPhase.FAILED)
    queued = total - running - succeeded - failed

    first = first_failed(children)
    if failure_budget_exceeded(spec, failed) and running == 0:
        phase, state = BatchPhase.FAILED, Lifecycle.FAILED
        reason, message = REASON_TOO_MANY_FAILED, _failure_message(first, failed, total)
    elif succeeded + failed == total:
        if failed == 0:
            phase, state = BatchPhase.SUCCEEDED, Lifecycle.SUCCEEDED
            reason, message = REASON_SUCCEEDED, f"all {total} jobs succeeded"
        elif succeeded == 0:
            phase, state = BatchPhase.FAILED, Lifecycle.FAILED
            reason, message = REASON_FAILED, _failure_message(first, failed, total)
        else:
            phase, state = BatchPhase.PARTIALLY_SUCCEEDED, Lifecycle.PARTIALLY_SUCCEEDED
            reason, message = REASON_PARTIAL, _failure_message(first, failed, total)
    elif spec.suspend:
        phase, state = BatchPhase.SUSPENDED, Lifecycle.SUSPENDED
        reason, message = REASON_SUSPENDED, f"suspended; {running} running, {queued} queued"
    elif running + succeeded + failed == 0:
        phase, state = BatchPhase.QUEUED, Lifecycle.PROGRESSING
        reason, message = REASON_QUEUED, f"{queued} of {total} jobs queued"
    else:
        phase, state = BatchPhase.RUNNING, Lifecycle.PROGRESSING
        reason = REASON_RUNNING
        message = f"{succeeded} succeeded, {failed} failed, {running} running, {queued} queued"

    start_time = previous.start_time or _earliest([c.start_time for c in children])
    if start_time is None and running + succeeded + failed > 0:
        start_time = now
    completion_time: str | None = None
    if phase in FINAL_PHASES:
        if previous.phase in FINAL_PHASES and previous.completion_time:
            completion_time = previous.completion_time
        else:
            completion_time = _latest([c.completion_time for c in children]) or now

    return BatchStatus(
        phase=phase,
        total=total,
        queued=queued,
        running=running,
        succeeded=succeeded,
        failed=failed,
        start_time=start_time,
        completion_time=completion_time,
        jobs=[c.entry for c in children],
        webhook=previous.webhook,
        conditions=lifecycle_conditions(
            previous.conditions, state, reason, message, now=now, observed_generation=generation
        ),
        observed_generation=generation,
        retry_token=previous.retry_token,
    )


def to_cancel(spec: BatchSpec, children: Sequence[ChildSnapshot]) -> list[ChildSnapshot]:
    """Queued children to end as Cancelled because the failure budget is spent."""
    failed = sum(1 for c in children if c.phase == JobPhase.FAILED)
    if not failure_budget_exceeded(spec, failed):
        return []
    return [c for c in children if c.phase in (None, JobPhase.QUEUED)]


def to_retry(children: Sequence[ChildSnapshot]) -> list[ChildSnapshot]:
    """Children a retry-failed request re-queues: the failed ones, never the succeeded."""
    return [c for c in children if c.phase == JobPhase.FAILED]


def invalid_spec_status(
    previous: BatchStatus | None, message: str, *, generation: int | None, now: str
) -> BatchStatus:
    """The status of a Batch whose spec the operator cannot use: Failed, naming the field."""
    previous = previous or BatchStatus()
    conditions: list[Condition] = lifecycle_conditions(
        previous.conditions,
        Lifecycle.FAILED,
        REASON_INVALID,
        message[:1024],
        now=now,
        observed_generation=generation,
    )
    return previous.model_copy(
        update={
            "phase": BatchPhase.FAILED,
            "conditions": conditions,
            "observed_generation": generation,
            "completion_time": previous.completion_time or now,
            "total": previous.total or 0,
            "queued": previous.queued or 0,
            "running": previous.running or 0,
            "succeeded": previous.succeeded or 0,
            "failed": previous.failed or 0,
        }
    )
