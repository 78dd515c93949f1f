"""The worker's exit codes: the contract between the worker and the Job's podFailurePolicy.

Permanent errors (bad input: retrying cannot help) exit 10-19 and fail the Job at once
through ``podFailurePolicy``; transient ones exit 20-29 and are retried up to
``retries``. Any other non-zero exit (an unexpected crash, a signal) is treated as
transient and reported as ``WorkerCrashed``.
"""

from typing import NamedTuple

from audioextract.api.constants import ErrorCode


class ExitCode(NamedTuple):
    """How one error code leaves the worker."""

    code: int
    retryable: bool


EXIT_OK = 0
EXIT_CRASHED = 1

EXIT_CODES: dict[ErrorCode, ExitCode] = {
    ErrorCode.INVALID_SPEC: ExitCode(10, retryable=False),
    ErrorCode.SOURCE_NOT_FOUND: ExitCode(11, retryable=False),
    ErrorCode.SOURCE_FORBIDDEN: ExitCode(12, retryable=False),
    ErrorCode.NO_AUDIO_STREAM: ExitCode(13, retryable=False),
    ErrorCode.DECODE_FAILED: ExitCode(14, retryable=False),
    ErrorCode.INPUT_TOO_LARGE: ExitCode(15, retryable=False),
    ErrorCode.TIMEOUT: ExitCode(16, retryable=False),
    ErrorCode.SOURCE_UNREACHABLE: ExitCode(20, retryable=True),
    ErrorCode.ENCODE_FAILED: ExitCode(21, retryable=True),
    ErrorCode.OUTPUT_WRITE_FAILED: ExitCode(22, retryable=True),
    ErrorCode.CANCELLED: ExitCode(23, retryable=True),
}

PERMANENT_EXIT_CODES: tuple[int, ...] = tuple(
    sorted(ec.code for ec in EXIT_CODES.values() if not ec.retryable)
)


def error_for_exit_code(exit_code: int) -> ErrorCode | None:
    """The error code a worker exit code stands for; None for 0 and unknown codes."""
    for error, ec in EXIT_CODES.items():
        if ec.code == exit_code:
            return error
    return None
