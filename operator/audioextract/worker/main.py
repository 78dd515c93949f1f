"""``audio-extract worker``: run one task, write the result JSON, exit with its code.

The exit codes are the contract with the Job's podFailurePolicy
(:mod:`audioextract.api.errors`); docs/worker.md lists them with the environment.
"""

import argparse
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError

from audioextract.api.constants import ErrorCode
from audioextract.api.errors import EXIT_CODES, EXIT_CRASHED, EXIT_OK
from audioextract.api.status import JobError, JobResult
from audioextract.api.task import Task
from audioextract.api.validation import parse_input_json
from audioextract.worker import process
from audioextract.worker.errors import WorkerError
from audioextract.worker.log import JsonLogger
from audioextract.worker.settings import TASK_ENV, TEMP_DIR_ENV, VOLUMES_ROOT_ENV, WorkerSettings
from audioextract.worker.storage import VolumeMap

RESULT_LIMIT = 4096
DEFAULT_RESULT = "/dev/termination-log"
MESSAGE_LIMIT = 1024
_QUERY = re.compile(r"\?[^\s'\"]*")
# What a user must not see in a message: the guard proxy's loopback URL (its path is
# a capability token) and local paths (the scratch directory, volume mounts).
_INTERNAL = (
    (re.compile(r"http://127\.0\.0\.1:\d+/[\w-]{22}(?![\w/-])"), "<source>"),
    (re.compile(r"(?:file:)?/[^\s'\":]*audioextract-[^\s'\":/]+(?:/[^\s'\":]*)?"), "<temp>"),
    (re.compile(r"file:[^\s'\"]+"), "<file>"),
    (re.compile(r"(?<![\w.])/(?:tmp|volumes)/[^\s'\":]*"), "<path>"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The worker's command-line flags."""
    parser.add_argument(
        "--task",
        metavar="FILE",
        help=f"task JSON file (default: the {TASK_ENV} environment variable)",
    )
    parser.add_argument(
        "--result",
        metavar="FILE",
        default=DEFAULT_RESULT,
        help=f"where to write the result JSON (default {DEFAULT_RESULT})",
    )
    parser.add_argument(
        "--volume",
        metavar="NAME=DIR",
        action="append",
        default=[],
        help="PersistentVolumeClaim NAME is mounted at DIR "
        f"(repeatable; default ${VOLUMES_ROOT_ENV}/NAME)",
    )
    parser.add_argument(
        "--temp-dir", metavar="DIR", help=f"scratch directory (default ${TEMP_DIR_ENV}, else /tmp)"
    )


def scrub(message: str) -> str:
    """Drop query strings (presigned signatures) and internal paths; bound the length."""
    text = message
    for pattern, replacement in _INTERNAL:
        text = pattern.sub(replacement, text)
    text = _QUERY.sub("?…", text)
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def result_json(payload: JobResult | JobError) -> str:
    """The termination-message JSON: a result, or ``{"error": ...}``; never over 4 KiB."""
    if isinstance(payload, JobError):
        body: dict[str, Any] = {"error": payload.dump()}
    else:
        body = payload.dump()
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    while len(text.encode()) > RESULT_LIMIT:
        # Only the free text can be long: a message, or a uri near its 4096 limit.
        if isinstance(payload, JobError):
            payload = payload.model_copy(
                update={"message": payload.message[: len(payload.message) // 2] + "…"}
            )
            body = {"error": payload.dump()}
        else:
            body["uri"] = body["uri"][: len(body["uri"]) // 2] + "…"
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return text


def _parse_volumes(entries: list[str]) -> dict[str, Path]:
    volumes = {}
    for entry in entries:
        name, sep, directory = entry.partition("=")
        if not sep or not name or not directory:
            raise ValueError(f"--volume {entry!r}: expected NAME=DIR")
        volumes[name] = Path(directory)
    return volumes


def parse_task(text: str | bytes) -> Task:
    """Validate a task with the API's own rules; WorkerError(InvalidSpec) names the field.

    The worker does not rely on the operator having validated it: a hand-built task
    must not be able to write outside its destination or reach ffmpeg with a NUL.
    """
    try:
        # camelCase only, strict types: exactly what the CRD accepts (api/validation.py).
        return parse_input_json(Task, text)
    except ValidationError as exc:
        raise WorkerError(ErrorCode.INVALID_SPEC, f"invalid task: {_short(exc)}") from exc


def _load_task(path: str | None) -> Task:
    if path is not None:
        text = Path(path).read_bytes()
    else:
        env = os.environ.get(TASK_ENV, "")
        if not env:
            raise ValueError(f"no task: pass --task FILE or set {TASK_ENV}")
        text = env.encode("utf-8", "surrogateescape")
    return parse_task(text)


def _write_result(where: str, text: str, log: JsonLogger) -> None:
    try:
        Path(where).write_text(text, encoding="utf-8")
    except OSError as exc:
        # Outside Kubernetes there may be no termination log; the log line still has it.
        log.warning("result-not-written", path=where, reason=exc.strerror or str(exc))


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    process.kill_active()
    raise WorkerError(ErrorCode.CANCELLED, "the worker was stopped (SIGTERM) before it finished")


def run(args: argparse.Namespace) -> int:
    """Run one task; returns the exit code for the Job's podFailurePolicy."""
    started = time.monotonic()
    # S3 clients get explicit credentials or none; this keeps boto3 away from the
    # instance metadata service even on a path that forgot to (docs/worker.md).
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    log = JsonLogger(job="-")
    signal.signal(signal.SIGTERM, _on_sigterm)
    outcome: JobResult | JobError
    try:
        try:
            task = _load_task(args.task)
            settings = WorkerSettings.from_env()
            volumes = _parse_volumes(args.volume)
        except (OSError, ValueError, ValidationError) as exc:
            raise WorkerError(
                ErrorCode.INVALID_SPEC, f"invalid task or settings: {_short(exc)}"
            ) from exc
        log.job = task.name
        if args.temp_dir:
            settings = _with_temp(settings, Path(args.temp_dir))
        from audioextract.worker.job import (
            execute,
        )  # after validation: keeps a bad task's exit fast

        log.info("start", format=task.output.format, timeoutSeconds=task.timeout_seconds)
        outcome = execute(
            task,
            settings,
            VolumeMap(settings.volumes_root, volumes),
            log,
            started + task.timeout_seconds,
        )
        rc = EXIT_OK
        log.info("succeeded", elapsedSeconds=round(time.monotonic() - started, 3), **outcome.dump())
    except WorkerError as exc:
        exit_code = EXIT_CODES[exc.code]
        outcome = JobError(code=exc.code, message=scrub(exc.message), retryable=exit_code.retryable)
        rc = exit_code.code
        log.error("failed", code=exc.code, message=outcome.message, retryable=exit_code.retryable)
    except Exception as exc:
        outcome = JobError(
            code=ErrorCode.WORKER_CRASHED,
            message=scrub(f"unexpected {type(exc).__name__}: {exc}"),
            retryable=True,
        )
        rc = EXIT_CRASHED
        log.error("crashed", error=type(exc).__name__, message=outcome.message)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _write_result(args.result, result_json(outcome), log)
    sys.stderr.flush()
    return rc


def _short(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        errors = exc.errors()
        parts = [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in errors[:3]]
        return "; ".join(parts)
    return str(exc)


def _with_temp(settings: WorkerSettings, temp: Path) -> WorkerSettings:
    from dataclasses import replace

    return replace(settings, temp_dir=temp)
