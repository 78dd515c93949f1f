"""What the runner knows about each job, and the status built from it with the operator's code.

A Batch's status comes from :func:`audioextract.reconcile.rollup.rollup` over one
:class:`ChildSnapshot` per job, exactly as the operator's Batch plan builds it from its
ExtractionJobs; a standalone ExtractionJob's status from the operator's
:func:`audioextract.reconcile.extractionjob.with_conditions`. Webhook snapshots are
built from the same values. Nothing here decides a lifecycle of its own.
"""

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from audioextract.api.constants import API_VERSION, BATCH_KIND, JobPhase
from audioextract.api.status import (
    BatchStatus,
    ExtractionJobStatus,
    JobError,
    JobResult,
    WebhookStatus,
)
from audioextract.atomic import write_atomically
from audioextract.local.plan import LocalJob, Plan
from audioextract.reconcile.extractionjob import with_conditions
from audioextract.reconcile.rollup import ChildSnapshot, rollup
from audioextract.webhooks.events import Child, Owner, Snapshot

# libyaml's emitter when PyYAML was built with it (the wheels are): about 6x faster than
# the pure-Python one, and the same text except where a long double-quoted string (one
# with a tab or line break) is folded; the values read back are the same
# (tests/local/test_status_writes.py). The status file of a Batch of hundreds of jobs is
# rewritten every STATUS_WRITE_INTERVAL_SECONDS while they run, and those writes were a
# large part of the runner's own CPU (docs/performance.md).
_YAML_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

# metadata.generation of an object as first created; the local run never changes its spec.
GENERATION = 1
# The JobState fields its snapshot is made of: setting one makes a new snapshot.
_SNAPSHOT_FIELDS = frozenset({"job", "phase", "result", "error", "start_time", "completion_time"})


@dataclass
class JobState:
    """One job as it runs: phase, attempts, times, outcome and the latest progress."""

    job: LocalJob
    phase: JobPhase = JobPhase.QUEUED
    attempts: int = 0
    start_time: str | None = None
    completion_time: str | None = None
    result: JobResult | None = None
    error: JobError | None = None
    step: str | None = None
    step_percent: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        """Succeeded or failed."""
        return self.phase in (JobPhase.SUCCEEDED, JobPhase.FAILED)

    @property
    def elapsed(self) -> float | None:
        """Wall-clock seconds since the first attempt started (until it finished)."""
        if self.started_at is None:
            return None
        return (self.ended_at or time.monotonic()) - self.started_at

    @property
    def percent(self) -> float:
        """Overall progress of the job, 0-100: a normalised job measures first, then encodes."""
        if self.phase == JobPhase.SUCCEEDED:
            return 100.0
        if self.phase != JobPhase.RUNNING or self.step_percent is None:
            return 0.0
        if not self.job.normalize:
            return self.step_percent if self.step == "encode" else 0.0
        half = self.step_percent / 2
        return half if self.step == "measure" else 50.0 + half

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SNAPSHOT_FIELDS:
            self.__dict__.pop("_snapshot", None)
        super().__setattr__(name, value)

    def snapshot(self) -> ChildSnapshot:
        """The rollup's view of this job: the same object until one of its fields changes.

        Every status change rolls up all the jobs of the Batch; kept, a job's snapshot
        keeps its entry (:attr:`ChildSnapshot.entry`) too, so only the jobs that changed
        are converted again (a Batch of N jobs made N entries at each of its ~3N changes).
        """
        cached: ChildSnapshot | None = self.__dict__.get("_snapshot")
        if cached is None:
            cached = ChildSnapshot(
                key=self.job.key,
                name=self.job.name,
                phase=self.phase,
                result=self.result,
                error=self.error,
                start_time=self.start_time,
                completion_time=self.completion_time,
            )
            self.__dict__["_snapshot"] = cached
        return cached

    def child(self, batch: bool) -> Child:
        """The webhooks' view of this job."""
        return Child(
            name=self.job.key,
            phase=self.phase,
            extraction_job=self.job.name if batch else None,
            result=self.result,
            error=self.error,
            attempts=self.attempts or None,
            start_time=self.start_time,
            completion_time=self.completion_time,
        )


def batch_status(
    plan: Plan, states: list[JobState], previous: BatchStatus | None, now: str
) -> BatchStatus:
    """The Batch's status from its jobs: the operator's rollup."""
    assert plan.loaded.batch is not None
    return rollup(
        plan.loaded.batch,
        [s.snapshot() for s in states],
        previous=previous,
        generation=GENERATION,
        now=now,
    )


def job_status(
    state: JobState, previous: ExtractionJobStatus | None, webhook: WebhookStatus | None, now: str
) -> ExtractionJobStatus:
    """A standalone ExtractionJob's status, with the conditions the operator's plan sets."""
    observed = ExtractionJobStatus(
        phase=state.phase,
        attempts=state.attempts,
        start_time=state.start_time,
        completion_time=state.completion_time,
        result=state.result,
        error=state.error,
        conditions=previous.conditions if previous else None,
        webhook=webhook,
    )
    return with_conditions(observed, GENERATION, now)


def owner(plan: Plan) -> Owner:
    """The webhooks' owner: the Batch or the standalone ExtractionJob."""
    loaded = plan.loaded
    return Owner(kind=loaded.kind, namespace=loaded.namespace, name=loaded.name, uid=loaded.uid)


def webhook_snapshot(
    plan: Plan, states: list[JobState], status: BatchStatus | ExtractionJobStatus
) -> Snapshot:
    """What the owed webhook events are derived from."""
    is_batch = plan.loaded.kind == BATCH_KIND
    phase = status.phase if isinstance(status, BatchStatus) else None
    return Snapshot(
        owner=owner(plan),
        children=[s.child(is_batch) for s in states],
        phase=phase,
        completion_time=status.completion_time,
    )


def document(plan: Plan, status: BatchStatus | ExtractionJobStatus) -> dict[str, Any]:
    """The status file's content: the object as ``kubectl get -o yaml`` shows it, without spec."""
    loaded = plan.loaded
    meta: dict[str, Any] = {"name": loaded.name, "namespace": loaded.namespace, "uid": loaded.uid}
    return {
        "apiVersion": API_VERSION,
        "kind": loaded.kind,
        "metadata": meta,
        "status": status.dump(),
    }


def write_document(path: Path, doc: dict[str, Any]) -> None:
    """Write YAML (or JSON for a ``.json`` name) atomically: a reader never sees half a file."""
    if path.suffix.lower() == ".json":
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    else:
        text = yaml.dump(doc, Dumper=_YAML_DUMPER, sort_keys=False, allow_unicode=True)
    write_atomically(path, text.encode("utf-8"))
