"""Status conditions with Kubernetes (metav1.Condition) and kstatus semantics.

One helper, :func:`set_condition`, changes ``lastTransitionTime`` only when a
condition's status flips; :func:`lifecycle_conditions` derives the whole set that
kstatus-aware tools (Argo CD, Flux, ``kubectl wait``) read from one lifecycle state.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum

from audioextract.api.status import Condition

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
# Named as batch/v1 Job names them ("Complete", not "Completed").
COMPLETE = "Complete"
FAILED = "Failed"
SUSPENDED = "Suspended"
# A Batch only: True while status.jobs is cut to fit etcd's object size limit (budget.py).
STATUS_TRUNCATED = "StatusTruncated"

TRUE = "True"
FALSE = "False"


class Lifecycle(StrEnum):
    """The lifecycle state that the condition set is derived from."""

    PROGRESSING = "Progressing"  # queued or running
    SUCCEEDED = "Succeeded"
    PARTIALLY_SUCCEEDED = "PartiallySucceeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


def now_rfc3339() -> str:
    """The current time in the RFC 3339 form Kubernetes uses (seconds, UTC, ``Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def find_condition(conditions: Sequence[Condition] | None, type_: str) -> Condition | None:
    """The condition of the given type, if present."""
    for condition in conditions or ():
        if condition.type == type_:
            return condition
    return None


def set_condition(
    conditions: Sequence[Condition] | None,
    type_: str,
    status: str,
    reason: str,
    message: str,
    *,
    now: str,
    observed_generation: int | None = None,
) -> list[Condition]:
    """A new list with one condition set; ``lastTransitionTime`` moves only when status flips.

    The input is not modified. Order is kept; a new type is appended.
    """
    existing = find_condition(conditions, type_)
    transition = now
    if existing is not None and existing.status == status:
        transition = existing.last_transition_time
    condition = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message[:32768],
        last_transition_time=transition,
        observed_generation=observed_generation,
    )
    if existing is None:
        return [*(conditions or ()), condition]
    return [condition if c.type == type_ else c for c in conditions or ()]


def lifecycle_conditions(
    conditions: Sequence[Condition] | None,
    state: Lifecycle,
    reason: str,
    message: str,
    *,
    now: str,
    observed_generation: int | None = None,
) -> list[Condition]:
    """The full kstatus condition set for a lifecycle state.

    - progressing: Reconciling=True, everything else False;
    - succeeded: Ready=True and Complete=True;
    - partially succeeded: Complete=True (the work ran to its end) but Ready=False and
      Stalled=True, because some jobs failed and need a person or a retry;
    - failed: Failed=True and Stalled=True;
    - suspended: Suspended=True; neither reconciling nor stalled.

    ``reason`` and ``message`` go on the conditions that are True; the False ones get
    the same reason so that a reader sees why at a glance.
    """
    truth = {
        READY: state == Lifecycle.SUCCEEDED,
        RECONCILING: state == Lifecycle.PROGRESSING,
        STALLED: state in (Lifecycle.FAILED, Lifecycle.PARTIALLY_SUCCEEDED),
        COMPLETE: state in (Lifecycle.SUCCEEDED, Lifecycle.PARTIALLY_SUCCEEDED),
        FAILED: state == Lifecycle.FAILED,
        SUSPENDED: state == Lifecycle.SUSPENDED,
    }
    out = list(conditions or ())
    for type_, value in truth.items():
        out = set_condition(
            out,
            type_,
            TRUE if value else FALSE,
            reason,
            message,
            now=now,
            observed_generation=observed_generation,
        )
    return out
