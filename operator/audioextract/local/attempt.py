"""One attempt of one job: the worker in its own process, as the image runs it.

The worker gets its task as a file, writes its result JSON to a file (the
termination message in a Pod) and logs JSON lines on stderr, which are passed to
the caller as they arrive (progress). The runner stops a worker with SIGTERM (the
worker then kills ffmpeg, removes its temp files and reports Cancelled) and uses
SIGKILL only when it does not exit in time.
"""

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from audioextract.api.constants import ErrorCode
from audioextract.api.errors import EXIT_OK, PERMANENT_EXIT_CODES, error_for_exit_code
from audioextract.api.status import JobError, JobResult
from audioextract.local.pool import Pool, PoolChild, PoolError
from audioextract.reconcile.observe import make_error, parse_message
from audioextract.worker.settings import PROGRESS_INTERVAL_ENV

# After timeoutSeconds the worker stops itself; this is how long it may take to do so
# (upload, cleanup) before the runner stops it, like the Job's activeDeadlineSeconds.
TIMEOUT_GRACE_SECONDS = 30.0
# Between SIGTERM and SIGKILL, as a Pod's terminationGracePeriodSeconds.
TERM_GRACE_SECONDS = 10.0
STDERR_TAIL = 20
LINE_LIMIT = 1024 * 1024

LogCallback = Callable[[dict[str, Any]], None]


class Stop(StrEnum):
    """Why the runner stopped a worker."""

    CANCELLED = "cancelled"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended."""

    exit_code: int | None
    result: JobResult | None = None
    error: JobError | None = None
    stopped: Stop | None = None

    @property
    def succeeded(self) -> bool:
        """True when the worker produced its file."""
        return self.result is not None

    @property
    def retryable(self) -> bool:
        """Whether another attempt may help, as the Job's podFailurePolicy decides.

        Permanent exit codes fail at once; any other failure (a transient code, a
        crash, a signal) counts against ``retries``. An attempt the runner stopped
        (Ctrl-C, or past its deadline like activeDeadlineSeconds) is never retried.
        """
        if self.succeeded or self.stopped is not None:
            return False
        return self.exit_code not in PERMANENT_EXIT_CODES


@dataclass(frozen=True)
class Invocation:
    """Where an attempt's files go and what the worker sees."""

    task_file: Path
    result_file: Path
    temp_dir: Path
    volumes: dict[str, Path]
    timeout: float


def worker_args(inv: Invocation) -> list[str]:
    """The arguments of ``audio-extract`` that run this attempt's worker."""
    args = ["worker", "--task", str(inv.task_file), "--result", str(inv.result_file)]
    args += ["--temp-dir", str(inv.temp_dir)]
    for name, directory in sorted(inv.volumes.items()):
        args += ["--volume", f"{name}={directory}"]
    return args


def command(inv: Invocation) -> list[str]:
    """The worker's command line in a fresh interpreter: this one's ``audioextract worker``."""
    return [sys.executable, "-m", "audioextract", *worker_args(inv)]


def environment() -> dict[str, str]:
    """The runner's environment (S3 credentials, URL guard, limits), as the operator passes it."""
    env = dict(os.environ)
    # A livelier display than the cluster's default of one progress line per 5 s.
    env.setdefault(PROGRESS_INTERVAL_ENV, "1")
    return env


async def _read_logs(stream: asyncio.StreamReader, on_log: LogCallback, tail: deque[str]) -> None:
    while True:
        try:
            raw = await stream.readline()
        except ValueError:  # a line over the limit: skip it, keep reading
            continue
        if not raw:
            return
        line = raw.decode("utf-8", "replace").rstrip()
        record: Any = None
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                record = json.loads(line)
        if isinstance(record, dict):
            on_log(record)
        elif line:
            tail.append(line)


async def _stop(proc: "asyncio.subprocess.Process | PoolChild") -> None:
    """SIGTERM, then SIGKILL after the grace period."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), TERM_GRACE_SECONDS)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def _start(inv: Invocation, pool: Pool | None) -> "asyncio.subprocess.Process | PoolChild":
    if pool is not None:
        # A fork of the warm pool server: the same worker without interpreter start-up.
        return await pool.spawn(worker_args(inv), environment(), str(Path.cwd()))
    return await asyncio.create_subprocess_exec(
        *command(inv),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=environment(),
        limit=LINE_LIMIT,
        # Its own session: a Ctrl-C on the terminal reaches the runner only, which
        # then stops each worker with SIGTERM, as the kubelet does.
        start_new_session=True,
    )


async def run_attempt(
    inv: Invocation, on_log: LogCallback, cancel: asyncio.Event, pool: Pool | None = None
) -> Outcome:
    """Run the worker once; returns its result or error (never raises for a worker failure).

    With ``pool`` the worker is a child of the warm pool server (:mod:`.pool`), else a
    fresh interpreter; either way its own process, stopped and judged the same way.
    """
    inv.result_file.unlink(missing_ok=True)
    inv.temp_dir.mkdir(parents=True, exist_ok=True)
    try:
        proc = await _start(inv, pool)
    except PoolError:
        # No pool on this system, or it died while starting this attempt: the attempt
        # runs in a fresh interpreter instead, as it would without a pool.
        proc = await _start(inv, None)
    assert proc.stderr is not None
    tail: deque[str] = deque(maxlen=STDERR_TAIL)
    reader = asyncio.create_task(_read_logs(proc.stderr, on_log, tail))
    waiter = asyncio.create_task(proc.wait())
    cancelled = asyncio.create_task(cancel.wait())
    stopped: Stop | None = None
    try:
        done, _ = await asyncio.wait(
            {waiter, cancelled},
            timeout=inv.timeout + TIMEOUT_GRACE_SECONDS,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if waiter not in done:
            stopped = Stop.CANCELLED if cancelled in done else Stop.TIMEOUT
            await _stop(proc)
    finally:
        cancelled.cancel()
        if proc.returncode is None:
            # The runner itself is being torn down: leave no worker behind.
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()
        if isinstance(proc, PoolChild):
            # A worker that died abruptly may leave its ffmpeg behind: end its group.
            proc.end_group()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(reader, 5)
    return _outcome(proc.returncode, _read_result(inv.result_file), stopped, tail, inv.timeout)


def _read_result(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def _outcome(
    rc: int | None, text: str | None, stopped: Stop | None, tail: deque[str], timeout: float
) -> Outcome:
    """Result or error, trusted as the operator trusts a Job's termination message."""
    parsed = parse_message(text)
    if stopped == Stop.TIMEOUT:
        return Outcome(
            rc,
            error=make_error(
                ErrorCode.TIMEOUT,
                f"the worker did not finish within timeoutSeconds ({timeout:g}s) plus "
                f"{TIMEOUT_GRACE_SECONDS:g}s and was stopped",
            ),
            stopped=stopped,
        )
    if rc == EXIT_OK and isinstance(parsed, JobResult):
        return Outcome(rc, result=parsed, stopped=stopped)
    if isinstance(parsed, JobError):
        return Outcome(rc, error=parsed, stopped=stopped)
    if stopped == Stop.CANCELLED:
        return Outcome(
            rc,
            error=make_error(
                ErrorCode.CANCELLED, "the run was interrupted before the job finished"
            ),
            stopped=stopped,
        )
    if rc == EXIT_OK:
        message = "the worker exited 0 but reported no readable result"
        return Outcome(rc, error=make_error(ErrorCode.WORKER_CRASHED, message))
    code = error_for_exit_code(rc) if rc is not None else None
    if code is not None:
        return Outcome(rc, error=make_error(code, f"worker exited with code {rc} ({code})"))
    how = f"was killed by signal {-rc}" if rc is not None and rc < 0 else f"exited with code {rc}"
    detail = f": {tail[-1]}" if tail else ""
    return Outcome(rc, error=make_error(ErrorCode.WORKER_CRASHED, f"the worker {how}{detail}"))
