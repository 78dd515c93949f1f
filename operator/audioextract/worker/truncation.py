"""Truncation and trims past the end (docs/worker.md, "Truncation"); pure checks.

ffmpeg exits 0 when its input ends early, so what was decoded (the encode's own
progress) is compared with what the source declares. The guard proxy's size check
(Content-Length vs bytes relayed) is the other half, read in ``job.run_ffmpeg``.
"""

from audioextract.api.constants import ErrorCode
from audioextract.worker.command import AudioInfo
from audioextract.worker.errors import WorkerError

# A source is truncated when this much less than it declares could be decoded: the
# larger of an absolute margin (codec priming, container rounding) and a fraction.
TRUNCATION_MIN_SECONDS = 0.5
TRUNCATION_FRACTION = 0.02


def check_trim(start: float | None, duration: float | None) -> None:
    """A start at or past the end of the source is an error of the spec, at once."""
    if start and duration is not None and start >= duration:
        raise WorkerError(
            ErrorCode.INVALID_SPEC,
            f"output.startSeconds is {start:g} s but the source's audio is only "
            f"{duration:.3f} s long: nothing to extract",
        )


def check_complete(
    shown: str,
    info: AudioInfo,
    decoded: float | None,
    expected: float | None,
    start: float | None,
) -> None:
    """Fail when less was decoded than the source declares (docs/worker.md, "Truncation")."""
    if decoded is None:
        return
    if start and decoded <= 0.0:
        raise WorkerError(
            ErrorCode.INVALID_SPEC,
            f"output.startSeconds is {start:g} s but the source's audio ends before it: "
            "nothing to extract",
        )
    if expected is None or info.duration_estimated:
        return
    if expected - decoded > max(TRUNCATION_MIN_SECONDS, TRUNCATION_FRACTION * expected):
        raise WorkerError(
            ErrorCode.DECODE_FAILED,
            f"{shown}: the source is truncated: only {decoded:.2f} s of audio "
            f"could be decoded of the {expected:.2f} s it declares",
        )
