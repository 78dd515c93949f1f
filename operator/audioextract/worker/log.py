"""Structured JSON-lines logs on stderr.

Callers pass only values that are safe to show: URLs go through :func:`redact_url`
first, because presigned query strings and user-info are credentials.
"""

import json
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from audioextract.urlguard import redact_url

__all__ = ["JsonLogger", "ProgressReporter", "redact_url"]


class JsonLogger:
    """Writes one JSON object per line: ts, level, event, job and the event's fields."""

    def __init__(self, job: str, stream: TextIO | None = None) -> None:
        self.job = job
        self.stream = stream if stream is not None else sys.stderr

    def log(self, level: str, event: str, **fields: Any) -> None:
        """Write one event."""
        record = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": level,
            "event": event,
            "job": self.job,
            **fields,
        }
        try:
            self.stream.write(json.dumps(record, default=str) + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            # A closed stderr must not turn a finished job into a crash.
            pass

    def info(self, event: str, **fields: Any) -> None:
        """Write an info event."""
        self.log("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        """Write a warning event."""
        self.log("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        """Write an error event."""
        self.log("error", event, **fields)


class ProgressReporter:
    """Turns ffmpeg's ``-progress`` time into percent-done log lines, at most one per interval."""

    def __init__(
        self, logger: JsonLogger, step: str, total_seconds: float | None, interval: float
    ) -> None:
        self.logger = logger
        self.step = step
        self.total = total_seconds if total_seconds and total_seconds > 0 else None
        self.interval = interval
        self._last = 0.0
        self._started = time.monotonic()

    def update(self, out_seconds: float, speed: str | None = None, done: bool = False) -> None:
        """Record ffmpeg's position; logs when the interval has passed or the step is done."""
        now = time.monotonic()
        if not done and now - self._last < self.interval:
            return
        self._last = now
        percent = None
        if self.total is not None:
            percent = 100.0 if done else round(min(99.9, 100.0 * out_seconds / self.total), 1)
        self.logger.info(
            "progress",
            step=self.step,
            percent=percent,
            outSeconds=round(out_seconds, 2),
            speed=speed,
            elapsedSeconds=round(now - self._started, 2),
        )
