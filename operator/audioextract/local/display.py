"""What the user sees: a live redraw on a terminal, plain log lines otherwise, and the results.

The live view (stderr, ANSI, no dependency) keeps finished jobs as permanent lines
and redraws only a block at the bottom: the overall bar and one line per running
job. The results table and the summary go to stdout, so they can be piped.
"""

import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from audioextract.api.constants import JobPhase
from audioextract.api.status import BatchStatus, ExtractionJobStatus, JobError
from audioextract.local.hooks import DrainReport
from audioextract.local.plan import Plan
from audioextract.local.state import JobState

REDRAW_SECONDS = 0.2
PLAIN_PROGRESS_SECONDS = 5.0
BAR = 20


def human_size(size: int | None) -> str:
    """1234567 -> ``1.2 MB``."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def seconds(value: float | None) -> str:
    """Seconds for a table cell."""
    return "-" if value is None else f"{value:.1f}s"


def bar(percent: float, width: int = BAR) -> str:
    """``[#####.....]``."""
    filled = round(width * max(0.0, min(100.0, percent)) / 100)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def local_path(uri: str, volumes: dict[str, Path]) -> str:
    """Where a ``volume://claim/path`` result is on this machine; other URIs unchanged."""
    if not uri.startswith("volume://"):
        return uri
    claim, _, rel = uri.removeprefix("volume://").partition("/")
    base = volumes.get(claim)
    if base is None:
        return uri
    path = base / rel
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def error_text(error: JobError | None) -> str:
    """``Code: message`` for a table cell."""
    if error is None:
        return ""
    return f"{error.code}: {error.message}"


class Display:
    """Progress for a run; ``live`` redraws in place (a terminal), else plain lines."""

    def __init__(
        self, plan: Plan, states: Sequence[JobState], stream: TextIO | None = None, *, live: bool
    ) -> None:
        """Show ``states`` (the runner's, updated in place) on ``stream`` (default stderr)."""
        self.plan = plan
        self.states = states
        self.stream = stream if stream is not None else sys.stderr
        self.live = live
        self._drawn = 0
        self._last_draw = 0.0
        self._last_plain: dict[str, float] = {}
        self._started = time.monotonic()

    # -- events from the runner -----------------------------------------------------

    def job_started(self, state: JobState) -> None:
        """An attempt started."""
        suffix = f" (attempt {state.attempts})" if state.attempts > 1 else ""
        self._last_plain[state.job.key] = time.monotonic()
        self._line(f"started   {state.job.key}{suffix}", permanent=not self.live)
        self.redraw(force=True)

    def job_progress(self, state: JobState) -> None:
        """A progress line from the worker."""
        if self.live:
            self.redraw()
            return
        now = time.monotonic()
        if now - self._last_plain.get(state.job.key, 0.0) < PLAIN_PROGRESS_SECONDS:
            return
        self._last_plain[state.job.key] = now
        self._line(f"progress  {state.job.key} {state.percent:.0f}% ({state.step})")

    def job_retrying(self, state: JobState, error: JobError | None, delay: float) -> None:
        """An attempt failed with a transient error."""
        self._line(
            f"retrying  {state.job.key} in {delay:.0f}s after attempt {state.attempts}: "
            f"{error_text(error)}"
        )

    def job_finished(self, state: JobState) -> None:
        """A job succeeded or failed."""
        if state.phase == JobPhase.SUCCEEDED and state.result is not None:
            where = local_path(state.result.uri, self.plan.volumes)
            text = (
                f"succeeded {state.job.key} -> {where} "
                f"({human_size(state.result.size_bytes)}, {seconds(state.elapsed)})"
            )
        else:
            text = f"failed    {state.job.key}: {error_text(state.error)}"
        self._line(text)

    def message(self, text: str) -> None:
        """A note for the user."""
        self._line(text)

    # -- drawing --------------------------------------------------------------------

    def _overall(self) -> str:
        total = len(self.states)
        done = sum(1 for s in self.states if s.finished)
        failed = sum(1 for s in self.states if s.phase == JobPhase.FAILED)
        running = sum(1 for s in self.states if s.phase == JobPhase.RUNNING)
        percent = sum(100.0 if s.finished else s.percent for s in self.states) / max(1, total)
        elapsed = time.monotonic() - self._started
        return (
            f"{self.plan.loaded.name}  {bar(percent)} {percent:3.0f}%  "
            f"{done}/{total} done, {failed} failed, {running} running  {elapsed:.0f}s"
        )

    def _block(self) -> list[str]:
        width = shutil.get_terminal_size((100, 20)).columns
        lines = [self._overall()]
        for s in self.states:
            if s.phase != JobPhase.RUNNING:
                continue
            step = s.step or "starting"
            attempt = f" attempt {s.attempts}" if s.attempts > 1 else ""
            lines.append(
                f"  {s.job.key:<24} {bar(s.percent, 10)} {s.percent:3.0f}% {step}{attempt}"
            )
        return [line[: width - 1] for line in lines]

    def _clear(self) -> None:
        if self._drawn:
            # Up to the block's first line, then erase to the end of the screen.
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def redraw(self, *, force: bool = False) -> None:
        """Redraw the live block (at most every 0.2 s unless forced)."""
        if not self.live:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < REDRAW_SECONDS:
            return
        self._last_draw = now
        self._clear()
        block = self._block()
        self.stream.write("\n".join(block) + "\n")
        self._drawn = len(block)
        self.stream.flush()

    def _line(self, text: str, *, permanent: bool = True) -> None:
        if not permanent:
            return
        if self.live:
            self._clear()
            self.stream.write(text + "\n")
            self.redraw(force=True)
        else:
            stamp = time.strftime("%H:%M:%S")
            self.stream.write(f"{stamp} {text}\n")
            self.stream.flush()

    def close(self) -> None:
        """Remove the live block (the results table follows)."""
        if self.live:
            self._clear()
            self.stream.flush()


def results_table(plan: Plan, states: Sequence[JobState]) -> str:
    """One row per job: job, phase, output, size, duration (audio), time, attempts, error."""
    header = ("JOB", "PHASE", "OUTPUT", "SIZE", "DURATION", "TIME", "ATTEMPTS", "ERROR")
    rows = [header]
    for s in states:
        result = s.result
        rows.append(
            (
                s.job.key,
                str(s.phase),
                local_path(result.uri, plan.volumes) if result else "-",
                human_size(result.size_bytes) if result else "-",
                seconds(result.duration_seconds) if result else "-",
                seconds(s.elapsed),
                str(s.attempts),
                error_text(s.error)[:120],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def summary(
    plan: Plan,
    status: BatchStatus | ExtractionJobStatus,
    status_path: Path | None,
    webhook: DrainReport | None,
    interrupted: bool,
) -> list[str]:
    """A few lines under the table: the phase, counts, where the status and files are."""
    loaded = plan.loaded
    lines = []
    if isinstance(status, BatchStatus):
        lines.append(
            f"Batch {loaded.name}: {status.phase} - {status.succeeded} succeeded, "
            f"{status.failed} failed of {status.total}"
        )
        for cond in status.conditions or ():
            if cond.type in ("Stalled", "Failed") and cond.status == "True":
                lines.append(f"  {cond.type}: {cond.reason}: {cond.message}")
                break
    else:
        lines.append(f"ExtractionJob {loaded.name}: {status.phase}")
        if status.error is not None:
            lines.append(f"  {error_text(status.error)}")
    if interrupted:
        lines.append("The run was interrupted (Ctrl-C): unfinished jobs are Cancelled.")
    if webhook is not None:
        ws = webhook.status
        text = f"Webhooks: {ws.delivered} delivered, {ws.failed} failed, {ws.pending} pending"
        if webhook.timed_out:
            text += " (gave up waiting)"
        lines.append(text)
        lines += [
            f"  not delivered: {f.event_type} {f.job or ''} {f.error}".rstrip()
            for f in webhook.failures
        ]
    lines.append(f"Files without a destination are in {plan.out_dir}")
    if status_path is not None:
        lines.append(f"Status written to {status_path}")
    return lines
