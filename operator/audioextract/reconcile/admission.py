"""Which queued ExtractionJobs start now (DESIGN §3, step 2).

Limits: the operator's global ``maxConcurrentJobs`` and each Batch's ``parallelism``
and ``suspend``. Order: priority (high, normal, low), then age (creationTimestamp,
then namespace/name). A job whose Batch is at its limit is skipped, not waited on, so
one full Batch never blocks the rest of the queue; because the order is by age, the
skipped job is first in line once its Batch has a free slot, so no job starves
within its priority.

Jobs with a Kueue ``queueName`` are not counted against ``maxConcurrentJobs``:
Kueue's quotas decide when they run. Their Batch's ``parallelism`` and ``suspend``
still apply, because Kueue does not know about Batches.
"""

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from audioextract.api.constants import Priority
from audioextract.api.spec import BatchSpec

PRIORITY_RANK = {Priority.HIGH: 0, Priority.NORMAL: 1, Priority.LOW: 2}


@dataclass(frozen=True)
class Candidate:
    """A queued ExtractionJob waiting for a slot."""

    namespace: str
    name: str
    priority: Priority
    created: str  # metadata.creationTimestamp (RFC 3339 sorts as text)
    batch: str | None = None  # "<namespace>/<batch name>" for a Batch's child
    kueue: bool = False


@dataclass(frozen=True)
class Active:
    """A running ExtractionJob: holds a slot until its Job finishes."""

    batch: str | None = None
    kueue: bool = False


@dataclass(frozen=True)
class BatchLimit:
    """A Batch's own admission limits; ``suspended`` admits nothing new."""

    parallelism: int | None = None
    suspended: bool = False


def batch_limit(spec: BatchSpec, failed: int) -> BatchLimit:
    """A Batch's limits: its parallelism; nothing new once suspended or out of failure budget.

    A spent failure budget stops admission at once, in the same decision that sees the
    failure, rather than only once the Batch's reconcile has cancelled the queued jobs.
    """
    limit = spec.failure_policy.max_failed_jobs if spec.failure_policy else None
    spent = limit is not None and failed > limit
    return BatchLimit(parallelism=spec.parallelism, suspended=bool(spec.suspend) or spent)


def order_key(candidate: Candidate) -> tuple[int, str, str, str]:
    """Sort key: priority, then age, then namespace and name (a stable tie-break)."""
    return (
        PRIORITY_RANK.get(Priority(candidate.priority), 1),
        candidate.created,
        candidate.namespace,
        candidate.name,
    )


def admit(
    queued: Iterable[Candidate],
    active: Sequence[Active],
    limits: Mapping[str, BatchLimit],
    max_concurrent: int | None,
) -> list[Candidate]:
    """The queued jobs to start now, in start order; never exceeds any limit.

    ``active`` is every job that holds a slot (observed from the API, so the caps
    hold across restarts). ``max_concurrent`` None means no global limit. A child of
    a Batch missing from ``limits`` is not admitted: its Batch is unknown, so its
    limits are too.
    """
    global_used = sum(1 for a in active if not a.kueue)
    per_batch: Counter[str] = Counter(a.batch for a in active if a.batch is not None)
    chosen: list[Candidate] = []
    for candidate in sorted(queued, key=order_key):
        if not candidate.kueue and max_concurrent is not None and global_used >= max_concurrent:
            continue
        if candidate.batch is not None:
            limit = limits.get(candidate.batch)
            if limit is None or limit.suspended:
                continue
            if limit.parallelism is not None and per_batch[candidate.batch] >= limit.parallelism:
                continue
            per_batch[candidate.batch] += 1
        if not candidate.kueue:
            global_used += 1
        chosen.append(candidate)
    return chosen


@dataclass(frozen=True)
class SlotView:
    """What admission needs to know of one ExtractionJob, taken from it once per change.

    Admission runs over every open ExtractionJob on each decision; reading these few
    values once, when the cache takes the object in, keeps a decision cheap.
    """

    namespace: str
    name: str
    uid: str
    batch: str | None  # "<namespace>/<batch>" for a Batch's child
    priority: Priority
    kueue: bool
    valid: bool
    phase: str | None
    job_name: str | None
    next_job: str  # the name of the Job of its next run
    created: str
    deleting: bool

    @property
    def open(self) -> bool:
        """Not Succeeded or Failed: it may hold or want a slot."""
        return self.phase not in ("Succeeded", "Failed")


def plan_admission(
    views: Iterable[SlotView],
    unfinished_owners: Mapping[str, int],
    job_names_by_owner: Mapping[str, frozenset[str] | set[str]],
    expected: Iterable[tuple[str, str]],
    limits: Mapping[str, BatchLimit],
    max_concurrent: int | None,
) -> list[tuple[str, str]]:
    """(namespace, name) of the ExtractionJobs to start now: one serialised decision.

    A slot is held by an ExtractionJob that has an unfinished Job (``unfinished_owners``,
    by owner uid), is Running, or was admitted and not yet seen started in the cache
    (``expected``): a decision made over a cache that lags behind the creates of the
    previous one never over-admits. A queued ExtractionJob that already has the Job of
    its next run (a status write lost in a restart) is not admitted again: its own
    reconcile adopts that Job.
    """
    expected_keys = set(expected)
    active: list[Active] = []
    queued: list[Candidate] = []
    seen: set[str] = set()
    for v in views:
        key = (v.namespace, v.name)
        seen.add(v.uid)
        if v.uid in unfinished_owners or v.phase == "Running" or key in expected_keys:
            active.append(Active(batch=v.batch, kueue=v.kueue))
            continue
        if not v.open or v.deleting or not v.valid or v.job_name:
            continue
        if v.next_job in job_names_by_owner.get(v.uid, ()):
            continue
        queued.append(
            Candidate(
                namespace=v.namespace,
                name=v.name,
                priority=v.priority,
                created=v.created,
                batch=v.batch,
                kueue=v.kueue,
            )
        )
    # Unfinished Jobs of ExtractionJobs not passed in (finished ones): slots all the same.
    active += [
        Active() for uid, n in unfinished_owners.items() if uid not in seen for _ in range(n)
    ]
    return [(c.namespace, c.name) for c in admit(queued, active, limits, max_concurrent)]
