"""What the worker reports about its output: measured, never taken from headers.

One place for the result's figures (docs/worker.md, "Result"): the duration (decoded
where the container only estimates it), the average bitrate (size x 8 / duration),
the sample rate the audio was encoded at, the channel layout, and the sha256.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audioextract.api.constants import Format

# Containers whose duration ffprobe estimates from the bitrate (no index, no sample
# count): the output's duration is measured by decoding it instead.
ESTIMATED_DURATION_FORMATS = frozenset({Format.AAC})
OPUS_HEAD = b"OpusHead"


@dataclass(frozen=True)
class OutputFacts:
    """The output as it really is."""

    codec: str
    sample_rate: int
    channels: int
    layout: str | None
    duration: float
    bitrate: int | None


def opus_input_rate(path: Path) -> int | None:
    """The sample rate the opus encoder was given, from the OpusHead header (RFC 7845 §5.1).

    Opus always decodes at 48 kHz, so ffprobe reports 48000 for every opus file.
    """
    with path.open("rb") as fh:
        head = fh.read(4096)
    at = head.find(OPUS_HEAD)
    if at < 0 or at + 16 > len(head):
        return None
    rate = int.from_bytes(head[at + 12 : at + 16], "little")
    return rate or None


def average_bitrate(size_bytes: int, seconds: float) -> int | None:
    """Bits per second over the whole file; None for an empty duration."""
    return round(size_bytes * 8 / seconds) if seconds > 0 else None


def declared_duration(probe: dict[str, Any]) -> float | None:
    """The duration the output's header declares; None when it declares none (or 0)."""
    streams = [s for s in probe.get("streams", []) if s.get("codec_type") == "audio"]
    stream = streams[0] if streams else {}
    return (
        as_float(stream.get("duration"))
        or as_float(probe.get("format", {}).get("duration"))
        or None
    )


def output_facts(
    path: Path, fmt: Format, probe: dict[str, Any], decoded_seconds: float | None
) -> OutputFacts:
    """Combine ffprobe's view of the output with what decoding it measured."""
    streams = [s for s in probe.get("streams", []) if s.get("codec_type") == "audio"]
    stream = streams[0]
    declared = declared_duration(probe) or 0.0
    duration = decoded_seconds if decoded_seconds is not None else declared
    rate = as_int(stream.get("sample_rate")) or 0
    if fmt == Format.OPUS:
        rate = opus_input_rate(path) or rate
    layout = stream.get("channel_layout")
    return OutputFacts(
        codec=str(stream.get("codec_name")),
        sample_rate=rate,
        channels=as_int(stream.get("channels")) or 0,
        layout=str(layout) if layout else None,
        duration=round(duration, 3),
        bitrate=average_bitrate(path.stat().st_size, duration),
    )


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def as_int(value: Any) -> int | None:
    """``value`` as an int, None when it is not one."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def as_float(value: Any) -> float | None:
    """``value`` as a finite float, None when it is not one."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if result == result and result not in (float("inf"), float("-inf")) else None
