"""An ExtractionJob's status from its batch/v1 Job and that Job's last Pod (DESIGN §3, step 4).

The worker writes ``{"result": {...}}`` or ``{"error": {"code", "message"}}`` (a bare
result or error object is accepted too) to its termination message. How the Job
ended decides which part is trusted:

- Complete: the result from the message; none readable -> WorkerCrashed.
- Failed, reason BackoffLimitExceeded or PodFailurePolicy: the worker's error from the
  message, else the error its exit code stands for; OOMKilled or nothing usable ->
  WorkerCrashed.
- Failed, reason DeadlineExceeded: Timeout (the backstop deadline fired).
- Suspended (Kueue has not admitted it yet): Queued, not failed.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from audioextract.api.constants import ErrorCode, JobPhase
from audioextract.api.errors import EXIT_CODES, error_for_exit_code
from audioextract.api.status import JobError, JobResult

MESSAGE_MAX = 2048


@dataclass(frozen=True)
class Termination:
    """The worker container's terminated state in a Pod's status."""

    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class Observed:
    """What the Job says about the ExtractionJob."""

    phase: JobPhase
    result: JobResult | None = None
    error: JobError | None = None
    start_time: str | None = None
    completion_time: str | None = None
    pod_attempts: int = 0


def make_error(code: ErrorCode, message: str) -> JobError:
    """A JobError with ``retryable`` taken from the exit-code table."""
    entry = EXIT_CODES.get(code)
    retryable = entry.retryable if entry is not None else True
    return JobError(code=code, message=message[:MESSAGE_MAX] or str(code), retryable=retryable)


def parse_message(message: str | None) -> JobResult | JobError | None:
    """The worker's result or error from a termination message; None when unreadable."""
    if not message:
        return None
    try:
        data = json.loads(message)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    try:
        if isinstance(data.get("result"), dict):
            return JobResult.model_validate(data["result"])
        if isinstance(data.get("error"), dict):
            err = data["error"]
        elif "code" in data:
            err = data
        else:
            return JobResult.model_validate(data)
        code = ErrorCode(err["code"])
        error = make_error(code, str(err.get("message") or code))
        if isinstance(err.get("retryable"), bool):
            error = error.model_copy(update={"retryable": err["retryable"]})
        return error
    except (ValidationError, ValueError, KeyError, TypeError):
        return None


def _condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or ():
        if cond.get("type") == type_ and cond.get("status") == "True":
            return dict(cond)
    return None


def last_termination(
    pods: Sequence[Mapping[str, Any]], container: str = "worker"
) -> Termination | None:
    """The worker container's terminated state in the most recently created Pod that has one."""
    found: list[tuple[str, str, Termination]] = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        for cs in (pod.get("status") or {}).get("containerStatuses") or ():
            if cs.get("name") != container:
                continue
            term = (cs.get("state") or {}).get("terminated")
            if term:
                found.append(
                    (
                        meta.get("creationTimestamp") or "",
                        meta.get("name") or "",
                        Termination(term.get("exitCode"), term.get("reason"), term.get("message")),
                    )
                )
    if not found:
        return None
    found.sort(key=lambda item: (item[0], item[1]))
    return found[-1][2]


def _failure(reason: str, message: str, term: Termination | None) -> JobError:
    if reason == "DeadlineExceeded":
        return make_error(ErrorCode.TIMEOUT, f"the Job's deadline passed: {message}".strip(": "))
    parsed = parse_message(term.message if term else None)
    if isinstance(parsed, JobError):
        return parsed
    if term is not None and term.reason == "OOMKilled":
        return make_error(ErrorCode.WORKER_CRASHED, "the worker ran out of memory (OOMKilled)")
    if term is not None and term.exit_code is not None:
        code = error_for_exit_code(term.exit_code)
        if code is not None:
            return make_error(code, f"worker exited with code {term.exit_code} ({code})")
        return make_error(
            ErrorCode.WORKER_CRASHED,
            f"worker exited with code {term.exit_code}"
            + (f" ({term.reason})" if term.reason else ""),
        )
    return make_error(ErrorCode.WORKER_CRASHED, f"the Job failed ({reason}): {message}".strip(": "))


def observe_job(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> Observed:
    """The ExtractionJob's phase, result or error, and times, from its Job and the Job's Pods."""
    status = job.get("status") or {}
    start = status.get("startTime")
    attempts = (
        int(status.get("succeeded") or 0)
        + int(status.get("failed") or 0)
        + int(status.get("active") or 0)
    )
    complete = _condition(job, "Complete")
    failed = _condition(job, "Failed")
    term = last_termination(pods)
    if complete is not None:
        end = status.get("completionTime") or complete.get("lastTransitionTime")
        parsed = parse_message(term.message if term else None)
        if isinstance(parsed, JobResult):
            return Observed(
                JobPhase.SUCCEEDED,
                result=parsed,
                start_time=start,
                completion_time=end,
                pod_attempts=attempts,
            )
        error = make_error(
            ErrorCode.WORKER_CRASHED, "the worker exited 0 but reported no readable result"
        )
        return Observed(
            JobPhase.FAILED,
            error=error,
            start_time=start,
            completion_time=end,
            pod_attempts=attempts,
        )
    if failed is not None:
        end = failed.get("lastTransitionTime")
        error = _failure(str(failed.get("reason") or ""), str(failed.get("message") or ""), term)
        return Observed(
            JobPhase.FAILED,
            error=error,
            start_time=start,
            completion_time=end,
            pod_attempts=attempts,
        )
    if (job.get("spec") or {}).get("suspend") and not status.get("active"):
        return Observed(JobPhase.QUEUED, pod_attempts=attempts)
    return Observed(JobPhase.RUNNING, start_time=start, pod_attempts=attempts)
