"""Decode and output limits, enforced by ffmpeg itself while it runs.

A probe's duration is a claim made by the file: a FLAC whose total-samples field is
zero, or a piped Matroska stream, declares no duration at all, and a few megabytes of
silence at a high sample rate decode to gigabytes. So the limits are not checked
against the probe but imposed on every ffmpeg run that decodes the source:

- ``-t`` (an output option) stops decoding a little after the media-seconds limit;
- ``-fs`` stops writing a little after the output-size limit;

and the run's decoded time and the file's size are checked afterwards. Exceeding
either is ``InputTooLarge`` (permanent): the caller removes its temp directory and
delivers nothing. Both options end ffmpeg normally, so no process has to be killed
and the temp directory never holds more than the limit.

The default output limit follows from the format and the media-seconds limit: the
most bytes per second the planned encode can produce, times the limit
(:func:`default_max_output_bytes`); ``AUDIOEXTRACT_MAX_OUTPUT_BYTES`` caps it (the
operator sets it to half the temp emptyDir's size limit).
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from audioextract.api.constants import ErrorCode
from audioextract.worker.command import AudioInfo, EncodePlan, bitrate_bps
from audioextract.worker.errors import WorkerError

# ffmpeg stops this far past the limit, so that reaching the cap proves the source
# is longer than the limit rather than exactly as long.
TIME_SLACK_SECONDS = 1.0
# Container headers, seek tables and tags on top of the audio data.
OUTPUT_OVERHEAD_BYTES = 1024 * 1024
# FLAC and ALAC of white noise, and container framing, run slightly over raw PCM.
LOSSLESS_MARGIN = 1.1
# Lossy encoders at their highest settings (opus 256k, aac ~ 6144 bits/frame) stay
# under this per channel; an explicit higher bitrate raises it.
LOSSY_BPS_PER_CHANNEL = 192_000
# A copied lossless stream's bit depth is not known from the plan: assume 32-bit.
COPY_BYTES_PER_SAMPLE = 4


@dataclass(frozen=True)
class Limits:
    """The limits of one run: decoded media seconds and output bytes."""

    max_seconds: float
    max_output_bytes: int

    def ffmpeg_options(self) -> list[str]:
        """Output options that make ffmpeg stop just past either limit."""
        return [
            "-t",
            f"{self.max_seconds + TIME_SLACK_SECONDS:.3f}",
            "-fs",
            str(self.max_output_bytes + 1),
        ]

    def apply(self, args: list[str], *, output_size: bool = True) -> list[str]:
        """An ffmpeg command with the limit options placed before its output (the last argument).

        ``output_size=False`` for runs that write no file (the loudness measurement).
        """
        options = self.ffmpeg_options() if output_size else self.ffmpeg_options()[:2]
        return [*args[:-1], *options, args[-1]]

    def check_decoded(self, seconds: float) -> None:
        """InputTooLarge when the run decoded more than the media-seconds limit."""
        if seconds > self.max_seconds:
            raise WorkerError(
                ErrorCode.INPUT_TOO_LARGE,
                f"the source decodes to more than {self.max_seconds:.0f} s of audio "
                f"(the media-seconds limit); whatever its header declares",
            )

    def check_output(self, path: Path) -> None:
        """InputTooLarge when the output file grew past the output-size limit."""
        size = path.stat().st_size if path.exists() else 0
        if size > self.max_output_bytes:
            raise WorkerError(
                ErrorCode.INPUT_TOO_LARGE,
                f"the output would exceed {self.max_output_bytes} bytes (the output-size limit)",
            )


class DecodedTime:
    """A progress callback that remembers how far ffmpeg got, then passes the update on."""

    def __init__(self, forward: Callable[[float, str | None, bool], None]) -> None:
        self.seconds = 0.0
        self._forward = forward

    def __call__(self, position: float, speed: str | None, done: bool) -> None:
        """Record ffmpeg's output position (seconds)."""
        self.seconds = max(self.seconds, position)
        self._forward(position, speed, done)


def output_bytes_per_second(plan: EncodePlan, info: AudioInfo, bitrate: str | None) -> float:
    """The most bytes per second the planned encode (or copy) can write."""
    rate = plan.sample_rate or info.sample_rate
    channels = plan.channels or info.channels
    if plan.spec.lossless:
        if plan.stream_copy:
            width = COPY_BYTES_PER_SAMPLE
        elif plan.codec == "pcm_s24le":
            width = 3
        elif (plan.sample_fmt or "").startswith("s32"):
            width = 4
        else:
            width = 2
        return rate * channels * width * LOSSLESS_MARGIN
    bps = max(LOSSY_BPS_PER_CHANNEL * max(channels, 2), bitrate_bps(bitrate) if bitrate else 0)
    if plan.stream_copy and info.bit_rate:
        bps = max(bps, info.bit_rate)
    return bps / 8 * LOSSLESS_MARGIN


def default_max_output_bytes(
    max_seconds: float, plan: EncodePlan, info: AudioInfo, bitrate: str | None
) -> int:
    """The output-size limit implied by the media-seconds limit for this format."""
    per_second = output_bytes_per_second(plan, info, bitrate)
    return int(max_seconds * per_second) + OUTPUT_OVERHEAD_BYTES


def for_encode(
    max_seconds: float,
    max_output_bytes: int | None,
    plan: EncodePlan,
    info: AudioInfo,
    bitrate: str | None,
) -> Limits:
    """The limits of an encode: the derived output size, capped by the configured one."""
    size = default_max_output_bytes(max_seconds, plan, info, bitrate)
    if max_output_bytes:
        size = min(size, max_output_bytes)
    return Limits(max_seconds=max_seconds, max_output_bytes=size)
