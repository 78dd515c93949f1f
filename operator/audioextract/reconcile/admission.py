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
    """A Batch's own admission limits."""

    parallelism: int | None = None
    suspended: bool = False


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
