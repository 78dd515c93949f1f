"""The run: admission, attempts with retries, failure policy, Ctrl-C, status and webhooks.

Every decision is the operator's, made by the same code: admission order and limits
(:func:`admit`), the failure budget (:func:`to_cancel`), retry or not (the worker's
exit code, as the Job's podFailurePolicy), the status (:func:`rollup`) and the
webhook events (:mod:`audioextract.webhooks`).
"""

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from audioextract.api.constants import BATCH_KIND, ErrorCode, JobPhase
from audioextract.api.status import BatchStatus, ExtractionJobStatus, JobError
from audioextract.local import attempt
from audioextract.local.hooks import DrainReport, Hooks
from audioextract.local.plan import Plan
from audioextract.local.pool import PRELOAD, Pool
from audioextract.local.state import (
    JobState,
    batch_status,
    document,
    job_status,
    webhook_snapshot,
    write_document,
)
from audioextract.reconcile.admission import Active, BatchLimit, Candidate, admit
from audioextract.reconcile.batch import CANCEL_MESSAGE
from audioextract.reconcile.conditions import now_rfc3339
from audioextract.reconcile.observe import make_error
from audioextract.reconcile.rollup import to_cancel
from audioextract.webhooks.delivery import DeliveryOutcome
from audioextract.webhooks.events import Event, Snapshot

# Pause before a retry (doubling, capped); a Job's Pod backoff is 10 s doubling, which
# would only slow a local run down.
RETRY_DELAY_SECONDS = 1.0
RETRY_DELAY_MAX_SECONDS = 30.0
# The status file is rewritten at most this often while jobs run (and always at the
# end): a Batch of hundreds of short jobs changes state several times per job, and
# each write serialises every job's entry (tens of ms as YAML for 250 jobs).
STATUS_WRITE_INTERVAL_SECONDS = 0.5
BUDGET_MESSAGE = CANCEL_MESSAGE  # the operator's Batch plan cancels with the same words
INTERRUPTED_MESSAGE = "not started: the run was interrupted"


def pool_preload(plan: Plan) -> tuple[str, ...]:
    """What the pool server imports before forking: the worker, and boto3 when S3 is used."""
    uses_s3 = any(
        (job.task.source.url or "").startswith("s3://")
        or (job.task.output.destination is not None and job.task.output.destination.s3 is not None)
        for job in plan.jobs
    )
    return (*PRELOAD, "boto3") if uses_s3 else PRELOAD


class View(Protocol):
    """What the runner tells the display."""

    def job_started(self, state: JobState) -> None:
        """An attempt started."""

    def job_progress(self, state: JobState) -> None:
        """A progress log line arrived."""

    def job_retrying(self, state: JobState, error: JobError | None, delay: float) -> None:
        """An attempt failed and will be retried after ``delay`` seconds."""

    def job_finished(self, state: JobState) -> None:
        """A job reached Succeeded or Failed."""

    def message(self, text: str) -> None:
        """Something for the user to read."""


class Silent:
    """A view that shows nothing (for callers without a display)."""

    def job_started(self, state: JobState) -> None:
        """Nothing."""

    def job_progress(self, state: JobState) -> None:
        """Nothing."""

    def job_retrying(self, state: JobState, error: JobError | None, delay: float) -> None:
        """Nothing."""

    def job_finished(self, state: JobState) -> None:
        """Nothing."""

    def message(self, text: str) -> None:
        """Nothing."""


@dataclass
class Outcome:
    """How the run ended."""

    status: BatchStatus | ExtractionJobStatus
    states: list[JobState]
    interrupted: bool
    webhook: DrainReport | None


class Runner:
    """Runs a plan's jobs through the worker and keeps the status up to date."""

    def __init__(
        self,
        plan: Plan,
        workdir: Path,
        *,
        view: View | None = None,
        status_path: Path | None = None,
        webhook_secret: str | None = None,
        drain_seconds: float = 30.0,
        metrics_path: Path | None = None,
    ) -> None:
        """``webhook_secret`` is required when the spec has a webhook (checked by the caller).

        With ``metrics_path``, the domain metrics (the operator's, counted the same way)
        are written there on every status change, for node exporter's textfile collector.
        """
        self.plan = plan
        self.metrics_path = metrics_path
        # Every job is "created" when the run starts: queue waits are measured from it.
        self._created = now_rfc3339()
        self._counted: dict[str, JobPhase | None] = {}
        self.view: View = view if view is not None else Silent()
        self.workdir = workdir
        self.status_path = status_path
        self.drain_seconds = drain_seconds
        self.states = [JobState(job) for job in plan.jobs]
        self.is_batch = plan.loaded.kind == BATCH_KIND
        self.batch_key = f"{plan.loaded.namespace}/{plan.loaded.name}"
        self.status: BatchStatus | ExtractionJobStatus | None = None
        self._written_at: float | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self.interrupted = False
        self._cancel: asyncio.Event | None = None
        # Attempts are forks of one warm worker process (see audioextract.local.pool).
        self.pool: Pool | None = None
        self.hooks: Hooks | None = None
        webhook = plan.loaded.webhook
        if webhook is not None and webhook_secret is not None:
            self.hooks = Hooks(
                plan.loaded.uid,
                webhook,
                webhook_secret,
                self._snapshot,
                on_outcome=self._on_delivery,
                download_url=self._download_url,
            )

    # -- status ---------------------------------------------------------------------

    def _snapshot(self) -> Snapshot:
        assert self.status is not None
        return webhook_snapshot(self.plan, self.states, self.status)

    def refresh(self, *, final: bool = False) -> BatchStatus | ExtractionJobStatus:
        """Recompute the status from the jobs, write the files, wake the webhooks.

        The status and metrics files are written at once when ``final`` or when the last
        write is older than STATUS_WRITE_INTERVAL_SECONDS, else shortly after (coalescing
        bursts); metrics are counted at every change.
        """
        now = now_rfc3339()
        webhook = self.hooks.status if self.hooks is not None else None
        if self.is_batch:
            previous = self.status if isinstance(self.status, BatchStatus) else None
            status: BatchStatus | ExtractionJobStatus = batch_status(
                self.plan, self.states, previous, now
            )
            if webhook is not None:
                status = status.model_copy(update={"webhook": webhook})
        else:
            previous_job = self.status if isinstance(self.status, ExtractionJobStatus) else None
            status = job_status(self.states[0], previous_job, webhook, now)
        self.status = status
        if self.metrics_path is not None:
            self._count(status, now)
        if self.status_path is not None or self.metrics_path is not None:
            self._write_files(final)
        if self.hooks is not None:
            self.hooks.changed()
        return status

    def _count(self, status: BatchStatus | ExtractionJobStatus, now: str) -> None:
        """Count each job's changes as the operator's status writer does."""
        from audioextract import metrics

        for state in self.states:
            before = self._counted.get(state.job.name)
            if state.phase == JobPhase.RUNNING and state.start_time is None:
                continue  # admitted, its worker not started yet: count it once it has
            if state.phase != before:
                metrics.job_status_written(
                    before, job_status(state, None, None, now), self._created
                )
                self._counted[state.job.name] = state.phase
        batches = [status.phase] if self.is_batch else []
        metrics.phase_counts([s.phase for s in self.states], batches)

    def _write_files(self, final: bool) -> None:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        now = loop.time() if loop is not None else 0.0
        due = self._written_at is None or now - self._written_at >= STATUS_WRITE_INTERVAL_SECONDS
        if final or loop is None or due:
            self._flush_files()
        elif self._write_timer is None:
            assert self._written_at is not None
            delay = self._written_at + STATUS_WRITE_INTERVAL_SECONDS - now
            self._write_timer = loop.call_later(delay, self._flush_files)

    def _flush_files(self) -> None:
        """Write the current status file and metrics file now."""
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        assert self.status is not None
        if self.status_path is not None:
            write_document(self.status_path, document(self.plan, self.status))
        if self.metrics_path is not None:
            from audioextract import metrics

            try:
                metrics.write_textfile(self.metrics_path)
            except OSError as exc:
                # Metrics must never stop the jobs; say so once and stop writing them.
                self.view.message(f"--metrics-file: cannot write {self.metrics_path}: {exc}")
                self.metrics_path = None
        with contextlib.suppress(RuntimeError):
            self._written_at = asyncio.get_running_loop().time()

    # -- admission ------------------------------------------------------------------

    def _admit(self) -> list[JobState]:
        batch = self.batch_key if self.is_batch else None
        queued = [s for s in self.states if s.phase == JobPhase.QUEUED]
        by_name = {s.job.name: s for s in queued}
        candidates = [
            Candidate(
                namespace=self.plan.loaded.namespace,
                name=s.job.name,
                priority=s.job.priority,
                # All jobs are "created" together: age is their order in the spec.
                created=f"{s.job.index:08d}",
                batch=batch,
            )
            for s in queued
        ]
        active = [Active(batch=batch) for s in self.states if s.phase == JobPhase.RUNNING]
        suspended = bool(self.plan.loaded.batch.suspend) if self.plan.loaded.batch else False
        limits = {}
        if batch is not None:
            limits[batch] = BatchLimit(parallelism=self.plan.batch_parallelism, suspended=suspended)
        chosen = admit(candidates, active, limits, self.plan.max_concurrent)
        return [by_name[c.name] for c in chosen]

    def _fail_unstarted(self, states: list[JobState], message: str) -> None:
        now = now_rfc3339()
        for state in states:
            state.phase = JobPhase.FAILED
            state.error = make_error(ErrorCode.CANCELLED, message)
            state.completion_time = now
            self.view.job_finished(state)

    def _apply_failure_policy(self) -> bool:
        """Cancel the queued jobs once the failure budget is spent; True when it is."""
        spec = self.plan.loaded.batch
        if spec is None:
            return False
        cancel = {c.name for c in to_cancel(spec, [s.snapshot() for s in self.states])}
        if cancel:
            self._fail_unstarted([s for s in self.states if s.job.name in cancel], BUDGET_MESSAGE)
            self.view.message(
                f"failurePolicy.maxFailedJobs exceeded: {len(cancel)} queued jobs cancelled"
            )
            self.refresh()
        return bool(cancel)

    # -- the run --------------------------------------------------------------------

    def interrupt(self) -> None:
        """Stop: start nothing new, SIGTERM every running worker (Ctrl-C)."""
        if not self.interrupted:
            self.view.message("interrupted: stopping running jobs (their workers clean up)")
        self.interrupted = True
        if self._cancel is not None:
            self._cancel.set()

    async def run(self) -> Outcome:
        """Run every job to the end (or until interrupted); returns the final status."""
        self._cancel = asyncio.Event()
        if self.interrupted:
            self._cancel.set()
        self.refresh()
        if self.hooks is not None:
            self.hooks.start()
        running: dict[str, asyncio.Task[None]] = {}
        self.pool = Pool(pool_preload(self.plan))
        stop_waiter = asyncio.create_task(self._cancel.wait())
        try:
            while True:
                self._apply_failure_policy()
                if not self._cancel.is_set():
                    started = self._admit()
                    for state in started:
                        state.phase = JobPhase.RUNNING
                        running[state.job.name] = asyncio.create_task(self._run_job(state))
                    if started:
                        self.refresh()
                if not running:
                    break
                waiting: set[asyncio.Future[Any]] = set(running.values())
                if not stop_waiter.done():
                    waiting.add(stop_waiter)
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for name, task in list(running.items()):
                    if task.done():
                        del running[name]
                        task.result()  # a bug in the runner must not pass silently
        finally:
            stop_waiter.cancel()
            for task in running.values():
                task.cancel()
            for task in running.values():
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.pool.close()
        leftover = [s for s in self.states if s.phase == JobPhase.QUEUED]
        if leftover and not self._suspended():
            self._fail_unstarted(leftover, INTERRUPTED_MESSAGE)
        status = self.refresh(final=True)
        report = None
        if self.hooks is not None:
            report = await self.hooks.drain(self.drain_seconds)
            status = self.refresh(final=True)
        return Outcome(status, self.states, self.interrupted, report)

    def _suspended(self) -> bool:
        spec = self.plan.loaded.batch
        return bool(spec and spec.suspend)

    async def _run_job(self, state: JobState) -> None:
        job = state.job
        assert self._cancel is not None
        task_file = self.workdir / f"{job.name}.task.json"
        task_file.write_text(
            job.task.model_dump_json(by_alias=True, exclude_none=True), encoding="utf-8"
        )
        loop = asyncio.get_running_loop()
        error: JobError | None = None
        for number in range(1, job.retries + 2):
            state.attempts = number
            state.phase = JobPhase.RUNNING
            state.step = state.step_percent = None
            if state.start_time is None:
                state.start_time = now_rfc3339()
                state.started_at = loop.time()
            self.view.job_started(state)
            self.refresh()
            inv = attempt.Invocation(
                task_file=task_file,
                result_file=self.workdir / f"{job.name}.{number}.result.json",
                temp_dir=self.workdir / "tmp",
                volumes=self.plan.volumes,
                timeout=float(job.timeout),
            )
            outcome = await attempt.run_attempt(
                inv, lambda record: self._on_log(state, record), self._cancel, self.pool
            )
            if outcome.result is not None:
                self._finish(state, JobPhase.SUCCEEDED, result=outcome)
                return
            error = outcome.error
            if not outcome.retryable or number > job.retries or self._cancel.is_set():
                break
            delay = min(RETRY_DELAY_MAX_SECONDS, RETRY_DELAY_SECONDS * 2 ** (number - 1))
            self.view.job_retrying(state, error, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._cancel.wait(), delay)
            if self._cancel.is_set():
                error = make_error(ErrorCode.CANCELLED, "the run was interrupted before a retry")
                break
        self._finish(state, JobPhase.FAILED, error=error)

    def _finish(
        self,
        state: JobState,
        phase: JobPhase,
        *,
        result: attempt.Outcome | None = None,
        error: JobError | None = None,
    ) -> None:
        state.phase = phase
        state.result = result.result if result is not None else None
        state.error = (
            error or make_error(ErrorCode.WORKER_CRASHED, "no result")
            if phase == JobPhase.FAILED
            else None
        )
        state.completion_time = now_rfc3339()
        state.ended_at = asyncio.get_running_loop().time()
        self.view.job_finished(state)
        self.refresh()

    def _on_log(self, state: JobState, record: dict[str, Any]) -> None:
        if record.get("event") != "progress":
            return
        percent = record.get("percent")
        state.step = str(record.get("step") or "")
        state.step_percent = float(percent) if isinstance(percent, int | float) else None
        self.view.job_progress(state)

    # -- webhooks -------------------------------------------------------------------

    def _on_delivery(self, outcome: DeliveryOutcome) -> None:
        if outcome.final and outcome.verdict != "delivered":
            self.view.message(
                f"webhook {outcome.event_type} ({outcome.job or 'batch'}) not delivered: "
                f"{outcome.error}"
            )

    def _download_url(self, event: Event) -> str | None:
        """A presigned GET for a job.completed event whose file is in S3 (DESIGN §5)."""
        from audioextract.worker.storage import download_url

        state = next((s for s in self.states if s.job.key == event.job), None)
        if state is None or state.result is None:
            return None
        dest = state.job.task.output.destination
        s3 = dest.s3 if dest is not None else None
        return download_url(
            state.result.uri, s3.endpoint if s3 else None, s3.region if s3 else None
        )
