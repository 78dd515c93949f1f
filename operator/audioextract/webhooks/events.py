"""Which webhook events are owed, derived purely from a snapshot (DESIGN §3, §5).

Level-triggered: nothing here remembers transitions. Given what is observed now — the
owner (a Batch, or a standalone ExtractionJob), its children and the owner's phase —
:func:`owed_events` returns every event that this state owes, each with a stable
``webhook-id``. Re-observing the same state yields the same ids; a re-run after
``retry-failed`` (a new retry token on the child) yields new ones.

Ids:

- job events: ``msg_`` + hash(owner uid, job name, event type, the child's retry token);
- ``batch.completed``: ``msg_`` + hash(owner uid, event type, every child's
  (name, retry token)). A batch re-run therefore owes a new ``batch.completed`` only
  when some child was actually re-queued, and a status that shows the batch final
  while its children still carry their old tokens owes the one already sent.
"""

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from audioextract.api.constants import BATCH_KIND, JOB_KIND, BatchPhase, JobPhase, WebhookEvent
from audioextract.api.status import ExtractionJobStatus, JobError, JobResult

DEFAULT_EVENTS: frozenset[WebhookEvent] = frozenset(
    {WebhookEvent.JOB_COMPLETED, WebhookEvent.JOB_FAILED, WebhookEvent.BATCH_COMPLETED}
)
FINAL_BATCH_PHASES: frozenset[BatchPhase] = frozenset(
    {BatchPhase.SUCCEEDED, BatchPhase.PARTIALLY_SUCCEEDED, BatchPhase.FAILED}
)
_STARTED_PHASES = frozenset({JobPhase.RUNNING, JobPhase.SUCCEEDED, JobPhase.FAILED})
_ID_SEPARATOR = "\x1f"  # cannot occur in Kubernetes names, uids or annotation values we hash


@dataclass(frozen=True)
class Owner:
    """The object whose status records delivery: a Batch or a standalone ExtractionJob."""

    kind: str
    namespace: str
    name: str
    uid: str

    @property
    def is_batch(self) -> bool:
        """True for a Batch, False for a standalone ExtractionJob."""
        return self.kind == BATCH_KIND


@dataclass(frozen=True)
class Child:
    """One job as observed: a Batch's child, or the standalone ExtractionJob itself."""

    name: str
    phase: JobPhase | None = None
    retry_token: str | None = None
    extraction_job: str | None = None
    uid: str | None = None
    result: JobResult | None = None
    error: JobError | None = None
    attempts: int | None = None
    start_time: str | None = None
    completion_time: str | None = None

    @classmethod
    def from_status(
        cls,
        name: str,
        status: ExtractionJobStatus | None,
        *,
        extraction_job: str | None = None,
        uid: str | None = None,
    ) -> "Child":
        """A child from an ExtractionJob's status; ``name`` is the job's name in its Batch."""
        status = status or ExtractionJobStatus()
        return cls(
            name=name,
            phase=JobPhase(status.phase) if status.phase else None,
            retry_token=status.retry_token,
            extraction_job=extraction_job,
            uid=uid,
            result=status.result,
            error=status.error,
            attempts=status.attempts,
            start_time=status.start_time,
            completion_time=status.completion_time,
        )


@dataclass(frozen=True)
class Snapshot:
    """Everything the owed events depend on, as observed at one moment."""

    owner: Owner
    children: Sequence[Child]
    phase: BatchPhase | None = None
    completion_time: str | None = None


@dataclass(frozen=True)
class Event:
    """One owed webhook event. ``payload`` is the Standard Webhooks body as a mapping."""

    id: str
    type: WebhookEvent
    job: str | None
    payload: Mapping[str, Any] = field(compare=False)

    def body(self, extra_data: Mapping[str, Any] | None = None) -> bytes:
        """The JSON body to sign and send; ``extra_data`` adds fields to ``data`` (never stored)."""
        payload: dict[str, Any] = dict(self.payload)
        if extra_data:
            payload["data"] = {**payload["data"], **extra_data}
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def event_id(owner_uid: str, event_type: WebhookEvent, *parts: str) -> str:
    """A stable webhook-id: ``msg_`` and 32 hex digits of a SHA-256 over the inputs."""
    text = _ID_SEPARATOR.join([owner_uid, str(event_type), *parts])
    return "msg_" + hashlib.sha256(text.encode()).hexdigest()[:32]


def selected_events(events: Iterable[WebhookEvent | str] | None) -> frozenset[WebhookEvent]:
    """The event types ``spec.webhook.events`` asks for; None means the default three."""
    if events is None:
        return DEFAULT_EVENTS
    return frozenset(WebhookEvent(e) for e in events)


def owed_events(
    snapshot: Snapshot,
    events: Iterable[WebhookEvent | str] | None = None,
    *,
    now: datetime | None = None,
) -> list[Event]:
    """Every event the snapshot owes, filtered by ``events``: job events first, batch last.

    ``now`` is only used as the payload timestamp of a transition whose time the
    status does not record; ids never depend on it.
    """
    wanted = selected_events(events)
    fallback_time = _rfc3339(now or datetime.now(UTC))
    owner = snapshot.owner
    owed: list[Event] = []
    for child in snapshot.children:
        token = child.retry_token or ""
        phase = JobPhase(child.phase) if child.phase else None
        # A job seen only after it finished still started, if the status says when.
        started = phase == JobPhase.RUNNING or (phase in _STARTED_PHASES and child.start_time)
        if WebhookEvent.JOB_STARTED in wanted and started:
            when = child.start_time or fallback_time
            owed.append(_job_event(owner, child, WebhookEvent.JOB_STARTED, token, when))
        terminal = {
            JobPhase.SUCCEEDED: WebhookEvent.JOB_COMPLETED,
            JobPhase.FAILED: WebhookEvent.JOB_FAILED,
        }
        if phase in terminal:
            kind = terminal[phase]
            if kind in wanted:
                when = child.completion_time or fallback_time
                owed.append(_job_event(owner, child, kind, token, when))
    final = BatchPhase(snapshot.phase) if snapshot.phase else None
    if owner.is_batch and final in FINAL_BATCH_PHASES and WebhookEvent.BATCH_COMPLETED in wanted:
        assert final is not None  # narrowed by the membership test above
        owed.append(_batch_event(snapshot, final, snapshot.completion_time or fallback_time))
    return owed


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _subject(owner: Owner) -> dict[str, Any]:
    data: dict[str, Any] = {"namespace": owner.namespace}
    if owner.is_batch:
        data["batch"] = {"name": owner.name, "uid": owner.uid}
    return data


def _job_ref(owner: Owner, child: Child) -> dict[str, Any]:
    if owner.is_batch:
        ref: dict[str, Any] = {"name": child.name}
        if child.extraction_job:
            ref["extractionJob"] = child.extraction_job
        if child.uid:
            ref["uid"] = child.uid
        return ref
    # A standalone ExtractionJob is its own owner: its name and uid are the owner's.
    return {"name": owner.name, "extractionJob": owner.name, "uid": owner.uid}


def result_data(result: JobResult) -> dict[str, Any]:
    """The part of a result a receiver gets: where the file is and what it is."""
    return {
        "uri": result.uri,
        "sizeBytes": result.size_bytes,
        "durationSeconds": result.duration_seconds,
        "sha256": result.sha256,
        "format": str(result.format),
    }


def error_data(error: JobError) -> dict[str, Any]:
    """The part of an error a receiver gets: the stable code, the message, whether to retry."""
    return {"code": str(error.code), "message": error.message, "retryable": error.retryable}


def _outcome(child: Child, phase: JobPhase | None) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if phase == JobPhase.SUCCEEDED and child.result is not None:
        data["result"] = result_data(child.result)
    if phase == JobPhase.FAILED and child.error is not None:
        data["error"] = error_data(child.error)
    return data


def _job_event(owner: Owner, child: Child, kind: WebhookEvent, token: str, when: str) -> Event:
    phase = JobPhase(child.phase) if child.phase else None
    data = _subject(owner)
    data["job"] = _job_ref(owner, child)
    data["phase"] = JobPhase.RUNNING.value if kind == WebhookEvent.JOB_STARTED else str(phase)
    if child.attempts is not None:
        data["attempts"] = child.attempts
    if kind != WebhookEvent.JOB_STARTED:
        data.update(_outcome(child, phase))
    job_key = child.name if owner.is_batch else owner.name
    return Event(
        id=event_id(owner.uid, kind, job_key, token),
        type=kind,
        job=child.name,
        payload={"type": str(kind), "timestamp": when, "data": data},
    )


def _batch_event(snapshot: Snapshot, final: BatchPhase, when: str) -> Event:
    owner = snapshot.owner
    children = sorted(snapshot.children, key=lambda c: c.name)
    counts = {"total": len(children), "succeeded": 0, "failed": 0}
    jobs = []
    for child in children:
        phase = JobPhase(child.phase) if child.phase else None
        if phase == JobPhase.SUCCEEDED:
            counts["succeeded"] += 1
        elif phase == JobPhase.FAILED:
            counts["failed"] += 1
        entry: dict[str, Any] = {"name": child.name}
        if child.extraction_job:
            entry["extractionJob"] = child.extraction_job
        if phase:
            entry["phase"] = str(phase)
        entry.update(_outcome(child, phase))
        jobs.append(entry)
    data = _subject(owner)
    data["phase"] = str(final)
    data["summary"] = counts
    data["jobs"] = jobs
    attempts = [f"{c.name}={c.retry_token or ''}" for c in children]
    return Event(
        id=event_id(owner.uid, WebhookEvent.BATCH_COMPLETED, *attempts),
        type=WebhookEvent.BATCH_COMPLETED,
        job=None,
        payload={"type": str(WebhookEvent.BATCH_COMPLETED), "timestamp": when, "data": data},
    )


__all__ = [
    "BATCH_KIND",
    "DEFAULT_EVENTS",
    "FINAL_BATCH_PHASES",
    "JOB_KIND",
    "Child",
    "Event",
    "Owner",
    "Snapshot",
    "error_data",
    "event_id",
    "owed_events",
    "result_data",
    "selected_events",
]
