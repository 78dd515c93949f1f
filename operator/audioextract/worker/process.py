"""Running ffmpeg and ffprobe: deadlines, progress, cancellation, bounded stderr."""

import collections
import json
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from audioextract.api.constants import ErrorCode
from audioextract.worker.errors import WorkerError

STDERR_TAIL_LINES = 200
_active: set[subprocess.Popen[bytes]] = set()
_active_lock = threading.Lock()


@dataclass(frozen=True)
class Completed:
    """How a child process ended."""

    returncode: int
    stdout: str
    stderr: str


def kill_active() -> None:
    """Kill every running child; the SIGTERM handler calls it before unwinding."""
    with _active_lock:
        procs = list(_active)
    for proc in procs:
        if proc.poll() is None:
            proc.kill()


def _drain(stream: IO[bytes], sink: collections.deque[str]) -> None:
    for raw in iter(stream.readline, b""):
        sink.append(raw.decode("utf-8", "replace"))


_OUT_TIME = re.compile(r"^out_time_us=(\d+)$")


def run(
    args: list[str],
    deadline: float,
    *,
    on_progress: Callable[[float, str | None, bool], None] | None = None,
    capture_stdout: bool = False,
) -> Completed:
    """Run a child until it exits or the deadline passes (then kill it: Timeout)."""
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    with _active_lock:
        _active.add(proc)
    err_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
    out_lines: list[str] = []
    assert proc.stderr is not None and proc.stdout is not None
    err_thread = threading.Thread(target=_drain, args=(proc.stderr, err_tail), daemon=True)
    err_thread.start()
    out_thread = threading.Thread(
        target=_read_stdout, args=(proc.stdout, out_lines, on_progress, capture_stdout), daemon=True
    )
    out_thread.start()
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        proc.kill()

    # A blocking wait returns the moment the child exits, and a timer enforces the
    # deadline: Popen.wait(timeout) polls with sleeps of up to 50 ms, which added up to
    # a tenth of a second per job over its three processes.
    timer = threading.Timer(max(0.0, deadline - time.monotonic()), expire)
    timer.daemon = True
    try:
        timer.start()
        proc.wait()
        timer.cancel()
        if expired.is_set():
            raise WorkerError(
                ErrorCode.TIMEOUT, "the task's time limit (timeoutSeconds) was reached"
            )
        out_thread.join(timeout=5)
        err_thread.join(timeout=5)
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        with _active_lock:
            _active.discard(proc)
    return Completed(proc.returncode, "".join(out_lines), "".join(err_tail))


def _read_stdout(
    stream: IO[bytes],
    lines: list[str],
    on_progress: Callable[[float, str | None, bool], None] | None,
    capture: bool,
) -> None:
    speed: str | None = None
    position = 0.0
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").strip()
        if capture:
            lines.append(line + "\n")
        if on_progress is None:
            continue
        if m := _OUT_TIME.match(line):
            position = int(m[1]) / 1e6
        elif line.startswith("speed="):
            speed = line.partition("=")[2].strip() or None
        elif line.startswith("progress="):
            on_progress(position, speed, line.endswith("end"))


def ffprobe_command(url: str, options: dict[str, Any]) -> list[str]:
    """The ffprobe command line of every probe: ``url``'s format and streams as JSON.

    ``options`` are input options (``-key value``, before ``-i``). Also what
    bench/startup.py times, so that the bench measures the worker's real probe.
    """
    args = [
        "ffprobe",
        "-v",
        "error",
        "-hide_banner",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
    ]
    for key, value in options.items():
        args += [f"-{key}", str(value)]
    return [*args, "-i", url]


def ffprobe_json(
    url: str, options: dict[str, Any], deadline: float
) -> tuple[dict[str, Any] | None, str]:
    """Ffprobe's JSON for a source or output; (None, stderr) when ffprobe fails."""
    done = run(ffprobe_command(url, options), deadline, capture_stdout=True)
    if done.returncode != 0:
        return None, done.stderr
    try:
        data: dict[str, Any] = json.loads(done.stdout or "{}")
    except json.JSONDecodeError:
        return None, done.stderr
    return data, done.stderr


def describe_failure(returncode: int, stderr: str) -> str:
    """A short, human reason from ffmpeg's stderr (last meaningful lines)."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("  ")]
    return " | ".join(lines[-3:])[-600:] or f"exit status {returncode}"
