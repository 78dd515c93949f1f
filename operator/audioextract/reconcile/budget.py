"""Keep a Batch under etcd's object size limit: the status is cut before it would not fit.

etcd refuses a value over 1.5 MiB (its default ``--max-request-bytes``), and a Batch
is stored as one JSON object: metadata (with ``managedFields``), spec and status. The
CRD's rule on the total length of a Batch's URLs (docs/api.md, "How big a Batch
gets") keeps a Batch that passes it well under the limit with its full status; what
that rule cannot see (the operator's default destination, a spec made large by
other fields, an object carrying another client's annotations) is caught here, just
before the status is written.

:func:`fit_status` returns the status unchanged when the stored object would stay
within :data:`OBJECT_BUDGET`; otherwise it leaves out, from the last entry of
``status.jobs`` backwards, first the entries' ``result``, then their error messages,
then the entries themselves, until it fits, and says so in the ``StatusTruncated``
condition, which names the full listing (the Batch's ExtractionJobs, by label).
Counts, phase and the other conditions are never cut.
"""

import json
from collections.abc import Callable, Mapping
from typing import Any

from audioextract.api.constants import LABEL_BATCH
from audioextract.api.status import BatchStatus, JobEntry
from audioextract.reconcile.conditions import FALSE, STATUS_TRUNCATED, TRUE, set_condition
from audioextract.reconcile.names import batch_label_value
from audioextract.reconcile.rollup import REASON_STATUS_FITS, REASON_STATUS_TRUNCATED

ETCD_LIMIT = 1_572_864  # etcd's default --max-request-bytes (1.5 MiB)
# The stored Batch the operator's status write may produce, at most: 1.25 MiB leaves
# 256 KiB of etcd's limit for what can change between the read and the write
# (managedFields of a new field manager, a label or annotation added meanwhile).
OBJECT_BUDGET = 1_310_720
# ',"status":' and the status manager's own managedFields entry (status.jobs is an
# atomic list, so the entry does not grow with the number of jobs).
STATUS_OVERHEAD = 1_024
# Room kept for the StatusTruncated condition that a cut adds.
CONDITION_ROOM = 1_024
# The writer's managedFields entry names each element of a set-type list it owns, one
# key per element (`"v:\"msg_...\"":{},`): webhook.settled grows the object twice.
SET_ELEMENT_OVERHEAD = 16


def json_bytes(obj: Any) -> int:
    """Bytes of ``obj`` as compact JSON, the way the API server stores a custom resource."""
    return len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=dict).encode())


def bytes_without_status(obj: Mapping[str, Any]) -> int:
    """Bytes of the stored object without its status: metadata (managedFields too) and spec."""
    return json_bytes({k: v for k, v in obj.items() if k != "status"})


def listing_command(namespace: str, batch_name: str) -> str:
    """The command that lists every job of the Batch with its full status."""
    return f"kubectl get ej -n {namespace} -l {LABEL_BATCH}={batch_label_value(batch_name)}"


def budgeted_bytes(status: BatchStatus, other_bytes: int) -> int:
    """The stored Batch's size once ``status`` is written, as the budget counts it."""
    settled = status.webhook.settled if status.webhook and status.webhook.settled else ()
    # Counted in full although the entry read may already name some of them: an
    # overestimate by at most the ids written before, never an underestimate.
    sets = sum(len(i) + SET_ELEMENT_OVERHEAD for i in settled)
    return other_bytes + STATUS_OVERHEAD + sets + json_bytes(status.dump())


def _without_result(entry: JobEntry) -> JobEntry | None:
    return entry.model_copy(update={"result": None}) if entry.result is not None else None


def _without_message(entry: JobEntry) -> JobEntry | None:
    if entry.error is None or not entry.error.message:
        return None
    return entry.model_copy(update={"error": entry.error.model_copy(update={"message": ""})})


# What is left out, in this order, each from the last entry backwards.
_CUTS: tuple[tuple[str, Callable[[JobEntry], JobEntry | None]], ...] = (
    ("the result of {} entries", _without_result),
    ("the error message of {} entries", _without_message),
)


def fit_status(
    status: BatchStatus,
    other_bytes: int,
    *,
    namespace: str,
    batch_name: str,
    now: str,
    budget: int = OBJECT_BUDGET,
) -> BatchStatus:
    """``status``, cut where needed so that the stored Batch stays within ``budget`` bytes.

    ``other_bytes`` is the size of the stored object without its status
    (:func:`bytes_without_status` of the object as last read). See the module docstring
    for what is cut and in which order. When nothing needs cutting, an earlier
    ``StatusTruncated=True`` condition turns False (reason ``StatusFits``).
    """
    entries = list(status.jobs or ())
    sizes = [json_bytes(e.dump()) for e in entries]
    total = budgeted_bytes(status, other_bytes)
    if total <= budget:
        if status.conditions and any(
            c.type == STATUS_TRUNCATED and c.status == TRUE for c in status.conditions
        ):
            conditions = set_condition(
                status.conditions,
                STATUS_TRUNCATED,
                FALSE,
                REASON_STATUS_FITS,
                "every job's entry is complete",
                now=now,
                observed_generation=status.observed_generation,
            )
            return status.model_copy(update={"conditions": conditions})
        return status
    limit = budget - CONDITION_ROOM
    done: list[str] = []
    for what, cut in _CUTS:
        changed = 0
        for i in range(len(entries) - 1, -1, -1):
            if total <= limit:
                break
            smaller = cut(entries[i])
            if smaller is None:
                continue
            size = json_bytes(smaller.dump())
            total -= sizes[i] - size
            entries[i], sizes[i] = smaller, size
            changed += 1
        if changed:
            done.append(what.format(changed))
    dropped = 0
    while entries and total > limit:
        # The entry and the comma that separated it from the one before.
        total -= sizes.pop() + (1 if len(entries) > 1 else 0)
        entries.pop()
        dropped += 1
    if dropped:
        done.append(f"the last {dropped} entries")
    message = (
        f"status.jobs is cut to keep the Batch under etcd's object size limit ({budget} "
        f"bytes with spec and metadata): left out {'; '.join(done)} (of "
        f"{len(status.jobs or ())}). The full listing: {listing_command(namespace, batch_name)}"
    )
    conditions = set_condition(
        status.conditions,
        STATUS_TRUNCATED,
        TRUE,
        REASON_STATUS_TRUNCATED,
        message,
        now=now,
        observed_generation=status.observed_generation,
    )
    return status.model_copy(update={"jobs": entries or None, "conditions": conditions})
